"""llama.cpp's HTTP server as the local runtime for GGUF models: the generator that talks to it, and the
warm server a workspace keeps.

expertkit starts the server (models/llamacpp_process.py: ``LlamaServer``, with its engines, API key and
process lifetime) and talks to it through the OpenAI-compatible generator (models/openai_compat.py), so
streaming, timeouts and error handling are shared with any remote endpoint.

Two lifetimes, as with ``ollama serve``:
- a *warm* server started by ``expertkit runtime start``, detached, recorded in the workspace
  (``.expertkit/runtime.json``) and reused by every command that asks for the same model;
- otherwise a *private* server that lives as long as the command: it is stopped on exit and, through
  PR_SET_PDEATHSIG, killed by the kernel if the command itself is killed, so no orphan is left.

A warm server's API key is kept in its 0600 record in the workspace, for the commands that reuse it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
from dataclasses import asdict
from pathlib import Path

from expertkit.errors import GeneratorError, ModelNotInstalledError
from expertkit.models import engines
from expertkit.models.base import JSON_SCHEMA, LOGPROBS, STOP, Generation, Messages, OnToken
from expertkit.models.llamacpp_process import (  # noqa: F401 - LlamaServer, RuntimeInfo, free_port re-exported
    LlamaServer,
    RuntimeInfo,
    free_port,
    pid_is_server,
    terminate_pid,
)
from expertkit.models.openai_compat import OpenAIGenerator

RUNTIME_FILE = "runtime.json"


# -- the warm server recorded in a workspace ----------------------------------------------------------


def _load_record(path: Path) -> RuntimeInfo | None:
    """The recorded warm server; a missing or unreadable record is removed and counts as none."""
    try:
        return RuntimeInfo(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        path.unlink(missing_ok=True)
        return None


def read_runtime(data_dir: Path) -> RuntimeInfo | None:
    """The workspace's warm server if it is alive and answering. A stale record (its process gone, or
    the pid reused by another program) is removed; a live server that does not answer right now (busy,
    still loading) is left alone and not used."""
    path = data_dir / RUNTIME_FILE
    info = _load_record(path)
    if info is None:
        return None
    if not pid_is_server(info.pid, info.port, info.model_path):
        path.unlink(missing_ok=True)
        return None
    return info if LlamaServer.attach(info).healthy() else None


def start_runtime(data_dir: Path, model: str, model_path: str, ctx_size: int, parallel: int, threads: int = 0,
                  port: int = 0, engine: str = "auto", binary: str = "") -> RuntimeInfo:  # fmt: skip
    """Start a warm, detached server for ``model`` and record it; an existing one is replaced, but only
    once an engine and the model file are known to exist."""
    engines.candidates(engine, binary)
    if not Path(model_path).is_file():
        raise ModelNotInstalledError(f"model file {model_path} does not exist")
    stop_runtime(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    server = LlamaServer(model_path, model, ctx_size, parallel, threads, port=port, log_path=data_dir / "runtime.log",
                         engine=engine, binary=binary)  # fmt: skip
    server.start(detach=True)
    info = server.info(model)
    tmp = data_dir / (RUNTIME_FILE + ".tmp")
    tmp.unlink(missing_ok=True)  # made afresh, 0600 before the server's API key is written into it
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(json.dumps(asdict(info), indent=2))
    os.replace(tmp, data_dir / RUNTIME_FILE)
    return info


def stop_runtime(data_dir: Path) -> RuntimeInfo | None:
    """Stop the workspace's warm server, if any; returns what was stopped."""
    path = data_dir / RUNTIME_FILE
    info = _load_record(path)
    if info is None:
        return None
    path.unlink(missing_ok=True)
    if not pid_is_server(info.pid, info.port, info.model_path):
        return None  # already gone
    terminate_pid(info.pid)
    return info


# -- the generator --------------------------------------------------------------------------------------


