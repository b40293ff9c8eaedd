"""Hub fixtures: a local Hub-API server on 127.0.0.1 and a filled cache (owned by the hub part)."""
