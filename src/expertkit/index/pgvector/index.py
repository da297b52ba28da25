"""The scale-out index: PostgreSQL with pgvector, behind the same Index protocol as SQLite.

Everything lives in one schema (``index.schema_name``), so several workspaces can share a database:
``sources`` (one row per file), ``chunks`` (text, spans, a ``tsvector`` for full text and a ``vector`` for
dense search, with the source's path, type, tags and access groups copied onto each chunk so that every
filter is a WHERE on the one table the HNSW index serves) and ``meta``/``syncs``.

- Full text: Postgres's own text search (the ``english`` configuration: Snowball stemming, stop words)
  finds the matches through a GIN index, and they are ranked by Okapi BM25 (k1 = 1.2, b = 0.75, FTS5's
  idf), computed in SQL from each chunk's ``tsvector`` (term frequencies are its position counts) and
  its stored length. Postgres's own ``ts_rank_cd`` has no idf: on SciFact it scored nDCG@10 0.43
  against BM25's 0.68. Document frequencies, the chunk count and the mean length are read from the
  table per query term and cached for ``STATS_TTL_S`` (dropped at once after this process writes).
- Dense: inner product on unit vectors through an HNSW index (``vector_ip_ops``). Filtered queries use
  pgvector's iterative index scan, so a filter does not starve the top k; when the allowed set is so
  small that the scan still comes back short, the query is repeated as an exact scan.
- Each file is one transaction; readers never wait for writers (MVCC). The embedder binding takes an
  advisory lock, so two first ingests cannot bind different embedders.
"""

from __future__ import annotations

import json
import math
import re
import time
from contextlib import contextmanager

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
    text_hash,
)
from expertkit.index.keywords import KEYWORDS_VERSION, keyword_text
from expertkit.schema import Chunk

SCHEMA_VERSION = "1"
TEXT_CONFIG = "english"
BM25_K1, BM25_B = 1.2, 0.75
STATS_TTL_S = 30.0
_LOCK_KEY = 0x6578706B  # "expk": the advisory lock that serialises schema changes


def _schema(s: str) -> str:
    return f"""
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.sources (
    id bigserial PRIMARY KEY,
    path text NOT NULL UNIQUE,
    content_hash text NOT NULL,
    file_type text NOT NULL,
    size bigint NOT NULL DEFAULT 0,
    mtime double precision NOT NULL DEFAULT 0,
    n_chunks integer NOT NULL DEFAULT 0,
    title text,
    warnings jsonb NOT NULL DEFAULT '[]',
    synced_at double precision NOT NULL,
    tags text[] NOT NULL DEFAULT '{{}}',
    groups text[] NOT NULL DEFAULT '{{}}',
    groups_pinned boolean NOT NULL DEFAULT false,
    pipeline text NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS {s}.chunks (
    id bigserial PRIMARY KEY,
    chunk_id text NOT NULL UNIQUE,
    source_id bigint NOT NULL REFERENCES {s}.sources(id) ON DELETE CASCADE,
    ordinal integer NOT NULL,
    text text NOT NULL,
    page integer,
    section jsonb NOT NULL DEFAULT '[]',
    record_id text,
    start integer NOT NULL,
    "end" integer NOT NULL,
    text_hash text NOT NULL,
    tsv tsvector NOT NULL,
    n_terms integer NOT NULL,
    embedding vector NOT NULL,
    path text NOT NULL,
    file_type text NOT NULL,
    tags text[] NOT NULL DEFAULT '{{}}',
    groups text[] NOT NULL DEFAULT '{{}}',
    context text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS chunks_source ON {s}.chunks (source_id);
CREATE INDEX IF NOT EXISTS chunks_text_hash ON {s}.chunks (text_hash);
CREATE INDEX IF NOT EXISTS chunks_tsv ON {s}.chunks USING gin (tsv);
CREATE INDEX IF NOT EXISTS chunks_groups ON {s}.chunks USING gin (groups);
CREATE INDEX IF NOT EXISTS chunks_tags ON {s}.chunks USING gin (tags);
CREATE TABLE IF NOT EXISTS {s}.syncs (
    id bigserial PRIMARY KEY,
    at double precision NOT NULL,
    added integer NOT NULL, updated integer NOT NULL, removed integer NOT NULL,
    unchanged integer NOT NULL, failed integer NOT NULL, sources integer NOT NULL
);
"""


# columns added since the first schema, as (table, column, definition)
_ADDED_COLUMNS = (
    ("sources", "pipeline", "text NOT NULL DEFAULT ''"),
    ("chunks", "context", "text NOT NULL DEFAULT ''"),
)


def _connect(dsn: str):
    try:
        import psycopg
        from pgvector.psycopg import register_vector
    except ImportError:
        raise WorkspaceError(
            "index.backend = 'postgres' needs psycopg and pgvector: pip install 'expertkit[postgres]'"
        ) from None
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WorkspaceError(
            f"cannot connect to PostgreSQL at {redact_dsn(dsn)} ({first}); start it (`expertkit db start` for a "
            "local one) or fix index.dsn"
        ) from None
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector") if not _has_vector(conn) else None
    register_vector(conn)
    return conn


