"""The HTTP server: OpenAI's chat API with the expert behind it, API keys mapped to access groups,
limits, a bounded queue, cancellation, and a web chat page.

- ``/v1/models`` lists the expert (RAG with verified citations; the default), the expert with each
  adapter the caller may use, and the bare model.
- ``/v1/chat/completions`` answers the last user message. Through the expert it retrieves only what
  the caller's key may read, and returns the verified answer with its citations in the text
  ("Sources:") and as structured fields (``citations``: source relative to the workspace, page, section,
  row, quote). Streaming sends the model's draft as it is written, then the sources, then the verified
  fields in the last chunk.
- ``/v1/ask`` is the same RAG answer as one JSON object (``expertkit ask --json``'s shape).
- ``/`` is the web chat.

Generation is blocking, so it runs in worker threads, as many at once as the generator has slots
(llama-server's --parallel). Up to ``serve.queue`` more requests wait; beyond that a request gets 429
with Retry-After at once. A client that disconnects cancels its generation: the next token raises in
the worker, which closes its stream to llama-server, and llama-server frees the slot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from expertkit.config import ServeSettings
from expertkit.errors import ExpertkitError, GeneratorError
from expertkit.language import LANGUAGES, say
from expertkit.models.generator import Generator, accepts
from expertkit.rag import RAG, Answer, is_not_found, strip_citations

EXPERT_ID = "expertkit"
log = logging.getLogger("expertkit.serve")
# where a client's copy of an earlier answer ends and its sources begin ("Sources:", "Πηγές:"), in any language
# expertkit answers in
_SOURCES_START = re.compile("\n\n(?:" + "|".join(re.escape(say(lang, "sources")) for lang in LANGUAGES) + "):\n")


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]  # OpenAI's content parts: text only (this server reads no images)

    def plain(self) -> dict[str, str]:
        """As the generators take it: the developer role is OpenAI's newer name for system."""
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


