"""SQLiteIndex: the connection and its transactions, the generation counter and the deletion log, the embedder
binding, sources and chunks, stats and the sync history. Search is in search.py, the vector caches in
caches.py; the package docstring (``expertkit.index.sqlite``) explains the design."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

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
from expertkit.index.sqlite.caches import CacheMixin
from expertkit.index.sqlite.lock import WRITE_LOCKS
from expertkit.index.sqlite.schema import needs_setup, set_up
from expertkit.index.sqlite.search import SearchMixin
from expertkit.index.sqlite.vectors import AnnCache, DenseCache
from expertkit.private import create_private
from expertkit.schema import Chunk

# the deletion log covers this many generations; a cache older than that is rebuilt, not patched
_DELETE_LOG_GENERATIONS = 1000
_PRUNE_EVERY = 100  # generations between prunings of the deletion log


class SQLiteIndex(SearchMixin, CacheMixin):
    """The embedded Index. Safe for one writing process and many reading ones (WAL), and for threads
    sharing one instance (its transactions are serialised by an instance lock)."""

    def __init__(
        self,
        path: Path | str,
        cache_dir: Path | str | None = None,
        ann_threshold: int = 50_000,
        lock_timeout: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self.cache_dir = Path(cache_dir) if cache_dir else self.path.parent / "cache"
        self.ann_threshold = ann_threshold
        self.lock_timeout = lock_timeout
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock = threading.RLock()  # one transaction at a time on this connection
        self._release_write_lock: Callable[[], Any] | None = None
        self._lock_pid = 0
        self._write_gen: int | None = None  # the generation the open write transaction commits
        if str(path) != ":memory:":
            create_private(self.path)  # 0600, not the umask's 0644: the -wal and -shm files take its mode
        try:
            # readers and writers wait for a busy database (a checkpoint, another writer's commit) rather
            # than fail at once; the write lock keeps writers from queueing here for long
            self.db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=max(lock_timeout, 5.0)
            )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA synchronous=NORMAL")
            if needs_setup(self.db):
                with self._lock:
                    set_up(self.db)
        except sqlite3.DatabaseError as exc:
            if "locked" in str(exc):  # a busy database, not a broken one
                raise WorkspaceError(f"{self.path} is locked by another process ({exc}); try again later") from None
            raise WorkspaceError(
                f"{self.path}: not a usable index database ({exc}); move it aside and re-ingest"
            ) from None
        self.uid = self._meta("uid")
        self._dense: DenseCache | None = None
        self._ann: AnnCache | None = None
        self._allowed: dict[tuple, np.ndarray] = {}  # filter → allowed rowids, at one generation

    # -- transactions, the write lock and metadata -----------------------------------------------------

    def hold_write_lock(self) -> None:
        """Take the workspace write lock now rather than at the first write (an ingest can call this before
        it embeds anything, so that a second ingest fails at once, not after its embedding). Held until
        ``close``; raises WorkspaceError naming the holder after ``lock_timeout`` seconds."""
        with self._lock:
            if self._release_write_lock is None or self._lock_pid != os.getpid():  # a forked child takes its own
                key = WRITE_LOCKS.acquire(self.lock_path, self.lock_timeout, self.path)
                self._release_write_lock = weakref.finalize(self, WRITE_LOCKS.release, key)
                self._lock_pid = os.getpid()

    @contextmanager
    def _transaction(self, bump: bool = True) -> Iterator[None]:
        """One write transaction under the write lock; with ``bump``, a new generation (the caches move)."""
        with self._lock:
            self.hold_write_lock()
            self.db.execute("BEGIN IMMEDIATE")
            try:
                if bump:
                    self._write_gen = self.generation + 1
                yield
                if bump:
                    gen = self._write_gen
                    self.db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(gen),))
                    if gen % _PRUNE_EVERY == 0:
                        self._prune_delete_log(gen)
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:  # not when COMMIT itself failed and ended it
                    self.db.execute("ROLLBACK")
                raise
            finally:
                self._write_gen = None

    def _prune_delete_log(self, gen: int) -> None:
        oldest = gen - _DELETE_LOG_GENERATIONS
        if oldest > int(self._meta("deletes_from") or 0):
            self.db.execute("DELETE FROM chunk_deletes WHERE gen <= ?", (oldest,))
            self.db.execute("UPDATE meta SET value = ? WHERE key = 'deletes_from'", (str(oldest),))

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One read transaction: every query inside sees the same committed state (nested calls share it)."""
        with self._lock:
            if self.db.in_transaction:
                yield
                return
            self.db.execute("BEGIN")
            try:
                yield
            finally:
                self.db.execute("COMMIT")  # ends the snapshot; nothing was written

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def generation(self) -> int:
        return int(self._meta("generation") or 0)

    def bound_embedder(self) -> str | None:
        return self._meta("embedder")

    def bind_embedder(self, name: str, dim: int) -> None:
        with self._transaction(bump=False):  # check and write at once: two first ingests cannot both bind
            bound = self._meta("embedder")
            if bound is None:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('embedder', ?), ('dim', ?)", (name, str(dim)))
            elif bound != name or int(self._meta("dim") or 0) != dim:
                raise WorkspaceError(
                    f"this index was built with embedder {bound!r}; it cannot mix in vectors from {name!r}. "
                    "Set embed.model back, or ingest into a new workspace."
                )

    def bulk_load(self) -> AbstractContextManager[None]:
        """Nothing to defer here: every write keeps FTS5 current, and the vector caches catch up at
        ``prepare_search`` or the next query, however many sources were written."""
        return nullcontext()

    # -- sources -------------------------------------------------------------------------------------

    def _tags(self, source_id: int) -> tuple[str, ...]:
        sql = "SELECT tag FROM source_tags WHERE source_id = ? ORDER BY tag"
        return tuple(t for (t,) in self.db.execute(sql, (source_id,)))

    def _groups(self, source_id: int) -> tuple[str, ...]:
        sql = "SELECT grp FROM source_groups WHERE source_id = ? ORDER BY grp"
        return tuple(g for (g,) in self.db.execute(sql, (source_id,)))

    def _source_row(self, row: tuple) -> SourceRecord:
        sid, path, content_hash, file_type, size, mtime, n_chunks, title, warnings, synced_at, pinned, pipeline = row
        tags = self._tags(sid)
        return SourceRecord(
            path,
            content_hash,
            file_type,
            size,
            mtime,
            tags,
            n_chunks,
            title,
            tuple(json.loads(warnings)),
            synced_at,
            self._groups(sid),
            bool(pinned),
            pipeline,
        )

    def get_source(self, path: str) -> SourceRecord | None:
        with self._snapshot():
            row = self.db.execute(f"SELECT id, {SOURCE_COLUMNS} FROM sources WHERE path = ?", (path,)).fetchone()
            return self._source_row(row) if row else None

    def sources(self) -> list[SourceRecord]:
        with self._snapshot():
            rows = self.db.execute(f"SELECT id, {SOURCE_COLUMNS} FROM sources ORDER BY path").fetchall()
            return [self._source_row(r) for r in rows]

    def write_source(self, source: SourceRecord, chunks: list[Chunk], vectors: np.ndarray) -> None:
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._transaction():
            self._delete_source(source.path)
            cur = self.db.execute(
                f"INSERT INTO sources ({SOURCE_COLUMNS}) VALUES ({', '.join('?' * 11)})",
                source_values(source, len(chunks)),
            )
            sid = cur.lastrowid
            self.db.executemany("INSERT INTO source_tags VALUES (?, ?)", [(sid, t) for t in sorted(set(source.tags))])
            self.db.executemany(
                "INSERT INTO source_groups VALUES (?, ?)", [(sid, g) for g in sorted(set(source.groups))]
            )
            for chunk, vector in zip(chunks, vectors, strict=True):
                cur = self.db.execute(
                    'INSERT INTO chunks (chunk_id, source_id, ordinal, text, page, section, record_id, start, "end",'
                    " text_hash, vector, context) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        chunk.chunk_id,
                        sid,
                        chunk.ordinal,
                        chunk.text,
                        chunk.page,
                        json.dumps(list(chunk.section)),
                        chunk.record_id,
                        chunk.start,
                        chunk.end,
                        text_hash(chunk.embed_text()),
                        vector.tobytes(),
                        chunk.context,
                    ),
                )
                self.db.execute(
                    "INSERT INTO chunks_fts (rowid, body) VALUES (?, ?)",
                    (cur.lastrowid, keyword_text(chunk.embed_text())),
                )

    def _delete_source(self, path: str) -> int:
        row = self.db.execute("SELECT id FROM sources WHERE path = ?", (path,)).fetchone()
        if row is None:
            return 0
        # logged with the generation this transaction commits, so the caches can mask them (see the module doc)
        self.db.execute(
            "INSERT INTO chunk_deletes SELECT ?, id FROM chunks WHERE source_id = ?", (self._write_gen, *row)
        )
        self.db.execute("DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE source_id = ?)", row)
        n = self.db.execute("DELETE FROM chunks WHERE source_id = ?", row).rowcount
        self.db.execute("DELETE FROM sources WHERE id = ?", row)
        return n

    def update_stat(self, path: str, size: int, mtime: float, synced_at: float) -> None:
        with self._transaction(bump=False):  # no generation bump: nothing a search returns has changed
            self.db.execute(
                "UPDATE sources SET size = ?, mtime = ?, synced_at = ? WHERE path = ?", (size, mtime, synced_at, path)
            )

    def remove_source(self, path: str) -> int:
        with self._transaction():
            return self._delete_source(path)

    def cached_vectors(self, text_hashes: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(text_hashes))
        with self._snapshot():
            for i in range(0, len(unique), 500):
                part = unique[i : i + 500]
                marks = ",".join("?" * len(part))
                sql = f"SELECT text_hash, vector FROM chunks WHERE text_hash IN ({marks})"
                for h, blob in self.db.execute(sql, part):
                    out[h] = np.frombuffer(blob, dtype=np.float32)
        return out

    # -- chunks, stats and the sync history --------------------------------------------------------

    def get_chunks(self, chunk_ids: list[str]) -> list[Chunk]:
        if not chunk_ids:
            return []
        found: dict[str, Chunk] = {}
        tags_by_source: dict[int, tuple[str, ...]] = {}
        with self._snapshot():  # a chunk and its source's tags from the same state
            for i in range(0, len(chunk_ids), 500):
                part = chunk_ids[i : i + 500]
                marks = ",".join("?" * len(part))
                sql = (
                    'SELECT c.chunk_id, c.text, s.path, c.ordinal, c.start, c."end", s.file_type, c.page, c.section,'
                    f" c.record_id, s.id, c.context FROM chunks c JOIN sources s ON s.id = c.source_id"
                    f" WHERE c.chunk_id IN ({marks})"
                )
                for cid, text, path, ordinal, start, end, ftype, page, section, rid, sid, ctx in self.db.execute(
                    sql, part
                ):
                    if sid not in tags_by_source:  # once per source, not once per chunk
                        tags_by_source[sid] = self._tags(sid)
                    tags = tags_by_source[sid]
                    found[cid] = Chunk(
                        text, path, ordinal, start, end, ftype, page, tuple(json.loads(section)), rid, tags, cid, ctx
                    )
        return [found[c] for c in chunk_ids if c in found]

    def source_chunks(self, path: str) -> list[Chunk]:
        sql = "SELECT chunk_id FROM chunks WHERE source_id = (SELECT id FROM sources WHERE path = ?) ORDER BY ordinal"
        with self._snapshot():
            return self.get_chunks([cid for (cid,) in self.db.execute(sql, (path,))])

    def stats(self) -> IndexStats:
        with self._snapshot():
            docs = self.db.execute("SELECT COUNT(*) FROM sources").fetchone()[0]
            chunks = self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
            tags = dict(self.db.execute("SELECT tag, COUNT(*) FROM source_tags GROUP BY tag ORDER BY tag"))
            types = dict(
                self.db.execute("SELECT file_type, COUNT(*) FROM sources GROUP BY file_type ORDER BY file_type")
            )
            groups = dict(self.db.execute("SELECT grp, COUNT(*) FROM source_groups GROUP BY grp ORDER BY grp"))
            dim = self._meta("dim")
            embedder = self._meta("embedder")
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return IndexStats(docs, chunks, tags, types, size, embedder, int(dim) if dim else None, groups)

    def record_sync(self, record: SyncRecord) -> None:
        # no generation bump: the history does not change what a search returns
        with self._transaction(bump=False):
            self.db.execute(
                "INSERT INTO syncs (at, added, updated, removed, unchanged, failed, sources)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.at,
                    record.added,
                    record.updated,
                    record.removed,
                    record.unchanged,
                    record.failed,
                    record.sources,
                ),
            )

    def sync_history(self) -> list[SyncRecord]:
        sql = "SELECT at, added, updated, removed, unchanged, failed, sources FROM syncs ORDER BY at, id"
        with self._snapshot():
            return [SyncRecord(*row) for row in self.db.execute(sql)]

    def close(self) -> None:
        with self._lock:
            self.db.close()
            if self._release_write_lock is not None:
                self._release_write_lock()  # after the connection: its last commit is on disk first
                self._release_write_lock = None
