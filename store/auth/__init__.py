"""Secrets: users and their access keys, and the SSE-S3 master keys."""
