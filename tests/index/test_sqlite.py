import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from expertkit.errors import WorkspaceError
from expertkit.index.base import Filters, SyncRecord
from expertkit.index.sqlite import SQLiteIndex
from tests.index.conformance import DIM, IndexConformance, make_source, unit

ROOT = Path(__file__).resolve().parents[2]


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


# -- concurrency: consistent reads, incremental caches, atomic cache files, the write lock ---------------


def _corpus(idx: SQLiteIndex, n_sources: int = 12, n_chunks: int = 5) -> None:
    idx.bind_embedder("t", DIM)
    for s in range(n_sources):
        tags = ("even",) if s % 2 == 0 else ("odd",)
        texts = [f"text {s} {i}" for i in range(n_chunks)]
        idx.write_source(*make_source(f"/d/{s}.md", texts, seed=s, tags=tags, groups=(f"g{s % 3}",)))


def _ids(hits) -> list[str]:
    return [cid for cid, _ in hits]


def _same(a, b) -> bool:
    """The same hits in the same order, scores equal to float32 rounding (a memory-mapped matrix and one in
    memory may sum in a different order)."""
    return _ids(a) == _ids(b) and np.allclose([s for _, s in a], [s for _, s in b], atol=1e-5)


def test_filtered_search_reads_one_state_when_a_write_commits_mid_search(tmp_path, monkeypatch):
    idx = SQLiteIndex(tmp_path / "index.db")
    _corpus(idx)
    other = SQLiteIndex(tmp_path / "index.db")  # another writer, committing between the matrix and the filter
    before = {c.chunk_id for s in idx.sources() for c in idx.source_chunks(s.path)}
    target = make_source("/d/new.md", ["fresh"], seed=500, tags=("even",))
    original = SQLiteIndex._allowed_ids
    raced = []

    def racing(self, filters, gen=None):
        if not raced:
            raced.append(True)
            other.write_source(*target)  # rows newer than the matrix: their positions are past its end
            other.remove_source("/d/0.md")
        return original(self, filters, gen)

    monkeypatch.setattr(SQLiteIndex, "_allowed_ids", racing)
    idx.search_dense(unit(1), 3)  # the matrix is cached before the race
    hits = idx.search_dense(target[2][0], 10, Filters(tags=("even",)))
    assert raced and hits
    assert set(_ids(hits)) <= before  # one consistent state: the one before the write
    hits = idx.search_dense(target[2][0], 10, Filters(tags=("even",)))
    assert hits[0][0] == target[1][0].chunk_id  # the next search sees the write
    assert len(idx.get_chunks(_ids(hits))) == len(hits)
    assert not any(cid.split(":")[1] == "/d/0.md" for cid in _ids(hits))
    other.close()
    idx.close()


def test_filtered_search_checks_positions_and_reads_rows_a_stale_matrix_lacks(tmp_path, monkeypatch):
    idx = SQLiteIndex(tmp_path / "index.db")
    _corpus(idx)
    idx.search_dense(unit(1), 3)
    stale = idx._dense
    target = make_source("/d/new.md", ["fresh"], seed=500, tags=("even",))
    idx.write_source(*target)
    idx.remove_source("/d/2.md")
    monkeypatch.setattr(SQLiteIndex, "_refresh_dense", lambda self: stale)  # the matrix from before both writes
    hits = idx.search_dense(target[2][0], 5, Filters(tags=("even",)))
    assert hits[0] == (target[1][0].chunk_id, pytest.approx(1.0, abs=1e-5))  # scored from the database
    assert len(idx.get_chunks(_ids(hits))) == len(hits)  # and nothing of the removed source
    idx.close()


