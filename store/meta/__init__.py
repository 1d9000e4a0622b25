"""Metadata as an ordered key-value store: sqlite (embedded), etcd (cluster), memory (tests)."""