class LlamaCppGenerator(OpenAIGenerator):
    """A GGUF model served by llama-server: the OpenAI-compatible generator plus exact token counts,
    prompt caching, optional JSON-schema output, and clear errors when the server dies."""

    options = frozenset({STOP, JSON_SCHEMA, LOGPROBS})

    def __init__(self, server: LlamaServer, name: str, timeout: float = 120.0) -> None:
        super().__init__(
            f"{server.url}/v1", name, server.api_key, timeout=timeout, retries=0, context_window=server.ctx_size
        )
        self.server = server
        self.parallel = server.parallel  # requests the server decodes at once
        self.lora_scales: list[dict] | None = None  # per request, on a server started with lora_per_request

    def with_adapter(self, position: int, name: str) -> LlamaCppGenerator:
        """The same server answering with its ``position``-th LoRA adapter applied (the others off)."""
        twin = copy.copy(self)
        twin.name = name
        twin.lora_scales = [{"id": i, "scale": 1.0 if i == position else 0.0} for i in range(len(self.server.lora))]
        return twin

    def close(self) -> None:
        """Close the connections to the server; stop it if this command started it (a warm server stays), and
        drop its log."""
        super().close()
        if self.server.process is not None:
            self.server.stop()
            if self.server.log_path is not None and self.server.exit_code() is not None:
                self.server.log_path.unlink(missing_ok=True)

    def _post(self, path: str, body: dict) -> dict:
        import httpx

        try:
            return super()._post(path, body)
        except (httpx.HTTPError, ValueError) as exc:
            raise self._server_error(f"llama-server {path}: {exc}") from None

    def count_tokens(self, messages: Messages) -> int:
        return self._server_tokens(messages)  # exact, and an error if the server fails (never an estimate)

    def _lora_request(self) -> dict:
        """The per-request LoRA scales on a server started with lora_per_request: this generator's
        adapter on, or every adapter off for the base model; nothing for any other server."""
        if not (self.server.lora_per_request and self.server.lora):
            return {}
        return {"lora": self.lora_scales or [{"id": i, "scale": 0.0} for i in range(len(self.server.lora))]}

    def next_token_logprobs(self, messages: Messages, top: int = 20) -> dict[str, float]:
        """Log-probabilities of the ``top`` likeliest first tokens of the reply to ``messages`` (nothing is
        sampled: one forward pass over the prompt). Keys are the tokens' text, as the model spells them."""
        # no prompt cache: a prompt partly read from the cache gives slightly different numbers, and a score
        # must not depend on what the slot held before
        body: dict = {"prompt": self.render(messages), "n_predict": 1, "n_probs": top, "cache_prompt": False}
        body.update(self._lora_request())
        reply = self._post("/completion", body)
        try:
            top_tokens = reply["completion_probabilities"][0]["top_logprobs"]
            return {t["token"]: float(t["logprob"]) for t in top_tokens}
        except (KeyError, IndexError, TypeError):
            raise self._server_error("llama-server /completion: no token probabilities in its reply") from None

    def generate(
        self,
        messages: Messages,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        on_token: OnToken | None = None,
        json_schema: dict | None = None,
        stop: list[str] | None = None,
    ) -> Generation:
        extra: dict = {"cache_prompt": True}  # the system prompt's KV is reused across questions
        extra.update(self._lora_request())
        if json_schema is not None:
            extra["json_schema"] = json_schema  # llama.cpp turns it into a grammar: the output always parses
        if stop:
            extra["stop"] = stop
        try:
            return self._generate(messages, max_new_tokens, temperature, on_token, extra)
        except GeneratorError as exc:
            raise self._server_error(str(exc)) from None

    def _server_error(self, detail: str) -> GeneratorError:
        code = self.server.exit_code()
        if code is None and self.server.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):  # a killed process takes a moment to go
                code = self.server.process.wait(timeout=2)
        if code is None and self.server.process is None and self.server.pid is not None:
            code = None if pid_is_server(self.server.pid, self.server.port, self.server.model_path) else -1
        if code is not None:
            return GeneratorError(
                f"llama-server (pid {self.server.pid}) died mid-answer (exit {code}); run the command again "
                f"to start a fresh one; its log: {self.server.log_path}"
            )
        return GeneratorError(detail)
