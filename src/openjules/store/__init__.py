"""Persistence: tables, migrations, the session state machine and per-resource services."""
