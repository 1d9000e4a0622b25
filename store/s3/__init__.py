"""S3 protocol, sans-IO: routing, SigV4, XML bodies, S3 errors. Never imports trio."""
