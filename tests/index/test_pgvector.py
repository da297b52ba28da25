"""The PostgreSQL + pgvector backend against a real server, started by the session fixture ``pg_dsn``."""

import numpy as np
import pytest

from expertkit.index.base import Filters
from tests.index.conformance import DIM, IndexConformance, make_source, unit


def fresh(dsn: str, schema: str, **kwargs):
    """An empty index in its own schema (dropped first if an earlier run left it)."""
    from expertkit.index.pgvector import PostgresIndex

    PostgresIndex(dsn, schema=schema).drop()
    return PostgresIndex(dsn, schema=schema, **kwargs)


class TestPostgresIndex(IndexConformance):
    @pytest.fixture
    def index(self, pg_dsn, request):
        idx = fresh(pg_dsn, "t_" + request.node.name.lower()[:50])
        yield idx
        idx.drop()
        idx.close()


def test_schemas_keep_two_indexes_apart(pg_dsn):
    a, b = fresh(pg_dsn, "apart_a"), fresh(pg_dsn, "apart_b")
    a.bind_embedder("m", DIM)
    b.bind_embedder("m", DIM)
    a.write_source(*make_source("/a.md", ["only in a"]))
    assert b.stats().chunks == 0 and a.stats().chunks == 1
    a.drop()
    b.drop()


def test_the_local_server_wants_a_password(pg_dsn):
    """`db start`'s server is no open door for other local users: logins need the password in its 0600 file."""
    import os

    import psycopg

    from expertkit.index.pgserver import ROLE

    bare, _, passfile = pg_dsn.partition("?passfile=")
    assert passfile and os.stat(passfile).st_mode & 0o077 == 0
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(bare, connect_timeout=5)
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == ROLE


def test_bm25_survives_counts_older_than_a_frequency(pg_dsn):
    """The chunk count is cached; another process's write can make a term's frequency exceed it."""
    idx = fresh(pg_dsn, "stale_counts")
    idx.bind_embedder("m", DIM)
    assert idx.search_bm25("valve", 5) == []  # caches the count: 0 chunks
    from expertkit.index.pgvector import PostgresIndex

    other = PostgresIndex(pg_dsn, schema="stale_counts")
    other.write_source(*make_source("/a.md", ["valve opens at 12 bar", "valve seat"]))
    hits = idx.search_bm25("valve", 5)
    assert len(hits) == 2 and all(score > 0 for _, score in hits)
    other.close()
    idx.drop()
    idx.close()