def test_caches_catch_up_with_the_new_rows_only(tmp_path, monkeypatch):
    idx = SQLiteIndex(tmp_path / "index.db")
    _corpus(idx)
    reads = []
    original = SQLiteIndex._read_rows

    def spy(self, after, dim):
        ids, mat = original(self, after, dim)
        if self is idx:
            reads.append((after, len(ids)))
        return ids, mat

    monkeypatch.setattr(SQLiteIndex, "_read_rows", spy)
    idx.search_dense(unit(1), 5)
    assert reads == [(0, 60)]  # the first search reads the matrix whole
    removed = [c.chunk_id for c in idx.source_chunks("/d/3.md") + idx.source_chunks("/d/4.md")]
    removed_vectors = [unit(s * 1000 + i) for s in (3, 4) for i in range(5)]
    for s in range(12, 15):
        idx.write_source(*make_source(f"/d/{s}.md", [f"new {s} {i}" for i in range(4)], seed=s, tags=("even",)))
    idx.remove_source("/d/3.md")
    idx.write_source(*make_source("/d/4.md", ["rewritten"], seed=44, digest="v2", tags=("odd",)))
    reads.clear()
    idx.search_dense(unit(2), 5)
    assert len(reads) == 1 and reads[0][0] > 0 and reads[0][1] == 13  # 3×4 added + 1 rewritten, nothing else
    fresh = SQLiteIndex(tmp_path / "index.db", cache_dir=tmp_path / "fresh")
    for q in [unit(10_000 + q) for q in range(5)] + removed_vectors:
        for f in (None, Filters(tags=("even",)), Filters(groups=("g1",))):
            got = idx.search_dense(q, 8, f)
            assert _same(got, fresh.search_dense(q, 8, f))
            assert not set(_ids(got)) & set(removed)
    assert len(reads) == 1  # every later search used the cache as it was
    fresh.close()
    idx.close()


def test_caches_stay_exact_through_random_writes_and_removals(tmp_path):
    """Appends, masks, tail merges and compactions in every order: the patched caches (in memory, and on disk
    for a newly opened index) always give what a fresh read of the database gives."""
    import random

    idx = SQLiteIndex(tmp_path / "index.db", ann_threshold=30)
    idx.bind_embedder("t", DIM)
    exact = SQLiteIndex(tmp_path / "index.db", cache_dir=tmp_path / "exact", ann_threshold=10**9)
    rng, version, recall = random.Random(0), 0, []
    for step in range(240):
        path = f"/d/{rng.randrange(30)}.md"
        if rng.random() < 0.3:
            idx.remove_source(path)
        else:
            version += 1
            texts = [f"t{version} {i}" for i in range(rng.randrange(1, 8))]
            idx.write_source(*make_source(path, texts, seed=version, digest=f"{version:08d}", tags=(rng.choice("ab"),)))
        if step % 4:
            continue
        q = unit(10**6 + step)
        fresh = SQLiteIndex(tmp_path / "index.db", cache_dir=tmp_path / f"fresh{step}", ann_threshold=10**9)
        reopened = SQLiteIndex(tmp_path / "index.db", ann_threshold=10**9)  # the shared cache folder
        for f in (None, Filters(tags=("a",))):
            want = fresh.search_dense(q, 10, f)
            assert _same(exact.search_dense(q, 10, f), want) and _same(reopened.search_dense(q, 10, f), want), step
        got, want = idx.search_dense(q, 10), fresh.search_dense(q, 10)  # through the graph above 30 chunks
        assert len(idx.get_chunks(_ids(got))) == len(got)
        recall.append(len(set(_ids(got)) & set(_ids(want))) / max(len(want), 1))
        fresh.close()
        reopened.close()
    assert np.mean(recall) >= 0.95 and idx._ann is not None
    exact.close()
    idx.close()


