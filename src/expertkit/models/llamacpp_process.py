"""One llama.cpp HTTP server process serving one GGUF model: started, watched, stopped (``LlamaServer``).

The server is started by one of the engines in :mod:`expertkit.models.engines`: by default llama.cpp's own
server from the ``xllamacpp`` wheel (built for any AVX2 CPU), else a ``llama-server`` the user names, on
127.0.0.1 at a free port. A *private* server lives as long as the command: it is stopped on exit and,
through PR_SET_PDEATHSIG, killed by the kernel if the command itself is killed, so no orphan is left. A
*detached* one outlives it (the warm runtime, recorded in the workspace by models/llamacpp.py).

Each start draws a random API key, handed to the server in a 0600 file that is deleted once the server has
read it (never on its command line, which every local user can read in /proc): any request without it gets
401, so no other local process and no web page can use the model or its adapters. Only ``/health`` is
open. Browsers are told no other origin may read the answers (CORS: the server's own origin only).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from expertkit.errors import GeneratorError, ModelNotInstalledError
from expertkit.models import engines
from expertkit.models.engines import Engine
from expertkit.private import open_private
from expertkit.system import free_port, physical_cores

CORS_ENV = "LLAMA_ARG_CORS_ORIGINS"  # llama-server's --cors-origins (builds before it ignore the variable)
# where llama-server also takes API keys (LLAMA_API_KEY is its --api-key; LLAMA_ARG_ names, *_FILE included):
# one inherited from the user's environment would be a second key that opens the server
KEY_ENV_PREFIXES = ("LLAMA_API_KEY", "LLAMA_ARG_API_KEY")
DOCTOR = "run `expertkit doctor` to see which engine runs on this machine"


def _find_prctl():
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).prctl
    return None


_PRCTL = _find_prctl()  # looked up here: loading a library between fork and exec is not safe


def _die_with_parent(parent: int) -> None:  # runs in the child between fork and exec
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: the kernel stops us when our parent dies
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _diagnose(log: str, model: str, port: int, engine: str = "llama-server", code: int | None = None) -> str:
    """One line a user can act on, from the server's own log and exit code."""
    low = log.lower()
    if engines.crashed_on_cpu(code, log):
        return f"{engine} uses CPU instructions this machine lacks (it died with SIGILL): {DOCTOR}"
    if "address already in use" in low or "couldn't bind" in low or "failed to bind" in low:
        return f"port {port} on 127.0.0.1 is taken: stop what uses it, or start the runtime on another port"
    if "gguf" in low and ("invalid magic" in low or "failed to read" in low or "corrupt" in low):
        return f"{model} is not a valid GGUF file (corrupt or truncated): reinstall or re-download it"
    if "failed to load model" in low or "error loading model" in low:
        return f"llama-server could not load {model} (corrupt, truncated, or an architecture it does not know)"
    if "error while loading shared libraries" in low:
        return f"{engine} is missing a shared library: reinstall it, or {DOCTOR}"
    last = next((ln.strip() for ln in reversed(log.splitlines()) if ln.strip()), "no output")
    return f"{engine} stopped while starting (exit {code}): {last[:160]}; {DOCTOR}"


