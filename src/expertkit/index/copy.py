"""Copy one index into another (SQLite → PostgreSQL, or between any two backends), vectors included,
so that moving to the scale-out backend never re-embeds a chunk."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from expertkit.errors import WorkspaceError
from expertkit.index.base import Index, text_hash


@dataclass
class CopyReport:
    sources: int = 0
    chunks: int = 0
    skipped: int = 0  # already in the destination with the same content and access


def copy_index(src: Index, dst: Index, on_source: Callable[[int], None] | None = None) -> CopyReport:
    """Write every source of ``src`` into ``dst`` with its chunks and stored vectors, one transaction per
    source. Sources already in ``dst`` unchanged are skipped, so an interrupted copy resumes."""
    stats = src.stats()
    report = CopyReport()
    if stats.embedder is None or stats.dim is None:
        raise WorkspaceError("the source index is empty: nothing to copy (run `expertkit ingest` first)")
    dst.bind_embedder(stats.embedder, stats.dim)

    def done(source) -> bool:
        there = dst.get_source(source.path)
        return there is not None and (
            there.content_hash,
            there.tags,
            there.groups,
            there.groups_pinned,
            there.n_chunks,
            there.pipeline,
        ) == (source.content_hash, source.tags, source.groups, source.groups_pinned, source.n_chunks, source.pipeline)

    sources = src.sources()
    todo = {s.path for s in sources if not done(s)}
    with dst.bulk_load() if todo else nullcontext():  # Postgres: load first, then build HNSW once
        for source in sources:
            if source.path not in todo:
                report.skipped += 1
            else:
                chunks = src.source_chunks(source.path)
                hashes = [text_hash(c.embed_text()) for c in chunks]
                vectors = src.cached_vectors(hashes)
                if len(vectors) < len(set(hashes)):
                    raise WorkspaceError(f"{source.path}: the source index lacks vectors for some chunks; re-ingest it")
                stacked = np.stack([vectors[h] for h in hashes]) if chunks else np.zeros((0, stats.dim), np.float32)
                dst.write_source(source, chunks, stacked)
                report.sources += 1
                report.chunks += len(chunks)
            if on_source:
                on_source(1)
    known = {h.at for h in dst.sync_history()}
    for record in src.sync_history():
        if record.at not in known:
            dst.record_sync(record)
    return report
