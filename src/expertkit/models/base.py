"""What every generator is and gives: the ``Generator`` protocol, the ``Generation`` it returns, and the helpers
that read its declared abilities. The backends (models/generator.py, models/openai_compat.py,
models/llamacpp.py) and everything that uses a model import these from here (or through models/generator.py,
which re-exports them), so no backend has to import another to know what a generation is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

Messages = list[dict[str, str]]
OnToken = Callable[[str], None]

# What a generator may do beyond the protocol, named in its ``options``:
STOP = "stop"  # generate(..., stop=[...]): decoding stops at any of these strings
JSON_SCHEMA = "json_schema"  # generate(..., json_schema={...}): the output follows the schema (a grammar)
LOGPROBS = "logprobs"  # next_token_logprobs(messages, top): the likeliest first tokens of the reply
OPTIONS = frozenset({STOP, JSON_SCHEMA, LOGPROBS})


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float  # time to generate, model load excluded
    finish_reason: str = "stop"  # stop | length | interrupted
    first_token_s: float | None = None  # time to the first streamed token (prompt processing included)
    cached_tokens: int = 0  # prompt tokens the server read from its prompt cache instead of computing them

    @property
    def tokens_per_second(self) -> float:
        """Decode speed: tokens after the first over the time after it (prompt processing excluded)."""
        if self.first_token_s is not None and self.completion_tokens > 1 and self.seconds > self.first_token_s:
            return (self.completion_tokens - 1) / (self.seconds - self.first_token_s)
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


class Generator(Protocol):
    """What RAG, chat, synth, advise, serve and evaluation need from a model.

    ``parallel``: requests it decodes at once (llama.cpp's slots), what callers size their thread pools and
    serve its admission by; 1 for a backend that decodes one at a time. ``options``: what it can do beyond
    ``generate(messages, max_new_tokens, temperature, on_token)``, from :data:`OPTIONS` (read it with
    :func:`accepts`). ``close()``: release what it holds (a server it started, a connection); a no-op where
    there is nothing, so every caller may call it.
    """

    name: str
    context_window: int
    parallel: int
    options: frozenset[str]

    def count_tokens(self, messages: Messages) -> int:
        """Tokens of the prompt these messages make, template included."""

    def generate(
        self, messages: Messages, max_new_tokens: int = 256, temperature: float = 0.0, on_token: OnToken | None = None
    ) -> Generation: ...

    def close(self) -> None: ...


def plain_transcript(messages: Messages) -> str:
    """A prompt for a base model without a chat template: "Role: text" turns, then "Assistant:". Generation
    and training (tune/data.py) build the same one, so an adapter learns the prompt it will be asked in."""
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages) + "\n\nAssistant:"


def accepts(generator: Generator, option: str) -> bool:
    """Whether ``generator`` declares ``option`` (:data:`OPTIONS`): ``stop`` (the OpenAI-compatible and llama.cpp
    backends), ``json_schema`` (llama.cpp, as a grammar), ``logprobs`` (llama.cpp's ``next_token_logprobs``).
    """
    if option not in OPTIONS:
        raise ValueError(f"unknown generator option {option!r}: one of {', '.join(sorted(OPTIONS))}")
    return option in generator.options


def generate_json(generator: Generator, messages: Messages, schema: dict, max_new_tokens: int = 128) -> dict | None:
    """A JSON object that follows ``schema``: constrained decoding where the backend has it (llama.cpp
    turns the schema into a grammar, so the output always parses), else the first JSON object in the text."""
    if accepts(generator, JSON_SCHEMA):
        text = generator.generate(messages, max_new_tokens, 0.0, json_schema=schema).text
    else:
        text = generator.generate(messages, max_new_tokens, 0.0).text
        start, end = text.find("{"), text.rfind("}")
        text = text[start : end + 1] if 0 <= start < end else ""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    required = schema.get("required", [])

    def filled(v) -> bool:
        return isinstance(v, str) and bool(v.strip()) or isinstance(v, list) and bool(v)

    if not isinstance(value, dict) or not all(filled(value.get(k)) for k in required):
        return None
    return value
