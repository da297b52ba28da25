"""The endpoints. Each API route depends on the key check (``CallerDep``), which runs before the body is
read; the server's state is ``request.app.state.server``.

- ``/v1/models`` lists the models the caller may use, the default first.
- ``/v1/chat/completions`` answers the last user message: through the expert from the documents the
  caller's key may read, or through the bare model. Streaming sends the model's draft as it is written,
  then the sources, then the verified fields in the last chunk.
- ``/v1/ask`` is the RAG answer as one JSON object (``expertkit ask --json``'s shape).
- ``/`` and ``/chat`` are the web chat page.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse

from expertkit.answer import Answer
from expertkit.errors import ExpertkitError
from expertkit.serve.admission import ClientGone, EventStream, quietly, until
from expertkit.serve.api import (
    ApiError,
    AskRequest,
    ChatRequest,
    choice,
    client_or_server,
    finish_reason,
    parse_body,
    usage,
)
from expertkit.serve.guard import Caller
from expertkit.serve.render import answer_messages, expert_fields, explained, public_source, sources_text, stream_tail
from expertkit.serve.state import ServedModel, Server

router = APIRouter()


def _server(request: Request) -> Server:
    return request.app.state.server


async def _caller(request: Request) -> Caller:
    return _server(request).check(request)


CallerDep = Annotated[Caller, Depends(_caller)]


@router.get("/", response_class=HTMLResponse)
@router.get("/chat", response_class=HTMLResponse)
def page(request: Request) -> HTMLResponse:
    return HTMLResponse(_server(request).chat_page)


@router.get("/v1/models")
def list_models(request: Request, caller: CallerDep) -> dict[str, Any]:
    server = _server(request)
    data = [
        {
            "id": m.id,
            "object": "model",
            "created": 0,
            "owned_by": "expertkit",
            "description": m.description,
            "default": m.id == server.default,
            "cites": m.rag is not None,
        }
        for m in server.models.values()
        if m.allowed(caller.groups)
    ]
    data.sort(key=lambda d: not d["default"])
    return {"object": "list", "data": data}


@router.post("/v1/chat/completions")
async def chat(request: Request, caller: CallerDep):
    server = _server(request)
    req = await parse_body(request, ChatRequest)
    if len(req.messages) > server.settings.max_messages:
        raise ApiError(
            400,
            f"messages: {len(req.messages)} messages; this server takes up to {server.settings.max_messages} "
            "(serve.max_messages): drop the oldest turns",
            "invalid_request_error",
            "messages",
        )
    model = server.pick_model(req.model, caller)
    options = req.options(model.id, model.generator if model.rag is None else None)
    messages = [m.plain() for m in req.messages]
    if model.rag is not None and messages[-1]["role"] != "user":
        raise ApiError(
            400, "messages: the last message must be the user's question", "invalid_request_error", "messages"
        )
    n_new = await _budget(model, messages, req.max_completion_tokens or req.max_tokens or server.max_tokens)
    reply = _Reply(model.id, server)
    cancel = threading.Event()
    pieces: asyncio.Queue = asyncio.Queue()
    loop = asyncio.get_running_loop()
    streamed = (lambda piece: loop.call_soon_threadsafe(pieces.put_nowait, piece)) if req.stream else None
    on_token = until(cancel, streamed)

    def work():
        if model.rag is None:
            return model.generator.generate(messages, n_new, req.temperature, on_token, **options)
        return answer_messages(model.rag, messages, caller.groups, n_new, on_token)

    if not req.stream:
        try:
            return reply.body(await server.slots.answered(request, work, cancel, caller.name))
        except ClientGone:
            return JSONResponse({}, status_code=499)  # nobody reads it

    def closed() -> None:
        cancel.set()
        server.slots.admission.leave(caller.name)

    server.slots.admission.enter(caller.name)
    return EventStream(_events(request, server, caller, work, pieces, cancel, reply), closed)


async def _budget(model: ServedModel, messages: list[dict[str, str]], n_new: int) -> int:
    """The reply's budget. The expert fits its own prompt; for the bare model the prompt and the answer
    must fit its context, so ``n_new`` is capped to what is left (400 when nothing is)."""
    if model.rag is not None:
        return n_new
    try:
        used = await asyncio.to_thread(model.generator.count_tokens, messages)
    except ExpertkitError as exc:
        raise client_or_server(exc) from None
    window = model.generator.context_window
    if window - used < 1:
        raise ApiError(
            400,
            f"the messages take {used} tokens; this model's context is {window}: shorten them",
            "invalid_request_error",
            "messages",
        )
    return min(n_new, window - used)


class _Reply:
    """One chat completion's envelope: its id, the whole body, and the chunks of a stream."""

    def __init__(self, model_id: str, server: Server) -> None:
        self.id, self.created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())
        self.model_id, self.root = model_id, server.root

    def body(self, result) -> dict[str, Any]:
        out = {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model_id}
        if isinstance(result, Answer):
            text = explained(result) + sources_text(result, self.root)
            out["choices"] = [choice(text, result.finish_reason)]
            out["usage"] = usage(result.timings.get("prompt_tokens", 0), result.timings.get("completion_tokens", 0))
            out.update(expert_fields(result, self.root))
        else:
            out["choices"] = [choice(result.text, result.finish_reason)]
            out["usage"] = usage(result.prompt_tokens, result.completion_tokens)
        return out

    def frame(self, delta: dict, finish: str | None = None, extra: dict | None = None) -> str:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model_id,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **(extra or {}),
        }
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    def last(self, result, draft: str) -> list[str]:
        """The frames after the draft: what checking changed and the sources (an expert answer), the finish
        reason with the usage and the verified fields, and [DONE]."""
        frames = []
        if isinstance(result, Answer):
            tail = stream_tail(draft, result, self.root)
            if tail:
                frames.append(self.frame({"content": tail}))
            full = self.body(result)
            extra = {k: v for k, v in full.items() if k in ("usage", "citations", "expertkit")}
            frames.append(self.frame({}, finish_reason(result.finish_reason), extra))
        else:
            frames.append(self.frame({}, finish_reason(result.finish_reason), {"usage": self.body(result)["usage"]}))
        return [*frames, "data: [DONE]\n\n"]


