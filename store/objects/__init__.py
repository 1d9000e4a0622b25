"""The object store: buckets, objects, versions, multipart uploads, listings, lifecycle and
encryption, on the metadata KV and the chunk store (``ObjectEngine`` in ``engine.py``)."""
