"""Administration: the operations (users, buckets, volumes, maintenance, status), their jobs,
and the client the `store` command uses to reach a running service."""
