"""How SQLiteIndex answers a query: BM25 from FTS5, and dense search over the cached matrix, exactly or
through the HNSW graph, with the metadata filters applied inside the same read transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager

import numpy as np

from expertkit.index.base import Filters, keyword_terms
from expertkit.index.sqlite.vectors import AnnCache, DenseCache, top_k

# a filtered dense search goes through the HNSW graph when at least this share of the chunks is allowed;
# a more selective filter scores its allowed rows exactly (fewer rows than the graph would be asked for)
ANN_FILTER_SHARE = 0.2


class SearchMixin:
    """The search methods of SQLiteIndex; the caches they search are kept by CacheMixin (caches.py)."""

    db: sqlite3.Connection
    ann_threshold: int
    _allowed: dict[tuple, np.ndarray]
    _snapshot: Callable[[], AbstractContextManager[None]]
    _meta: Callable[[str], str | None]
    _refresh_dense: Callable[[], DenseCache]
    _refresh_ann: Callable[[DenseCache], AnnCache]

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
        self, dense: DenseCache, allowed: np.ndarray, query: np.ndarray, k: int
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
        self, dense: DenseCache, allowed: np.ndarray, query: np.ndarray, k: int
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
        return [(int(ids[i]), float(scores[i])) for i in top_k(scores, k)]

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

    def _ann_search(self, dense: DenseCache, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        ann = self._refresh_ann(dense)
        matches = ann.index.search(query, k)
        return [(int(key), 1.0 - float(dist)) for key, dist in zip(matches.keys, matches.distances, strict=True)]

    def _chunk_ids(self, pairs: list[tuple[int, float]]) -> list[tuple[str, float]]:
        if not pairs:
            return []
        marks = ",".join("?" * len(pairs))
        names = dict(self.db.execute(f"SELECT id, chunk_id FROM chunks WHERE id IN ({marks})", [p[0] for p in pairs]))
        return [(names[i], s) for i, s in pairs if i in names]


def _glob(pattern: str) -> str:
    # users write shell globs; '**' means any depth, which SQLite's GLOB '*' already does
    return pattern.replace("**/", "*").replace("**", "*")
