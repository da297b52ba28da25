"""Any OpenAI-compatible ``/v1/chat/completions`` endpoint as a generator: vLLM, Ollama, a llama.cpp server
elsewhere, a hosted API; and the base of the llama.cpp generator (models/llamacpp.py), which talks to its
own llama-server the same way, so streaming, timeouts and errors are handled in one place.
"""

from __future__ import annotations

import time

from expertkit.errors import GeneratorError
from expertkit.models.base import STOP, Generation, Messages, OnToken


class OpenAIGenerator:
    """Any OpenAI-compatible /v1/chat/completions endpoint, through the openai SDK: streamed, with its
    retries (connection errors, timeouts, 408, 429 and 5xx, with jittered exponential backoff that honours
    the server's Retry-After, as expertkit's own server sends it) and a standard SSE reader (``id:``,
    ``event:`` and comment lines are part of the format).

    Nothing reaches the server that expertkit did not choose: the key given (config.api_key_for decides
    which may go where), never OPENAI_API_KEY, OPENAI_ADMIN_KEY, OPENAI_ORG_ID or OPENAI_PROJECT_ID from
    the environment, which the SDK would otherwise read and send to whatever server a workspace names.
    A stream that breaks after the first token is an error, never a silently shortened answer.
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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = model
        self.api_key = api_key  # never read from the environment here: config.api_key_for decides what may go
        self.timeout = timeout
        self.retries = retries
        self.context_window = context_window
        self._client = None  # httpx, for the server's own endpoints (llama.cpp's /tokenize, /apply-template)
        self._sdk = None
        self._server_counts = True  # until the server fails to count (it is not llama.cpp): then the estimate

    # -- tokens ------------------------------------------------------------------------------------------

    def count_tokens(self, messages: Messages) -> int:
        """The prompt's tokens. A llama.cpp server counts them exactly, with the model's own chat template
        (``/apply-template`` and ``/tokenize`` beside ``/v1``); any other server gets an estimate that never
        undercounts much: 3 characters a token for ASCII text, and one token for every other character (Greek
        takes 1.3 to 2.6 characters a token in multilingual tokenizers, against about 3 for English)."""
        import httpx

        if self._server_counts:
            try:
                return self._server_tokens(messages)
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                self._server_counts = False  # not a llama.cpp server: estimate from now on
        return estimate_prompt(messages)

    def render(self, messages: Messages) -> str:
        """The prompt text, rendered by a llama.cpp server with the model's own chat template."""
        return self._post("/apply-template", {"messages": messages})["prompt"]

    def _server_tokens(self, messages: Messages) -> int:
        """The prompt's tokens as a llama.cpp server counts them: its chat template, then its tokenizer."""
        return len(self._post("/tokenize", {"content": self.render(messages), "parse_special": True})["tokens"])

    def _post(self, path: str, body: dict) -> dict:
        """A JSON request to one of the server's own endpoints beside ``/v1`` (llama.cpp's); raises httpx's
        errors, or ValueError for a reply that is not JSON."""
        response = self._http().post(f"{self.base_url.removesuffix('/v1')}{path}", json=body, headers=self._headers())
        response.raise_for_status()
        return response.json()

    # -- connections -------------------------------------------------------------------------------------

    def _http(self):
        """One client per generator: its connection is kept alive between requests (a new one cost
        20 to 30 ms before the first token, measured by benchmarks/generation_speed.py)."""
        import httpx

        if self._client is None:
            self._client = httpx.Client(timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)))
        return self._client

    def _openai(self):
        """The SDK's client, made once and kept (its connections stay alive between requests)."""
        import openai

        if self._sdk is None:
            self._sdk = openai.OpenAI(
                base_url=self.base_url,
                api_key=self.api_key,
                admin_api_key="",  # never OPENAI_ADMIN_KEY from the environment
                timeout=openai.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                max_retries=self.retries,
            )
        return self._sdk

    def close(self) -> None:
        """Close the kept-alive connections (a later request opens others)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._sdk is not None:
            self._sdk.close()
            self._sdk = None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _sdk_headers(self) -> dict:
        """Per request: the organisation and project the SDK reads from the environment stay out, and so does
        an Authorization header when no key may go."""
        import openai

        omitted = {"OpenAI-Organization": openai.omit, "OpenAI-Project": openai.omit}
        return omitted if self.api_key else {**omitted, "Authorization": openai.omit}

    # -- generation --------------------------------------------------------------------------------------

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
        import openai

        url = f"{self.base_url}/chat/completions"
        started = time.perf_counter()
        try:
            stream = self._openai().chat.completions.create(
                model=self.name,
                messages=messages,
                max_tokens=max_new_tokens,
                temperature=temperature,
                stream=True,
                stream_options={"include_usage": True},
                extra_body=extra or None,
                extra_headers=self._sdk_headers(),
            )
            with stream:
                return self._read_stream(stream, url, started, on_token, messages)
        except openai.APITimeoutError:
            raise GeneratorError(
                f"{url} did not answer within {self.timeout:.0f}s ({self.retries + 1} attempts); raise the timeout "
                "or check the server"
            ) from None
        except openai.APIConnectionError as exc:
            raise GeneratorError(
                f"{url} failed after {self.retries + 1} attempts: cannot connect ({exc.__cause__ or exc}). "
                "Is the server running?"
            ) from None
        except openai.APIStatusError as exc:
            detail = exc.response.text[:300]
            retried = exc.status_code in (408, 409, 429) or exc.status_code >= 500
            if retried and self.retries:
                raise GeneratorError(
                    f"{url} failed after {self.retries + 1} attempts: HTTP {exc.status_code}: {detail[:200]}. "
                    "Is the server running?"
                ) from None
            raise GeneratorError(f"{url} answered HTTP {exc.status_code}: {detail}") from None
        except openai.APIError as exc:  # an error event in the stream
            raise GeneratorError(f"{url} reported an error mid-stream: {exc.message}") from None
        except ValueError as exc:  # an event that is not JSON
            raise GeneratorError(f"malformed stream from {url}: {exc}") from None

    def _read_stream(
        self, stream, url: str, started: float, on_token: OnToken | None, messages: Messages
    ) -> Generation:
        parts: list[str] = []
        usage = None
        finish: str | None = None
        first: float | None = None
        try:
            for chunk in stream:
                usage = chunk.usage or usage
                for choice in chunk.choices or []:
                    piece = choice.delta.content if choice.delta is not None else None
                    if piece:
                        if first is None:
                            first = time.perf_counter() - started
                        parts.append(piece)
                        if on_token:
                            on_token(piece)
                    finish = choice.finish_reason or finish
        except KeyboardInterrupt:
            finish = "interrupted"
        if finish is None:  # every answer ends with a finish reason; without one the stream was cut
            raise GeneratorError(f"malformed stream from {url}: it ended without a finish reason (cut short)")
        cached = usage.prompt_tokens_details.cached_tokens if usage and usage.prompt_tokens_details else 0
        return Generation(
            "".join(parts).strip(),
            # a server that reports no usage is not asked again to count: the estimate serves
            int(usage.prompt_tokens if usage and usage.prompt_tokens else estimate_prompt(messages)),
            int(usage.completion_tokens if usage and usage.completion_tokens else len(parts)),
            time.perf_counter() - started,
            finish,
            first,
            int(cached or 0),
        )


def estimate_tokens(text: str) -> int:
    """Tokens in ``text`` when no tokenizer is at hand: ASCII at 3 characters a token, any other character one."""
    ascii_chars = sum(ch.isascii() for ch in text)
    return -(-ascii_chars // 3) + (len(text) - ascii_chars)


def estimate_prompt(messages: Messages) -> int:
    """A prompt's tokens by :func:`estimate_tokens`, with 4 a message for the chat template's markers."""
    return sum(estimate_tokens(m["content"]) + 4 for m in messages)