def test_hnsw_filtered_search_fills_k_and_agrees_with_exact(pg_dsn):
    """Above a few thousand rows the planner uses the HNSW index; a selective filter must still fill k."""
    idx = fresh(pg_dsn, "hnsw_fill", ef_search=40)
    idx.bind_embedder("m", DIM)
    rng = np.random.default_rng(0)
    for s in range(60):
        n = 100
        vecs = rng.standard_normal((n, DIM)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        source, chunks, _ = make_source(
            f"/d/{s}.md", [f"t{s} {i}" for i in range(n)], seed=s, groups=("rare",) if s == 7 else ("common",)
        )
        idx.write_source(source, chunks, vecs)
    plan = "\n".join(
        r[0]
        for r in idx.conn.execute(
            "EXPLAIN SELECT chunk_id FROM hnsw_fill.chunks ORDER BY embedding <#> %s LIMIT 10", (unit(1),)
        )
    )
    assert "chunks_embedding" in plan  # the ANN index serves the query
    from expertkit.index.pgvector import _array

    rows = idx.conn.execute("SELECT chunk_id, embedding FROM hnsw_fill.chunks WHERE 'rare' = ANY(groups)").fetchall()
    ids, matrix = [r[0] for r in rows], np.stack([_array(r[1]) for r in rows])
    overlap = []
    for q in range(5):
        query = unit(500 + q)
        got = idx.search_dense(query, 20, Filters(groups=("rare",)))
        assert len(got) == 20  # 100 allowed of 6,000: k is filled
        sources = {c.source for c in idx.get_chunks([cid for cid, _ in got])}
        assert sources == {"/d/7.md"}
        exact = {ids[i] for i in np.argsort(-(matrix @ query))[:20]}  # brute force over the allowed rows
        overlap.append(len(exact & {cid for cid, _ in got}) / 20)
    assert len(rows) == 100 and np.mean(overlap) >= 0.9
    idx.drop()
    idx.close()


def test_writers_and_readers_at_once(pg_dsn):
    """Two writers (one transaction per file) and two readers on their own connections, all at once."""
    import threading

    from expertkit.index.pgvector import PostgresIndex

    fresh(pg_dsn, "busy").bind_embedder("m", DIM)
    errors, searched = [], []
    done = threading.Event()

    def writer(w):
        try:
            idx = PostgresIndex(pg_dsn, schema="busy")
            for i in range(40):
                idx.write_source(
                    *make_source(f"/w{w}/{i}.md", [f"pump note {w} {i}", "seal"], seed=w * 100 + i, groups=(f"g{w}",))
                )
                if i % 4 == 3:
                    idx.remove_source(f"/w{w}/{i - 1}.md")
            idx.close()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    def reader(r):
        try:
            idx = PostgresIndex(pg_dsn, schema="busy")
            while not done.is_set():
                for hit, _ in idx.search_dense(unit(r), 10, Filters(groups=("g0",))) + idx.search_bm25("pump", 10):
                    searched.append(hit)
                assert all(
                    c.source.startswith("/w0/")
                    for c in idx.get_chunks(
                        [cid for cid, _ in idx.search_dense(unit(r + 7), 10, Filters(groups=("g0",)))]
                    )
                )
            idx.close()
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    readers = [threading.Thread(target=reader, args=(r,)) for r in range(2)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join(timeout=120)
    done.set()
    for t in readers:
        t.join(timeout=30)
    assert errors == []
    assert len(searched) > 20
    idx = PostgresIndex(pg_dsn, schema="busy")
    assert idx.stats().documents == 2 * 30 and idx.stats().chunks == 2 * 30 * 2
    idx.drop()
    idx.close()


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("host=db.internal password = hunter2 dbname=ek", "host=db.internal password = *** dbname=ek"),
        ("host=db.internal password='correct horse battery' user=ek", "host=db.internal password=*** user=ek"),
        (r"host=h password = 'it\'s a secret' port=5432", "host=h password = *** port=5432"),
        ("host=h password='never closed at all", "host=h password=***"),
        ("host=h sslpassword=keypass password=hunter2", "host=h sslpassword=*** password=***"),
        ("postgresql://ek:hunter2@db.internal:5432/ek", "postgresql://ek:***@db.internal:5432/ek"),
        ("postgresql://ek:hun@ter2@db.internal/ek", "postgresql://ek:***@db.internal/ek"),
        (
            "postgresql://ek@db.internal/ek?password=hunter2&sslmode=require",
            "postgresql://ek@db.internal/ek?password=***&sslmode=require",
        ),
    ],
)
def test_redact_dsn_leaves_no_password_in_messages(dsn, shown):
    """Finding 8: `password = x` (spaces) and quoted passwords with spaces came through whole or in part."""
    from expertkit.index.pgvector import redact_dsn

    out = redact_dsn(dsn)
    assert out == shown
    assert not any(word in out for word in ("hunter2", "horse", "battery", "secret", "closed", "keypass", "ter2"))


def test_an_index_from_before_greek_folding_is_refolded_when_opened(pg_dsn):
    """Issue 23: chunks written before Greek words were folded get their tsvector again on open, once."""
    from expertkit.index.pgvector import PostgresIndex

    index = fresh(pg_dsn, "before_folding")
    index.bind_embedder("t", DIM)
    index.write_source(*make_source("/d/el.md", ["Η αντλία νερού ψύξης κοστίζει 412,50 ευρώ."]))
    with index.conn.transaction():  # as an older expertkit wrote it: the text as it was, no 'keywords' mark
        index.conn.execute("UPDATE before_folding.chunks SET tsv = to_tsvector('english', text)")
        index.conn.execute("DELETE FROM before_folding.meta WHERE key = 'keywords'")
    assert index.search_bm25("αντλιες", 10) == []
    index.close()
    again = PostgresIndex(pg_dsn, schema="before_folding")
    [(cid, _)] = again.search_bm25("αντλιες", 10)
    assert again.get_chunks([cid])[0].source == "/d/el.md" and again._meta("keywords") == "1"
    again.drop()
