"""How openjules reaches the configured GitHub: its API, its git host and the token.

The token is used host-side only: by the API client and, for URLs of the same host, as an
HTTP header git sends (see ``git.HttpAuth``). It is never stored in the database or in a
repository, and ``redact`` scrubs it from any text that could reach a person.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from urllib.parse import urlparse

from openjules.engine.git import HttpAuth
from openjules.settings import Settings

PUBLIC_API_HOST = "api.github.com"
REDACTED = "[redacted]"


@dataclass(frozen=True)
class GitHubAccess:
    api_url: str
    token: str = field(repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> GitHubAccess:
        return cls(
            api_url=settings.github_api_url.rstrip("/"),
            token=settings.github_token.get_secret_value(),
        )

    @property
    def git_base_url(self) -> str:
        """Where this GitHub serves git: github.com for api.github.com; for GitHub
        Enterprise (``https://HOST/api/v3``) the same host."""
        parsed = urlparse(self.api_url)
        host = parsed.netloc
        if parsed.hostname == PUBLIC_API_HOST:
            host = host.removeprefix("api.")
        return f"{parsed.scheme}://{host}/"

    def clone_url(self, owner: str, repo: str) -> str:
        return f"{self.git_base_url}{owner}/{repo}.git"

    def repository_of(self, url: str) -> tuple[str, str] | None:
        """``(owner, repo)`` if ``url`` is a repository of this GitHub
        (``https://github.com/OWNER/REPO[.git]``), else None."""
        if not url.startswith(self.git_base_url):
            return None
        parts = url[len(self.git_base_url) :].rstrip("/").split("/")
        if len(parts) != 2 or not all(parts):
            return None
        return parts[0], parts[1].removesuffix(".git")

    def git_auth(self, url: str) -> HttpAuth | None:
        """The token as git credentials, for ``url`` on this GitHub's host only."""
        if not self.token or not url.startswith(self.git_base_url):
            return None
        # GitHub accepts any user name with a token as the password.
        basic = base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
        return HttpAuth(url_prefix=self.git_base_url, header=f"Basic {basic}")

    def redact(self, text: str) -> str:
        """``text`` with the token (and its Basic-auth form) removed."""
        if not self.token:
            return text
        basic = base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
        return text.replace(self.token, REDACTED).replace(basic, REDACTED)
