"""Cluster map -> placement groups -> drives (pure and deterministic)."""
