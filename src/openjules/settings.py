"""Settings: the only place environment variables are read (prefix ``OPENJULES_``).

Values are checked when the settings are built: a setting that can never work (an unknown
sandbox, an unparsable port, a URL without a host) stops a command before it does anything,
and ``load_settings`` says which one, its value and what is expected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "OPENJULES_"
# The database URLs openjules can use (it needs an async driver that is installed).
DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+psycopg")
DATABASE_URL_FORMS = (
    "sqlite+aiosqlite:///PATH (a file) or postgresql+psycopg://USER[:PASSWORD]@HOST[:PORT]/DB"
)
SECRET_FIELDS = frozenset({"model_api_key", "github_token", "temporal_api_key"})


class RunnerKind(StrEnum):
    """Who runs sessions: ``local`` is a lease queue in the database, worked in-process;
    ``temporal`` hands each session to a Temporal workflow whose activity any worker
    polling the task queue runs (scale-out across machines)."""

    LOCAL = "local"
    TEMPORAL = "temporal"


class SandboxKind(StrEnum):
    BUBBLEWRAP = "bubblewrap"
    # Development only: no isolation beyond rlimits and a clean environment.
    UNSANDBOXED = "unsandboxed"


class ModelProvider(StrEnum):
    """Presets for a base URL and a default model; any OpenAI-compatible endpoint works."""

    OPENAI = "openai"
    GEMINI = "gemini"
    ANTHROPIC = "anthropic"
    OLLAMA = "ollama"


def default_data_dir() -> Path:
    return Path.home() / ".openjules"


class Settings(BaseSettings):
    # An empty variable means "unset" (OPENJULES_MODEL_PROVIDER= is no provider).
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_ignore_empty=True)

    data_dir: Path = Field(default_factory=default_data_dir)
    # SQLAlchemy async URL; empty means SQLite in ``data_dir``.
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Base of ``Session.url`` (``{public_base_url}/session/{id}``); empty means http://host:port.
    public_base_url: str = ""
    max_keys_per_user: int = 3
    default_user: str = "default"
    # Seconds an authenticated key is remembered; a revoked key works at most this long.
    auth_cache_seconds: float = 1.0
    # How long a web app sign-in lasts (revoking its API key ends it sooner).
    web_session_hours: float = Field(default=168.0, gt=0)
    # Debug logging of each request's database time.
    database_echo: bool = False

    # Database resilience: during a PostgreSQL outage a request fails within these bounds
    # (503 UNAVAILABLE with Retry-After) instead of hanging. Seconds to open a connection
    # (libpq counts whole seconds), and to wait for a free pooled connection.
    database_connect_timeout_seconds: float = Field(default=5.0, ge=1)
    database_pool_timeout_seconds: float = Field(default=5.0, gt=0)
    # SQLite: how long a write waits for the lock held by another process (an `openjules
    # worker`, a backup) before it fails; writes of one process never wait on it (they
    # take turns first).
    database_busy_timeout_seconds: float = Field(default=10.0, gt=0)

    # The HTTP server: timeouts and connection limits. A client that has not sent its
    # request headers this long after connecting (or after the previous response) is
    # disconnected, and one that has not sent the whole body this long after its headers.
    http_header_timeout_seconds: float = Field(default=30.0, gt=0)
    http_body_timeout_seconds: float = Field(default=60.0, gt=0)
    # Open connections served at once; beyond it a connection is answered 503 with
    # Retry-After. 0: min(10000, half the open-files limit, raised to its hard limit).
    http_max_connections: int = Field(default=0, ge=0)
    # `openjules serve`: HTTP server processes sharing the port (the agent runner and the
    # webhook sender run in one of them). 0: one per CPU core (`openjules.http_workers`).
    http_workers: int = Field(default=0, ge=0)

    # Limits on what a request may ask. A body larger than max_request_bytes is refused
    # before it is read (400 INVALID_ARGUMENT); text fields, filters and page tokens longer
    # than their limit are refused naming the field and the limit.
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_prompt_chars: int = Field(default=100_000, ge=1)
    max_title_chars: int = Field(default=1000, ge=1)
    max_filter_chars: int = Field(default=2048, ge=1)
    max_page_token_chars: int = Field(default=512, ge=64)
    # Requests each API key may make per rolling minute (per server process); beyond it
    # 429 RESOURCE_EXHAUSTED with Retry-After. 0: no limit.
    rate_limit_per_minute: int = Field(default=0, ge=0)

    # The model: any OpenAI-compatible Chat Completions endpoint. A provider preset fills
    # in the base URL and a default model; explicit values win.
    model_provider: ModelProvider | None = None
    model_base_url: str = ""
    model_api_key: SecretStr = SecretStr("")
    model: str = ""
    model_timeout_seconds: float = 120.0
    model_max_retries: int = 5

    # Where agent commands run: "bubblewrap", or "unsandboxed" for development only.
    sandbox: SandboxKind = SandboxKind.BUBBLEWRAP
    # When the server runs as root (process limits do not apply to root), each running
    # session's commands run as an unprivileged uid of their own from this range (the gid
    # has the same number), so one session's processes never count against another's
    # process limit. Pick uids no host user or subuid range uses (in a container with a
    # user namespace: uids that are mapped).
    sandbox_uid_first: int = Field(default=200_000, ge=1, le=2**32 - 2)
    sandbox_uid_count: int = Field(default=1000, ge=1, le=1_000_000)
    # A fixed uid/gid for every session's commands instead of the range (sessions then
    # share one process limit); unset: the range. The gid defaults to the uid.
    sandbox_uid: int | None = Field(default=None, ge=1, le=2**32 - 2)
    sandbox_gid: int | None = Field(default=None, ge=1, le=2**32 - 2)
    # The size of a session's work tree on disk, in MiB: a command that grows it past this
    # is stopped, and the model is told to delete files.
    workspace_max_mb: int = Field(default=3072, ge=1)
    # The size of the sandbox's private /tmp (memory, in MiB); a write past it fails with
    # "No space left on device".
    sandbox_tmp_mb: int = Field(default=1024, ge=1)
    command_timeout_seconds: float = 600.0
    command_cpu_seconds: int = 600
    command_memory_bytes: int = 4 * 1024**3
    command_max_processes: int = 256
    command_max_file_bytes: int = 1024**3
    command_output_bytes: int = 64 * 1024

    # The agent: limits per run (a run lasts until the session waits, ends or fails).
    agent_max_turns: int = 100
    agent_max_tokens: int = 2_000_000
    agent_wall_seconds: float = 3600.0
    # Older tool outputs are elided once the transcript is longer than this many characters.
    agent_context_chars: int = 300_000
    # Emit bashOutput artifacts (the current TypeScript SDK rejects them; spec §5.10).
    bash_output_artifacts: bool = False
    # Who runs sessions (a second runner is one new module under engine/).
    runner: RunnerKind = RunnerKind.LOCAL
    # The Temporal runner (`pip install openjules[temporal]`): the frontend's host:port,
    # the namespace, and the task queue every worker of this server polls. TLS is used
    # when asked for, when a CA or client certificate is given, or with an API key
    # (Temporal Cloud); the client certificate and key (mTLS) go together.
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "openjules"
    temporal_tls: bool = False
    temporal_tls_ca_file: Path | None = None
    temporal_tls_cert_file: Path | None = None
    temporal_tls_key_file: Path | None = None
    temporal_api_key: SecretStr = SecretStr("")
    # A worker whose running session sends Temporal no heartbeat for this long is taken
    # for dead, and the session continues on another worker (once its lease expired).
    temporal_heartbeat_timeout_seconds: float = Field(default=20.0, ge=2.0)
    # Admission limits of a process that runs sessions (`openjules serve`, `openjules
    # worker`). A session waiting on the model costs an asyncio task, so the number worked
    # at once is high; what costs CPU (sandbox commands) has its own, smaller limit.
    # Sessions beyond the limit stay QUEUED, in order. 0: this process runs none (`serve`
    # then leaves them to `openjules worker`).
    max_concurrent_sessions: int = Field(default=200, ge=0)
    # Sandbox commands running at once in this process; 0: two per CPU core.
    max_concurrent_commands: int = Field(default=0, ge=0)
    # Per-user limits, like Jules' plans; 0: no limit. A user's sessions beyond the first
    # limit stay QUEUED, in order, until one of theirs ends; a create beyond the daily
    # limit (sessions created since 00:00 UTC) is refused with 429 RESOURCE_EXHAUSTED.
    user_max_concurrent_sessions: int = Field(default=0, ge=0)
    user_daily_sessions: int = Field(default=0, ge=0)
    # Deprecated alias of max_concurrent_sessions (OPENJULES_WORKERS, from when each
    # running session held one of N worker tasks); wins when set.
    workers: int | None = Field(default=None, ge=0)
    lease_seconds: float = 30.0

    # Live sessions. A comment line is sent on every open stream this often, so proxies
    # and clients can tell a quiet stream from a dead one.
    sse_keepalive_seconds: float = Field(default=15.0, gt=0)
    # SQLite only: how often a process looks for changes other processes made (workers in
    # another process); PostgreSQL pushes them (LISTEN/NOTIFY).
    change_poll_seconds: float = Field(default=0.25, gt=0)
    # Webhooks: the delays between delivery attempts (ms, s, m, h; decimals allowed);
    # after the last the delivery is marked failed. The default spans about 32 hours.
    webhook_retry_schedule: str = "5s,30s,2m,10m,30m,1h,2h,4h,8h,8h,8h"
    # Allow webhook URLs on loopback, private, link-local or metadata addresses.
    webhooks_allow_private: bool = False
    # How long one delivery may take, connecting and reading the answer included.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)

    # GitHub (or GitHub Enterprise: https://HOST/api/v3): registers sources, authenticates
    # clones, fetches and pushes to that host, and opens pull requests. The token is used
    # host-side only; agent commands never see it.
    github_api_url: str = "https://api.github.com"
    github_token: SecretStr = SecretStr("")
    # Who the commits of pull requests are by.
    git_author_name: str = "openjules"
    git_author_email: str = "openjules@localhost"

    @field_validator("model_provider", mode="before")
    @classmethod
    def _provider_any_case(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    @field_validator("model_base_url", "github_api_url", "public_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("expected an http:// or https:// URL with a host")
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _retry_schedule(cls, value: str) -> str:
        parse_durations(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _usable_database(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if value and (not sep or scheme not in DATABASE_SCHEMES):
            raise ValueError(f"expected {DATABASE_URL_FORMS}")
        if scheme == "sqlite+aiosqlite" and rest.partition("?")[0] in ("", "/", "/:memory:"):
            raise ValueError(
                "an in-memory SQLite database is gone when its connection closes, and "
                f"openjules uses many connections and processes; expected {DATABASE_URL_FORMS}"
            )
        return value

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy whose ``update`` values are validated like the constructor's (a plain
        string becomes a secret or an enum member; a bad value raises)."""
        copy = super().model_copy(deep=deep)
        for name, value in (update or {}).items():
            if name in type(self).model_fields:  # others are ignored, as by the constructor
                self.__pydantic_validator__.validate_assignment(copy, name, value)
        return copy

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'openjules.db'}"

    def sessions_at_once(self) -> int:
        """Sessions this process works at once (``workers`` if set, for compatibility)."""
        return self.max_concurrent_sessions if self.workers is None else self.workers

    def commands_at_once(self) -> int:
        return self.max_concurrent_commands or 2 * (os.cpu_count() or 1)

    def resolved_public_base_url(self) -> str:
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        return f"http://{self.host}:{self.port}"

    def webhook_retry_delays(self) -> tuple[float, ...]:
        """``webhook_retry_schedule`` in seconds."""
        return parse_durations(self.webhook_retry_schedule)


