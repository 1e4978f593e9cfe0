"""Public test kit: real servers speaking real protocols, for tests of openjules and its users.

- ``LiveServer``: the openjules API on a free loopback port, in a background thread.
- ``provision_user``: a user and an API key, written straight to the database.
- ``register_source``: a git repository as a source (what ``openjules sources add`` does).
- ``FakeModel``: a scripted OpenAI-compatible Chat Completions server (``fake_model``).
"""

from openjules.testing.fake_model import FakeModel, Fault, Reply, Stall, ToolCall
from openjules.testing.server import LiveServer, provision_user, register_source

__all__ = [
    "FakeModel",
    "Fault",
    "LiveServer",
    "Reply",
    "Stall",
    "ToolCall",
    "provision_user",
    "register_source",
]
