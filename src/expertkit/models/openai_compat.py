"""Any OpenAI-compatible ``/v1/chat/completions`` endpoint as a generator: vLLM, Ollama, a llama.cpp server
elsewhere, a hosted API; and the base of the llama.cpp generator (models/llamacpp.py), which talks to its
own llama-server the same way, so streaming, timeouts and errors are handled in one place.
"""

from __future__ import annotations

import json
import time

from expertkit.errors import GeneratorError
from expertkit.models.base import STOP, Generation, Messages, OnToken


class OpenAIGenerator:
    """Any OpenAI-compatible /v1/chat/completions endpoint, streamed, with timeouts and retries.

    Retries cover connection errors, 429 and 5xx before the first token arrives; after that a broken
    stream is an error, never a silently shortened answer.
    """

    parallel = 1  # requests sent at once: one, as callers have always assumed (the server may take more)
    options = frozenset({STOP})

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "",
        timeout: float = 60.0,
        retries: int = 2,
        context_window: int = 4096,
        backoff: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = model
        self.api_key = api_key  # never read from the environment here: config.api_key_for decides what may go
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.context_window = context_window
        self._client = None

    def count_tokens(self, messages: Messages) -> int:
        # the remote tokenizer is unknown; 4 characters a token is the usual estimate for English
        return sum(len(m["content"]) // 4 + 4 for m in messages)

    def _http(self):
        """One client per generator: its connection is kept alive between requests (a new one cost
        20 to 30 ms before the first token, measured by benchmarks/generation_speed.py)."""
        import httpx

        if self._client is None:
            self._client = httpx.Client(timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)))
        return self._client

    def close(self) -> None:
        """Close the kept-alive connection (a later request opens another)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def generate(
        self,
        messages: Messages,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        on_token: OnToken | None = None,
        stop: list[str] | None = None,
    ) -> Generation:
        return self._generate(messages, max_new_tokens, temperature, on_token, {"stop": stop} if stop else None)

    def _generate(
        self,
        messages: Messages,
        max_new_tokens: int,
        temperature: float,
        on_token: OnToken | None,
        extra: dict | None = None,
    ) -> Generation:
        import httpx

        body = {
            "model": self.name,
            "messages": messages,
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
            **(extra or {}),
        }
        url = f"{self.base_url}/chat/completions"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            started = time.perf_counter()
            try:
                with self._http().stream("POST", url, json=body, headers=self._headers()) as response:
                    if response.status_code in (429, 500, 502, 503, 504):
                        last = f"HTTP {response.status_code}: {response.read().decode(errors='replace')[:200]}"
                        continue
                    if response.status_code >= 400:
                        detail = response.read().decode(errors="replace")[:300]
                        raise GeneratorError(f"{url} answered HTTP {response.status_code}: {detail}")
                    return self._read_stream(response, url, started, on_token, messages)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last = f"cannot connect ({exc})"
            except httpx.TimeoutException:
                raise GeneratorError(
                    f"{url} did not answer within {self.timeout:.0f}s; raise the timeout or check the server"
                ) from None
            except httpx.HTTPError as exc:
                raise GeneratorError(f"{url}: {type(exc).__name__}: {exc}") from None
        raise GeneratorError(f"{url} failed after {self.retries + 1} attempts: {last}. Is the server running?")

    def _read_stream(
        self, response, url: str, started: float, on_token: OnToken | None, messages: Messages
    ) -> Generation:
        parts: list[str] = []
        usage: dict = {}
        finish = "stop"
        done = False
        first: float | None = None
        try:
            for line in response.iter_lines():
                if not line.strip() or line.startswith(":"):
                    continue
                if not line.startswith("data:"):
                    raise GeneratorError(f"malformed stream from {url}: expected 'data:' lines, got {line[:80]!r}")
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    event = json.loads(data)
                except json.JSONDecodeError:
                    raise GeneratorError(f"malformed stream from {url}: not JSON: {data[:80]!r}") from None
                if "error" in event:
                    raise GeneratorError(f"{url} reported an error mid-stream: {event['error']}")
                usage = event.get("usage") or usage
                for choice in event.get("choices", []):
                    piece = (choice.get("delta") or {}).get("content") or ""
                    if piece:
                        if first is None:
                            first = time.perf_counter() - started
                        parts.append(piece)
                        if on_token:
                            on_token(piece)
                    finish = choice.get("finish_reason") or finish
        except KeyboardInterrupt:
            finish, done = "interrupted", True
        if not done:
            raise GeneratorError(f"malformed stream from {url}: it ended without [DONE]")
        text = "".join(parts)
        return Generation(
            text.strip(),
            int(usage.get("prompt_tokens") or self.count_tokens(messages)),
            int(usage.get("completion_tokens") or len(parts)),
            time.perf_counter() - started,
            finish,
            first,
            int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
        )
