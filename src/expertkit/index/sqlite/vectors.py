"""The embedded index's two vector caches, and their files on disk.

``DenseCache`` is every live chunk's vector as a float32 matrix, searched exactly; ``AnnCache`` is the HNSW
graph (usearch) that serves queries above ``ann_threshold`` chunks. Neither is the source of truth: caches.py
brings them up to the database's generation, and loads and saves them with the helpers here.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from expertkit.private import private_dir, private_file


class DenseCache:
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
        return [(int(self.ids[i]), float(scores[i])) for i in top_k(scores, min(k, self.live))]


@dataclass
class AnnCache:
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


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    if len(scores) <= k:
        return np.argsort(-scores)
    part = np.argpartition(-scores, k)[:k]
    return part[np.argsort(-scores[part])]


# -- cache files ---------------------------------------------------------------------------------------

_CACHE_FILE = re.compile(r"(dense|ann)-([0-9a-f]+)-(\d+)(?:-(\d+))?\.(?:ids\.npy|vec\.npy|usearch)")


def cache_files(cache_dir: Path, kind: str, uid: str | None = None) -> list[tuple[int, int, Path]]:
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


def replace_files(writers: dict[Path, Callable[[Path], object]]) -> bool:
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


def save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # np.save(path) would add '.npy' to the temporary name
        np.save(f, array)


def drop_older(cache_dir: Path, kind: str, uid: str | None, gen: int) -> None:
    """Delete ``kind``'s files older than ``gen`` or of another database, and temporary files left over by a
    process that died while writing (older than an hour). Newer files, another process's, are kept."""
    for file_gen, _, path in cache_files(cache_dir, kind):
        if file_gen < gen or not path.name.startswith(f"{kind}-{uid}-"):
            path.unlink(missing_ok=True)
    for tmp in cache_dir.glob(f".{kind}-*.tmp"):
        try:
            if time.time() - tmp.stat().st_mtime > 3600:
                tmp.unlink(missing_ok=True)
        except OSError:
            pass
