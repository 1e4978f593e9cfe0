"""Settings: the only place environment variables are read (prefix ``OPENJULES_``)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RunnerKind(StrEnum):
    """Who runs sessions: ``local`` is a lease queue in the database, worked in-process."""

    LOCAL = "local"


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
    model_config = SettingsConfigDict(env_prefix="OPENJULES_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    # SQLAlchemy async URL; empty means SQLite in ``data_dir``.
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    # Base of ``Session.url`` (``{public_base_url}/session/{id}``); empty means http://host:port.
    public_base_url: str = ""
    max_keys_per_user: int = 3
    default_user: str = "default"
    # Seconds an authenticated key is remembered; a revoked key works at most this long.
    auth_cache_seconds: float = 1.0
    # Debug logging of each request's database time.
    database_echo: bool = False

    # The model: any OpenAI-compatible Chat Completions endpoint. A provider preset fills
    # in the base URL and a default model; explicit values win.
    model_provider: str = ""
    model_base_url: str = ""
    model_api_key: str = ""
    model: str = ""
    model_timeout_seconds: float = 120.0
    model_max_retries: int = 5

    # Where agent commands run: "bubblewrap", or "unsandboxed" for development only.
    sandbox: str = "bubblewrap"
    # When the server runs as root, commands run as this uid/gid (process limits do not
    # apply to root).
    sandbox_uid: int = 65534
    sandbox_gid: int = 65534
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
    # Concurrent sessions run by `openjules serve` (0: only `openjules worker` runs them).
    workers: int = 2
    lease_seconds: float = 30.0

    # GitHub (or GitHub Enterprise: https://HOST/api/v3): registers sources, authenticates
    # clones, fetches and pushes to that host, and opens pull requests. The token is used
    # host-side only; agent commands never see it.
    github_api_url: str = "https://api.github.com"
    github_token: str = ""
    # Who the commits of pull requests are by.
    git_author_name: str = "openjules"
    git_author_email: str = "openjules@localhost"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'openjules.db'}"

    def resolved_public_base_url(self) -> str:
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        return f"http://{self.host}:{self.port}"
