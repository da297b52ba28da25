"""The FastAPI app: /v1/models, /v1/chat/completions (streamed or not), and /v1/ask (RAG with citations).

Generation is blocking, so it runs in a worker thread; streamed tokens cross to the event loop
through a queue.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from expertkit.errors import ExpertkitError
from expertkit.models.generator import Generator


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    model: str = ""
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    stream: bool = False


class AskRequest(BaseModel):
    question: str
    k: int | None = Field(None, ge=1, le=50)
    rag: bool = True
    tags: list[str] = []


def create_app(generator: Generator, rag=None, max_tokens: int = 256) -> FastAPI:
    """An app over one generator (and, for /v1/ask, one RAG pipeline).

    Chat completions run as many at once as the generator has slots (llama-server's --parallel; one for
    an in-process transformers model); /v1/ask runs one at a time, as the index connection is shared.
    """
    app = FastAPI(title="expertkit", version="0.1.0")

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """A malformed request is the client's error: 400 in OpenAI's shape, saying which field and why."""
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return _error(400, f"{where}: {first['msg']}", "invalid_request_error", where)

    lock = threading.BoundedSemaphore(getattr(generator, "parallel", 1))  # others queue
    rag_lock = threading.Lock()

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": generator.name, "object": "model", "owned_by": "expertkit"}]}

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest):
        messages = [m.model_dump() for m in req.messages]
        # the prompt and the answer must fit the context window: max_tokens is capped to what is left
        room = generator.context_window - generator.count_tokens(messages)
        if room < 1:
            return _error(
                400,
                f"the messages take {generator.context_window - room} tokens; this model's context is "
                f"{generator.context_window}: shorten them",
                "invalid_request_error",
                "messages",
            )
        n_new = min(req.max_tokens or max_tokens, room)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())
        if not req.stream:
            gen = await asyncio.to_thread(_locked, lock, generator.generate, messages, n_new, req.temperature)
            return {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": generator.name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": gen.text},
                        "finish_reason": gen.finish_reason,
                    }
                ],
                "usage": _usage(gen),
            }
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def work() -> None:
            try:
                gen = _locked(
                    lock,
                    generator.generate,
                    messages,
                    n_new,
                    req.temperature,
                    lambda piece: loop.call_soon_threadsafe(queue.put_nowait, ("token", piece)),
                )
                loop.call_soon_threadsafe(queue.put_nowait, ("done", gen))
            except Exception as exc:  # reported in-stream, as OpenAI does
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

        threading.Thread(target=work, daemon=True).start()

        async def events():
            def frame(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
                body = {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": generator.name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                if usage:
                    body["usage"] = usage
                return f"data: {json.dumps(body)}\n\n"

            yield frame({"role": "assistant"})
            while True:
                kind, value = await queue.get()
                if kind == "token":
                    yield frame({"content": value})
                elif kind == "error":
                    yield f"data: {json.dumps({'error': {'message': str(value)}})}\n\n"
                    return
                else:
                    yield frame({}, value.finish_reason, _usage(value))
                    yield "data: [DONE]\n\n"
                    return

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/ask")
    async def ask(req: AskRequest):
        if rag is None:
            raise HTTPException(404, "this server has no workspace index; start it with `expertkit serve -w DIR`")
        from expertkit.index.base import Filters

        try:
            answer = await asyncio.to_thread(
                _locked, rag_lock, _locked, lock, rag.ask, req.question, Filters(tuple(req.tags)), req.rag, req.k
            )
        except ExpertkitError as exc:
            return JSONResponse({"error": {"message": str(exc)}}, status_code=400)
        return answer.to_json()

    return app


def _error(status: int, message: str, kind: str, param: str | None = None) -> JSONResponse:
    """An error body as OpenAI's API sends it, so existing clients raise their usual exceptions."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}}, status)


def _locked(lock, fn, *args):
    with lock:
        return fn(*args)


def _usage(gen) -> dict[str, int]:
    return {
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": gen.completion_tokens,
        "total_tokens": gen.prompt_tokens + gen.completion_tokens,
    }
