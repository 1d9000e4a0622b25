"""Chunk-server RPC: wire format (sans-IO, rpc.wire) and Trio transport (rpc.transport)."""
