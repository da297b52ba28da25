"""The embedded index: one SQLite database holds sources, chunks, FTS5 text and vectors.

SQLite is ACID, so a process killed mid-ingest leaves each source fully old or fully new. BM25 comes
from FTS5. Dense search is an exact inner product over a float32 matrix cached in memory and on disk;
above ``ann_threshold`` chunks an HNSW graph (usearch) serves queries, kept up to date by every ingest
(``prepare_search``: vectors added and removed, not rebuilt). A filtered query goes through the graph when
the filter allows at least ``ANN_FILTER_SHARE`` of the chunks, asking it for enough neighbours that k
allowed ones are expected; a more selective filter, or a graph answer short of k, is scored exactly over
the allowed rows. The caches are never the source of truth.

Concurrency. One process writes, any number read (WAL):

- Writers hold the workspace write lock, an ``flock`` on ``index.db.lock`` taken at the first write (or
  by ``hold_write_lock``) and held until ``close``; the lock file names the holder's pid and command line.
  A second writer waits up to ``lock_timeout`` seconds, then gets a one-line WorkspaceError naming it.
  Every write, ``bind_embedder``'s check-then-write included, is one ``BEGIN IMMEDIATE`` transaction.
- A dense search runs in one read transaction: the generation, the cached matrix's catch-up, the allowed
  set of a filtered search and the final chunk-id lookup all see the same committed state, so a result
  never points at a row that a concurrent write removed or that the matrix does not hold. (Scoring still
  checks every allowed row against the matrix and reads any missing one directly.)
- The caches follow the generation counter incrementally. ``chunks.id`` is AUTOINCREMENT, so rows newer
  than a cache are exactly those with a larger id; deletions are logged in ``chunk_deletes`` (generation,
  id) by the transaction that makes them. A cache at generation g catches up by appending the newer rows
  and masking the ids deleted after g; the HNSW graph adds and removes the same keys. The log keeps the
  last ``_DELETE_LOG_GENERATIONS`` generations (``meta.deletes_from`` says from where); a cache older than
  that is rebuilt from the database.
- On disk the caches are named by the database's uid and their generation (a re-created database never
  reads a stale cache). They are written to a temporary file and renamed into place, so a reader never sees
  a partial file; a file that does not load or does not match is ignored, and the cache rebuilt. A process
  starting up loads the newest file not newer than the database and applies the delta since.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from expertkit.errors import WorkspaceError
from expertkit.index.base import (
    SOURCE_COLUMNS,
    Filters,
    IndexStats,
    SourceRecord,
    SyncRecord,
    keyword_terms,
    source_values,
)
from expertkit.index.keywords import KEYWORDS_VERSION, has_greek, keyword_text
from expertkit.private import FILE_MODE, create_private, private_dir, private_file
from expertkit.schema import Chunk

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: SQLite's own locking still orders the writers
    fcntl = None

SCHEMA_VERSION = "1"

# the deletion log covers this many generations; a cache older than that is rebuilt, not patched
_DELETE_LOG_GENERATIONS = 1000
_PRUNE_EVERY = 100  # generations between prunings of the deletion log

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    content_hash TEXT NOT NULL,
    file_type TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    mtime REAL NOT NULL DEFAULT 0,
    n_chunks INTEGER NOT NULL DEFAULT 0,
    title TEXT,
    warnings TEXT NOT NULL DEFAULT '[]',
    synced_at REAL NOT NULL,
    groups_pinned INTEGER NOT NULL DEFAULT 0,
    pipeline TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS source_tags (
    source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (source_id, tag)
);
CREATE INDEX IF NOT EXISTS source_tags_tag ON source_tags(tag);
CREATE TABLE IF NOT EXISTS source_groups (
    source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    grp TEXT NOT NULL,
    PRIMARY KEY (source_id, grp)
);
CREATE INDEX IF NOT EXISTS source_groups_grp ON source_groups(grp);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chunk_id TEXT NOT NULL UNIQUE,
    source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    page INTEGER,
    section TEXT NOT NULL DEFAULT '[]',
    record_id TEXT,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    text_hash TEXT NOT NULL,
    vector BLOB NOT NULL,
    context TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source_id);
CREATE INDEX IF NOT EXISTS chunks_text_hash ON chunks(text_hash);
CREATE TABLE IF NOT EXISTS syncs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    added INTEGER NOT NULL, updated INTEGER NOT NULL, removed INTEGER NOT NULL,
    unchanged INTEGER NOT NULL, failed INTEGER NOT NULL, sources INTEGER NOT NULL
);
-- chunks deleted by each generation's transaction, so that caches can catch up without a full re-read
CREATE TABLE IF NOT EXISTS chunk_deletes (
    gen INTEGER NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (gen, id)
) WITHOUT ROWID;
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(body, tokenize='porter unicode61 remove_diacritics 2');
"""