# OpenAI parameters this server does not implement, each with the values that ask for nothing (sent by
# many clients as defaults) and why any other value is refused: ignoring it would answer something else.
UNSUPPORTED: dict[str, tuple[tuple[Any, ...], str]] = {
    "n": ((1,), "it returns one choice; send n = 1 or leave n out"),
    "tools": (([], {}), "it calls no tools"),
    "tool_choice": (("none", "auto"), "it calls no tools"),
    "functions": (([],), "it calls no functions"),
    "function_call": (("none", "auto"), "it calls no functions"),
    "logprobs": ((False,), "it returns no log-probabilities"),
    "top_logprobs": ((0,), "it returns no log-probabilities"),
    "top_p": ((1,), "it samples with temperature only"),
    "presence_penalty": ((0,), "it applies no penalties"),
    "frequency_penalty": ((0,), "it applies no penalties"),
    "logit_bias": (({},), "it takes no logit bias"),
    "seed": ((), "it takes no seed (temperature 0 is already deterministic)"),
    "modalities": ((["text"],), "it answers in text only"),
    "audio": ((), "it answers in text only"),
    "prediction": ((), "it takes no predicted output"),
    "reasoning_effort": ((), "its models do not reason in steps"),
    "web_search_options": ((), "it searches only its own documents"),
    "service_tier": (("auto", "default"), "it has one tier"),
    "store": ((False,), "it stores no completions"),
}
# parameters that change nothing in a reply: accepted with any value
INFORMATIONAL = ("user", "metadata", "stream_options", "parallel_tool_calls")


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown parameter is refused, never ignored

    model: str = ""
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # OpenAI's newer name for max_tokens
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    stream: bool = False
    stop: str | list[str] | None = None
    response_format: dict[str, Any] | None = None
    n: Any = None
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    logprobs: Any = None
    top_logprobs: Any = None
    top_p: Any = None
    presence_penalty: Any = None
    frequency_penalty: Any = None
    logit_bias: Any = None
    seed: Any = None
    modalities: Any = None
    audio: Any = None
    prediction: Any = None
    reasoning_effort: Any = None
    web_search_options: Any = None
    service_tier: Any = None
    store: Any = None
    user: Any = None
    metadata: Any = None
    stream_options: Any = None
    parallel_tool_calls: Any = None

    def options(self, model_id: str, bare: Generator | None) -> dict[str, Any]:
        """What ``generate`` takes besides the messages and the budget: ``stop`` and a JSON
        ``response_format``, which only the bare model honours (``bare``; None = the expert, whose
        answers are checked against the documents and cited whole). Every other OpenAI parameter passes
        only at a value that asks for nothing; otherwise 400, naming it."""
        for name, (neutral, why) in UNSUPPORTED.items():
            value = getattr(self, name)
            if value is not None and not any(_same(value, v) for v in neutral):
                raise ApiError(400, f"{name}: this server does not support {name} = {json.dumps(value)[:60]}: {why}",
                               "invalid_request_error", name, "unsupported_parameter")  # fmt: skip
        out: dict[str, Any] = {}
        stop = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        if stop:
            if len(stop) > 4 or not all(stop):
                raise ApiError(400, "stop: up to 4 non-empty strings", "invalid_request_error", "stop")
            out["stop"] = stop
        kind = (self.response_format or {}).get("type", "text")
        if kind == "json_object":
            out["json_schema"] = {"type": "object"}
        elif kind == "json_schema":
            schema = (self.response_format.get("json_schema") or {}).get("schema")
            if not isinstance(schema, dict):
                raise ApiError(400, "response_format.json_schema.schema: a JSON Schema object is required",
                               "invalid_request_error", "response_format")  # fmt: skip
            out["json_schema"] = schema
        elif kind != "text":
            raise ApiError(400, f"response_format: unknown type {kind!r} (text, json_object or json_schema)",
                           "invalid_request_error", "response_format")  # fmt: skip
        for option in out:
            param = "response_format" if option == "json_schema" else option
            if bare is None:
                raise ApiError(400, f"{param}: the expert's answers are checked against the documents and cited "
                               f"whole, so {param} applies only to the bare model ({model_id!r} is the expert)",
                               "invalid_request_error", param, "unsupported_parameter")  # fmt: skip
            if not accepts(bare, option):
                raise ApiError(400, f"{param}: the model {model_id!r} runs on a backend that cannot apply it "
                               "(llama.cpp and OpenAI-compatible servers can)", "invalid_request_error", param,
                               "unsupported_parameter")  # fmt: skip
        return out


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str
    k: int | None = Field(None, ge=1, le=50)
    rag: bool = True
    tags: list[str] = []


@dataclass
class ServedModel:
    """One id in /v1/models: the expert (RAG over ``generator``) or the bare model."""

    id: str
    generator: Generator
    rag: RAG | None = None  # None = the bare model: no documents, nothing to cite
    description: str = ""
    # an adapter learned these documents and can state them: a caller must be allowed to read each one
    # (a group set per source; None = a source no longer in the index, which only the owner may use)
    trained_on: list[frozenset[str] | None] = field(default_factory=list)

    def allowed(self, groups: tuple[str, ...] | None) -> bool:
        if groups is None:
            return True
        return all(g is not None and bool(g & set(groups)) for g in self.trained_on)

    @staticmethod
    def learned(groups_per_source: list[frozenset[str] | None]) -> list[frozenset[str] | None]:
        """An adapter whose lineage names no documents may have learned anything: the owner's only."""
        return groups_per_source or [None]


@dataclass
class Caller:
    name: str
    groups: tuple[str, ...] | None  # None = the workspace owner (no keys are configured)


class ClientGone(Exception):
    """The client disconnected: its generation stops at the next token."""


