"""Object (buckets, objects, multipart, versions) and volume (block) semantics."""
