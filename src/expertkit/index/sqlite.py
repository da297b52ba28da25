"""The embedded index: one SQLite database holds sources, chunks, FTS5 text and vectors.

SQLite is ACID, so a process killed mid-ingest leaves each source fully old or fully new. BM25 comes
from FTS5. Dense search is an exact inner product over a float32 matrix cached in memory and on disk;
above ``ann_threshold`` chunks an HNSW graph (usearch) serves unfiltered queries. Both caches are
rebuilt from the database whenever its generation counter moves, and are never the source of truth.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from expertkit.errors import WorkspaceError
from expertkit.index.base import Filters, IndexStats, SourceRecord, SyncRecord, keyword_terms
from expertkit.schema import Chunk

SCHEMA_VERSION = "1"

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
    synced_at REAL NOT NULL
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
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source_id);
CREATE INDEX IF NOT EXISTS chunks_text_hash ON chunks(text_hash);
CREATE TABLE IF NOT EXISTS syncs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    added INTEGER NOT NULL, updated INTEGER NOT NULL, removed INTEGER NOT NULL,
    unchanged INTEGER NOT NULL, failed INTEGER NOT NULL, sources INTEGER NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(body, tokenize='porter unicode61 remove_diacritics 2');
"""


class SQLiteIndex:
    """The embedded Index. Safe for one writer and many readers (WAL)."""

    def __init__(self, path: Path | str, cache_dir: Path | str | None = None, ann_threshold: int = 200_000) -> None:
        self.path = Path(path)
        self.cache_dir = Path(cache_dir) if cache_dir else self.path.parent / "cache"
        self.ann_threshold = ann_threshold
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as exc:
            raise WorkspaceError(
                f"{self.path}: not a usable index database ({exc}); move it aside and re-ingest"
            ) from None
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
        # caches are named by this id and the generation, so a re-created database never reads a stale cache
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('uid', ?)", (uuid.uuid4().hex[:12],))
        self.uid = self._meta("uid")
        self._dense: tuple[int, np.ndarray, np.ndarray] | None = None  # generation, rowids, matrix
        self._ann: tuple[int, object] | None = None

    # -- transactions and metadata -------------------------------------------------------------------

    @contextmanager
    def _transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def generation(self) -> int:
        return int(self._meta("generation") or 0)

    def bind_embedder(self, name: str, dim: int) -> None:
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
        sid, path, content_hash, file_type, size, mtime, n_chunks, title, warnings, synced_at = row
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
        )

    def get_source(self, path: str) -> SourceRecord | None:
        row = self.db.execute("SELECT * FROM sources WHERE path = ?", (path,)).fetchone()
        return self._source_row(row) if row else None

    def sources(self) -> list[SourceRecord]:
        return [self._source_row(r) for r in self.db.execute("SELECT * FROM sources ORDER BY path").fetchall()]

    def write_source(self, source: SourceRecord, chunks: list[Chunk], vectors: np.ndarray) -> None:
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._transaction():
            self._delete_source(source.path)
            cur = self.db.execute(
                "INSERT INTO sources (path, content_hash, file_type, size, mtime, n_chunks, title, warnings, synced_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    source.path,
                    source.content_hash,
                    source.file_type,
                    source.size,
                    source.mtime,
                    len(chunks),
                    source.title,
                    json.dumps(list(source.warnings)),
                    source.synced_at or time.time(),
                ),
            )
            sid = cur.lastrowid
            self.db.executemany("INSERT INTO source_tags VALUES (?, ?)", [(sid, t) for t in sorted(set(source.tags))])
            self.db.executemany(
                "INSERT INTO source_groups VALUES (?, ?)", [(sid, g) for g in sorted(set(source.groups))]
            )
            for chunk, vector in zip(chunks, vectors, strict=True):
                cur = self.db.execute(
                    'INSERT INTO chunks (chunk_id, source_id, ordinal, text, page, section, record_id, start, "end",'
                    " text_hash, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    ),
                )
                self.db.execute(
                    "INSERT INTO chunks_fts (rowid, body) VALUES (?, ?)", (cur.lastrowid, chunk.embed_text())
                )

    def _delete_source(self, path: str) -> int:
        row = self.db.execute("SELECT id FROM sources WHERE path = ?", (path,)).fetchone()
        if row is None:
            return 0
        self.db.execute("DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE source_id = ?)", row)
        n = self.db.execute("DELETE FROM chunks WHERE source_id = ?", row).rowcount
        self.db.execute("DELETE FROM sources WHERE id = ?", row)
        return n

    def update_stat(self, path: str, size: int, mtime: float, synced_at: float) -> None:
        # no generation bump: nothing a search returns has changed
        self.db.execute(
            "UPDATE sources SET size = ?, mtime = ?, synced_at = ? WHERE path = ?", (size, mtime, synced_at, path)
        )

    def remove_source(self, path: str) -> int:
        with self._transaction():
            return self._delete_source(path)

    def cached_vectors(self, text_hashes: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(text_hashes))
        for i in range(0, len(unique), 500):
            part = unique[i : i + 500]
            marks = ",".join("?" * len(part))
            for h, blob in self.db.execute(f"SELECT text_hash, vector FROM chunks WHERE text_hash IN ({marks})", part):
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
            params = [k]
            return [(cid, float(s)) for cid, s in self.db.execute(sql, [match, k])]
        return [(cid, float(s)) for cid, s in self.db.execute(sql, [match, *params, k])]

    def dense_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """(rowids, unit vectors) for every chunk, from memory, the disk cache, or the database."""
        gen = self.generation
        if self._dense is not None and self._dense[0] == gen:
            return self._dense[1], self._dense[2]
        ids_file = self.cache_dir / f"dense-{self.uid}-{gen}.ids.npy"
        mat_file = self.cache_dir / f"dense-{self.uid}-{gen}.vec.npy"
        try:
            ids, mat = np.load(ids_file), np.load(mat_file, mmap_mode="r")
        except (OSError, ValueError):
            ids, mat = self._read_matrix()
            self._write_cache(gen, {ids_file: ids, mat_file: mat}, prefix="dense-")
        self._dense = (gen, ids, mat)
        return ids, mat

    def _read_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        dim = int(self._meta("dim") or 0)
        rows = self.db.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        return ids, mat

    def _write_cache(self, gen: int, files: dict[Path, np.ndarray], prefix: str) -> None:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            for old in self.cache_dir.glob(f"{prefix}*"):
                old.unlink(missing_ok=True)
            for path, array in files.items():
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, array)
                os.replace(tmp, path)
        except OSError:
            pass  # a cache that cannot be written is only slower

    def search_dense(self, vector: np.ndarray, k: int, filters: Filters | None = None) -> list[tuple[str, float]]:
        ids, mat = self.dense_matrix()
        if len(ids) == 0:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if filters:
            where, params = self._filter_sql(filters)
            allowed = np.fromiter(
                (
                    r[0]
                    for r in self.db.execute(
                        f"SELECT c.id FROM chunks c JOIN sources s ON s.id = c.source_id WHERE 1{where}", params
                    )
                ),
                dtype=np.int64,
            )
            positions = np.searchsorted(ids, allowed)  # ids are sorted; the filtered subset is scored exactly
            scores = mat[positions] @ query
            top = _top_k(scores, k)
            pairs = [(int(allowed[i]), float(scores[i])) for i in top]
        elif len(ids) > self.ann_threshold:
            pairs = self._ann_search(query, k)
        else:
            scores = mat @ query
            pairs = [(int(ids[i]), float(scores[i])) for i in _top_k(scores, k)]
        return self._chunk_ids(pairs)

    def _ann_search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        from usearch.index import Index as USearchIndex

        gen = self.generation
        if self._ann is None or self._ann[0] != gen:
            path = self.cache_dir / f"ann-{self.uid}-{gen}.usearch"
            ann = USearchIndex(ndim=int(self._meta("dim")), metric="ip", dtype="f32", connectivity=16)
            if path.exists():
                ann.load(str(path))
            else:
                ids, mat = self.dense_matrix()
                ann.add(ids, np.ascontiguousarray(mat), threads=os.cpu_count() or 1)
                try:
                    for old in self.cache_dir.glob("ann-*"):
                        old.unlink(missing_ok=True)
                    ann.save(str(path))
                except OSError:
                    pass
            self._ann = (gen, ann)
        matches = self._ann[1].search(query, k)
        return [(int(key), 1.0 - float(dist)) for key, dist in zip(matches.keys, matches.distances, strict=True)]

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
        for i in range(0, len(chunk_ids), 500):
            part = chunk_ids[i : i + 500]
            marks = ",".join("?" * len(part))
            sql = (
                'SELECT c.chunk_id, c.text, s.path, c.ordinal, c.start, c."end", s.file_type, c.page, c.section,'
                f" c.record_id, s.id FROM chunks c JOIN sources s ON s.id = c.source_id WHERE c.chunk_id IN ({marks})"
            )
            for cid, text, path, ordinal, start, end, ftype, page, section, rid, sid in self.db.execute(sql, part):
                if sid not in tags_by_source:  # once per source, not once per chunk
                    tags_by_source[sid] = self._tags(sid)
                tags = tags_by_source[sid]
                found[cid] = Chunk(
                    text, path, ordinal, start, end, ftype, page, tuple(json.loads(section)), rid, tags, cid
                )
        return [found[c] for c in chunk_ids if c in found]

    def source_chunks(self, path: str) -> list[Chunk]:
        sql = "SELECT chunk_id FROM chunks WHERE source_id = (SELECT id FROM sources WHERE path = ?) ORDER BY ordinal"
        return self.get_chunks([cid for (cid,) in self.db.execute(sql, (path,))])

    def stats(self) -> IndexStats:
        docs = self.db.execute("SELECT COUNT(*) FROM sources").fetchone()[0]
        chunks = self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        tags = dict(self.db.execute("SELECT tag, COUNT(*) FROM source_tags GROUP BY tag ORDER BY tag"))
        types = dict(self.db.execute("SELECT file_type, COUNT(*) FROM sources GROUP BY file_type ORDER BY file_type"))
        groups = dict(self.db.execute("SELECT grp, COUNT(*) FROM source_groups GROUP BY grp ORDER BY grp"))
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        dim = self._meta("dim")
        return IndexStats(docs, chunks, tags, types, size, self._meta("embedder"), int(dim) if dim else None, groups)

    def record_sync(self, record: SyncRecord) -> None:
        # no generation bump: the history does not change what a search returns
        self.db.execute(
            "INSERT INTO syncs (at, added, updated, removed, unchanged, failed, sources) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (record.at, record.added, record.updated, record.removed, record.unchanged, record.failed, record.sources),
        )

    def sync_history(self) -> list[SyncRecord]:
        sql = "SELECT at, added, updated, removed, unchanged, failed, sources FROM syncs ORDER BY at, id"
        return [SyncRecord(*row) for row in self.db.execute(sql)]

    def close(self) -> None:
        self.db.close()


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
