"""How SQLiteIndex's vector caches (vectors.py) follow the database: each is caught up to the current
generation from the rows added since and the deletion log, loaded from the newest file on disk when a process
starts, and saved when the copy on disk has fallen far enough behind (see the package docstring)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np

from expertkit.index.sqlite.vectors import AnnCache, DenseCache, cache_files, drop_older, replace_files, save_npy

# candidates the HNSW search keeps per query (usearch's default is 64). On 1M clustered chunks recall@10
# against exact was 0.78 at 64, 0.96 at 512 and 0.99 at 1024, for 3.6 ms a query (benchmarks/search_latency.py)
ANN_EXPANSION = 1024


class CacheMixin:
    """The dense matrix and the HNSW graph of a SQLiteIndex, kept at its current generation. Every method
    reads the database, so call them inside ``_snapshot``."""

    db: sqlite3.Connection
    cache_dir: Path
    uid: str | None
    generation: int
    _meta: Callable[[str], str | None]
    _dense: DenseCache | None
    _ann: AnnCache | None

    # -- the dense matrix ----------------------------------------------------------------------------

    def _refresh_dense(self) -> DenseCache:
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
            dense = DenseCache(gen, *self._read_rows(0, dim))
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

    def _load_dense(self, gen: int, logged_from: int, dim: int) -> DenseCache | None:
        """The newest dense cache on disk that the deletion log can bring up to ``gen``, or None."""
        for disk_gen, _, path in cache_files(self.cache_dir, "dense", self.uid):
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
                return DenseCache(disk_gen, ids, mat)
        return None

    def _save_dense(self, dense: DenseCache) -> None:
        dense.compact()  # the file holds one matrix of the live rows
        ids, mat = dense.live_rows()
        ids_file, mat_file = self._dense_files(dense.gen)
        writers = {mat_file: lambda tmp: save_npy(tmp, mat), ids_file: lambda tmp: save_npy(tmp, ids)}
        if replace_files(writers):
            dense.unsaved = 0
            drop_older(self.cache_dir, "dense", self.uid, dense.gen)

    # -- the HNSW graph ------------------------------------------------------------------------------

    def _refresh_ann(self, dense: DenseCache) -> AnnCache:
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

    def _build_ann(self, dense: DenseCache) -> AnnCache:
        index = self._new_ann(dense.dim)
        ids, mat = dense.live_rows()
        if len(ids):
            index.add(ids, np.ascontiguousarray(mat), threads=os.cpu_count() or 1)
        return AnnCache(dense.gen, dense.high, index)

    def _ann_file(self, gen: int, high: int) -> Path:
        return self.cache_dir / f"ann-{self.uid}-{gen}-{high}.usearch"

    def _load_ann(self, dense: DenseCache, logged_from: int) -> AnnCache | None:
        for disk_gen, high, path in cache_files(self.cache_dir, "ann", self.uid):
            if not logged_from <= disk_gen <= dense.gen:
                continue
            index = self._new_ann(dense.dim)
            try:
                index.load(str(path))
            except Exception:  # noqa: BLE001 - gone, truncated or not a usearch file: try older, else rebuild
                continue
            if index.ndim == dense.dim:
                index.expansion_search = ANN_EXPANSION  # a search setting: not trusted to the file
                return AnnCache(disk_gen, high, index)
        return None

    def _save_ann(self, ann: AnnCache) -> None:
        if replace_files({self._ann_file(ann.gen, ann.high): lambda tmp: ann.index.save(str(tmp))}):
            ann.unsaved = 0
            drop_older(self.cache_dir, "ann", self.uid, ann.gen)
