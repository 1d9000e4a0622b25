"""Block volumes: thin-provisioned replicated extents with per-block checksums, a leased single
writer, snapshots and clones (``Volumes`` in ``admin.py``, I/O in ``open_volume.py``)."""
