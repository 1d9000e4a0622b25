"""The S3 gateway (Trio side): the request pipeline (``gateway.py``), handlers by area, and
what they share (the call, authorization, messages)."""

from store.gateway.s3.gateway import IMPLEMENTED, S3Gateway, bad_request_response

__all__ = ["IMPLEMENTED", "S3Gateway", "bad_request_response"]
