"""The Index protocol that every backend implements, and the records it exchanges.

Every backend passes the same conformance suite (tests/index/conformance.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from expertkit.index.keywords import has_greek, is_greek_stop_word, keyword_text
from expertkit.schema import Chunk


@dataclass
class SourceRecord:
    """What the index knows about one ingested file."""

    path: str
    content_hash: str
    file_type: str
    size: int = 0
    mtime: float = 0.0
    tags: tuple[str, ...] = ()
    n_chunks: int = 0
    title: str | None = None
    warnings: tuple[str, ...] = ()
    synced_at: float = 0.0
    groups: tuple[str, ...] = ()  # access groups: who may retrieve this source's chunks
    groups_pinned: bool = False  # set by `ingest --group`: later syncs keep them rather than apply the rules
    pipeline: str = ""  # the chunking settings it was written with; a change re-chunks it on the next sync


SOURCE_COLUMNS = (
    "path, content_hash, file_type, size, mtime, n_chunks, title, warnings, synced_at, groups_pinned, pipeline"
)


def source_values(source: SourceRecord, n_chunks: int) -> tuple:
    """The values of SOURCE_COLUMNS for one source row, as both backends store it."""
    return (
        source.path,
        source.content_hash,
        source.file_type,
        source.size,
        source.mtime,
        n_chunks,
        source.title,
        json.dumps(list(source.warnings)),
        source.synced_at or time.time(),
        source.groups_pinned,
        source.pipeline,
    )


def content_hash(data: bytes) -> str:
    """A file's content hash, as ``SourceRecord.content_hash`` holds it."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def text_hash(text: str) -> str:
    """The hash of a chunk's embedded text, stored with its vector by every backend: ``cached_vectors`` finds
    vectors by it, so that unchanged text is not embedded again (an ingest, a copy between backends)."""
    return content_hash(text.encode("utf-8"))


@dataclass
class SyncRecord:
    """One sync's counts, kept so that ``advise`` can measure how often the sources change."""

    at: float  # unix time the sync finished
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: int = 0
    sources: int = 0  # sources in the index after the sync

    @property
    def changed(self) -> int:
        return self.added + self.updated + self.removed


@dataclass
class Filters:
    """Metadata filters; empty fields do not filter. Tags match any of the given tags.

    ``groups`` are the caller's access groups: only sources in at least one of them are searched, inside
    the index query itself (an empty tuple sees nothing). None means unrestricted: the workspace's owner.
    """

    tags: tuple[str, ...] = ()
    path_glob: str | None = None
    file_types: tuple[str, ...] = ()
    groups: tuple[str, ...] | None = None

    def __bool__(self) -> bool:
        return bool(self.tags or self.path_glob or self.file_types) or self.groups is not None


@dataclass
class IndexStats:
    documents: int
    chunks: int
    tags: dict[str, int] = field(default_factory=dict)  # tag → documents
    file_types: dict[str, int] = field(default_factory=dict)
    size_bytes: int = 0
    embedder: str | None = None
    dim: int | None = None
    groups: dict[str, int] = field(default_factory=dict)  # access group → documents


class Index(Protocol):
    """Chunks, their metadata and their vectors, written one source at a time."""

    def bound_embedder(self) -> str | None:
        """The embedder the index's vectors came from; None before the first write."""

    def bind_embedder(self, name: str, dim: int) -> None:
        """Record the embedder on first write; refuse a different one later (vectors would not compare)."""

    def get_source(self, path: str) -> SourceRecord | None: ...

    def sources(self) -> list[SourceRecord]: ...

    def write_source(self, source: SourceRecord, chunks: list[Chunk], vectors: np.ndarray) -> None:
        """Replace everything stored for ``source.path`` in one transaction: fully old or fully new."""

    def update_stat(self, path: str, size: int, mtime: float, synced_at: float) -> None:
        """Record a touched-but-unchanged file's new size and mtime, so the next sync skips it unread."""

    def remove_source(self, path: str) -> int:
        """Drop a source and its chunks; returns the number of chunks removed."""

    def cached_vectors(self, text_hashes: list[str]) -> dict[str, np.ndarray]:
        """Vectors already stored for chunk texts with these hashes (so unchanged text is not re-embedded)."""

    def search_bm25(self, query: str, k: int, filters: Filters | None = None) -> list[tuple[str, float]]: ...

    def search_dense(self, vector: np.ndarray, k: int, filters: Filters | None = None) -> list[tuple[str, float]]: ...

    def get_chunks(self, chunk_ids: list[str]) -> list[Chunk]:
        """Chunks by id, in the order asked; unknown ids are left out."""

    def source_chunks(self, path: str) -> list[Chunk]:
        """Every chunk of one source, in document order."""

    def stats(self) -> IndexStats: ...

    def record_sync(self, record: SyncRecord) -> None:
        """Append one sync's counts to the history."""

    def sync_history(self) -> list[SyncRecord]:
        """Every recorded sync, oldest first."""

    def hold_write_lock(self) -> None:
        """Take the index's write lock now, before the first write, so that a second writer stops at once
        rather than after its embedding (SQLite: the workspace's one-writer lock). A no-op where writers do
        not exclude each other (PostgreSQL: one transaction per file, MVCC)."""

    def prepare_search(self) -> None:
        """Bring the search structures up to the writes just made, so the first query after an ingest does
        not pay for it (SQLite: the dense cache and the HNSW graph). A no-op where the database keeps its
        own indexes current on every write (PostgreSQL)."""

    def bulk_load(self) -> AbstractContextManager[None]:
        """A context for writing many sources at once, as a copy between backends does: a backend may defer
        building its search index to the end (PostgreSQL: HNSW dropped, then built once in one pass). A
        plain context where nothing is gained (SQLite)."""

    def close(self) -> None: ...


_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "shall",
        "should",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)


def keyword_terms(query: str) -> list[str]:
    """The query's words for BM25, lower-cased, stop words dropped (unless nothing else is left); Greek words
    folded as the index stores them (index/keywords.py)."""
    words = re.findall(r"\w+", query.lower())
    kept = [w for w in words if w not in _STOPWORDS and not (has_greek(w) and is_greek_stop_word(w))]
    return list(dict.fromkeys(keyword_text(w) for w in kept or words))
