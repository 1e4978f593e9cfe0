"""The model adapter: any OpenAI-compatible Chat Completions endpoint via the ``openai`` SDK.

Providers differ only by base URL, key and model name. The SDK retries 408/409/429/5xx,
connection errors and timeouts with exponential backoff and honours ``Retry-After``;
what is left after its retries surfaces as ``ModelError`` with a reason a person can act on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import openai
from openai.types.chat import ChatCompletion

from openjules.settings import ModelProvider, Settings


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


def shared_http_client() -> openai.DefaultAsyncHttpxClient:
    """One connection pool for every session's model calls in a process: a client of its
    own costs each session run ~20 ms of CPU to build (its TLS context) and a connection
    per call, which a hundred sessions at once feel. The pool's limits are the SDK's."""
    return openai.DefaultAsyncHttpxClient()


class Model:
    def __init__(
        self, config: ModelConfig, *, http_client: openai.DefaultAsyncHttpxClient | None = None
    ) -> None:
        self.config = config
        # A shared pool outlives this model: only a client of its own is closed with it.
        self._owns_client = http_client is None
        self._client = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key,
            timeout=config.timeout_seconds,
            max_retries=config.max_retries,
            http_client=http_client,
        )

    async def complete(
        self, *, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> ModelTurn:
        try:
            # The SDK's documented request to any path, not ``chat.completions.create``:
            # that walks the whole transcript through its type-driven transform on every
            # turn (the costliest part of a turn for openjules), to change nothing in
            # messages that are plain JSON already. Retries, timeouts and errors are the same.
            response = await self._client.post(
                "/chat/completions",
                body={"model": self.config.model, "messages": messages, "tools": tools},
                cast_to=ChatCompletion,
            )
        except openai.APITimeoutError as exc:
            raise ModelError(
                f"The model at {self.config.base_url} did not answer within "
                f"{self.config.timeout_seconds:g}s, {_retries(self.config.max_retries)}."
            ) from exc
        except openai.APIConnectionError as exc:
            raise ModelError(f"Cannot reach the model at {self.config.base_url}: {exc}") from exc
        except openai.RateLimitError as exc:
            raise ModelError(
                "The model provider kept rate-limiting requests (HTTP 429), "
                f"{_retries(self.config.max_retries)}."
            ) from exc
        except openai.AuthenticationError as exc:
            raise ModelError(
                "The model provider rejected the API key (HTTP 401); check OPENJULES_MODEL_API_KEY."
            ) from exc
        except openai.APIStatusError as exc:
            raise ModelError(
                f"The model provider answered HTTP {exc.status_code}: "
                f"{_short(_without_sdk_prefix(exc.message))}"
            ) from exc
        except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:
            # The SDK does not validate bodies: junk surfaces here or, below, as a missing
            # attribute. Either way it is the model's failure, not openjules'.
            raise ModelError(
                f"The model at {self.config.base_url} answered with something that is not "
                "a Chat Completions response (not JSON)."
            ) from exc
        return self._turn(response)

    def _turn(self, response: ChatCompletion) -> ModelTurn:
        """What the model answered, or ``ModelError`` for an answer without the shape."""
        try:
            if not response.choices:
                raise ModelError("The model returned no choices.")
            message = response.choices[0].message
            calls = [
                ToolCallRequest(
                    id=c.id, name=c.function.name or "", arguments=c.function.arguments or ""
                )
                for c in (message.tool_calls or [])
                if isinstance(c, openai.types.chat.ChatCompletionMessageFunctionToolCall)
            ]
            usage = response.usage
            return ModelTurn(
                content=message.content,
                tool_calls=calls,
                prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
                completion_tokens=(usage.completion_tokens or 0) if usage else 0,
            )
        except (AttributeError, IndexError, TypeError) as exc:
            raise ModelError(
                f"The model at {self.config.base_url} answered with a malformed Chat "
                "Completions response."
            ) from exc

    async def close(self) -> None:
        if self._owns_client:
            await self._client.close()


def _retries(count: int) -> str:
    return f"even after {count} {'retry' if count == 1 else 'retries'}"


def _without_sdk_prefix(message: str) -> str:
    """The SDK prefixes "Error code: 500 - "; the status is already in our sentence."""
    return re.sub(r"^Error code: \d+ - ", "", message)


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