def _has_vector(conn) -> bool:
    return conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() is not None


# user:password@ in a URL, up to the last @ (a password written unescaped may hold one)
_URL_PASSWORD = re.compile(r"(://[^:/?#@\s]*:)\S*@")
_URL_PARAM = re.compile(r"([?&](?:ssl)?password=)[^&#\s]*", re.IGNORECASE)
# key = value: spaces around '=', a value in quotes with spaces and \' escapes (an unclosed one runs to the end)
_KV_PASSWORD = re.compile(r"""(?<![\w.])((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*(?:'|$)|"[^"]*(?:"|$)|\S+)""",
                          re.IGNORECASE)  # fmt: skip


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for messages: URL (``postgresql://user:pw@host/db?password=pw``) and
    key/value (``host=h password = 'a b'``) forms."""
    if re.match(r"\s*postgres(?:ql)?://", dsn, re.IGNORECASE):
        return _URL_PARAM.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", dsn))
    return _KV_PASSWORD.sub(r"\1***", dsn)


class PostgresIndex:
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
        self.conn = _connect(dsn)
        version = self.conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
        self.iterative_scan = tuple(int(x) for x in re.findall(r"\d+", version)[:2]) >= (0, 8)
        with self._transaction(lock=True):
            self.conn.execute(_schema(schema))
            self._upgrade()
            self.conn.execute(
                f"INSERT INTO {self.s}.meta VALUES ('schema_version', %s) ON CONFLICT DO NOTHING", (SCHEMA_VERSION,)
            )
            self._fold_keywords()

    @contextmanager
    def _transaction(self, lock: bool = False):
        with self.conn.transaction():
            if lock:  # schema changes and the embedder binding: one session at a time
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            yield

    def _fold_keywords(self) -> None:
        """Chunks written before Greek words were folded for keyword search (index/keywords.py) get their
        tsvector again, once; other rows are what they were."""
        if self._meta("keywords"):
            return
        greek = "[\u0370-\u03ff\u1f00-\u1fff]"
        rows = self.conn.execute(
            f"SELECT id, text, section, context FROM {self.s}.chunks"
            " WHERE text ~ %s OR context ~ %s OR section::text ~ %s",
            (greek, greek, greek),
        ).fetchall()
        for cid, text, section, context in rows:
            heads = tuple(json.loads(section) if isinstance(section, str) else section)  # jsonb: a list already
            body = Chunk(text, "", 0, 0, 0, section=heads, context=context).embed_text()
            self.conn.execute(
                f"UPDATE {self.s}.chunks c SET tsv = t.tsv, n_terms = (SELECT coalesce(sum(array_length(positions, 1)),"
                " 0) FROM unnest(t.tsv)) FROM (SELECT to_tsvector(%s, %s) AS tsv) t WHERE c.id = %s",
                (TEXT_CONFIG, keyword_text(body), cid),
            )
        self.conn.execute(f"INSERT INTO {self.s}.meta VALUES ('keywords', %s)", (KEYWORDS_VERSION,))

    def _upgrade(self) -> None:
        """Add the columns that a schema written by an older expertkit lacks (an ALTER only when one is missing:
        it locks the table)."""
        have = set(
            self.conn.execute(
                "SELECT table_name || '.' || column_name FROM information_schema.columns WHERE table_schema = %s",
                (self.s,),
            ).fetchall()
        )
        for table, column, ddl in _ADDED_COLUMNS:
            if (f"{table}.{column}",) not in have:
                self.conn.execute(f"ALTER TABLE {self.s}.{table} ADD COLUMN {column} {ddl}")

    def _meta(self, key: str) -> str | None:
        row = self.conn.execute(f"SELECT value FROM {self.s}.meta WHERE key = %s", (key,)).fetchone()
        return row[0] if row else None

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

    @contextmanager
    def bulk_load(self):
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

    # -- search --------------------------------------------------------------------------------------

    def _where(self, filters: Filters | None) -> tuple[str, list]:
        if not filters:
            return "", []
        clauses, params = [], []
        if filters.tags:
            clauses.append("tags && %s")
            params.append(list(filters.tags))
        if filters.path_glob:
            clauses.append("path LIKE %s ESCAPE '\\'")
            params.append(_glob_like(filters.path_glob))
        if filters.file_types:
            clauses.append("file_type = ANY(%s)")
            params.append([t.lower().lstrip(".") for t in filters.file_types])
        if filters.groups is not None:  # the caller's access groups; none at all sees nothing
            clauses.append("groups && %s")
            params.append(list(filters.groups))
        return " AND " + " AND ".join(clauses), params

    def _corpus_stats(self) -> tuple[int, float]:
        now = time.monotonic()
        if self._stats is None or now - self._stats[0] > STATS_TTL_S:
            n, mean = self.conn.execute(f"SELECT count(*), coalesce(avg(n_terms), 0) FROM {self.s}.chunks").fetchone()
            self._stats = (now, int(n), float(mean))
            self._df.clear()
        return self._stats[1], self._stats[2]

    def _document_frequencies(self, lexemes: list[str]) -> dict[str, int]:
        out = {}
        for lexeme in lexemes:
            out[lexeme] = (
                self._df.get(lexeme)
                or self.conn.execute(
                    f"SELECT count(*) FROM {self.s}.chunks WHERE tsv @@ %s::tsquery", (_quote_lexeme(lexeme),)
                ).fetchone()[0]
            )
            if out[lexeme]:  # a term found nowhere is asked again: another process may add it any moment
                self._df[lexeme] = out[lexeme]
        return out

    def _forget_stats(self) -> None:
        self._stats = None
        self._df.clear()

    def search_bm25(self, query: str, k: int, filters: Filters | None = None) -> list[tuple[str, float]]:
        terms = keyword_terms(query)
        if not terms:
            return []
        lexemes = [
            lexeme
            for (lexeme,) in self.conn.execute(
                "SELECT lexeme FROM unnest(to_tsvector(%s, %s)) ORDER BY lexeme", (TEXT_CONFIG, " ".join(terms))
            )
        ]
        if not lexemes:  # only stop words
            return []
        n, mean = self._corpus_stats()
        df = self._document_frequencies(lexemes)
        n = max(n, *df.values())  # the count may be older than a frequency read after another's write
        # FTS5's idf, floored just above zero so that a term in most chunks still counts a little
        idf = {t: max(math.log((n - d + 0.5) / (d + 0.5)), 1e-6) for t, d in df.items() if d}
        if not idf:
            return []
        where, params = self._where(filters)
        tsquery = " | ".join(_quote_lexeme(t) for t in idf)
        norm = BM25_K1 / max(mean, 1e-9)
        sql = (
            "SELECT c.chunk_id, sum(w.idf * u.tf * %s / (u.tf + %s + %s * c.n_terms)) AS score"
            f" FROM {self.s}.chunks c"
            " CROSS JOIN LATERAL (SELECT lexeme, array_length(positions, 1) AS tf FROM unnest(c.tsv)) u"
            " JOIN unnest(%s::text[], %s::float8[]) AS w(lexeme, idf) ON w.lexeme = u.lexeme"
            f" WHERE c.tsv @@ %s::tsquery{where} GROUP BY c.id, c.chunk_id ORDER BY score DESC, c.id LIMIT %s"
        )
        args = [
            BM25_K1 + 1,
            BM25_K1 * (1 - BM25_B),
            norm * BM25_B,
            list(idf),
            list(idf.values()),
            tsquery,
            *params,
            k,
        ]
        return [(cid, float(score)) for cid, score in self.conn.execute(sql, args)]

    def search_dense(self, vector: np.ndarray, k: int, filters: Filters | None = None) -> list[tuple[str, float]]:
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        where, params = self._where(filters)
        sql = (
            f"SELECT chunk_id, score FROM (SELECT chunk_id, -(embedding <#> %s) AS score FROM {self.s}.chunks"
            f" WHERE true{where} ORDER BY embedding <#> %s LIMIT %s) t ORDER BY score DESC"
        )
        args = [query, *params, query, k]
        with self._transaction():
            self.conn.execute(f"SET LOCAL hnsw.ef_search = {int(max(self.ef_search, min(k, 1000)))}")
            if self.iterative_scan:  # pgvector ≥ 0.8; older servers fall back to the exact rerun below
                self.conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            rows = self.conn.execute(sql, args).fetchall()
            if filters and len(rows) < k:
                # the approximate scan gave up before filling k: is the allowed set really that small?
                allowed = self.conn.execute(
                    f"SELECT count(*) FROM (SELECT 1 FROM {self.s}.chunks WHERE true{where} LIMIT %s) t",
                    [*params, k],
                ).fetchone()[0]
                if allowed > len(rows):
                    self.conn.execute("SET LOCAL enable_indexscan = off")  # exact: scan the allowed rows
                    rows = self.conn.execute(sql, args).fetchall()
        return [(cid, float(score)) for cid, score in rows]

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


def _glob_like(pattern: str) -> str:
    """A shell glob as a LIKE pattern (as on SQLite, ``*`` crosses folders)."""
    out = []
    for ch in pattern.replace("**/", "*").replace("**", "*"):
        if ch in "%_\\":
            out.append("\\" + ch)
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)


def _quote_lexeme(lexeme: str) -> str:
    """A lexeme as a tsquery operand: quoted, so that ':' '&' '!' in it are text, not operators."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def _array(value) -> np.ndarray:
    """pgvector hands back a Vector (newer) or an ndarray (older)."""
    return value.to_numpy() if hasattr(value, "to_numpy") else np.asarray(value)


__all__ = ["PostgresIndex"]