@dataclass
class RuntimeInfo:
    """What a warm server's record in the workspace holds."""

    pid: int
    port: int
    host: str
    model: str  # the name asked for
    model_path: str
    ctx_size: int  # per slot
    parallel: int
    threads: int
    log: str
    started: float
    engine: str = ""  # the engine serving it (records written before engines existed have none)
    api_key: str = field(default="", repr=False)  # what every request carries (older records: none)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class LlamaServer:
    """One llama.cpp server process serving one GGUF model.

    ``engine`` is ``generate.engine`` (auto, xllamacpp, llama-server) and ``binary`` the user's own
    llama-server; ``start`` tries the candidate engines in order and keeps the first that runs on this CPU.
    """

    def __init__(
        self,
        model_path: str,
        name: str = "",
        ctx_size: int = 4096,
        parallel: int = 2,
        threads: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: Path | None = None,
        lora: list[str] | None = None,
        lora_per_request: bool = False,
        engine: str = "auto",
        binary: str = "",
    ) -> None:
        self.model_path = model_path
        self.lora = list(lora or [])  # LoRA adapter GGUFs applied to every request (llama-server --lora)
        # loaded but applied only where a request asks (one server, the base model and each adapter)
        self.lora_per_request = lora_per_request
        self.name = name or Path(model_path).stem
        self.ctx_size = ctx_size
        self.parallel = parallel
        self.threads = threads or physical_cores()
        self.host = host
        self.port = port
        self.port_chosen = port != 0  # a port the user named is checked, never replaced
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.pid: int | None = None
        self.started = 0.0
        self.preference, self.binary = engine, binary
        self.engine: Engine | None = None  # the one that runs, once started
        self.api_key = ""  # drawn afresh by each start

    @property
    def headers(self) -> dict[str, str]:
        """What every request to this server carries (``/health`` alone is open without it)."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self, engine: Engine, key_file: str = "") -> list[str]:
        return [
            *engine.argv,
            "--model", self.model_path,
            "--host", self.host,
            "--port", str(self.port),
            "--ctx-size", str(self.ctx_size * self.parallel),  # llama-server splits it between the slots
            "--parallel", str(self.parallel),
            "--threads", str(self.threads),
            "--n-gpu-layers", "0",
            "--jinja",  # the chat template stored in the GGUF, rendered as the model's authors wrote it
            "--no-webui",
            *(arg for path in self.lora for arg in ("--lora", path)),
            *(["--lora-init-without-apply"] if self.lora and self.lora_per_request else []),
            *(["--api-key-file", key_file] if key_file else []),  # the file, not the key: argv is public
        ]  # fmt: skip

    def start(self, detach: bool = False, timeout: float = 180.0) -> LlamaServer:
        """Start and wait until ``/health`` answers. ``detach`` = a warm server that outlives this process.

        The first start on a CPU may try more than one engine: one that dies of SIGILL is remembered as
        not running here and the next is tried; any other failure (a bad model, a taken port) is final."""
        tried = engines.candidates(self.preference, self.binary)
        if not Path(self.model_path).is_file():
            raise ModelNotInstalledError(f"model file {self.model_path} does not exist")
        self.api_key = secrets.token_urlsafe(32)
        key_file = _key_file(self.api_key)
        try:
            for engine in tried:
                try:
                    return self._start_with(engine, detach, timeout, key_file)
                except _EngineCrashed as crash:
                    engines.record(engine, False, str(crash))
            raise GeneratorError(engines.no_engine_message(tried))
        finally:  # a server reads it as it starts, before /health answers: no copy stays on disk
            os.unlink(key_file)

    def _start_with(self, engine: Engine, detach: bool, timeout: float, key_file: str = "") -> LlamaServer:
        if not self.port_chosen:  # a fresh one for each engine tried: a crashed try may leave its port in TIME_WAIT
            self.port = free_port(self.host)
        else:  # a port the user chose: refuse it now if taken, rather than talk to whoever holds it
            with socket.socket() as probe:
                try:
                    probe.bind((self.host, self.port))
                except OSError:
                    raise GeneratorError(_diagnose("address already in use", self.model_path, self.port)) from None
        if self.log_path is None:
            import tempfile

            fd, name = tempfile.mkstemp(prefix="expertkit-llama-server-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        parent = os.getpid()
        try:
            with open(open_private(self.log_path), "wb") as log:  # 0600: what the server logs is the owner's
                # its own session either way: Ctrl-C in the terminal interrupts the command, not the server
                self.process = subprocess.Popen(
                    self.command(engine, key_file),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=_child_env(engine, self.url),
                    start_new_session=True,
                    preexec_fn=None if detach else lambda: _die_with_parent(parent),
                )
        except OSError as exc:
            raise GeneratorError(f"cannot run {engine.argv[0]} ({engine.name}): {exc}; {DOCTOR}") from None
        self.engine, self.pid, self.started = engine, self.process.pid, time.time()
        if not detach:
            # stopped with this object or at exit; the kernel kills it if we are killed
            weakref.finalize(self, _terminate, self.process)
            atexit.register(_terminate, self.process)
        try:
            self._wait_ready(timeout)
        except BaseException:  # an error or Ctrl-C while loading: never leave it running unrecorded
            self.stop()
            raise
        if engines.verdict(engine) is None:
            engines.record(engine, True)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll() if self.process else None
            if code is not None:
                log = _log_tail(self.log_path)
                name = self.engine.name if self.engine else "llama-server"
                if engines.crashed_on_cpu(code, log):
                    raise _EngineCrashed(_diagnose(log, self.model_path, self.port, name, code))
                raise GeneratorError(_diagnose(log, self.model_path, self.port, name, code))
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise GeneratorError(f"llama-server did not become ready within {timeout:.0f}s; its log: {self.log_path}")

    def exit_code(self) -> int | None:
        return self.process.poll() if self.process else None

    def healthy(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None:
            _terminate(self.process, timeout)
        elif self.pid is not None:
            terminate_pid(self.pid, timeout)

    def info(self, model: str) -> RuntimeInfo:
        assert self.pid is not None
        return RuntimeInfo(
            self.pid,
            self.port,
            self.host,
            model,
            self.model_path,
            self.ctx_size,
            self.parallel,
            self.threads,
            str(self.log_path),
            self.started,
            self.engine.name if self.engine else "",
            self.api_key,
        )

    @classmethod
    def attach(cls, info: RuntimeInfo) -> LlamaServer:
        server = cls(info.model_path, info.model, info.ctx_size, info.parallel, info.threads, info.host, info.port)
        server.pid, server.started, server.log_path = info.pid, info.started, Path(info.log)
        server.api_key = info.api_key
        return server


def _child_env(engine: Engine, origin: str) -> dict[str, str]:
    """The server's environment: this process's, less every API key variable (its key is the one in
    --api-key-file, and no other), and CORS for its own origin only (a web page cannot read its answers)."""
    env = {k: v for k, v in engine.env().items() if not k.upper().startswith(KEY_ENV_PREFIXES)}
    return {**env, CORS_ENV: origin}


def _key_file(key: str) -> str:
    """A 0600 file holding ``key`` (llama-server's --api-key-file), for the caller to delete."""
    import tempfile

    fd, name = tempfile.mkstemp(prefix="expertkit-llama-key-", suffix=".txt")  # 0600
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return name


class _EngineCrashed(GeneratorError):
    """The engine died of an instruction this CPU lacks: another engine may run."""


def _terminate(process: subprocess.Popen, timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def pid_is_server(pid: int, port: int, model_path: str) -> bool:
    """The pid is alive and is the server we recorded: its command line names the same model and port
    (a pid can be reused by another program; the binary may have any name)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return model_path.encode() in cmdline and str(port).encode() in cmdline


def terminate_pid(pid: int, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when it is our own child
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
