"""Agent work and host-side git: runners, the agent loop, sandbox, git and forges."""
