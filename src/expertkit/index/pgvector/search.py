"""How PostgresIndex answers a query: BM25 computed in SQL over Postgres's full text search, and dense search
through the HNSW index, with the metadata filters as a WHERE on the chunks table."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from expertkit.index.base import Filters, keyword_terms
from expertkit.index.pgvector.schema import TEXT_CONFIG

BM25_K1, BM25_B = 1.2, 0.75
STATS_TTL_S = 30.0


class SearchMixin:
    """The search methods of PostgresIndex, and the corpus statistics that BM25 caches between queries."""

    conn: Any  # a psycopg Connection
    s: str
    ef_search: int
    iterative_scan: bool
    _stats: tuple[float, int, float] | None  # when read, chunk count, mean length
    _df: dict[str, int]
    _transaction: Callable[..., AbstractContextManager[None]]

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
