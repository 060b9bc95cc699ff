"""OpenAI-compatible HTTP back-end (OpenAI, vLLM, Ollama, llama.cpp server, hosted APIs)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from medguna.errors import ConfigError, DescriptionError
from medguna.text.describe.backends import Completion, SamplingSettings
from medguna.text.describe.retry import RETRYABLE_STATUSES, RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)

API_KINDS = ("chat", "completions")


def credential_free_url(url: str) -> str:
    """The URL without user:password, query or fragment, fit for logs and provenance."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


class _Malformed(Exception):
    """A 200 answer without usable completions; retried like a server error."""


class OpenAICompatibleBackend:
    """Samples completions from `<base_url>/chat/completions` or `<base_url>/completions`."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api: str = "chat",
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"--base-url {credential_free_url(base_url)!r} is not an http(s) URL; "
                "give e.g. http://127.0.0.1:8000/v1"
            )
        if api not in API_KINDS:
            raise ConfigError(f"--api must be one of {', '.join(API_KINDS)}, got {api!r}")
        if not model:
            raise ConfigError("--model is empty; name the model the server serves")
        if not api_key and parts.hostname.endswith("openai.com"):
            # Fail before any request: OpenAI answers 401 to a key-less call anyway.
            raise ConfigError(
                f"no API key for {parts.hostname}: export {api_key_env}=... (or name another variable "
                "with --api-key-env), or point --base-url at a local server that needs none"
            )
        self.model = model
        self.api = api
        self._api_key = api_key
        self._api_key_env = api_key_env
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._safe_base = credential_free_url(base_url)
        self._url = base_url.rstrip("/") + ("/chat/completions" if api == "chat" else "/completions")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=timeout_s)

    @property
    def identity(self) -> dict[str, str]:
        return {"backend": f"openai-{self.api}", "model": self.model, "base_url": self._safe_base}

    def close(self) -> None:
        self._client.close()

    def _body(self, prompt: str, sampling: SamplingSettings, count: int, first_index: int) -> dict:
        body: dict[str, Any] = {
            "model": self.model,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "n": count,
        }
        if sampling.seed is not None:
            # Offset by the sample index: a server that ignores n and is asked again for the
            # remaining samples must not repeat the first ones.
            body["seed"] = sampling.seed + first_index
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        return body

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _parse(self, response: httpx.Response) -> list[Completion]:
        try:
            payload = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise _Malformed(f"response is not JSON ({error})") from None
        choices = payload.get("choices") if isinstance(payload, dict) else None
        if not isinstance(choices, list):
            raise _Malformed("response has no 'choices' list")
        completions = []
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            if self.api == "chat":
                message = choice.get("message")
                text = message.get("content") if isinstance(message, dict) else None
            else:
                text = choice.get("text")
            # A choice without text (refusal, tool call, filtered) is skipped, not fatal.
            if isinstance(text, str) and text.strip():
                completions.append(Completion(text, choice.get("finish_reason")))
        if not completions:
            raise _Malformed("no choice carries completion text")
        return completions

    def complete(
        self, prompt: str, sampling: SamplingSettings, count: int, first_index: int
    ) -> list[Completion]:
        body = self._body(prompt, sampling, count, first_index)
        policy = self._retry
        for attempt in range(1, policy.max_attempts + 1):
            retry_after = None
            try:
                response = self._client.post(self._url, json=body)
            except httpx.TimeoutException:
                reason = "request timed out"
            except httpx.TransportError as error:
                reason = f"connection failed ({type(error).__name__})"
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return self._parse(response)
                    except _Malformed as error:
                        reason = f"malformed answer: {error}"
                elif status in RETRYABLE_STATUSES or status >= 500:
                    reason = f"HTTP {status}"
                    retry_after = parse_retry_after(response.headers.get("retry-after"))
                elif status in (401, 403):
                    raise DescriptionError(
                        f"{self._url_for_humans()} refused the request (HTTP {status}); set the "
                        f"API key in the environment variable ${self._api_key_env} "
                        "(or name another one with --api-key-env)"
                    )
                else:
                    excerpt = self._redact(response.text[:300])
                    raise DescriptionError(
                        f"{self._url_for_humans()} rejected the request (HTTP {status}): "
                        f"{excerpt}; check --model {self.model!r}, --api {self.api!r} "
                        "and the sampling flags"
                    )
            if attempt == policy.max_attempts:
                break
            wait = policy.wait_s(attempt, retry_after)
            if wait is None:
                raise DescriptionError(
                    f"{self._url_for_humans()} asks to wait {retry_after:.0f} s (Retry-After), "
                    f"more than the {policy.max_retry_after_s:.0f} s allowed; "
                    "rerun later: finished samples are cached"
                )
            log.warning("%s: %s; retry %d/%d in %.1f s", self._url_for_humans(), reason,
                        attempt, policy.max_attempts - 1, wait)
            self._sleep(wait)
        raise DescriptionError(
            f"{self._url_for_humans()} failed {policy.max_attempts} times, last: {reason}; "
            "rerun later (finished samples are cached) or raise --max-attempts"
        )

    def _url_for_humans(self) -> str:
        return credential_free_url(self._url)