# columns added since the first schema, as (table, column, definition): older indexes get them on open.
# groups_pinned: pins default to off; pipeline '': every source is re-chunked on its next sync; context '':
# chunks written before document headers have none until then
# a filtered dense search goes through the HNSW graph when at least this share of the chunks is allowed;
# a more selective filter scores its allowed rows exactly (fewer rows than the graph would be asked for)
ANN_FILTER_SHARE = 0.2
# candidates the HNSW search keeps per query (usearch's default is 64). On 1M clustered chunks recall@10
# against exact was 0.78 at 64, 0.96 at 512 and 0.99 at 1024, for 3.6 ms a query (benchmarks/search_latency.py)
ANN_EXPANSION = 1024

_ADDED_COLUMNS = (
    ("sources", "groups_pinned", "INTEGER NOT NULL DEFAULT 0"),
    ("sources", "pipeline", "TEXT NOT NULL DEFAULT ''"),
    ("chunks", "context", "TEXT NOT NULL DEFAULT ''"),
)


class SQLiteIndex:
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
            if self._needs_setup():
                self._setup()
        except sqlite3.DatabaseError as exc:
            if "locked" in str(exc):  # a busy database, not a broken one
                raise WorkspaceError(f"{self.path} is locked by another process ({exc}); try again later") from None
            raise WorkspaceError(
                f"{self.path}: not a usable index database ({exc}); move it aside and re-ingest"
            ) from None
        self.uid = self._meta("uid")
        self._dense: _DenseCache | None = None
        self._ann: _AnnCache | None = None
        self._allowed: dict[tuple, np.ndarray] = {}  # filter → allowed rowids, at one generation

    def _needs_setup(self) -> bool:
        # only a new or older database is written to here: a reader opening a busy index must not queue
        # behind the writer for a write it does not need
        try:
            keys = {
                k for (k,) in self.db.execute("SELECT key FROM meta WHERE key IN ('uid', 'deletes_from', 'keywords')")
            }
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            return True
        return keys != {"uid", "deletes_from", "keywords"} or bool(self._upgrades())

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}

    def _upgrades(self) -> str:
        """The ALTERs that bring an index written by an older expertkit up to this schema (none for a new one)."""
        out = []
        for table, column, ddl in _ADDED_COLUMNS:
            have = self._columns(table)
            if have and column not in have:
                out.append(f"ALTER TABLE {table} ADD COLUMN {column} {ddl};")
        return "".join(out)

    def _fold_keywords(self) -> None:
        """Inside _setup's transaction: an index written before Greek words were folded for keyword search
        (index/keywords.py) gets its Greek rows re-folded, once; English rows are what they were."""
        if self.db.execute("SELECT 1 FROM meta WHERE key = 'keywords'").fetchone():
            return
        for rowid, body in self.db.execute("SELECT rowid, body FROM chunks_fts").fetchall():
            if has_greek(body):
                self.db.execute("DELETE FROM chunks_fts WHERE rowid = ?", (rowid,))
                self.db.execute("INSERT INTO chunks_fts (rowid, body) VALUES (?, ?)", (rowid, keyword_text(body)))
        self.db.execute("INSERT INTO meta VALUES ('keywords', ?)", (KEYWORDS_VERSION,))

    def _setup(self) -> None:
        uid = uuid.uuid4().hex[:12]  # caches are named by it, so a re-created database never reads a stale cache
        upgrade = self._upgrades()
        with self._lock:
            try:
                self.db.executescript(
                    "BEGIN IMMEDIATE;"
                    + upgrade
                    + _SCHEMA
                    + f"INSERT OR IGNORE INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');"
                    "INSERT OR IGNORE INTO meta VALUES ('generation', '0');"
                    f"INSERT OR IGNORE INTO meta VALUES ('uid', '{uid}');"
                    # deletions before this generation were not logged: older caches are rebuilt, not patched
                    "INSERT OR IGNORE INTO meta SELECT 'deletes_from', value FROM meta WHERE key = 'generation';"
                )
                self._fold_keywords()
                self.db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                if "duplicate column" not in str(exc):  # else another process upgraded it first
                    raise
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise

    # -- transactions, the write lock and metadata -----------------------------------------------------

    def hold_write_lock(self) -> None:
        """Take the workspace write lock now rather than at the first write (an ingest can call this before
        it embeds anything, so that a second ingest fails at once, not after its embedding). Held until
        ``close``; raises WorkspaceError naming the holder after ``lock_timeout`` seconds."""
        with self._lock:
            if self._release_write_lock is None or self._lock_pid != os.getpid():  # a forked child takes its own
                key = _WRITE_LOCKS.acquire(self.lock_path, self.lock_timeout, self.path)
                self._release_write_lock = weakref.finalize(self, _WRITE_LOCKS.release, key)
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

    # -- search --------------------------------------------------------------------------------------

    def _filter_sql(self, filters: Filters | None) -> tuple[str, list]:
        if not filters:
            return "", []
        clauses, params = [], []
        if filters.tags:
            clauses.append(
                f"s.id IN (SELECT source_id FROM source_tags WHERE tag IN ({','.join('?' * len(filters.tags))}))"
            )
            params += list(filters.tags)
        if filters.path_glob:
            clauses.append("s.path GLOB ?")
            params.append(_glob(filters.path_glob))
        if filters.file_types:
            clauses.append(f"s.file_type IN ({','.join('?' * len(filters.file_types))})")
            params += [t.lower().lstrip(".") for t in filters.file_types]
        if filters.groups is not None:  # the caller's access groups; none at all sees nothing
            marks = ",".join("?" * len(filters.groups))
            clauses.append(f"s.id IN (SELECT source_id FROM source_groups WHERE grp IN ({marks}))" if marks else "0")
            params += list(filters.groups)
        return " AND " + " AND ".join(clauses), params

    def search_bm25(self, query: str, k: int, filters: Filters | None = None) -> list[tuple[str, float]]:
        terms = keyword_terms(query)
        if not terms:
            return []
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        where, params = self._filter_sql(filters)
        if where:
            sql = (
                "SELECT c.chunk_id, -bm25(chunks_fts) AS score FROM chunks_fts"
                " JOIN chunks c ON c.id = chunks_fts.rowid JOIN sources s ON s.id = c.source_id"
                f" WHERE chunks_fts MATCH ?{where} ORDER BY bm25(chunks_fts) LIMIT ?"
            )
        else:
            sql = (
                "SELECT c.chunk_id, f.score FROM (SELECT rowid, -bm25(chunks_fts) AS score FROM chunks_fts"
                " WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts) LIMIT ?) f JOIN chunks c ON c.id = f.rowid"
                " ORDER BY f.score DESC"
            )
        with self._snapshot():
            return [(cid, float(s)) for cid, s in self.db.execute(sql, [match, *params, k])]

    def search_dense(self, vector: np.ndarray, k: int, filters: Filters | None = None) -> list[tuple[str, float]]:
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        with self._snapshot():  # the matrix, the allowed set and the chunk ids all come from one committed state
            dense = self._refresh_dense()
            if dense.live == 0 or dense.dim == 0:
                return []
            use_ann = dense.live > self.ann_threshold
            if filters:
                allowed = self._allowed_ids(filters, dense.gen)
                pairs = None
                if use_ann and len(allowed) >= ANN_FILTER_SHARE * dense.live:
                    pairs = self._ann_filtered(dense, allowed, query, k)
                if pairs is None:  # a selective filter, or the graph came back short of k: exact
                    pairs = self._search_subset(dense, allowed, query, k)
            elif use_ann:
                pairs = self._ann_search(dense, query, k)
            else:
                pairs = dense.search(query, k)
            return self._chunk_ids(pairs)

    def prepare_search(self) -> None:
        """Bring the dense cache and, above ``ann_threshold`` chunks, the HNSW graph up to the index's
        current state and save them, so that the first query after an ingest does not pay for it. An ingest
        calls this once at its end: the graph gains the new vectors and loses the removed ones."""
        with self._snapshot():
            dense = self._refresh_dense()
            if dense.unsaved:
                self._save_dense(dense)
            if dense.live > self.ann_threshold:
                ann = self._refresh_ann(dense)
                if ann.unsaved:
                    self._save_ann(ann)

    def _allowed_ids(self, filters: Filters, gen: int | None = None) -> np.ndarray:
        """The rowids of the chunks a filtered search may return, sorted; the last few filters' sets are
        kept for their generation (a server asks with the same few groups again and again)."""
        groups = None if filters.groups is None else tuple(filters.groups)
        key = (tuple(filters.tags), filters.path_glob, tuple(filters.file_types), groups, gen)
        if gen is not None and key in self._allowed:
            return self._allowed[key]
        where, params = self._filter_sql(filters)
        sql = f"SELECT c.id FROM chunks c JOIN sources s ON s.id = c.source_id WHERE 1{where} ORDER BY c.id"
        ids = np.fromiter((r[0] for r in self.db.execute(sql, params)), dtype=np.int64)
        if gen is not None:
            self._allowed = {k: v for k, v in self._allowed.items() if k[-1] == gen and k != key}
            while len(self._allowed) >= 8:
                self._allowed.pop(next(iter(self._allowed)))
            self._allowed[key] = ids
        return ids

    def _ann_filtered(
        self, dense: _DenseCache, allowed: np.ndarray, query: np.ndarray, k: int
    ) -> list[tuple[int, float]] | None:
        """The HNSW graph's nearest neighbours that the filter allows: it is asked for enough more than k that
        k allowed ones are expected among them (twice k over the allowed share); None when fewer come back."""
        share = len(allowed) / max(dense.live, 1)
        want = min(dense.live, int(2 * k / share) + k)
        pairs = self._ann_search(dense, query, want)
        keys = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
        at = np.searchsorted(allowed, keys)
        ok = (at < len(allowed)) & (allowed[np.minimum(at, len(allowed) - 1)] == keys)
        kept = [p for p, good in zip(pairs, ok, strict=True) if good]
        return kept[:k] if len(kept) >= min(k, len(allowed)) else None

    def _search_subset(
        self, dense: _DenseCache, allowed: np.ndarray, query: np.ndarray, k: int
    ) -> list[tuple[int, float]]:
        """Exact scores of the allowed rows. Each is looked up in the matrix and checked (a position
        ``searchsorted`` gives is only a guess); a row the matrix lacks is read from the database."""
        found, positions = dense.positions(allowed)
        ids = allowed[found]
        scores = dense.rows(positions[found]) @ query
        missing = allowed[~found]
        if len(missing):
            extra_ids, extra = self._vectors_of(missing)
            ids, scores = np.concatenate([ids, extra_ids]), np.concatenate([scores, extra @ query])
        return [(int(ids[i]), float(scores[i])) for i in _top_k(scores, k)]

    def _vectors_of(self, rowids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dim = int(self._meta("dim") or 0)
        ids, blobs = [], []
        for i in range(0, len(rowids), 500):
            part = [int(r) for r in rowids[i : i + 500]]
            marks = ",".join("?" * len(part))
            for rid, blob in self.db.execute(f"SELECT id, vector FROM chunks WHERE id IN ({marks})", part):
                ids.append(rid)
                blobs.append(blob)
        return np.array(ids, dtype=np.int64), np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), dim)

    def dense_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """(rowids, unit vectors) for every chunk, sorted by rowid, from the caches or the database."""
        with self._snapshot():
            return self._refresh_dense().live_rows()

    # -- the dense cache -----------------------------------------------------------------------------

    def _refresh_dense(self) -> _DenseCache:
        """The dense cache at the current generation: the one in memory or the newest on disk, caught up by
        the rows added and deleted since; failing both, read whole. Call inside ``_snapshot``."""
        gen = self.generation
        dense = self._dense
        if dense is not None and dense.gen == gen:
            return dense
        dim = int(self._meta("dim") or 0)
        logged_from = int(self._meta("deletes_from") or 0)
        if dense is None or not logged_from <= dense.gen <= gen or dense.dim != dim:
            dense = self._load_dense(gen, logged_from, dim)
        if dense is None:
            dense = _DenseCache(gen, *self._read_rows(0, dim))
            self._save_dense(dense)
        else:
            dense.append(*self._read_rows(dense.high, dim))
            dense.mask(self._deleted_since(dense.gen))
            dense.gen = gen
            if dense.unsaved > dense.live // 5:  # the disk copy is far enough behind to be worth rewriting
                self._save_dense(dense)
        self._dense = dense
        return dense

    def _read_rows(self, after: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Every chunk with a rowid above ``after`` (0: all of them): rowids and vectors, in rowid order."""
        rows = self.db.execute("SELECT id, vector FROM chunks WHERE id > ? ORDER BY id", (after,)).fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        return ids, mat

    def _deleted_since(self, gen: int) -> np.ndarray:
        rows = self.db.execute("SELECT id FROM chunk_deletes WHERE gen > ?", (gen,))
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def _dense_files(self, gen: int) -> tuple[Path, Path]:
        stem = f"dense-{self.uid}-{gen}"
        return self.cache_dir / f"{stem}.ids.npy", self.cache_dir / f"{stem}.vec.npy"

    def _load_dense(self, gen: int, logged_from: int, dim: int) -> _DenseCache | None:
        """The newest dense cache on disk that the deletion log can bring up to ``gen``, or None."""
        for disk_gen, _, path in _cache_files(self.cache_dir, "dense", self.uid):
            if not path.name.endswith(".ids.npy") or not logged_from <= disk_gen <= gen:
                continue
            ids_file, mat_file = self._dense_files(disk_gen)
            try:
                ids, mat = np.load(ids_file), np.load(mat_file, mmap_mode="r")
            except (OSError, ValueError, EOFError):
                continue  # gone, or not a whole .npy file: try an older one, else rebuild
            if (
                ids.dtype == np.int64
                and ids.ndim == 1
                and mat.dtype == np.float32
                and mat.shape == (len(ids), dim)
                and bool(np.all(ids[1:] > ids[:-1]))
            ):
                return _DenseCache(disk_gen, ids, mat)
        return None

    def _save_dense(self, dense: _DenseCache) -> None:
        dense.compact()  # the file holds one matrix of the live rows
        ids, mat = dense.live_rows()
        ids_file, mat_file = self._dense_files(dense.gen)
        writers = {mat_file: lambda tmp: _save_npy(tmp, mat), ids_file: lambda tmp: _save_npy(tmp, ids)}
        if _replace_files(writers):
            dense.unsaved = 0
            _drop_older(self.cache_dir, "dense", self.uid, dense.gen)

    # -- the HNSW graph ------------------------------------------------------------------------------

    def _ann_search(self, dense: _DenseCache, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        ann = self._refresh_ann(dense)
        matches = ann.index.search(query, k)
        return [(int(key), 1.0 - float(dist)) for key, dist in zip(matches.keys, matches.distances, strict=True)]

    def _refresh_ann(self, dense: _DenseCache) -> _AnnCache:
        """The HNSW graph at ``dense``'s generation: kept in memory or loaded from disk, and caught up by
        adding the rows above its largest key and removing the logged deletions; built only when neither
        exists, the log no longer reaches back to it, or it has had more keys removed than it holds."""
        ann = self._ann
        if ann is not None and ann.gen == dense.gen:
            return ann
        logged_from = int(self._meta("deletes_from") or 0)
        if ann is None or not logged_from <= ann.gen <= dense.gen:
            ann = self._load_ann(dense, logged_from)
        if ann is not None:
            removed = ann.index.remove(self._deleted_since(ann.gen)) if ann.gen < dense.gen else 0
            ids, mat = dense.live_rows(after=ann.high)
            if len(ids):
                ann.index.add(ids, np.ascontiguousarray(mat), threads=os.cpu_count() or 1)
            ann.gen, ann.high = dense.gen, max(ann.high, dense.high)
            ann.removed += int(removed)
            ann.unsaved += int(removed) + len(ids)
            if ann.removed > len(ann.index):
                ann = None  # a graph that has lost more nodes than it holds is rebuilt
            elif ann.unsaved > len(ann.index) // 5:
                self._save_ann(ann)
        if ann is None:
            ann = self._build_ann(dense)
            self._save_ann(ann)
        self._ann = ann
        return ann

    def _new_ann(self, dim: int):
        from usearch.index import Index as USearchIndex

        return USearchIndex(ndim=dim, metric="ip", dtype="f32", connectivity=16, expansion_search=ANN_EXPANSION)

    def _build_ann(self, dense: _DenseCache) -> _AnnCache:
        index = self._new_ann(dense.dim)
        ids, mat = dense.live_rows()
        if len(ids):
            index.add(ids, np.ascontiguousarray(mat), threads=os.cpu_count() or 1)
        return _AnnCache(dense.gen, dense.high, index)

    def _ann_file(self, gen: int, high: int) -> Path:
        return self.cache_dir / f"ann-{self.uid}-{gen}-{high}.usearch"

    def _load_ann(self, dense: _DenseCache, logged_from: int) -> _AnnCache | None:
        for disk_gen, high, path in _cache_files(self.cache_dir, "ann", self.uid):
            if not logged_from <= disk_gen <= dense.gen:
                continue
            index = self._new_ann(dense.dim)
            try:
                index.load(str(path))
            except Exception:  # noqa: BLE001 - gone, truncated or not a usearch file: try older, else rebuild
                continue
            if index.ndim == dense.dim:
                index.expansion_search = ANN_EXPANSION  # a search setting: not trusted to the file
                return _AnnCache(disk_gen, high, index)
        return None

    def _save_ann(self, ann: _AnnCache) -> None:
        if _replace_files({self._ann_file(ann.gen, ann.high): lambda tmp: ann.index.save(str(tmp))}):
            ann.unsaved = 0
            _drop_older(self.cache_dir, "ann", self.uid, ann.gen)

    def _chunk_ids(self, pairs: list[tuple[int, float]]) -> list[tuple[str, float]]:
        if not pairs:
            return []
        marks = ",".join("?" * len(pairs))
        names = dict(self.db.execute(f"SELECT id, chunk_id FROM chunks WHERE id IN ({marks})", [p[0] for p in pairs]))
        return [(names[i], s) for i, s in pairs if i in names]

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


class _DenseCache:
    """Every live chunk's vector at generation ``gen``, as float32 rows sorted by rowid.

    Later generations are applied as deltas. Newer rows (rowids only grow) go to a small tail after the
    base matrix, so the base, possibly a read-only memory map of the file on disk, is not copied for them;
    the tail is merged into the base once it is a quarter of it. Deleted rows are masked, and dropped when
    they are a quarter of all rows. Catching up thus costs the changed rows, not a copy of the matrix."""

    def __init__(self, gen: int, ids: np.ndarray, mat: np.ndarray) -> None:
        self.gen = gen
        self._base_ids, self._base_mat = ids, mat
        self._tail_ids = np.empty(0, dtype=np.int64)
        self._tail_mat = np.empty((0, mat.shape[1]), dtype=np.float32)
        self.nt = 0  # rows in use in the tail buffers
        self.ids = ids  # every rowid, base then tail
        self._dead: np.ndarray | None = None  # per row: deleted since it was read; None: all live
        self.n_dead = 0
        self.unsaved = 0  # rows added or masked since the copy on disk

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return self._base_mat.shape[1]

    @property
    def live(self) -> int:
        return self.n - self.n_dead

    @property
    def high(self) -> int:
        """The largest rowid read: every row added later has a larger one."""
        return int(self.ids[-1]) if self.n else 0

    def append(self, ids: np.ndarray, mat: np.ndarray) -> None:
        k = len(ids)
        if not k:
            return
        if self.nt + k > len(self._tail_ids):
            capacity = 2 * (self.nt + k) + 64
            self._tail_ids = _grown(self._tail_ids[: self.nt], capacity)
            self._tail_mat = _grown(self._tail_mat[: self.nt], capacity)
        self._tail_ids[self.nt : self.nt + k] = ids
        self._tail_mat[self.nt : self.nt + k] = mat
        self.nt += k
        if self._dead is not None:
            self._dead = np.concatenate([self._dead, np.zeros(k, dtype=bool)])
        self.unsaved += k
        self.ids = np.concatenate([self._base_ids, self._tail_ids[: self.nt]])
        if self.nt > len(self._base_ids) // 4:
            self.compact()

    def mask(self, deleted: np.ndarray) -> None:
        found, positions = self.positions(deleted)
        positions = np.unique(positions[found])  # rows deleted after this cache was read (others: never in it)
        if not len(positions):
            return
        if self._dead is None:
            self._dead = np.zeros(self.n, dtype=bool)
        self._dead[positions] = True
        self.n_dead += len(positions)
        self.unsaved += len(positions)
        if self.n_dead > self.n // 4:
            self.compact()

    def compact(self) -> None:
        """Drop the masked rows and merge the tail into the base: one matrix of live rows."""
        if self._dead is not None:
            self._merge(np.flatnonzero(~self._dead))
        elif self.nt:
            self._merge(np.arange(self.n))

    def _merge(self, keep: np.ndarray) -> None:
        self._base_ids, self._base_mat = self.ids[keep], self.rows(keep)
        self._tail_ids, self._tail_mat = self._tail_ids[:0], self._tail_mat[:0]
        self.nt, self.ids, self._dead, self.n_dead = 0, self._base_ids, None, 0

    def positions(self, rowids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each rowid's row, and whether it really is there and live (``searchsorted`` alone only guesses)."""
        if self.n == 0:
            return np.zeros(len(rowids), dtype=bool), np.zeros(len(rowids), dtype=np.int64)
        positions = np.minimum(np.searchsorted(self.ids, rowids), self.n - 1)
        found = self.ids[positions] == rowids
        if self._dead is not None:
            found &= ~self._dead[positions]
        return found, positions

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """The vectors at these row positions (a copy)."""
        nb = len(self._base_ids)
        if not self.nt:
            return self._base_mat[positions]
        out = np.empty((len(positions), self.dim), dtype=np.float32)
        in_base = positions < nb
        out[in_base] = self._base_mat[positions[in_base]]
        out[~in_base] = self._tail_mat[positions[~in_base] - nb]
        return out

    def live_rows(self, after: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(rowids, vectors) of the live rows, those with a rowid above ``after`` only if given."""
        start = int(np.searchsorted(self.ids, after, side="right")) if after else 0
        if self._dead is None and not self.nt:
            return self.ids[start:], self._base_mat[start:]  # views, no copy
        positions = np.arange(start, self.n)
        if self._dead is not None:
            positions = positions[~self._dead[start:]]
        return self.ids[positions], self.rows(positions)

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        scores = self._base_mat @ query
        if self.nt:
            scores = np.concatenate([scores, self._tail_mat[: self.nt] @ query])
        if self.n_dead:
            scores[self._dead] = -np.inf
        return [(int(self.ids[i]), float(scores[i])) for i in _top_k(scores, min(k, self.live))]


@dataclass
class _AnnCache:
    """The HNSW graph at generation ``gen`` (usearch), keyed by chunk rowid."""

    gen: int
    high: int  # the largest rowid it has seen: rows added later have larger ones
    index: Any
    removed: int = 0  # keys removed since it was built
    unsaved: int = 0  # keys added or removed since the copy on disk


def _grown(array: np.ndarray, capacity: int) -> np.ndarray:
    out = np.empty((capacity, *array.shape[1:]), dtype=array.dtype)
    out[: len(array)] = array
    return out


# -- cache files ---------------------------------------------------------------------------------------

_CACHE_FILE = re.compile(r"(dense|ann)-([0-9a-f]+)-(\d+)(?:-(\d+))?\.(?:ids\.npy|vec\.npy|usearch)")


def _cache_files(cache_dir: Path, kind: str, uid: str | None = None) -> list[tuple[int, int, Path]]:
    """(generation, high, path) of ``kind``'s cache files, newest first; of one database only with ``uid``.
    ``high`` is 0 where the name holds none."""
    out = []
    try:
        names = list(cache_dir.iterdir())
    except OSError:
        return []
    for path in names:
        match = _CACHE_FILE.fullmatch(path.name)
        if match and match[1] == kind and (uid is None or match[2] == uid):
            out.append((int(match[3]), int(match[4] or 0), path))
    return sorted(out, key=lambda t: t[0], reverse=True)


def _replace_files(writers: dict[Path, Callable[[Path], object]]) -> bool:
    """Write each file under a temporary name in its folder, then rename it into place: a reader sees the
    whole old file or the whole new one, never part of one. False if it could not be written."""
    try:
        for final, write in writers.items():
            private_dir(final.parent)
            tmp = final.with_name(f".{final.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
            try:
                write(tmp)
                private_file(tmp)  # the vectors are the documents' text, nearly: the owner's only
                os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
    except (OSError, RuntimeError):  # usearch reports a failed write as RuntimeError
        return False  # a cache that cannot be written is only slower
    return True


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # np.save(path) would add '.npy' to the temporary name
        np.save(f, array)


def _drop_older(cache_dir: Path, kind: str, uid: str | None, gen: int) -> None:
    """Delete ``kind``'s files older than ``gen`` or of another database, and temporary files left over by a
    process that died while writing (older than an hour). Newer files, another process's, are kept."""
    for file_gen, _, path in _cache_files(cache_dir, kind):
        if file_gen < gen or not path.name.startswith(f"{kind}-{uid}-"):
            path.unlink(missing_ok=True)
    for tmp in cache_dir.glob(f".{kind}-*.tmp"):
        try:
            if time.time() - tmp.stat().st_mtime > 3600:
                tmp.unlink(missing_ok=True)
        except OSError:
            pass


# -- the workspace write lock ----------------------------------------------------------------------------


class _WriteLocks:
    """Exclusive ``flock``s on ``<database>.lock`` files, one per file per process: every SQLiteIndex of
    this process on one database shares it (SQLite orders their transactions), and another process waits
    for it. The holder writes its pid and command line into the file, so a waiter can name it."""

    def __init__(self) -> None:
        self._after_fork()

    def _after_fork(self) -> None:
        # a forked child shares its parent's open lock but is not the writer: it takes its own when it writes
        self._mutex = threading.Lock()
        self._gates: dict[str, threading.Lock] = {}
        self._held: dict[str, list[int]] = {}  # lock file → [descriptor, holders in this process]

    def acquire(self, lock_path: Path, timeout: float, index_path: Path) -> str:
        key = os.path.realpath(lock_path)
        with self._mutex:
            gate = self._gates.setdefault(key, threading.Lock())
        with gate:  # one thread of this process waits for the file; the others then share what it got
            with self._mutex:
                if key in self._held:
                    self._held[key][1] += 1
                    return key
            fd = self._lock_file(key, timeout, index_path) if fcntl is not None else -1
            with self._mutex:
                self._held[key] = [fd, 1]
        return key

    def _lock_file(self, key: str, timeout: float, index_path: Path) -> int:
        try:
            fd = os.open(key, os.O_RDWR | os.O_CREAT, FILE_MODE)  # not inherited by child processes
        except OSError as exc:
            raise WorkspaceError(f"cannot open the index's lock file {key}: {exc.strerror or exc}") from None
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
                if time.monotonic() >= deadline:
                    raise WorkspaceError(
                        f"another expertkit process ({_lock_holder(fd)}) is writing to the index {index_path};"
                        f" wait for it to finish or stop it (waited {timeout:g} s, index.lock_timeout_s)"
                    )
                time.sleep(min(0.05, max(deadline - time.monotonic(), 0.001)))
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n{_command_line()}\n".encode(), 0)
            return fd
        except BaseException:
            os.close(fd)
            raise

    def release(self, key: str) -> None:
        with self._mutex:
            held = self._held.get(key)
            if held is None:
                return
            held[1] -= 1
            if held[1] > 0:
                return
            del self._held[key]
        fd = held[0]
        if fd >= 0:
            try:
                os.ftruncate(fd, 0)  # no stale holder named once it is free
                fcntl.flock(fd, fcntl.LOCK_UN)  # explicit: a forked child's copy of the descriptor must not keep it
            finally:
                os.close(fd)


_WRITE_LOCKS = _WriteLocks()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_WRITE_LOCKS._after_fork)


def _lock_holder(fd: int) -> str:
    try:
        pid, _, command = os.pread(fd, 4096, 0).decode("utf-8", "replace").partition("\n")
    except OSError:
        return "pid unknown"
    pid, command = pid.strip(), command.strip()
    if not pid.isdigit():
        return "pid unknown"
    return f"pid {pid}: {command}" if command else f"pid {pid}"


def _command_line() -> str:
    argv = list(sys.argv) or ["python"]
    if argv[0] == "-c":
        argv[0] = "python -c"
    elif argv[0].endswith("__main__.py"):  # python -m package
        argv[0] = "python -m " + Path(argv[0]).parent.name
    else:
        argv[0] = Path(argv[0]).name or "python"
    return " ".join(argv).replace("\n", " ")[:200]


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    if len(scores) <= k:
        return np.argsort(-scores)
    part = np.argpartition(-scores, k)[:k]
    return part[np.argsort(-scores[part])]


def _glob(pattern: str) -> str:
    # users write shell globs; '**' means any depth, which SQLite's GLOB '*' already does
    return pattern.replace("**/", "*").replace("**", "*")


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


__all__ = ["SQLiteIndex", "text_hash"]