# A duration of the retry schedule: a decimal number and a unit.
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ms|s|m|h)", re.ASCII)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_SCHEDULE_ENTRIES = 100


def parse_durations(text: str) -> tuple[float, ...]:
    """``"200ms,1.5s,2m,1h"`` in seconds; ValueError naming the entry that is not one."""
    entries = [entry.strip() for entry in text.split(",")]
    if len(entries) > MAX_SCHEDULE_ENTRIES:
        raise ValueError(f"expected at most {MAX_SCHEDULE_ENTRIES} delays")
    delays: list[float] = []
    for entry in entries:
        match = _DURATION.fullmatch(entry)
        if match is None:
            raise ValueError(
                f"{entry!r} is not a delay: expected comma-separated delays such as 5s,30s,2m,1h "
                "(units ms, s, m, h)"
            )
        delays.append(float(match[1]) * _UNIT_SECONDS[match[2]])
    return tuple(delays)


class SettingsError(ValueError):
    """Settings that can never work; ``str()`` is one line naming each bad variable (or
    flag), its value and what is expected."""


def load_settings(
    overrides: Mapping[str, Any] | None = None, *, names: Mapping[str, str] | None = None
) -> Settings:
    """Settings from the environment, with ``overrides`` (e.g. from command-line flags)
    winning; ``names`` says how to call an override in messages (``{"data_dir":
    "--data-dir"}``; the default is its environment variable)."""
    overrides = dict(overrides or {})
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        given = {k: names.get(k, env_name(k)) for k in overrides} if names else {}
        problems = [_explain(error, given) for error in exc.errors()]
        raise SettingsError("; ".join(problems)) from None


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def _explain(error: ErrorDetails, given: Mapping[str, str]) -> str:
    field = str(error["loc"][0]) if error["loc"] else ""
    name = given.get(field, env_name(field))
    if field in SECRET_FIELDS:
        shown = "(a secret, not shown)"
    else:
        shown = repr(_without_password(str(error.get("input", ""))))
    setting = f"{name} {shown}" if name.startswith("--") else f"{name}={shown}"
    return f"{setting} is not valid: {_expected(error)}"


def _expected(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "expected a whole number"
    if kind in ("float_parsing", "float_type"):
        return "expected a number"
    if kind in ("bool_parsing", "bool_type"):
        return "expected true or false"
    if kind == "enum":
        return f"expected {ctx.get('expected', 'a known value')}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind in ("greater_than_equal", "less_than_equal"):
        low, high = _bounds(str(error["loc"][0]) if error["loc"] else "")
        if low is not None and high is not None:
            return f"expected a whole number from {low} to {high}"
        if low is not None:
            return f"expected a whole number of at least {low}"
    return error["msg"].replace("Input should be", "expected", 1)


def _bounds(field: str) -> tuple[Any, Any]:
    """The ``ge`` and ``le`` bounds of ``field`` (None where it has none)."""
    info = Settings.model_fields.get(field)
    metadata = info.metadata if info else []
    low = next((m.ge for m in metadata if getattr(m, "ge", None) is not None), None)
    high = next((m.le for m in metadata if getattr(m, "le", None) is not None), None)
    return low, high


def _without_password(url: str) -> str:
    """``url`` with the password of ``scheme://user:password@host`` left out."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.partition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
