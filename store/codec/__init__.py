"""Stripe geometry and range math (pure), on top of the native erasure code and checksums."""