def test_ann_graph_catches_up_without_a_rebuild(tmp_path, monkeypatch):
    idx = SQLiteIndex(tmp_path / "index.db", ann_threshold=50)
    _corpus(idx, n_sources=40, n_chunks=10)
    builds = []
    original = SQLiteIndex._build_ann
    monkeypatch.setattr(SQLiteIndex, "_build_ann", lambda self, dense: builds.append(1) or original(self, dense))
    idx.search_dense(unit(1), 10)
    assert len(builds) == 1
    removed_vectors = [unit(s * 1000 + i) for s in range(5) for i in range(10)]
    removed = set()
    for s in range(5):
        removed |= {c.chunk_id for c in idx.source_chunks(f"/d/{s}.md")}
        idx.remove_source(f"/d/{s}.md")
    for s in range(40, 45):
        idx.write_source(*make_source(f"/d/{s}.md", [f"new {s} {i}" for i in range(10)], seed=s))
    exact = SQLiteIndex(tmp_path / "index.db", cache_dir=tmp_path / "exact", ann_threshold=10**9)
    overlap = []
    for q in [unit(20_000 + q) for q in range(20)] + removed_vectors + [unit(s * 1000) for s in range(40, 45)]:
        got = set(_ids(idx.search_dense(q, 10)))
        overlap.append(len(got & set(_ids(exact.search_dense(q, 10)))) / 10)
        assert not got & removed
    assert np.mean(overlap) >= 0.9
    assert len(builds) == 1 and len(idx._ann.index) == 400  # added and removed in place
    for s in range(45, 48):  # a new process: the graph on disk, caught up by what was written since
        idx.write_source(*make_source(f"/d/{s}.md", [f"late {s} {i}" for i in range(10)], seed=s))
    idx.remove_source("/d/5.md")
    later = SQLiteIndex(tmp_path / "index.db", ann_threshold=50)
    hits = later.search_dense(unit(46 * 1000 + 3), 10)
    assert hits[0][0] == make_source("/d/46.md", [""] * 10, seed=46)[1][3].chunk_id
    assert len(builds) == 1 and len(later._ann.index) == 420
    for index in (later, exact, idx):
        index.close()


def test_deletion_log_is_pruned_and_an_older_cache_is_rebuilt(tmp_path, monkeypatch):
    import expertkit.index.sqlite.index as sqlite_module

    monkeypatch.setattr(sqlite_module, "_DELETE_LOG_GENERATIONS", 10)
    monkeypatch.setattr(sqlite_module, "_PRUNE_EVERY", 5)
    idx = SQLiteIndex(tmp_path / "index.db")
    _corpus(idx)
    reader = SQLiteIndex(tmp_path / "index.db", cache_dir=tmp_path / "reader")
    reader.search_dense(unit(1), 5)
    for round_ in range(15):
        idx.write_source(*make_source(f"/d/{round_ % 12}.md", ["again"], seed=100 + round_, digest=f"r{round_}"))
    assert (idx.generation, idx._meta("deletes_from")) == (27, "15")  # pruned at 25: the last ten are kept
    assert idx.db.execute("SELECT MIN(gen) FROM chunk_deletes").fetchone()[0] == 16
    reads = []
    original = SQLiteIndex._read_rows
    monkeypatch.setattr(
        SQLiteIndex, "_read_rows", lambda self, after, dim: reads.append(after) or original(self, after, dim)
    )
    fresh = SQLiteIndex(tmp_path / "index.db", cache_dir=tmp_path / "fresh")
    assert _same(reader.search_dense(unit(2), 10), fresh.search_dense(unit(2), 10))
    assert reads == [0, 0]  # the reader's cache (generation 12) is older than the log: read whole
    for index in (fresh, reader, idx):
        index.close()


