"""Forges: where sources live and where finished sessions deliver their changes (GitHub's
REST API, and git pushes to any remote)."""
