"""Agent work and host-side git: the engine service (assembled from settings), runners,
the agent loop, sandbox, git and forges. The API may import only ``engine.runner`` (the
``Runner`` port)."""
