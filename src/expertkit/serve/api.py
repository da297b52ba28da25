"""The OpenAI wire format: the request bodies this server reads, the parameters it refuses (and why),
its errors in OpenAI's shape, and the response pieces (choices, usage) every route shares."""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from expertkit.errors import ExpertkitError, GeneratorError
from expertkit.models.generator import Generator, accepts

log = logging.getLogger("expertkit.serve")


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
                raise ApiError(
                    400,
                    f"{name}: this server does not support {name} = {json.dumps(value)[:60]}: {why}",
                    "invalid_request_error",
                    name,
                    "unsupported_parameter",
                )
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
                raise ApiError(
                    400,
                    "response_format.json_schema.schema: a JSON Schema object is required",
                    "invalid_request_error",
                    "response_format",
                )
            out["json_schema"] = schema
        elif kind != "text":
            raise ApiError(
                400,
                f"response_format: unknown type {kind!r} (text, json_object or json_schema)",
                "invalid_request_error",
                "response_format",
            )
        for option in out:
            param = "response_format" if option == "json_schema" else option
            if bare is None:
                raise ApiError(
                    400,
                    f"{param}: the expert's answers are checked against the documents and cited "
                    f"whole, so {param} applies only to the bare model ({model_id!r} is the expert)",
                    "invalid_request_error",
                    param,
                    "unsupported_parameter",
                )
            if not accepts(bare, option):
                raise ApiError(
                    400,
                    f"{param}: the model {model_id!r} runs on a backend that cannot apply it "
                    "(llama.cpp and OpenAI-compatible servers can)",
                    "invalid_request_error",
                    param,
                    "unsupported_parameter",
                )
        return out


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str
    k: int | None = Field(None, ge=1, le=50)
    rag: bool = True
    tags: list[str] = []


class ApiError(HTTPException):
    """An error for the client, sent in OpenAI's shape (an HTTPException, so FastAPI passes it through
    even from inside body parsing)."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, headers)
        self.status, self.kind, self.param, self.code = status, kind, param, code

    def __str__(self) -> str:
        return str(self.detail)

    def response(self) -> JSONResponse:
        """The error's body as OpenAI's API sends it, so existing clients raise their usual exceptions."""
        body = {"error": {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}}
        return JSONResponse(body, self.status, headers=self.headers)


def _same(value: Any, neutral: Any) -> bool:
    """JSON equality: 1 and 1.0 are the same value, True and 1 are not."""
    if isinstance(value, bool) or isinstance(neutral, bool):
        return value is neutral
    return value == neutral


async def parse_body(request: Request, model: type[BaseModel]) -> Any:
    """The JSON body as ``model``, or a 400 in OpenAI's shape that says which field and why. Text that
    cannot be encoded (a lone UTF-16 surrogate such as "\\ud800") is refused here, before any part of
    the server tries to tokenize or send it."""
    raw = await request.body()
    try:
        data = json.loads(raw)
    except ValueError as exc:  # not JSON, or not UTF-8
        raise ApiError(
            400, f"the body is not valid JSON ({exc}): send a JSON object", "invalid_request_error", "body"
        ) from None
    bad = _unencodable(data)
    if bad is not None:
        raise ApiError(
            400,
            f"{bad}: contains a lone UTF-16 surrogate, which is not text: send valid Unicode",
            "invalid_request_error",
            bad,
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        message = (
            f"{where}: unrecognized request argument (this server refuses what it would not read)"
            if first["type"] == "extra_forbidden"
            else f"{where}: {first['msg']}"
        )
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


def client_or_server(exc: Exception) -> ApiError:
    """A question the client can fix is 400; the model server failing is 502, said without its
    internals (its address, its log), which go to this server's log for its owner."""
    if isinstance(exc, ExpertkitError) and not isinstance(exc, GeneratorError):
        return ApiError(400, str(exc), "invalid_request_error")
    log.warning("answering failed: %s: %s", type(exc).__name__, exc)
    return ApiError(502, "the model server failed to answer; try again in a moment", "server_error")


def finish_reason(reason: str) -> str:
    return reason if reason in ("stop", "length") else "stop"


def choice(text: str, finish: str) -> dict[str, Any]:
    return {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason(finish)}


def usage(prompt: float, completion: float) -> dict[str, int]:
    return {
        "prompt_tokens": int(prompt),
        "completion_tokens": int(completion),
        "total_tokens": int(prompt) + int(completion),
    }
