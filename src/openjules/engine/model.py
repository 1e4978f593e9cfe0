"""The model adapter: any OpenAI-compatible Chat Completions endpoint.

Providers differ only by base URL, key and model name. Requests go over the process's
kept connections (``engine.model_http``). As the OpenAI SDKs do, 408/409/429/5xx answers,
connection failures and timeouts are retried with exponential backoff, honouring
``Retry-After``; what is left after the retries surfaces as ``ModelError`` with a reason a
person can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from openjules import __version__
from openjules._cancellation import within
from openjules.engine.model_http import HttpConnectionError, HttpResponse, ModelHttp
from openjules.settings import ModelProvider, Settings

USER_AGENT = f"openjules/{__version__}"


@dataclass(frozen=True)
class Preset:
    base_url: str
    model: str
    needs_key: bool = True


PRESETS: dict[ModelProvider, Preset] = {
    ModelProvider.OPENAI: Preset("https://api.openai.com/v1", "gpt-4.1"),
    ModelProvider.GEMINI: Preset(
        "https://generativelanguage.googleapis.com/v1beta/openai/", "gemini-2.5-pro"
    ),
    ModelProvider.ANTHROPIC: Preset("https://api.anthropic.com/v1/", "claude-sonnet-4-5"),
    ModelProvider.OLLAMA: Preset("http://127.0.0.1:11434/v1", "qwen2.5-coder:7b", needs_key=False),
}

NOT_CONFIGURED = (
    "No model is configured. Set OPENJULES_MODEL_BASE_URL, OPENJULES_MODEL_API_KEY and "
    "OPENJULES_MODEL (any OpenAI-compatible endpoint), or OPENJULES_MODEL_PROVIDER to one of "
    f"{', '.join(PRESETS)} plus OPENJULES_MODEL_API_KEY, then restart the server."
)


class ModelError(RuntimeError):
    """The model could not be reached or refused; ``str()`` explains it for a person."""


@dataclass(frozen=True)
class ModelConfig:
    base_url: str
    api_key: str
    model: str
    timeout_seconds: float = 120.0
    max_retries: int = 5


def model_config(settings: Settings) -> ModelConfig | None:
    """The configured model, or None when nothing usable is configured."""
    preset = PRESETS[settings.model_provider] if settings.model_provider else None
    base_url = settings.model_base_url or (preset.base_url if preset else "")
    model = settings.model or (preset.model if preset else "")
    api_key = settings.model_api_key.get_secret_value()
    if not api_key and preset is not None and not preset.needs_key:
        api_key = "unused"
    if not base_url or not model or not api_key:
        return None
    return ModelConfig(
        base_url=base_url,
        api_key=api_key,
        model=model,
        timeout_seconds=settings.model_timeout_seconds,
        max_retries=settings.model_max_retries,
    )


def describe_model(settings: Settings) -> str:
    """The start-up line of ``openjules serve`` and ``openjules worker``: which model
    sessions use and where (never the key), or which variables are missing."""
    config = model_config(settings)
    provider = settings.model_provider
    if config is not None:
        source = provider.value if provider else "an OpenAI-compatible endpoint"
        return f"model: {config.model} from {source} at {_host(config.base_url)}"
    if not (provider or settings.model_base_url or settings.model):
        missing = (
            "you set OPENJULES_MODEL_PROVIDER (one of "
            f"{', '.join(PRESETS)}) and OPENJULES_MODEL_API_KEY, or "
            "OPENJULES_MODEL_BASE_URL, OPENJULES_MODEL_API_KEY and OPENJULES_MODEL"
        )
    else:
        preset = PRESETS[provider] if provider else None
        unset = [
            name
            for name, needed in (
                ("OPENJULES_MODEL_BASE_URL", not settings.model_base_url and not preset),
                ("OPENJULES_MODEL", not settings.model and not preset),
                (
                    "OPENJULES_MODEL_API_KEY",
                    not settings.model_api_key.get_secret_value()
                    and (preset is None or preset.needs_key),
                ),
            )
            if needed
        ]
        missing = f"you also set {' and '.join(unset)}"
    return f"no model configured: sessions will fail until {missing}"


def _host(url: str) -> str:
    """The host (and port) of ``url``: never the credentials a URL may carry."""
    parts = urlsplit(url)
    host = parts.hostname or url
    return f"{host}:{parts.port}" if parts.port else host


@dataclass(frozen=True)
class ToolCallRequest:
    id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as an object; ValueError with a reason the model can act on."""
        try:
            value = json.loads(self.arguments or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"arguments are not valid JSON ({exc.msg} at {exc.pos})") from exc
        if not isinstance(value, dict):
            raise ValueError("arguments must be a JSON object")
        return value


