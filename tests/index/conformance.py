"""The conformance suite every Index backend passes. A backend's test module subclasses
``IndexConformance`` and provides an ``index`` fixture returning a fresh, empty index.

Vectors here are synthetic unit vectors, so the suite tests the index alone, not an embedder.
"""

from __future__ import annotations

import numpy as np
import pytest

from expertkit.index.base import Filters, Index, SourceRecord, SyncRecord
from expertkit.schema import Chunk

DIM = 16


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def make_source(path: str, texts: list[str], tags=(), file_type="md", digest=None, seed=0, groups=()):
    digest = digest or f"hash-{path}-{len(texts)}-{seed}"
    chunks = [
        Chunk(
            t,
            path,
            i,
            i * 100,
            i * 100 + len(t),
            file_type,
            page=i + 1 if file_type == "pdf" else None,
            section=("Guide", f"Part {i}"),
            record_id=None,
            tags=tuple(tags),
            chunk_id=f"{digest[:8]}:{path}:{i}",
        )
        for i, t in enumerate(texts)
    ]
    vectors = np.stack([unit(seed * 1000 + i) for i in range(len(texts))])
    return SourceRecord(path, digest, file_type, 10, 1.0, tuple(tags), groups=tuple(groups)), chunks, vectors


class IndexConformance:
    @pytest.fixture
    def index(self):  # pragma: no cover - each backend provides it
        raise NotImplementedError

    def test_every_protocol_method_is_implemented(self, index):
        """Callers use every Index method directly, the optional abilities included (no getattr)."""
        wanted = {name for name, value in vars(Index).items() if callable(value) and not name.startswith("_")}
        assert {"hold_write_lock", "prepare_search", "bulk_load"} <= wanted
        assert {name for name in wanted if not callable(getattr(index, name, None))} == set()

    def test_bulk_load_then_prepare_search(self, index):
        """What an ingest and a copy call around their writes: each backend's own, or a no-op."""
        index.bind_embedder("test-embedder", DIM)
        index.hold_write_lock()
        with index.bulk_load():
            for i in range(3):
                index.write_source(*make_source(f"/bulk/{i}.md", [f"valve {i} opens", "seal"], seed=i))
        index.prepare_search()
        assert index.stats().chunks == 6
        [(cid, _)] = index.search_dense(unit(1000), 1)  # source 1's first chunk's own vector
        assert index.get_chunks([cid])[0].source == "/bulk/1.md"
        assert len(index.search_bm25("valve", 5)) == 3

    def test_a_copy_into_it_keeps_the_vectors_and_resumes(self, index, tmp_path):
        from expertkit.index.copy import copy_index
        from expertkit.index.sqlite import SQLiteIndex

        src = SQLiteIndex(tmp_path / "src.db")
        src.bind_embedder("test-embedder", DIM)
        for i in range(3):
            src.write_source(*make_source(f"/c/{i}.md", [f"pump {i} note", "seal"], seed=i, groups=("g",)))
        src.record_sync(SyncRecord(at=1.0, added=3, sources=3))
        report = copy_index(src, index)
        assert (report.sources, report.chunks, report.skipped) == (3, 6, 0)
        assert index.bound_embedder() == "test-embedder" and index.get_source("/c/2.md").groups == ("g",)
        [(cid, score)] = index.search_dense(unit(2000), 1)  # source 2's first chunk's own vector
        assert index.get_chunks([cid])[0].source == "/c/2.md" and score == pytest.approx(1.0, abs=1e-4)
        again = copy_index(src, index)
        assert (again.sources, again.skipped) == (0, 3)
        assert [r.at for r in index.sync_history()] == [1.0]
        src.close()

    def test_empty_index(self, index):
        assert index.sources() == []
        assert index.search_bm25("anything", 5) == []
        assert index.search_dense(unit(1), 5) == []
        assert index.search_dense(unit(1), 5, Filters(groups=("a",))) == []
        assert index.search_bm25("anything", 5, Filters(tags=("t",))) == []
        assert index.stats().chunks == 0

    def test_write_and_read_back(self, index):
        index.bind_embedder("test-embedder", DIM)
        source, chunks, vectors = make_source(
            "/docs/a.md", ["the impeller nut torque is 68 Nm", "grease bearings"], tags=("ops",)
        )
        index.write_source(source, chunks, vectors)
        got = index.get_source("/docs/a.md")
        assert got.content_hash == source.content_hash and got.n_chunks == 2 and got.tags == ("ops",)
        back = index.get_chunks([chunks[1].chunk_id, "missing", chunks[0].chunk_id])
        assert [c.text for c in back] == ["grease bearings", "the impeller nut torque is 68 Nm"]
        assert back[1].section == ("Guide", "Part 0") and back[1].tags == ("ops",) and back[1].source == "/docs/a.md"
        stats = index.stats()
        assert (stats.documents, stats.chunks, stats.tags, stats.dim) == (1, 2, {"ops": 1}, DIM)

    def test_source_chunks_in_document_order(self, index):
        index.bind_embedder("test-embedder", DIM)
        index.write_source(*make_source("/d/a.md", ["first", "second", "third"]))
        assert [c.text for c in index.source_chunks("/d/a.md")] == ["first", "second", "third"]
        assert index.source_chunks("/d/missing.md") == []

    def test_bm25_ranks_matching_chunks(self, index):
        index.bind_embedder("test-embedder", DIM)
        for i, texts in enumerate(
            [
                ["impeller torque values for the pump"],
                ["warranty lasts 36 months"],
                ["torque torque torque wrench settings"],
            ]
        ):
            index.write_source(*make_source(f"/d/{i}.md", texts, seed=i))
        hits = index.search_bm25("What is the torque?", 10)
        texts = [c.text for c in index.get_chunks([cid for cid, _ in hits])]
        assert texts[0] == "torque torque torque wrench settings"
        assert "warranty lasts 36 months" not in texts
        assert all(a[1] >= b[1] for a, b in zip(hits, hits[1:], strict=False))
        assert isinstance(index.search_bm25("the of and", 5), list)  # stop words alone still search
        assert index.search_bm25("", 5) == []
        assert isinstance(index.search_bm25('"quotes" AND (syntax) OR NEAR*', 5), list)  # no FTS syntax error

    def test_greek_keyword_search_folds_accents_case_and_inflection(self, index):
        """Issue 23: "αντλιες ψυξης τιμη" (plural, no accents) finds "Η αντλία νερού ψύξης ... κοστίζει", in a
        document mixing Greek prose, Latin codes and English; English search is as before."""
        index.bind_embedder("test-embedder", DIM)
        texts = [
            "Η αντλία νερού ψύξης ΑΨ-220 κοστίζει 412,50 ευρώ.",
            "Ο θερμοστάτης ΘΣ-18 έχει εγγύηση 18 μηνών.",
            "The seal kit NP-4472 costs 318.00 EUR.",
        ]
        for i, text in enumerate(texts):
            index.write_source(*make_source(f"/d/el{i}.md", [text], seed=i))
        for query, expected in [
            ("αντλιες ψυξης", 0),
            ("ΑΝΤΛΙΑ", 0),
            ("Πόσους μήνες εγγύηση έχει ο θερμοστάτης;", 1),
            ("θερμοστατες", 1),
            ("αψ-220", 0),
            ("seal kit price", 2),
        ]:
            hits = index.search_bm25(query, 10)
            assert hits, query
            assert index.get_chunks([hits[0][0]])[0].text == texts[expected], query

    def test_dense_is_exact_inner_product(self, index):
        index.bind_embedder("test-embedder", DIM)
        index.write_source(*make_source("/d/a.md", ["x", "y", "z"], seed=3))
        target = unit(3 * 1000 + 2)
        hits = index.search_dense(target, 3)
        texts = [c.text for c in index.get_chunks([cid for cid, _ in hits])]
        assert texts[0] == "z" and hits[0][1] == pytest.approx(1.0, abs=1e-5)
        assert len(hits) == 3

    def test_rewrite_replaces_all_chunks(self, index):
        index.bind_embedder("test-embedder", DIM)
        index.write_source(*make_source("/d/a.md", ["old alpha", "old beta", "old gamma"], digest="v1"))
        index.write_source(*make_source("/d/a.md", ["new alpha"], digest="v2"))
        assert index.get_source("/d/a.md").content_hash == "v2"
        assert index.stats().chunks == 1
        assert index.search_bm25("old", 10) == []
        assert len(index.search_dense(unit(0), 10)) == 1

    def test_remove_source(self, index):
        index.bind_embedder("test-embedder", DIM)
        index.write_source(*make_source("/d/a.md", ["alpha one"]))
        index.write_source(*make_source("/d/b.md", ["alpha two"], seed=1))
        assert index.remove_source("/d/a.md") == 1
        assert index.remove_source("/d/a.md") == 0
        assert [s.path for s in index.sources()] == ["/d/b.md"]
        assert len(index.search_bm25("alpha", 10)) == 1 and len(index.search_dense(unit(0), 10)) == 1

    def test_filters(self, index):
        index.bind_embedder("test-embedder", DIM)
        index.write_source(*make_source("/d/manual.pdf", ["pump torque"], tags=("manuals",), file_type="pdf"))
        index.write_source(*make_source("/d/parts.csv", ["pump part"], tags=("parts",), file_type="csv", seed=1))
        index.write_source(*make_source("/e/notes.md", ["pump notes"], tags=("parts", "notes"), seed=2))

        def sources(filters):
            bm = {c.source for c in index.get_chunks([cid for cid, _ in index.search_bm25("pump", 10, filters)])}
            de = {c.source for c in index.get_chunks([cid for cid, _ in index.search_dense(unit(5), 10, filters)])}
            assert bm == de
            return bm

        assert sources(Filters(tags=("parts",))) == {"/d/parts.csv", "/e/notes.md"}
        assert sources(Filters(path_glob="/d/*")) == {"/d/manual.pdf", "/d/parts.csv"}
        assert sources(Filters(file_types=("pdf",))) == {"/d/manual.pdf"}
        assert sources(Filters(tags=("parts",), file_types=("md",))) == {"/e/notes.md"}
        assert sources(Filters(tags=("nothing",))) == set()

    def test_cached_vectors_by_text_hash(self, index):
        from expertkit.index.base import text_hash

        index.bind_embedder("test-embedder", DIM)
        source, chunks, vectors = make_source("/d/a.md", ["alpha"])
        index.write_source(source, chunks, vectors)
        found = index.cached_vectors([text_hash(chunks[0].embed_text()), text_hash("never seen")])
        assert list(found) == [text_hash(chunks[0].embed_text())]
        np.testing.assert_allclose(found[text_hash(chunks[0].embed_text())], vectors[0])

    def test_refuses_a_different_embedder(self, index):
        from expertkit.errors import WorkspaceError

        index.bind_embedder("model-a", DIM)
        index.bind_embedder("model-a", DIM)
        with pytest.raises(WorkspaceError, match="model-a"):
            index.bind_embedder("model-b", DIM)

    def test_mismatched_vectors_are_a_bug(self, index):
        index.bind_embedder("test-embedder", DIM)
        source, chunks, vectors = make_source("/d/a.md", ["a", "b"])
        with pytest.raises(ValueError):
            index.write_source(source, chunks, vectors[:1])
        assert index.get_source("/d/a.md") is None

    def test_sync_history_is_kept_in_order(self, index):
        assert index.sync_history() == []
        index.record_sync(SyncRecord(at=200.0, added=0, updated=2, removed=1, unchanged=7, sources=9))
        index.record_sync(SyncRecord(at=100.0, added=10, sources=10))
        history = index.sync_history()
        assert [h.at for h in history] == [100.0, 200.0]
        assert history[1].changed == 3 and history[1].unchanged == 7 and history[0].added == 10

    def test_update_stat_keeps_the_chunks(self, index):
        index.bind_embedder("test-embedder", DIM)
        index.write_source(*make_source("/d/a.md", ["alpha"], groups=("all",)))
        index.update_stat("/d/a.md", 99, 12345.5, 20000.0)
        got = index.get_source("/d/a.md")
        assert (got.size, got.mtime, got.synced_at, got.n_chunks, got.groups) == (99, 12345.5, 20000.0, 1, ("all",))
        assert len(index.search_bm25("alpha", 5)) == 1

    def test_access_groups_are_enforced_inside_the_query(self, index):
        index.bind_embedder("test-embedder", DIM)
        for s in range(12):  # many public sources, each a weaker match than the HR ones
            index.write_source(
                *make_source(f"/pub/{s}.md", [f"salary policy note {s}"], seed=100 + s, groups=("staff",))
            )
        secret = make_source(
            "/hr/pay.md", ["salary salary of Dana Reyes is 91,250", "salary bands"], seed=7, groups=("hr",)
        )
        index.write_source(*secret)
        index.write_source(*make_source("/both/x.md", ["salary review calendar"], seed=300, groups=("hr", "staff")))
        target = secret[2][0]  # the HR chunk's own vector: the best dense match by far

        def paths(groups, k=5):
            f = Filters(groups=groups)
            bm = [c.source for c in index.get_chunks([cid for cid, _ in index.search_bm25("salary", k, f)])]
            de = [c.source for c in index.get_chunks([cid for cid, _ in index.search_dense(target, k, f)])]
            return bm, de

        bm, de = paths(("staff",))
        assert "/hr/pay.md" not in bm + de
        assert len(bm) == 5 and len(de) == 5  # k is filled from the allowed set
        bm, de = paths(("hr",))
        assert set(bm) == set(de) == {"/hr/pay.md", "/both/x.md"}
        assert de[0] == "/hr/pay.md"
        assert paths(()) == ([], [])  # no groups sees nothing
        assert paths(("nobody",)) == ([], [])
        bm, de = paths(None, k=20)  # the workspace's owner sees everything
        assert "/hr/pay.md" in bm and "/hr/pay.md" in de and len(set(de)) == 14
        bm, de = paths(("staff",), k=20)
        assert "/both/x.md" in bm and "/both/x.md" in de and len(set(de)) == 13
        combined = Filters(tags=(), path_glob="/hr/*", groups=("staff",))
        assert index.search_bm25("salary", 5, combined) == [] and index.search_dense(target, 5, combined) == []
        assert index.get_source("/hr/pay.md").groups == ("hr",)
        assert index.stats().groups == {"hr": 2, "staff": 13}
