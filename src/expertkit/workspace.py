"""A workspace: a folder holding expertkit.toml, the index, adapters, runs and reports (like a git repo)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expertkit.config import CONFIG_FILE, Settings, default_toml, dsn_for, load_settings
from expertkit.errors import ConfigError, ModelNotInstalledError, WorkspaceError
from expertkit.private import exposed, private_dir

AUTO_EMBEDDER = "auto"
ENGLISH_EMBEDDER = "all-minilm-l6-v2"
MULTILINGUAL_EMBEDDER = "multilingual-e5-small"

WORKSPACE_ENV = "EXPERTKIT_WORKSPACE"
DATA_DIR = ".expertkit"


@dataclass
class Workspace:
    root: Path
    settings: Settings

    @property
    def data_dir(self) -> Path:
        return self.root / DATA_DIR

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index.db"

    @property
    def cache_dir(self) -> Path:
        """Rebuildable caches (vector matrix, ANN graph); safe to delete."""
        return self.data_dir / "cache"

    @property
    def db_dir(self) -> Path:
        """The data folder of the local PostgreSQL server that `expertkit db start` runs."""
        return self.data_dir / "postgres"

    def exposed(self) -> list[Path]:
        """What in .expertkit another local user could list, read or write (``expertkit.private.exposed``);
        a workspace made before it was created 0700, or opened up since, has some."""
        return exposed(self.data_dir, skip=("postgres",))

    def has_index(self) -> bool:
        if self.settings.index.backend == "postgres":
            return True  # a server's schema is created on connect; an empty one answers "no results"
        return self.index_path.exists()

    def index_dsn(self) -> str:
        """index.dsn, else the local server's (``expertkit db start``)."""
        if self.settings.index.dsn:
            return dsn_for(self.settings.index)  # refused where a workspace's file would send PGPASSWORD away
        from expertkit.index.pgserver import PgServer

        info = PgServer(self.db_dir).status()
        if info is None or not info.running:
            raise WorkspaceError(
                "no PostgreSQL server: index.dsn is empty and no local server runs for this workspace; "
                'run `expertkit db start`, or set index.dsn = "postgresql://…"'
            )
        return info.dsn

    def open_index(self, create: bool = False):  # -> an Index; backends are imported lazily for start-up speed
        s = self.settings.index
        if s.backend == "postgres":
            from expertkit.index.pgvector import PostgresIndex

            return PostgresIndex(self.index_dsn(), schema=s.schema_name, ef_search=s.ef_search)
        from expertkit.index.sqlite import SQLiteIndex

        if not create and not self.has_index():
            raise WorkspaceError(f"workspace {self.root} has no index yet: run `expertkit ingest PATH` first")
        private_dir(self.data_dir)
        return SQLiteIndex(
            self.index_path, cache_dir=self.cache_dir, ann_threshold=s.ann_threshold, lock_timeout=s.lock_timeout_s
        )

    # -- factories: the CLI, the server and the benchmarks build their parts here, one way ------------

    def embedder(self, index=None, paths: Sequence[Path] = ()):  # -> Embedder; imported lazily (torch)
        """The embedder ``embed.model`` names; "auto" (the default) is the one ``index`` (else this workspace's
        index) was built with, or, before its first ingest, the one ``paths``' documents need (``embedder_name``)."""
        from expertkit.models.embedder import Embedder

        e = self.settings.embed
        return Embedder(self.embedder_name(index, paths), e.batch_size, e.dtype)

    def embedder_name(self, index=None, paths: Sequence[Path] = ()) -> str:
        """``embed.model``, with "auto" made a name: the index's own embedder where it has vectors; else
        multilingual-e5-small when any of ``paths``' documents (a sample of 24) is not in English, or the
        faster English all-MiniLM-L6-v2 when they all are (or nothing is being ingested)."""
        name = self.settings.embed.model
        if name != AUTO_EMBEDDER:
            bound = index.bound_embedder() if index is not None else None
            if bound and bound != name:  # its query vectors would not compare with the index's
                raise WorkspaceError(
                    f"this index was built with embedder {bound!r}, but embed.model = {name!r}: "
                    f"set embed.model = 'auto' (or {bound!r}), or ingest into a new workspace"
                )
            return name
        if index is not None:
            bound = index.bound_embedder()
        elif self.settings.index.backend == "sqlite" and not self.has_index():
            bound = None
        else:
            opened = self.open_index()
            try:
                bound = opened.bound_embedder()
            finally:
                opened.close()
        return bound or embedder_for(paths)

    def retriever(self, index=None, embedder=None, generator=None):  # -> Retriever
        """The hybrid retriever; with ``search.reranker = "llm"`` its reranker asks ``generator`` (started
        from the generate settings when not given: ask, chat and serve pass their own, so one server serves)."""
        from expertkit.retrieve import LLMReranker, Retriever

        s = self.settings.search
        reranker = None
        if s.reranker == "llm":
            from expertkit.models.base import LOGPROBS, accepts

            if generator is None:
                from expertkit.models.generator import make_generator

                generator = make_generator(self.settings.generate, runtime_dir=self.data_dir)
            if not accepts(generator, LOGPROBS):
                raise ConfigError(
                    "search.reranker = 'llm' needs token probabilities: use generate.backend = 'llamacpp' "
                    "(or 'auto' with a GGUF model)"
                )
            reranker = LLMReranker(generator, s.rerank_budget_ms)
        index = index or self.open_index()
        return Retriever(index, embedder or self.embedder(index), s, reranker)

    def rag(self, generator, index=None, embedder=None):  # -> RAG
        """The RAG pipeline over this workspace's index, with ``generator`` and the rag/generate settings."""
        from expertkit.rag import RAG

        g, r = self.settings.generate, self.settings.rag
        return RAG(
            self.retriever(index, embedder, generator),
            generator,
            r.k,
            r.min_relevance,
            r.support_threshold,
            g.max_new_tokens,
            g.temperature,
            r.min_rerank,
            r.key_terms,
        )

    def key_store(self):  # -> KeyStore
        """The API keys `expertkit serve` accepts (``expertkit keys``)."""
        from expertkit.serve.keys import KeyStore

        return KeyStore(self.data_dir / "keys.json")