@dataclass(frozen=True)
class ModelTurn:
    content: str | None
    tool_calls: list[ToolCallRequest] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_message(self) -> dict[str, Any]:
        """The assistant message to append to the transcript."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in self.tool_calls
            ]
        return message


def shared_http_client() -> ModelHttp:
    """One set of kept connections for every session's model calls in a process: a
    connection per call (TLS set up each time) costs what a hundred sessions at once feel."""
    return ModelHttp()


# Retried, as the OpenAI SDKs retry them: request timeout, conflict, rate limit, server.
RETRIED_STATUSES = frozenset({408, 409, 429})
# Backoff between tries (the OpenAI SDKs' schedule): 0.5 s doubling to 8 s, less up to a
# quarter at random; a Retry-After of up to a minute is honoured instead.
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
MAX_RETRY_AFTER_S = 60.0


class Model:
    def __init__(self, config: ModelConfig, *, http_client: ModelHttp | None = None) -> None:
        self.config = config
        # A shared pool outlives this model: only a client of its own is closed with it.
        self._owns_client = http_client is None
        self._http = http_client or ModelHttp()
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self._headers = {
            "Authorization": f"Bearer {config.api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }

    async def complete(
        self, *, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> ModelTurn:
        body = json.dumps(
            {"model": self.config.model, "messages": messages, "tools": tools},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        retries = self.config.max_retries
        for attempt in range(retries + 1):
            last = attempt == retries
            try:
                response = await within(
                    self._http.post(self._url, body=body, headers=self._headers),
                    seconds=self.config.timeout_seconds,
                )
            except (TimeoutError, HttpConnectionError) as exc:
                if last:
                    raise self._unanswered(exc) from exc
                await asyncio.sleep(_backoff(attempt, None))
                continue
            if response.status < 300:
                return self._turn(response.body)
            if not last and _should_retry(response):
                await asyncio.sleep(_backoff(attempt, response.headers))
                continue
            raise self._refused(response)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _unanswered(self, exc: TimeoutError | HttpConnectionError) -> ModelError:
        """The error for a request that got no answer, after the retries."""
        if isinstance(exc, TimeoutError):
            return ModelError(
                f"The model at {self.config.base_url} did not answer within "
                f"{self.config.timeout_seconds:g}s, {_retries(self.config.max_retries)}."
            )
        return ModelError(f"Cannot reach the model at {self.config.base_url}: {exc}")

    def _refused(self, response: HttpResponse) -> ModelError:
        """The error for an answer that is not a success, after the retries."""
        status = response.status
        if status == 429:
            return ModelError(
                "The model provider kept rate-limiting requests (HTTP 429), "
                f"{_retries(self.config.max_retries)}."
            )
        if status == 401:
            return ModelError(
                "The model provider rejected the API key (HTTP 401); check OPENJULES_MODEL_API_KEY."
            )
        return ModelError(
            f"The model provider answered HTTP {status}: {_short(_error_message(response))}"
        )

    def _turn(self, body: bytes) -> ModelTurn:
        """What the model answered, or ``ModelError`` for an answer without the shape."""
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise ModelError(
                f"The model at {self.config.base_url} answered with something that is not "
                "a Chat Completions response (not JSON)."
            ) from exc
        try:
            choices = data["choices"]
            if not choices:
                raise ModelError("The model returned no choices.")
            message = choices[0]["message"]
            calls = [
                ToolCallRequest(
                    id=str(c["id"]),
                    name=c["function"].get("name") or "",
                    arguments=c["function"].get("arguments") or "",
                )
                for c in (message.get("tool_calls") or [])
                if c.get("type", "function") == "function"
            ]
            content = message.get("content")
            usage = data.get("usage") or {}
            return ModelTurn(
                content=content if isinstance(content, str) else None,
                tool_calls=calls,
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            )
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"The model at {self.config.base_url} answered with a malformed Chat "
                "Completions response."
            ) from exc

    async def close(self) -> None:
        if self._owns_client:
            await self._http.aclose()


def _should_retry(response: HttpResponse) -> bool:
    """As the OpenAI SDKs decide: the server's ``x-should-retry`` first, then the status."""
    said = response.headers.get("x-should-retry", "").lower()
    if said in ("true", "false"):
        return said == "true"
    return response.status in RETRIED_STATUSES or response.status >= 500


def _backoff(attempt: int, headers: Mapping[str, str] | None) -> float:
    """Seconds before try ``attempt + 1``: the server's Retry-After if it gave a sane one."""
    if headers is not None:
        asked = _retry_after(headers)
        if asked is not None and 0 <= asked <= MAX_RETRY_AFTER_S:
            return asked
    delay: float = min(FIRST_BACKOFF_S * 2**attempt, MAX_BACKOFF_S)
    return delay * (1 - 0.25 * random.random())


def _retry_after(headers: Mapping[str, str]) -> float | None:
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        with contextlib.suppress(ValueError):
            return float(milliseconds) / 1000
    value = headers.get("retry-after")
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return float(value)
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return when.timestamp() - time.time()
    return None


def _error_message(response: HttpResponse) -> str:
    """What the provider said went wrong: its JSON error's message, else the body."""
    text = response.body.decode("utf-8", errors="replace").strip()
    with contextlib.suppress(ValueError):
        data = json.loads(text)
        if isinstance(data, dict):
            error = data.get("error", data)
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                return str(error["message"])
            if isinstance(error, str):
                return error
    return text or "(no body)"


def _retries(count: int) -> str:
    return f"even after {count} {'retry' if count == 1 else 'retries'}"


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
