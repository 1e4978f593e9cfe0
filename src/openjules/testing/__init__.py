"""Public test kit: real servers speaking real protocols, for tests of openjules and its users.

- ``LiveServer``: the openjules API on a free loopback port, in a background thread.
- ``provision_user``: a user and an API key, written straight to the database.
- ``register_source``: a git repository as a source (what ``openjules sources add`` does).
- ``register_github_source``: a repository of a (fake) GitHub as a source
  (``openjules sources add github:OWNER/REPO``).
- ``FakeModel``: a scripted OpenAI-compatible Chat Completions server (``fake_model``).
- ``FakeGitHub``: GitHub's REST API and git over HTTP, backed by real bare repositories,
  with injectable failures (``fake_github``).
- ``TcpProxy``: a TCP link (e.g. to PostgreSQL) that a test can cut and restore.
- ``PlainJules``: a server offering exactly Jules' twelve v1alpha methods, made from an
  openjules server by hiding its extensions (unknown URLs get Google's HTML 404;
  ``plain_jules``).
- ``FlakyHTTP``: an HTTP proxy that answers the next requests with an error (Google's
  envelope, ``Retry-After``) or drops their connection, then passes requests through,
  recording every try (``flaky_http``).
- ``WebhookReceiver``: an HTTP server that records the webhook deliveries it gets and
  answers them as told (``webhook_receiver``).
- ``TemporalDevServer``: Temporal's dev server, restartable with its state (``temporal_server``).
"""

from openjules.testing.fake_github import FakeGitHub, Operation, PullRecord
from openjules.testing.fake_model import FakeModel, Fault, Reply, Stall, ToolCall
from openjules.testing.flaky_http import FlakyHTTP, TriedRequest, TryOutcome
from openjules.testing.plain_jules import JULES_METHOD_NAMES, PlainJules, PlainRequest
from openjules.testing.server import (
    LiveServer,
    provision_user,
    register_github_source,
    register_source,
)
from openjules.testing.tcp_proxy import TcpProxy
from openjules.testing.temporal_server import TemporalDevServer
from openjules.testing.webhook_receiver import ReceivedRequest, WebhookReceiver

__all__ = [
    "JULES_METHOD_NAMES",
    "FakeGitHub",
    "FakeModel",
    "Fault",
    "FlakyHTTP",
    "LiveServer",
    "Operation",
    "PlainJules",
    "PlainRequest",
    "PullRecord",
    "ReceivedRequest",
    "Reply",
    "Stall",
    "TcpProxy",
    "TemporalDevServer",
    "ToolCall",
    "TriedRequest",
    "TryOutcome",
    "WebhookReceiver",
    "provision_user",
    "register_github_source",
    "register_source",
]
