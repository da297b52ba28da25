import numpy as np
import pytest

from expertkit.index.sqlite import SQLiteIndex
from tests.index.conformance import DIM, IndexConformance, make_source, unit


class TestSQLiteIndex(IndexConformance):
    @pytest.fixture
    def index(self, tmp_path):
        idx = SQLiteIndex(tmp_path / "index.db", ann_threshold=10_000)
        yield idx
        idx.close()


def test_ann_index_agrees_with_exact_search(tmp_path):
    exact = SQLiteIndex(tmp_path / "index.db", ann_threshold=10_000)
    exact.bind_embedder("t", DIM)
    for s in range(40):
        exact.write_source(*make_source(f"/d/{s}.md", [f"text {s} {i}" for i in range(10)], seed=s))
    ann = SQLiteIndex(tmp_path / "index.db", cache_dir=tmp_path / "ann-cache", ann_threshold=100)
    overlap = []
    for q in range(20):
        a = {c for c, _ in exact.search_dense(unit(10_000 + q), 10)}
        b = {c for c, _ in ann.search_dense(unit(10_000 + q), 10)}
        overlap.append(len(a & b) / 10)
    assert np.mean(overlap) >= 0.9
    assert list((tmp_path / "ann-cache").glob("ann-*.usearch"))


def test_caches_follow_writes_and_survive_reopen(tmp_path):
    idx = SQLiteIndex(tmp_path / "index.db")
    idx.bind_embedder("t", DIM)
    idx.write_source(*make_source("/d/a.md", ["a"]))
    assert len(idx.search_dense(unit(1), 10)) == 1
    idx.write_source(*make_source("/d/b.md", ["b"], seed=1))
    assert len(idx.search_dense(unit(1), 10)) == 2  # the cached matrix moved with the generation
    idx.close()
    again = SQLiteIndex(tmp_path / "index.db")
    assert len(again.search_dense(unit(1), 10)) == 2
    assert len(list((tmp_path / "cache").glob("dense-*.vec.npy"))) == 1  # old generations are dropped


def test_stale_cache_of_a_recreated_database_is_not_used(tmp_path):
    idx = SQLiteIndex(tmp_path / "index.db")
    idx.bind_embedder("t", DIM)
    idx.write_source(*make_source("/d/a.md", ["a", "b", "c"]))
    idx.search_dense(unit(1), 10)
    idx.close()
    for f in tmp_path.glob("index.db*"):
        f.unlink()
    fresh = SQLiteIndex(tmp_path / "index.db")
    fresh.bind_embedder("t", DIM)
    fresh.write_source(*make_source("/d/z.md", ["z"]))
    assert len(fresh.search_dense(unit(1), 10)) == 1


def test_not_a_database(tmp_path):
    from expertkit.errors import WorkspaceError

    (tmp_path / "index.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(WorkspaceError, match="re-ingest"):
        SQLiteIndex(tmp_path / "index.db")
