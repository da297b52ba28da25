"""PostgresIndex: the connection and its transactions, the embedder binding and the HNSW index's bulk
rebuild, sources and chunks, stats and the sync history. Search is in search.py, the tables in schema.py; the
package docstring (``expertkit.index.pgvector``) explains the design."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from expertkit.errors import WorkspaceError
from expertkit.index.base import (
    SOURCE_COLUMNS,
    IndexStats,
    SourceRecord,
    SyncRecord,
    source_values,
    text_hash,
)
from expertkit.index.keywords import keyword_text
from expertkit.index.pgvector.connect import connect
from expertkit.index.pgvector.schema import TEXT_CONFIG, read_meta, set_up
from expertkit.index.pgvector.search import SearchMixin
from expertkit.schema import Chunk

_LOCK_KEY = 0x6578706B  # "expk": the advisory lock that serialises schema changes


class PostgresIndex(SearchMixin):
    """The Index on PostgreSQL + pgvector. One connection per instance; open one per thread or process."""

    def __init__(self, dsn: str, schema: str = "expertkit", ef_search: int = 100) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):  # it is spliced into SQL as an identifier
            raise WorkspaceError(f"schema {schema!r}: use lower-case letters, digits and _ (at most 63)")
        self.dsn = dsn
        self.s = schema
        self.ef_search = ef_search
        self.ann_build_seconds = 0.0  # the last bulk load's HNSW build
        self._stats: tuple[float, int, float] | None = None  # when read, chunk count, mean length
        self._df: dict[str, int] = {}
        self.conn = connect(dsn)
        version = self.conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
        self.iterative_scan = tuple(int(x) for x in re.findall(r"\d+", version)[:2]) >= (0, 8)
        with self._transaction(lock=True):
            set_up(self.conn, schema)

    @contextmanager
    def _transaction(self, lock: bool = False):
        with self.conn.transaction():
            if lock:  # schema changes and the embedder binding: one session at a time
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            yield

    def _meta(self, key: str) -> str | None:
        return read_meta(self.conn, self.s, key)

    def bound_embedder(self) -> str | None:
        return self._meta("embedder")

    def bind_embedder(self, name: str, dim: int) -> None:
        with self._transaction(lock=True):
            bound = self._meta("embedder")
            if bound is None:
                self.conn.execute(f"INSERT INTO {self.s}.meta VALUES ('embedder', %s), ('dim', %s)", (name, str(dim)))
                # a typed column is what lets pgvector build an HNSW index on it
                self.conn.execute(f"ALTER TABLE {self.s}.chunks ALTER COLUMN embedding TYPE vector({int(dim)})")
                self._create_ann()
            elif bound != name or int(self._meta("dim") or 0) != dim:
                raise WorkspaceError(
                    f"this index was built with embedder {bound!r}; it cannot mix in vectors from {name!r}. "
                    "Set embed.model back, or ingest into a new workspace."
                )

    def hold_write_lock(self) -> None:
        """Nothing to hold: writers do not exclude each other here (each file is one transaction; the
        embedder binding takes its own advisory lock)."""

    def prepare_search(self) -> None:
        """Nothing to prepare: Postgres keeps the GIN and HNSW indexes current on every write."""

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        """For loading many chunks at once: drop the HNSW index, load, then build it in one pass (building
        it first made a 100k-vector COPY take minutes instead of a second)."""
        self.conn.execute(f"DROP INDEX IF EXISTS {self.s}.chunks_embedding")
        try:
            yield
        finally:
            if self._meta("dim"):
                started = time.perf_counter()
                self.conn.execute("SET maintenance_work_mem = '1GB'")
                self._create_ann()
                self.ann_build_seconds = time.perf_counter() - started

    def _create_ann(self) -> None:
        self.conn.execute(
            f"CREATE INDEX IF NOT EXISTS chunks_embedding ON {self.s}.chunks USING hnsw (embedding vector_ip_ops)"
        )

    # -- sources -------------------------------------------------------------------------------------

    _SOURCE_COLUMNS = (
        "path, content_hash, file_type, size, mtime, tags, n_chunks, title, warnings, synced_at, groups, groups_pinned,"
        " pipeline"
    )

    def _source(self, row: tuple) -> SourceRecord:
        path, digest, ftype, size, mtime, tags, n, title, warnings, synced_at, groups, pinned, pipeline = row
        return SourceRecord(
            path,
            digest,
            ftype,
            size,
            mtime,
            tuple(tags),
            n,
            title,
            tuple(warnings),
            synced_at,
            tuple(groups),
            pinned,
            pipeline,
        )

    def get_source(self, path: str) -> SourceRecord | None:
        sql = f"SELECT {self._SOURCE_COLUMNS} FROM {self.s}.sources WHERE path = %s"
        row = self.conn.execute(sql, (path,)).fetchone()
        return self._source(row) if row else None

    def sources(self) -> list[SourceRecord]:
        sql = f"SELECT {self._SOURCE_COLUMNS} FROM {self.s}.sources ORDER BY path"
        return [self._source(r) for r in self.conn.execute(sql).fetchall()]

    def write_source(self, source: SourceRecord, chunks: list[Chunk], vectors: np.ndarray) -> None:
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        tags, groups = sorted(set(source.tags)), sorted(set(source.groups))
        self._forget_stats()
        with self._transaction(), self.conn.cursor() as cur:
            cur.execute(f"DELETE FROM {self.s}.sources WHERE path = %s", (source.path,))
            cur.execute(
                f"INSERT INTO {self.s}.sources ({SOURCE_COLUMNS}, tags, groups) VALUES ({', '.join(['%s'] * 13)})"
                " RETURNING id",
                (*source_values(source, len(chunks)), tags, groups),
            )
            sid = cur.fetchone()[0]
            cur.executemany(
                f"INSERT INTO {self.s}.chunks (chunk_id, source_id, ordinal, text, page, section, record_id, start,"
                ' "end", text_hash, tsv, n_terms, embedding, path, file_type, tags, groups, context) SELECT %s, %s, %s,'
                " %s, %s, %s, %s, %s, %s, %s, t.tsv, (SELECT coalesce(sum(array_length(positions, 1)), 0) FROM"
                " unnest(t.tsv)), %s, %s, %s, %s, %s, %s FROM (SELECT to_tsvector(%s, %s) AS tsv) t",
                [
                    (
                        c.chunk_id,
                        sid,
                        c.ordinal,
                        c.text,
                        c.page,
                        json.dumps(list(c.section)),
                        c.record_id,
                        c.start,
                        c.end,
                        text_hash(body),
                        v,
                        source.path,
                        source.file_type,
                        tags,
                        groups,
                        c.context,
                        TEXT_CONFIG,
                        keyword_text(body),  # Greek words folded (index/keywords.py)
                    )
                    for c, v in zip(chunks, vectors, strict=True)
                    for body in (c.embed_text(),)  # what BM25 and the embedder see, computed once
                ],
            )

    def update_stat(self, path: str, size: int, mtime: float, synced_at: float) -> None:
        self.conn.execute(
            f"UPDATE {self.s}.sources SET size = %s, mtime = %s, synced_at = %s WHERE path = %s",
            (size, mtime, synced_at, path),
        )

    def remove_source(self, path: str) -> int:
        self._forget_stats()
        with self._transaction():
            n = self.conn.execute(
                f"DELETE FROM {self.s}.chunks WHERE source_id = (SELECT id FROM {self.s}.sources WHERE path = %s)",
                (path,),
            ).rowcount
            self.conn.execute(f"DELETE FROM {self.s}.sources WHERE path = %s", (path,))
        return n

    def cached_vectors(self, text_hashes: list[str]) -> dict[str, np.ndarray]:
        unique = list(dict.fromkeys(text_hashes))
        out: dict[str, np.ndarray] = {}
        for i in range(0, len(unique), 1000):
            rows = self.conn.execute(
                f"SELECT DISTINCT ON (text_hash) text_hash, embedding FROM {self.s}.chunks WHERE text_hash = ANY(%s)",
                (unique[i : i + 1000],),
            )
            out.update((h, np.asarray(_array(v), dtype=np.float32)) for h, v in rows)
        return out

    def get_chunks(self, chunk_ids: list[str]) -> list[Chunk]:
        if not chunk_ids:
            return []
        rows = self.conn.execute(
            'SELECT chunk_id, text, path, ordinal, start, "end", file_type, page, section, record_id, tags, context'
            f" FROM {self.s}.chunks WHERE chunk_id = ANY(%s)",
            (list(chunk_ids),),
        )
        found = {
            cid: Chunk(text, path, ordinal, start, end, ftype, page, tuple(section), rid, tuple(tags), cid, ctx)
            for cid, text, path, ordinal, start, end, ftype, page, section, rid, tags, ctx in rows
        }
        return [found[c] for c in chunk_ids if c in found]

    def source_chunks(self, path: str) -> list[Chunk]:
        rows = self.conn.execute(f"SELECT chunk_id FROM {self.s}.chunks WHERE path = %s ORDER BY ordinal", (path,))
        return self.get_chunks([cid for (cid,) in rows])

    def stats(self) -> IndexStats:
        s = self.s
        docs = self.conn.execute(f"SELECT count(*) FROM {s}.sources").fetchone()[0]
        chunks = self.conn.execute(f"SELECT count(*) FROM {s}.chunks").fetchone()[0]
        tags = dict(self.conn.execute(f"SELECT t, count(*) FROM {s}.sources, unnest(tags) t GROUP BY t ORDER BY t"))
        groups = dict(self.conn.execute(f"SELECT g, count(*) FROM {s}.sources, unnest(groups) g GROUP BY g ORDER BY g"))
        types = dict(self.conn.execute(f"SELECT file_type, count(*) FROM {s}.sources GROUP BY 1 ORDER BY 1"))
        size = self.conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
            (s,),
        ).fetchone()[0]
        dim = self._meta("dim")
        return IndexStats(
            docs, chunks, tags, types, int(size), self._meta("embedder"), int(dim) if dim else None, groups
        )

    def record_sync(self, record: SyncRecord) -> None:
        self.conn.execute(
            f"INSERT INTO {self.s}.syncs (at, added, updated, removed, unchanged, failed, sources)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (record.at, record.added, record.updated, record.removed, record.unchanged, record.failed, record.sources),
        )

    def sync_history(self) -> list[SyncRecord]:
        sql = f"SELECT at, added, updated, removed, unchanged, failed, sources FROM {self.s}.syncs ORDER BY at, id"
        return [SyncRecord(*row) for row in self.conn.execute(sql)]

    def drop(self) -> None:
        """Delete this index's schema and everything in it."""
        self.conn.execute(f"DROP SCHEMA IF EXISTS {self.s} CASCADE")

    def close(self) -> None:
        self.conn.close()


def _array(value) -> np.ndarray:
    """pgvector hands back a Vector (newer) or an ndarray (older)."""
    return value.to_numpy() if hasattr(value, "to_numpy") else np.asarray(value)