async def _events(
    request: Request,
    server: Server,
    caller: Caller,
    work: Callable[[], Any],
    pieces: asyncio.Queue,
    cancel: threading.Event,
    reply: _Reply,
) -> AsyncIterator[str]:
    """The stream: the role, each piece of the draft as the worker pushes it, then ``reply.last``. A
    failure is reported in-stream, as OpenAI does; a client that leaves cancels the generation."""
    future = getter = None
    try:
        future = await server.slots.admitted(request, work, caller.name)
        yield reply.frame({"role": "assistant"})
        draft = []
        while not (future.done() and pieces.empty()):
            getter = asyncio.ensure_future(pieces.get())
            await asyncio.wait({getter, future}, timeout=0.25, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                draft.append(getter.result())
                yield reply.frame({"content": draft[-1]})
                continue
            getter.cancel()
            if not future.done() and await request.is_disconnected():
                raise ClientGone
        try:
            result = future.result()
        except ClientGone:
            raise
        except Exception as exc:
            error = client_or_server(exc)
            yield f"data: {json.dumps({'error': {'message': str(error), 'type': error.kind}})}\n\n"
            yield "data: [DONE]\n\n"
            return
        for frame in reply.last(result, "".join(draft)):
            yield frame
    except (ClientGone, asyncio.CancelledError):
        cancel.set()
        if future is not None:
            future.add_done_callback(quietly)
        raise
    finally:
        if getter is not None:
            getter.cancel()
        cancel.set()  # a finished worker ignores it; a running one stops at its next token


@router.post("/v1/ask")
async def ask(request: Request, caller: CallerDep):
    from expertkit.index.base import Filters

    server = _server(request)
    req = await parse_body(request, AskRequest)
    rag = server.rag
    if rag is None:
        raise ApiError(
            404, "this server has no workspace index; start it with `expertkit serve -w DIR`", "invalid_request_error"
        )
    cancel = threading.Event()

    def work() -> Answer:
        filters = Filters(tuple(req.tags), groups=caller.groups)
        return rag.ask(req.question, filters, req.rag, req.k, on_token=until(cancel))

    try:
        answer = await server.slots.answered(request, work, cancel, caller.name)
    except ClientGone:
        return JSONResponse({}, status_code=499)
    out = answer.to_json()
    for item in (*out["citations"], *out["retrieved"]):
        item["source"] = public_source(item["source"], server.root)
    return out
