"""NBD protocol, sans-IO: handshake and transmission state machine. Never imports trio."""
