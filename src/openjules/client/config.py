"""Where the SDK finds the server and the key: arguments, then ``OPENJULES_URL`` /
``JULES_API_KEY``, then what ``openjules login`` stored in the user's config directory.

This is the client's own configuration, separate from the server's ``Settings``: a client
machine runs no server and must not need its settings to import.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

URL_ENV = "OPENJULES_URL"
KEY_ENV = "JULES_API_KEY"
CONFIG_DIR_ENV = "OPENJULES_CONFIG_DIR"
DEFAULT_URL = "http://127.0.0.1:8080"
CREDENTIALS_FILE = "credentials.json"
API_VERSION_PATH = "/v1alpha"


class ConfigError(ValueError):
    """No usable server URL or key (the message says where each is looked for)."""


@dataclass(frozen=True)
class Credentials:
    url: str
    api_key: str


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$OPENJULES_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/openjules``, else
    ``~/.config/openjules``."""
    env = os.environ if environ is None else environ
    if env.get(CONFIG_DIR_ENV):
        return Path(env[CONFIG_DIR_ENV])
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "openjules"


def credentials_path(environ: Mapping[str, str] | None = None) -> Path:
    return config_dir(environ) / CREDENTIALS_FILE


def read_stored(environ: Mapping[str, str] | None = None) -> Credentials | None:
    """What ``openjules login`` stored, or None (no file, or one that is not ours)."""
    path = credentials_path(environ)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    url, key = data.get("url"), data.get("api_key")
    if not isinstance(url, str) or not isinstance(key, str):
        return None
    return Credentials(url=url, api_key=key)


def store(credentials: Credentials, *, environ: Mapping[str, str] | None = None) -> Path:
    """Write the credentials readable by the user alone (0600, created so: never readable
    by others even for an instant) and return where."""
    path = credentials_path(environ)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"url": credentials.url, "api_key": credentials.api_key}, out)
        out.write("\n")
    os.replace(tmp, path)
    return path


def forget(environ: Mapping[str, str] | None = None) -> bool:
    """Remove the stored credentials; whether there were any."""
    path = credentials_path(environ)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def api_root(url: str) -> str:
    """The API's root (``…/v1alpha``) from a server URL given with or without it."""
    base = url.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ConfigError(f"Server URL {url!r} must start with http:// or https://")
    if base.endswith(API_VERSION_PATH):
        return base
    return base + API_VERSION_PATH


def resolve(
    *, url: str | None, api_key: str | None, environ: Mapping[str, str] | None = None
) -> Credentials:
    """The URL and key to use: each from the argument, else the environment, else the
    stored login; the URL defaults to a local server. No key anywhere is a ConfigError."""
    env = os.environ if environ is None else environ
    stored = read_stored(env)
    chosen_url = url or env.get(URL_ENV) or (stored.url if stored else "") or DEFAULT_URL
    chosen_key = api_key or env.get(KEY_ENV) or (stored.api_key if stored else "")
    if not chosen_key:
        raise ConfigError(
            f"No API key: set {KEY_ENV} or run `openjules login` (in Python, "
            "Client(api_key=...)); an operator makes one with `openjules keys create USER`."
        )
    api_root(chosen_url)
    return Credentials(url=chosen_url, api_key=chosen_key)
