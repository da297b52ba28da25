"""Stress: one process writes and removes sources in a loop while four others search, with and without
filters, two of them through the HNSW graph. Every result must resolve to a chunk that exists in the
same committed state, match the filter and carry the text its id was written with; no process may fail."""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
import time
import traceback

import numpy as np

from expertkit.index.base import Filters
from expertkit.index.sqlite import SQLiteIndex
from tests.index.conformance import DIM, make_source, unit

SECONDS = 10.0  # how long the writer and the readers run together
PATHS = 80  # the writer's pool of paths: /g<group>/<n>.md, group n % 3, tag t<n % 2>
READERS = 4


def _source(n: int, version: int, n_chunks: int):
    path = f"/g{n % 3}/{n}.md"
    texts = [f"v{version} {path} chunk {i}" for i in range(n_chunks)]
    # chunk ids are '<version, 8 digits>:<path>:<ordinal>', so a reader can tell what each one must say
    return make_source(path, texts, tags=(f"t{n % 2}",), digest=f"{version:08d}", seed=version, groups=(f"g{n % 3}",))


def _writer(db: str, barrier, results) -> None:
    errors, ops = [], 0
    try:
        idx = SQLiteIndex(db)
        rng = random.Random(1)
        version = 10_000
        barrier.wait()
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            n = rng.randrange(PATHS)
            if rng.random() < 0.3:
                idx.remove_source(f"/g{n % 3}/{n}.md")
            else:
                version += 1
                idx.write_source(*_source(n, version, rng.randrange(1, 9)))
            ops += 1
            time.sleep(0.002)  # leave the two cores some room for the readers
        idx.close()
    except Exception:
        errors.append(traceback.format_exc())
    results.put(("writer", ops, errors, False))


def _reader(db: str, number: int, barrier, results) -> None:
    errors, searches, used_ann, filtered_hits = [], 0, False, 0
    try:
        idx = SQLiteIndex(db, ann_threshold=50 if number < 2 else 10**9)  # two of them through the graph
        rng = np.random.default_rng(100 + number)
        barrier.wait()
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            choice = int(rng.integers(5))
            filters = [
                None,
                None,
                Filters(tags=("t1",)),
                Filters(groups=("g0", "g2")),
                Filters(tags=("t0",), groups=("g1",)),
            ][choice]
            k = int(rng.choice([3, 10, 40]))
            with idx._snapshot():  # the search and the lookup in one committed state
                if rng.random() < 0.8:
                    hits = idx.search_dense(unit(int(rng.integers(1 << 30))), k, filters)
                else:
                    hits = idx.search_bm25(f"chunk v{int(rng.integers(10_000, 12_000))}", k, filters)
                chunks = idx.get_chunks([cid for cid, _ in hits])
            used_ann |= idx._ann is not None
            searches += 1
            filtered_hits += bool(filters) and len(chunks)
            if len(chunks) != len(hits):
                missing = {cid for cid, _ in hits} - {c.chunk_id for c in chunks}
                errors.append(f"results that do not exist: {sorted(missing)[:5]}")
            for chunk in chunks:
                version, path, ordinal = chunk.chunk_id.split(":")
                if chunk.text != f"v{int(version)} {path} chunk {ordinal}" or chunk.source != path:
                    errors.append(f"{chunk.chunk_id} says {chunk.text!r}")
                if filters and filters.tags and not set(filters.tags) & set(chunk.tags):
                    errors.append(f"{chunk.chunk_id} does not have tags {filters.tags}")
                if filters and filters.groups is not None and path.split("/")[1] not in filters.groups:
                    errors.append(f"{chunk.chunk_id} is outside groups {filters.groups}")
            if len(errors) > 20:
                break
        idx.close()
        if filtered_hits < 20:  # the filter checks above must have had results to check
            errors.append(f"filtered searches returned only {filtered_hits} chunks")
    except Exception:
        errors.append(traceback.format_exc())
    results.put((f"reader {number}", searches, errors, used_ann))


def test_one_writer_and_four_readers(tmp_path):
    db = str(tmp_path / "index.db")
    idx = SQLiteIndex(db)
    idx.bind_embedder("t", DIM)
    for n in range(0, PATHS, 2):
        idx.write_source(*_source(n, n, 6))
    idx.close()
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter each, as separate commands would be
    barrier, results = ctx.Barrier(READERS + 1), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(db, barrier, results))]
    procs += [ctx.Process(target=_reader, args=(db, i, barrier, results)) for i in range(READERS)]
    for p in procs:
        p.start()
    report = {}
    for _ in procs:
        name, count, errors, used_ann = results.get(timeout=SECONDS + 60)
        report[name] = (count, errors, used_ann)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert not [e for _, errors, _ in report.values() for e in errors], report
    assert report["writer"][0] > 100, report
    for i in range(READERS):
        count, _, used_ann = report[f"reader {i}"]
        assert count > 20, report  # it searched, often
        assert used_ann == (i < 2), report
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()
    # what the readers left in the shared cache folder serves a new process as a fresh read would
    shared = SQLiteIndex(db)
    fresh = SQLiteIndex(db, cache_dir=tmp_path / "fresh")
    for q in range(10):
        for f in (None, Filters(tags=("t1",)), Filters(groups=("g1",))):
            a, b = shared.search_dense(unit(50_000 + q), 10, f), fresh.search_dense(unit(50_000 + q), 10, f)
            assert [c for c, _ in a] == [c for c, _ in b]
            assert np.allclose([s for _, s in a], [s for _, s in b], atol=1e-5)
    shared.close()
    fresh.close()
