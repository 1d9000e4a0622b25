"""Trio servers: HTTP (h11) <-> s3 <-> engine, and NBD <-> nbd <-> engine."""