def init_workspace(root: Path) -> Path:
    """Create ``root`` with a commented expertkit.toml; an existing file is left as it is."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / CONFIG_FILE
    if not config.exists():
        config.write_text(default_toml(), encoding="utf-8")
    private_dir(root / DATA_DIR)  # 0700: the index holds the documents' text, for this user only
    return config


def find_workspace(start: Path | None = None) -> Path | None:
    """The explicit folder, else $EXPERTKIT_WORKSPACE, else the nearest folder upwards with expertkit.toml."""
    if start is not None:
        return start
    env = os.environ.get(WORKSPACE_ENV)
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).exists():
            return folder
    return None


def embedder_for(paths: Sequence[Path]) -> str:
    """The embedder ``embed.model = "auto"`` gives an empty index about to take ``paths``: multilingual-e5-small
    when any of their documents (a sample of 24) is not in English, else all-MiniLM-L6-v2, 2x faster per chunk."""
    from expertkit.ingest.sync import first_foreign_document
    from expertkit.models.registry import resolve

    foreign = first_foreign_document(paths) if paths else None
    if foreign is None:
        return ENGLISH_EMBEDDER
    try:
        resolve(MULTILINGUAL_EMBEDDER, "embedder")
    except ModelNotInstalledError as exc:
        raise ModelNotInstalledError(
            f"{foreign} is not in English, so embed.model = 'auto' needs the multilingual embedder, which is "
            f"not installed ({exc}); or set embed.model = '{ENGLISH_EMBEDDER}' to index it with the English one"
        ) from None
    return MULTILINGUAL_EMBEDDER


def open_workspace(
    root: Path | None = None, overrides: dict[str, Any] | None = None, create: bool = False
) -> Workspace:
    """Open (or with ``create`` make) the workspace and load its settings."""
    found = find_workspace(root)
    if found is None:
        if not create:
            raise WorkspaceError(
                "no workspace here: run `expertkit init DIR`, pass --workspace DIR, or set EXPERTKIT_WORKSPACE"
            )
        found = Path.cwd()
    found = found.resolve()
    if create:
        init_workspace(found)
    elif not (found / CONFIG_FILE).exists():
        raise WorkspaceError(f"{found} is not a workspace (no {CONFIG_FILE}): run `expertkit init {found}`")
    return Workspace(found, load_settings(found, overrides))
