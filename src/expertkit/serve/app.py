"""The HTTP server: OpenAI's chat API with the expert behind it, API keys mapped to access groups,
limits, a bounded queue, cancellation, and a web chat page.

Where each part lives:
- ``api``: the OpenAI wire format (request bodies, refused parameters, errors in OpenAI's shape);
- ``guard``: who may ask (``KeyCheck``, the dependency every API route takes), the body limit and the
  security headers;
- ``admission``: slots, the bounded queue with each key's share, and cancelling a generation whose
  client left;
- ``render``: the expert's answer as the API sends it (sources as text and as fields);
- ``routes``: the endpoints; ``state``: the models served and what the routes read.

Generation is blocking, so it runs in worker threads, as many at once as the generator has slots
(llama-server's --parallel). Up to ``serve.queue`` more requests wait; beyond that a request gets 429
with Retry-After at once. A client that disconnects cancels its generation: the next token raises in
the worker, which closes its stream to llama-server, and llama-server frees the slot.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from expertkit.config import ServeSettings
from expertkit.models.generator import Generator
from expertkit.rag import RAG
from expertkit.serve.admission import Admission, Slots
from expertkit.serve.api import ApiError
from expertkit.serve.guard import BodyLimit, KeyCheck, SecurityHeaders, chat_page, page_policy
from expertkit.serve.routes import router
from expertkit.serve.state import EXPERT_ID, ServedModel, Server

__all__ = ["EXPERT_ID", "Admission", "ApiError", "ServedModel", "create_app"]


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
    models: dict[str, ServedModel] = {}
    if rag is not None:
        models[EXPERT_ID] = ServedModel(
            EXPERT_ID, rag.generator or generator, rag, f"{generator.name} answering from the documents, cited"
        )
    for m in adapters or []:
        models[m.id] = m
    models[generator.name] = ServedModel(generator.name, generator, None, "the bare model, without the documents")
    page = chat_page()
    server = Server(
        models=models,
        default=EXPERT_ID if rag is not None else generator.name,
        rag=rag,
        slots=Slots(Admission(generator.parallel, settings.queue, settings.per_key)),
        check=KeyCheck(keys, require_keys),
        settings=settings,
        max_tokens=max_tokens,
        root=root,
        chat_page=page,
    )
    app = FastAPI(title="expertkit", version="0.1.0", docs_url=None, redoc_url=None)
    app.state.server = server
    app.state.admission = server.slots.admission  # for tests and the load benchmark
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(BodyLimit, limit=settings.max_body_kb * 1024)
    app.add_middleware(SecurityHeaders, page_policy=page_policy(page))
    app.include_router(router)
    return app


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return exc.response()


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """An unknown path (404) or method (405), in OpenAI's shape as every other error."""
    message = f"{exc.detail}: {request.method} {request.url.path}"
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path} (the API is under /v1)"
    elif exc.status_code == 405:
        message = f"{request.url.path} does not take {request.method}"
    return ApiError(exc.status_code, message, "invalid_request_error", headers=getattr(exc, "headers", None)).response()