class ApiError(HTTPException):
    """An error for the client, sent in OpenAI's shape (an HTTPException, so FastAPI passes it through
    even from inside body parsing)."""

    def __init__(self, status: int, message: str, kind: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(status, message, headers)
        self.status, self.kind, self.param, self.code = status, kind, param, code

    def __str__(self) -> str:
        return str(self.detail)


class Admission:
    """``slots`` requests answer at once; ``queue`` more wait. A request gets 429 at once, with a
    Retry-After estimated from the recent time per request, when the queue is full or when its key
    already holds ``per_key`` places (answering or waiting), so one key's burst cannot take every slot
    and the whole queue. Free slots go to the waiting keys in turn (round robin), not first come, first
    served: another key waits behind at most one request per key, not behind a whole burst."""

    def __init__(self, slots: int, queue: int, per_key: int = 0) -> None:
        self.slots = max(1, slots)
        self.capacity = self.slots + queue
        self.per_key = per_key or max(self.slots, self.capacity // 2)
        self.admitted = 0  # answering or waiting
        self.held: dict[str, int] = {}  # the same, per key
        self.running = 0
        self.waiting: dict[str, deque[asyncio.Future]] = {}  # the keys' turn order is the dict's order
        self.mean_s = 5.0  # moving average of a request's time in a slot

    def enter(self, key: str) -> None:
        held = self.held.get(key, 0)
        if self.admitted >= self.capacity:
            wait = math.ceil(self.mean_s * (self.admitted - self.slots + 1) / self.slots)
            message = (f"the server is busy ({self.slots} answering, {self.admitted - self.slots} waiting): "
                       f"retry in {wait} s")  # fmt: skip
        elif held >= self.per_key:
            wait = math.ceil(self.mean_s * max(1, held - self.slots + 1) / self.slots)
            message = (f"your key has {held} requests answering or waiting, as many as one key may "
                       f"(serve.per_key = {self.per_key}): retry in {wait} s")  # fmt: skip
        else:
            self.admitted += 1
            self.held[key] = held + 1
            return
        raise ApiError(429, message, "rate_limit_error", code="rate_limit_exceeded",
                       headers={"Retry-After": str(max(1, wait))})  # fmt: skip

    def leave(self, key: str) -> None:
        self.admitted -= 1
        self.held[key] -= 1
        if not self.held[key]:
            del self.held[key]

    async def acquire(self, key: str) -> None:
        """Return once this request holds a slot (call ``release`` after); cancelling gives its turn up."""
        if self.running < self.slots and not self.waiting:
            self.running += 1
            return
        turn = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(key, deque()).append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.release()  # the slot came as the waiter left: the next one takes it
            else:
                line = self.waiting.get(key)
                if line is not None and turn in line:
                    line.remove(turn)
                    if not line:
                        del self.waiting[key]
            raise

    def release(self) -> None:
        """A slot is free: the key first in turn takes it, and goes to the back of the line."""
        self.running -= 1
        while self.waiting and self.running < self.slots:
            key = next(iter(self.waiting))
            line = self.waiting.pop(key)
            turn = line.popleft()
            if line:
                self.waiting[key] = line
            if not turn.done():
                turn.set_result(None)
                self.running += 1

    def record(self, seconds: float) -> None:
        self.mean_s = 0.8 * self.mean_s + 0.2 * seconds


class _Stream(StreamingResponse):
    """An event stream that calls ``on_close`` once it is over, however it ends: finished, failed, or
    the client gone before the first event (then the body generator never runs, nor its finally)."""

    def __init__(self, content, on_close: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream")
        self.on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


class BodyLimit:
    """A request body over ``limit`` bytes gets 413: at once when Content-Length says so, else as soon as
    the bytes received pass it. Plain ASGI (not BaseHTTPMiddleware), so handlers still see a client leave."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await _too_large(self.limit)(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise ApiError(413, _too_large_message(self.limit), "invalid_request_error", "body")
            return message

        await self.app(scope, limited, send)


class SecurityHeaders:
    """Headers on every response: no MIME sniffing, no framing, no referrer; on the chat page, a
    Content-Security-Policy that runs only the page's own script and style (by hash) and lets it talk
    only to this server. Plain ASGI, as BodyLimit, so streams and disconnects pass through untouched."""

    def __init__(self, app, page_policy: str) -> None:
        self.app, self.page_policy = app, page_policy

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                            (b"referrer-policy", b"no-referrer")]  # fmt: skip
                if any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                    headers += [(b"content-security-policy", self.page_policy.encode()),
                                (b"cache-control", b"no-store")]  # fmt: skip
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "via")


def peer(request: Request) -> str:
    """The address the connection came from (uvicorn runs with proxy_headers off, so no header rewrites it)."""
    return request.client.host if request.client else ""


def create_app(
    generator: Generator,
    rag: RAG | None = None,
    max_tokens: int = 256,
    *,
    adapters: list[ServedModel] | None = None,
    keys=None,  # a KeyStore; while it has never held a key, local callers are the owner
    settings: ServeSettings | None = None,
    root: Path | None = None,
    require_keys: bool = False,  # a server on a network interface: a key always, even before any is made
) -> FastAPI:
    """The app over one generator, the RAG pipeline on it (the expert), and adapters on the same server.

    ``root`` is the workspace: citation sources inside it are given relative to it, others by file name,
    so no server path leaves the machine.
    """
    settings = settings or ServeSettings()
    app = FastAPI(title="expertkit", version="0.1.0", docs_url=None, redoc_url=None)
    models: dict[str, ServedModel] = {}
    if rag is not None:
        models[EXPERT_ID] = ServedModel(
            EXPERT_ID, rag.generator or generator, rag, f"{generator.name} answering from the documents, cited"
        )
    for m in adapters or []:
        models[m.id] = m
    models[generator.name] = ServedModel(generator.name, generator, None, "the bare model, without the documents")
    default = EXPERT_ID if rag is not None else generator.name
    admission = Admission(getattr(generator, "parallel", 1), settings.queue, settings.per_key)
    pool = ThreadPoolExecutor(max_workers=admission.slots + 2, thread_name_prefix="expertkit-answer")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, str(exc), exc.kind, exc.param, exc.code, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """An unknown path (404) or method (405), in OpenAI's shape as every other error."""
        message = f"{exc.detail}: {request.method} {request.url.path}"
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path} (the API is under /v1)"
        elif exc.status_code == 405:
            message = f"{request.url.path} does not take {request.method}"
        return _error(exc.status_code, message, "invalid_request_error", headers=getattr(exc, "headers", None))

    app.add_middleware(BodyLimit, limit=settings.max_body_kb * 1024)
    chat_page = _chat_page()  # read once: the page served is the one its policy's hashes allow
    app.add_middleware(SecurityHeaders, page_policy=_page_policy(chat_page))

    def authenticate(request: Request) -> Caller:
        try:
            configured = keys is not None and keys.configured()
        except ExpertkitError:
            raise ApiError(503, "the server's API keys are unreadable: its owner must repair .expertkit/keys.json",
                           "server_error") from None  # fmt: skip
        if not configured and not require_keys:
            # no key was ever made: the owner's own machine only. The Host check stops a web page that
            # rebinds its name to 127.0.0.1 (DNS rebinding) from reading the documents through a browser.
            if not is_loopback(request.url.hostname or "") or not is_loopback(peer(request)):
                raise ApiError(401, "this server has no API keys, so it answers only requests to 127.0.0.1",
                               "invalid_request_error", code="invalid_api_key")  # fmt: skip
            proxied = sorted(h for h in PROXY_HEADERS if h in request.headers)
            if proxied:  # a reverse proxy on this machine would pass every remote user off as the owner
                raise ApiError(401, f"this request came through a proxy ({proxied[0]}): without API keys the server "
                               "answers only direct requests from this machine; make a key with `expertkit keys "
                               "add NAME --group G` and serve with --behind-proxy", "invalid_request_error",
                               code="invalid_api_key")  # fmt: skip
            return Caller("owner", None)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "no API key: send the header `Authorization: Bearer ek-…`; the workspace owner makes one with "
                "`expertkit keys add NAME --group G`",
                "invalid_request_error",
                code="invalid_api_key",
            )
        record = keys.verify(token.strip())
        if record is None:  # the key itself is never echoed, logged or stored
            raise ApiError(401, "invalid or revoked API key", "invalid_request_error", code="invalid_api_key")
        return Caller(record.name, tuple(record.groups))

    def pick_model(name: str, caller: Caller) -> ServedModel:
        model = models.get(name or default)
        if model is None:
            raise ApiError(
                404,
                f"model {name!r} does not exist here; GET /v1/models lists this server's models",
                "invalid_request_error",
                "model",
                "model_not_found",
            )
        if not model.allowed(caller.groups):
            raise ApiError(
                403,
                f"model {model.id!r} was fine-tuned on documents your key may not read; use {EXPERT_ID!r}",
                "permission_error",
                "model",
                "model_not_allowed",
            )
        return model

    @app.get("/", response_class=HTMLResponse)
    @app.get("/chat", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(chat_page)

    @app.get("/v1/models")
    def list_models(request: Request) -> dict[str, Any]:
        caller = authenticate(request)
        data = [
            {
                "id": m.id,
                "object": "model",
                "created": 0,
                "owned_by": "expertkit",
                "description": m.description,
                "default": m.id == default,
                "cites": m.rag is not None,
            }
            for m in models.values()
            if m.allowed(caller.groups)
        ]
        data.sort(key=lambda d: not d["default"])
        return {"object": "list", "data": data}

    async def admitted(request: Request, work: Callable[[], Any], key: str) -> asyncio.Future:
        """``work`` running in a slot once it is this key's turn (a future); a client that leaves while
        waiting raises ClientGone."""
        loop = asyncio.get_running_loop()
        acquire = asyncio.ensure_future(admission.acquire(key))
        try:
            while not acquire.done():
                await asyncio.wait({acquire}, timeout=0.25)
                if not acquire.done() and await request.is_disconnected():
                    raise ClientGone
        except BaseException:
            if acquire.done() and not acquire.cancelled() and acquire.exception() is None:
                admission.release()  # it had its slot already
            acquire.cancel()  # else it gives its turn up
            raise
        started = time.perf_counter()

        def run():
            try:
                return work()
            finally:
                loop.call_soon_threadsafe(admission.release)
                admission.record(time.perf_counter() - started)

        return loop.run_in_executor(pool, run)

    async def answered(request: Request, work: Callable[[], Any], cancel: threading.Event, key: str):
        """Not streamed: admitted, answered in a slot, the client watched (ClientGone when it left); a
        failure becomes the client's 400 or the server's 502."""
        admission.enter(key)
        try:
            return await _watch(request, await admitted(request, work, key), cancel)
        except ExpertkitError as exc:
            raise _client_or_server(exc) from None
        finally:
            admission.leave(key)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        caller = authenticate(request)  # before the body is read: a stranger learns nothing from a 400
        req = await _parse(request, ChatRequest)
        if len(req.messages) > settings.max_messages:
            raise ApiError(
                400,
                f"messages: {len(req.messages)} messages; this server takes up to {settings.max_messages} "
                "(serve.max_messages): drop the oldest turns",
                "invalid_request_error",
                "messages",
            )
        model = pick_model(req.model, caller)
        options = req.options(model.id, model.generator if model.rag is None else None)
        messages = [m.plain() for m in req.messages]
        if model.rag is not None and messages[-1]["role"] != "user":
            raise ApiError(400, "messages: the last message must be the user's question", "invalid_request_error",
                           "messages")  # fmt: skip
        n_new = req.max_completion_tokens or req.max_tokens or max_tokens
        if model.rag is None:  # the prompt and the answer must fit: max_tokens is capped to what is left
            try:
                used = await asyncio.to_thread(model.generator.count_tokens, messages)
            except ExpertkitError as exc:
                raise _client_or_server(exc) from None
            room = model.generator.context_window - used
            if room < 1:
                raise ApiError(
                    400,
                    f"the messages take {model.generator.context_window - room} tokens; this model's context is "
                    f"{model.generator.context_window}: shorten them",
                    "invalid_request_error",
                    "messages",
                )
            n_new = min(n_new, room)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())
        cancel = threading.Event()
        pieces: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        streamed = (lambda piece: loop.call_soon_threadsafe(pieces.put_nowait, piece)) if req.stream else None
        on_token = _until(cancel, streamed)

        def work():
            if model.rag is None:
                return model.generator.generate(messages, n_new, req.temperature, on_token, **options)
            return _answer(model.rag, messages, caller, n_new, on_token)

        def body(result) -> dict[str, Any]:
            out = {"id": cid, "object": "chat.completion", "created": created, "model": model.id}
            if isinstance(result, Answer):
                text = _explained(result) + _sources_text(result, root)
                out["choices"] = [_choice(text, result.finish_reason)]
                out["usage"] = _usage(
                    result.timings.get("prompt_tokens", 0), result.timings.get("completion_tokens", 0)
                )
                out.update(_expert_fields(result, root))
            else:
                out["choices"] = [_choice(result.text, result.finish_reason)]
                out["usage"] = _usage(result.prompt_tokens, result.completion_tokens)
            return out

        if not req.stream:
            try:
                return body(await answered(request, work, cancel, caller.name))
            except ClientGone:
                return JSONResponse({}, status_code=499)  # nobody reads it

        async def events():
            def frame(delta: dict, finish: str | None = None, extra: dict | None = None) -> str:
                chunk = {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model.id,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    **(extra or {}),
                }
                return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

            future = getter = None
            try:
                future = await admitted(request, work, caller.name)
                yield frame({"role": "assistant"})
                draft = []
                while not (future.done() and pieces.empty()):
                    getter = asyncio.ensure_future(pieces.get())
                    await asyncio.wait({getter, future}, timeout=0.25, return_when=asyncio.FIRST_COMPLETED)
                    if getter.done():
                        draft.append(getter.result())
                        yield frame({"content": draft[-1]})
                        continue
                    getter.cancel()
                    if not future.done() and await request.is_disconnected():
                        raise ClientGone
                try:
                    result = future.result()
                except ClientGone:
                    raise
                except Exception as exc:  # reported in-stream, as OpenAI does
                    error = _client_or_server(exc)
                    yield f"data: {json.dumps({'error': {'message': str(error), 'type': error.kind}})}\n\n"
                    yield "data: [DONE]\n\n"
                    return
                if isinstance(result, Answer):
                    tail = _stream_tail("".join(draft), result, root)
                    if tail:
                        yield frame({"content": tail})
                    full = body(result)
                    extra = {k: v for k, v in full.items() if k in ("usage", "citations", "expertkit")}
                    yield frame({}, _finish(result.finish_reason), extra)
                else:
                    yield frame({}, _finish(result.finish_reason), {"usage": body(result)["usage"]})
                yield "data: [DONE]\n\n"
            except (ClientGone, asyncio.CancelledError):
                cancel.set()
                if future is not None:
                    future.add_done_callback(_quietly)
                raise
            finally:
                if getter is not None:
                    getter.cancel()
                cancel.set()  # a finished worker ignores it; a running one stops at its next token

        def closed() -> None:
            cancel.set()
            admission.leave(caller.name)

        admission.enter(caller.name)
        return _Stream(events(), closed)

    @app.post("/v1/ask")
    async def ask(request: Request):
        caller = authenticate(request)
        req = await _parse(request, AskRequest)
        if rag is None:
            raise ApiError(404, "this server has no workspace index; start it with `expertkit serve -w DIR`",
                           "invalid_request_error")  # fmt: skip
        from expertkit.index.base import Filters

        cancel = threading.Event()

        def work() -> Answer:
            filters = Filters(tuple(req.tags), groups=caller.groups)
            return rag.ask(req.question, filters, req.rag, req.k, on_token=_until(cancel))

        try:
            answer = await answered(request, work, cancel, caller.name)
        except ClientGone:
            return JSONResponse({}, status_code=499)
        out = answer.to_json()
        for item in (*out["citations"], *out["retrieved"]):
            item["source"] = public_source(item["source"], root)
        return out

    app.state.admission = admission  # for tests and the load benchmark
    return app


# -- the expert's answer ------------------------------------------------------------------------------


def _answer(rag: RAG, messages: list[dict[str, str]], caller: Caller, n_new: int, on_token) -> Answer:
    """The last user message, answered from the documents the caller may read. Earlier turns are the
    history; a follow-up is rewritten into a standalone question for retrieval, as `expertkit chat` does."""
    from expertkit.chat import HISTORY_TURNS, standalone_question
    from expertkit.index.base import Filters

    question = messages[-1]["content"]
    turns = [m for m in messages[:-1] if m["role"] in ("user", "assistant")]  # the expert keeps its own system prompt
    history = [
        {"role": m["role"], "content": strip_citations(_SOURCES_START.split(m["content"])[0])}
        for m in turns[-2 * HISTORY_TURNS :]
    ]
    previous = next((m["content"] for m in reversed(turns) if m["role"] == "user"), None)
    query = standalone_question(rag, history, question, previous)
    return rag.ask(
        question,
        Filters(groups=caller.groups),
        history=history or None,
        retrieval_query=query,
        on_token=on_token,
        max_new_tokens=n_new,
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback interface."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def public_source(path: str, root: Path | None) -> str:
    """A source as a client may see it: relative to the workspace when inside it, else its file name."""
    if root is not None:
        try:
            return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return os.path.basename(path.rstrip("/")) or path


def _citation_fields(answer: Answer, root: Path | None) -> list[dict[str, Any]]:
    return [
        {
            "number": c.number,
            "source": public_source(c.source, root),
            "page": c.page,
            "section": c.section,
            "record_id": c.record_id,
            "quote": c.quote,
            "attributed": c.attributed,
        }
        for c in answer.citations
    ]


def _expert_fields(answer: Answer, root: Path | None) -> dict[str, Any]:
    """The structured part of an expert answer, beside OpenAI's fields (clients read them as extras)."""
    return {
        "citations": _citation_fields(answer, root),
        "expertkit": {
            "answer": answer.answer,
            "found": answer.found,
            # why not found (rag.Answer.reason: no_relevant_passage | missing_term | not_stated) and, for people,
            # what was missing and what the documents cover instead
            "reason": answer.reason or None,
            "explanation": answer.explanation or None,
            "language": answer.language,  # the question's: the answer and the explanation are in it
            "extractive": answer.extractive,
            "groundedness": None if answer.groundedness is None else round(answer.groundedness, 3),
            "unsupported": answer.unsupported,
            "invalid_citations": answer.invalid_citations,
            "retrieval_query": answer.retrieval_query or answer.question,
            "retrieved": [
                {"source": public_source(h.chunk.source, root), "page": h.chunk.page, "section": h.chunk.heading}
                for h in answer.retrieved
            ],
        },
    }


def _explained(answer: Answer) -> str:
    """The answer as a message: a "not found" says what was missing ("Not found in the documents. No passage
    mentions HL-460; the documents cover HL-436, HL-424.")."""
    why = answer.explanation
    if answer.found or not why:
        return answer.answer
    return f"{answer.answer} {why[0].upper()}{why[1:]}."


def _where(c: dict[str, Any], lang: str = "en") -> str:
    parts = [c["source"]]
    if c["page"]:
        parts.append(say(lang, "page", n=str(c["page"])))
    if c["record_id"]:
        parts.append(c["record_id"])  # already says what it is: "row 3", "record 12"
    if c["section"]:
        parts.append(f"§ {c['section']}")
    return ", ".join(parts)


def _sources_text(answer: Answer, root: Path | None) -> str:
    """The citations as text under the answer, for clients that show only the message."""
    cites = _citation_fields(answer, root)
    if not cites:
        return ""
    lines = [f"[{c['number']}] {_where(c, answer.language)}: “{c['quote']}”" for c in cites]
    return f"\n\n{say(answer.language, 'sources')}:\n" + "\n".join(lines)


def _stream_tail(draft: str, answer: Answer, root: Path | None) -> str:
    """What a stream sends after the model's draft: the verified answer where checking changed what it
    claims (a quote from the passages replaced it, or "not found" was never generated), then the sources."""
    tail = ""
    if not draft.strip():
        tail = _explained(answer)
    elif not answer.found and not is_not_found(draft):  # the draft claimed what the passages do not state
        tail = f"\n\n{say(answer.language, 'checked')}: {_explained(answer)}"
    elif not answer.found and answer.explanation:  # the draft said "not found": what was missing follows
        tail = "\n\n" + _explained(answer).removeprefix(answer.answer).strip()
    elif strip_citations(draft).strip() != strip_citations(answer.answer).strip() and answer.found:
        tail = f"\n\n{say(answer.language, 'checked')}: {answer.answer}"
    return tail + _sources_text(answer, root)


# -- plumbing -----------------------------------------------------------------------------------------


async def _watch(request: Request, future: asyncio.Future, cancel: threading.Event):
    """Await the worker, checking that the client is still there; if it left, cancel the generation."""
    while True:
        done, _ = await asyncio.wait({future}, timeout=0.25)
        if done:
            return future.result()
        if await request.is_disconnected():
            cancel.set()
            future.add_done_callback(_quietly)  # its ClientGone is expected, not news
            raise ClientGone


def _until(cancel: threading.Event, push: Callable[[str], None] | None = None) -> Callable[[str], None]:
    """A generator's on_token that stops it (ClientGone) once ``cancel`` is set, else passes each piece on."""

    def on_token(piece: str) -> None:
        if cancel.is_set():
            raise ClientGone
        if push is not None:
            push(piece)

    return on_token


def _quietly(future) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log it


def _finish(reason: str) -> str:
    return reason if reason in ("stop", "length") else "stop"


def _choice(text: str, finish: str) -> dict[str, Any]:
    return {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": _finish(finish)}


def _client_or_server(exc: Exception) -> ApiError:
    """A question the client can fix is 400; the model server failing is 502, said without its
    internals (its address, its log), which go to this server's log for its owner."""
    if isinstance(exc, ExpertkitError) and not isinstance(exc, GeneratorError):
        return ApiError(400, str(exc), "invalid_request_error")
    log.warning("answering failed: %s: %s", type(exc).__name__, exc)
    return ApiError(502, "the model server failed to answer; try again in a moment", "server_error")


def _error(status: int, message: str, kind: str, param: str | None = None, code: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:  # fmt: skip
    """An error body as OpenAI's API sends it, so existing clients raise their usual exceptions."""
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": code}}, status, headers=headers
    )


def _same(value: Any, neutral: Any) -> bool:
    """JSON equality: 1 and 1.0 are the same value, True and 1 are not."""
    if isinstance(value, bool) or isinstance(neutral, bool):
        return value is neutral
    return value == neutral


async def _parse(request: Request, model: type[BaseModel]) -> Any:
    """The JSON body as ``model``, or a 400 in OpenAI's shape that says which field and why. Text that
    cannot be encoded (a lone UTF-16 surrogate such as "\\ud800") is refused here, before any part of
    the server tries to tokenize or send it."""
    raw = await request.body()
    try:
        data = json.loads(raw)
    except ValueError as exc:  # not JSON, or not UTF-8
        raise ApiError(400, f"the body is not valid JSON ({exc}): send a JSON object", "invalid_request_error",
                       "body") from None  # fmt: skip
    bad = _unencodable(data)
    if bad is not None:
        raise ApiError(400, f"{bad}: contains a lone UTF-16 surrogate, which is not text: send valid Unicode",
                       "invalid_request_error", bad)  # fmt: skip
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        message = (f"{where}: unrecognized request argument (this server refuses what it would not read)"
                   if first["type"] == "extra_forbidden" else f"{where}: {first['msg']}")  # fmt: skip
        raise ApiError(400, message, "invalid_request_error", where) from None


def _unencodable(value: Any, where: str = "") -> str | None:
    """Where in a parsed JSON value a string holds a lone surrogate (the path, e.g. messages.0.content)."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "body"
        return None
    for key, item in items:
        if isinstance(key, str) and _unencodable(key) is not None:
            return where or "body"
        found = _unencodable(item, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def _chat_page() -> str:
    return resources.files("expertkit.serve").joinpath("chat.html").read_text(encoding="utf-8")


def _page_policy(html: str) -> str:
    """The chat page's Content-Security-Policy: its inline script and style allowed by their SHA-256, so
    text injected into the page could never run; fetches to this server only; no frames, forms or plugins."""
    import base64
    import hashlib
    import re

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks)

    return (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
            "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")  # fmt: skip


def _too_large_message(limit: int) -> str:
    return f"the request body is over {limit // 1024} KiB (serve.max_body_kb): send less"


def _too_large(limit: int) -> JSONResponse:
    return _error(413, _too_large_message(limit), "invalid_request_error", "body")


def _usage(prompt: float, completion: float) -> dict[str, int]:
    return {
        "prompt_tokens": int(prompt),
        "completion_tokens": int(completion),
        "total_tokens": int(prompt) + int(completion),
    }