def test_a_partial_or_foreign_cache_file_is_ignored_and_rebuilt(tmp_path, monkeypatch):
    idx = SQLiteIndex(tmp_path / "index.db", ann_threshold=20)
    _corpus(idx)
    idx.search_dense(unit(7), 10)
    files = sorted((tmp_path / "cache").iterdir())
    assert [f.suffix for f in files] == [".usearch", ".npy", ".npy"]
    exact = SQLiteIndex(tmp_path / "index.db", cache_dir=tmp_path / "exact")
    selective = Filters(path_glob="/d/1*.md")  # 10 of 60 chunks: below the graph's share, scored exactly
    want = exact.search_dense(unit(7), 10, selective)
    assert len(want) == 10
    reads = []
    original = SQLiteIndex._read_rows
    monkeypatch.setattr(
        SQLiteIndex, "_read_rows", lambda self, after, dim: reads.append(after) or original(self, after, dim)
    )
    damages = (
        lambda f: f.write_bytes(f.read_bytes()[: f.stat().st_size // 2]),  # as a crash mid-write in place would
        lambda f: f.write_bytes(b"not a cache" * 50),
    )
    for damage in damages:
        for f in files:
            damage(f)
        reads.clear()
        again = SQLiteIndex(tmp_path / "index.db", ann_threshold=20)
        assert _same(again.search_dense(unit(7), 10, selective), want)
        assert reads == [0]  # the matrix was read from the database, not from the damaged file
        assert len(again.search_dense(unit(7), 10)) == 10 and len(again._ann.index) == 60  # a graph rebuilt
        again.close()
    for index in (exact, idx):
        index.close()


def test_cache_files_are_written_aside_and_renamed_into_place(tmp_path, monkeypatch):
    import expertkit.index.sqlite.vectors as vectors_module

    renames = []
    replace = os.replace

    def spy(src, dst):
        renames.append((Path(src), Path(dst)))
        assert Path(src).stat().st_size > 0
        replace(src, dst)

    monkeypatch.setattr(vectors_module.os, "replace", spy)
    idx = SQLiteIndex(tmp_path / "index.db", ann_threshold=20)
    _corpus(idx)
    idx.search_dense(unit(7), 10)
    files = sorted((tmp_path / "cache").iterdir())
    assert len(files) == 3 and sorted(dst for _, dst in renames) == files  # the graph and both .npy files
    assert all(src.parent == dst.parent and src.name.startswith("." + dst.name) for src, dst in renames)
    idx.close()


def test_bind_embedder_checks_and_writes_in_one_transaction(tmp_path):
    idx = SQLiteIndex(tmp_path / "index.db")
    statements = []
    idx.db.set_trace_callback(statements.append)
    idx.bind_embedder("model-a", DIM)
    assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT"
    assert any("SELECT value FROM meta" in s for s in statements) and any("INSERT" in s for s in statements)
    for write in (
        lambda: idx.update_stat("/d/a.md", 1, 2.0, 3.0),
        lambda: idx.record_sync(SyncRecord(at=1.0)),
    ):
        statements.clear()
        write()
        assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT"
    other = SQLiteIndex(tmp_path / "index.db")  # a second instance of this process shares the write lock
    with pytest.raises(WorkspaceError, match="model-a"):
        other.bind_embedder("model-b", DIM)
    other.close()
    idx.close()


_SECOND_PROCESS = """
import sys, time
import numpy as np
from expertkit.errors import WorkspaceError
from expertkit.index.sqlite import SQLiteIndex
idx = SQLiteIndex(sys.argv[1], lock_timeout=0.5)
print("read", len(idx.search_dense(np.full(16, 0.25, np.float32), 3)), len(idx.search_bm25("text", 3)), flush=True)
started = time.monotonic()
try:
    print("removed", idx.remove_source("/d/1.md"))
except WorkspaceError as exc:
    print(f"refused after {time.monotonic() - started:.1f}s: {exc}")
idx.close()
"""


def test_a_second_writer_waits_then_names_the_first(tmp_path):
    idx = SQLiteIndex(tmp_path / "index.db", lock_timeout=0.5)
    _corpus(idx)  # this process now holds the write lock, until it closes the index
    idx.db.execute("BEGIN IMMEDIATE")  # and has a write open: a reader must not wait for it
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-c", _SECOND_PROCESS, str(tmp_path / "index.db")]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "read 3 3"
    waited = float(lines[1].removeprefix("refused after ").partition("s:")[0])
    assert 0.45 <= waited < 5 and f"another expertkit process (pid {os.getpid()}: " in lines[1]  # lock_timeout 0.5
    assert "is writing to the index" in lines[1] and "Traceback" not in out.stderr
    idx.db.execute("ROLLBACK")
    idx.close()  # the lock goes with it
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines()[1:] == ["removed 5"], out.stdout + out.stderr
    assert (tmp_path / "index.db.lock").read_text() == ""  # released: no holder named


def test_an_index_from_before_the_deletion_log_is_upgraded_when_opened(tmp_path):
    idx = SQLiteIndex(tmp_path / "index.db")
    _corpus(idx)
    idx.search_dense(unit(1), 5)
    idx.db.execute("DROP TABLE chunk_deletes")
    idx.db.execute("DELETE FROM meta WHERE key = 'deletes_from'")
    idx.close()
    reader = SQLiteIndex(tmp_path / "index.db")
    assert reader._meta("deletes_from") == str(reader.generation) == "12"  # logged from here on
    writer = SQLiteIndex(tmp_path / "index.db")
    writer.remove_source("/d/5.md")
    fresh = SQLiteIndex(tmp_path / "index.db", cache_dir=tmp_path / "fresh")
    assert _same(reader.search_dense(unit(5000), 10), fresh.search_dense(unit(5000), 10))
    for index in (fresh, writer, reader):
        index.close()


def test_threads_sharing_one_instance_search_while_it_writes(tmp_path):
    import threading

    idx = SQLiteIndex(tmp_path / "index.db", ann_threshold=40)
    _corpus(idx)
    errors, searches, stop = [], [0] * 3, time.monotonic() + 1.5

    def search(n):
        while time.monotonic() < stop:
            try:
                with idx._snapshot():  # the search and the lookup in one state, as the writer goes on
                    hits = idx.search_dense(unit(n * 1000 + searches[n]), 10, Filters(tags=("even",)) if n else None)
                    assert len(idx.get_chunks(_ids(hits))) == len(hits)
                idx.search_bm25("text", 5)
                searches[n] += 1
            except Exception as exc:  # noqa: BLE001 - collected for the assertion below
                errors.append(repr(exc))

    def write():
        version = 0
        while time.monotonic() < stop:
            version += 1
            path = f"/d/{version % 15}.md"
            try:
                if version % 4 == 0:
                    idx.remove_source(path)
                else:
                    idx.write_source(*make_source(path, ["w"] * 3, seed=900 + version, digest=f"{version:08d}"))
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))

    threads = [threading.Thread(target=search, args=(n,)) for n in range(3)] + [threading.Thread(target=write)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and min(searches) > 20
    idx.close()


def _tagged_corpus(idx, sources=40, per=10):
    idx.bind_embedder("t", DIM)
    for s in range(sources):
        tag = ("rare",) if s == 0 else ("even",) if s % 2 else ("odd",)
        idx.write_source(*make_source(f"/d/{s}.md", [f"text {s} {i}" for i in range(per)], seed=s, tags=tag))


def test_filtered_search_goes_through_the_graph_unless_the_filter_is_selective(tmp_path, monkeypatch):
    idx = SQLiteIndex(tmp_path / "index.db", ann_threshold=100)
    _tagged_corpus(idx)  # 400 chunks: about half "even", half "odd", 10 "rare"
    exact = SQLiteIndex(tmp_path / "index.db", cache_dir=tmp_path / "exact", ann_threshold=10**9)
    paths = []
    for name in ("_ann_filtered", "_search_subset"):
        original = getattr(SQLiteIndex, name)
        monkeypatch.setattr(
            SQLiteIndex, name, lambda self, *a, _o=original, _n=name: (self is idx and paths.append(_n)) or _o(self, *a)
        )
    overlap = []
    for q in range(20):
        got = idx.search_dense(unit(10_000 + q), 10, Filters(tags=("even",)))
        want = exact.search_dense(unit(10_000 + q), 10, Filters(tags=("even",)))
        assert len(got) == 10
        assert set(_ids(got)) <= set(_ids(exact.search_dense(unit(10_000 + q), 400, Filters(tags=("even",)))))
        overlap.append(len(set(_ids(got)) & set(_ids(want))) / 10)
    assert np.mean(overlap) >= 0.9
    assert set(paths) == {"_ann_filtered"}  # half the index allowed: the graph, no fallback
    paths.clear()
    rare = idx.search_dense(unit(7), 10, Filters(tags=("rare",)))
    assert paths == ["_search_subset"] and len(rare) == 10  # 10 of 400 allowed: exact over them
    assert _same(rare, exact.search_dense(unit(7), 10, Filters(tags=("rare",))))
    exact.close()
    idx.close()


def test_a_graph_answer_short_of_k_falls_back_to_exact(tmp_path, monkeypatch):
    idx = SQLiteIndex(tmp_path / "index.db", ann_threshold=100)
    _tagged_corpus(idx)
    exact = SQLiteIndex(tmp_path / "index.db", cache_dir=tmp_path / "exact", ann_threshold=10**9)
    # a graph that finds nothing the filter allows (as a badly clustered filter can): exact fills k
    monkeypatch.setattr(SQLiteIndex, "_ann_search", lambda self, dense, query, k: [(10**9, 1.0)])
    got = idx.search_dense(unit(3), 10, Filters(tags=("odd",)))
    assert len(got) == 10 and _same(got, exact.search_dense(unit(3), 10, Filters(tags=("odd",))))
    exact.close()
    idx.close()


def test_an_ingest_brings_the_graph_up_to_date_before_any_query(tmp_path, embedder, monkeypatch):
    from expertkit.ingest.sync import Ingestor

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        (docs / f"d{i}.md").write_text("\n\n".join(f"Paragraph {p} of note {i} on valve V{p}." for p in range(12)))
    idx = SQLiteIndex(tmp_path / "index.db", ann_threshold=20)
    ingestor = Ingestor(idx, embedder, chunk_tokens=16, overlap=0)
    report = ingestor.sync([docs])
    chunks = sum(r.chunks for r in report.results)
    assert chunks > 20 and report.index_seconds > 0
    assert idx._ann is not None and len(idx._ann.index) == chunks and idx._ann.gen == idx.generation
    saved = list((tmp_path / "cache").glob("ann-*.usearch"))
    assert len(saved) == 1  # on disk for the next process, before any search
    builds = []
    monkeypatch.setattr(SQLiteIndex, "_build_ann", lambda self, dense: builds.append(1))
    (docs / "d0.md").unlink()
    ingestor.sync([docs], prune=True)  # the removed file's vectors leave the graph: no rebuild
    gone = next(r.chunks for r in report.results if r.path.endswith("/d0.md"))
    assert builds == [] and len(idx._ann.index) == chunks - gone
    reader = SQLiteIndex(tmp_path / "index.db", ann_threshold=20)
    reader.search_dense(embedder.encode(["valve V3"])[0], 5)
    assert builds == []  # a new process loads the saved graph and catches up; it builds nothing
    reader.close()
    idx.close()


def test_an_index_from_before_greek_folding_is_refolded_when_opened(tmp_path):
    """Issue 23: an index written before Greek words were folded for keyword search finds them after the
    upgrade, without a re-ingest; its English rows are untouched."""
    idx = SQLiteIndex(tmp_path / "index.db")
    idx.bind_embedder("t", DIM)
    idx.write_source(*make_source("/d/el.md", ["Η αντλία νερού ψύξης κοστίζει 412,50 ευρώ."]))
    idx.write_source(*make_source("/d/en.md", ["The seal kit costs 318 EUR."], seed=1))
    with idx.db:  # as an older expertkit wrote it: the text as it was, no 'keywords' mark
        for rowid, text in idx.db.execute("SELECT id, text FROM chunks").fetchall():
            idx.db.execute("DELETE FROM chunks_fts WHERE rowid = ?", (rowid,))
            idx.db.execute("INSERT INTO chunks_fts (rowid, body) VALUES (?, ?)", (rowid, text))
        idx.db.execute("DELETE FROM meta WHERE key = 'keywords'")
    assert idx.search_bm25("αντλιες", 10) == []  # the old index: the plural does not meet the singular
    idx.close()
    again = SQLiteIndex(tmp_path / "index.db")
    assert again._meta("keywords") == "1"
    [(cid, _)] = again.search_bm25("αντλιες", 10)
    assert again.get_chunks([cid])[0].source == "/d/el.md"
    bodies = dict(again.db.execute("SELECT rowid, body FROM chunks_fts"))
    assert "The seal kit costs 318 EUR." in bodies.values()  # English rows as they were
    again.close()
