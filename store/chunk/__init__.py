"""Drives: shard files with per-block checksums, the chunk server, quorum client, scrub, repair."""
