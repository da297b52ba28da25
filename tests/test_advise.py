"""`expertkit advise`: the figures, the rules they feed, the measured decision, the report and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from expertkit.advise import (
    Profile,
    Recommendation,
    RouteResult,
    change_rate,
    contains_value,
    decide,
    is_correct,
    quick_advice,
    recommend_measured,
    unanswerable_questions,
    votes,
    wilson,
)
from expertkit.cli import app
from expertkit.index.base import SyncRecord
from tests.conftest import EXAMPLES

RAG, FT, BOTH = Recommendation.RAG, Recommendation.FINE_TUNING, Recommendation.BOTH

runner = CliRunner()


def profile(**over) -> Profile:
    values = dict(
        documents=3,
        chunks=30,
        words=5_000,
        structured_share=0.1,
        facts=40,
        syncs=1,
        changed_per_sync=None,
        days_observed=0.0,
        perplexity=20.0,
        perplexity_reference=10.0,
        base="smollm2-135m-instruct",
        traceable=True,
        workflow=False,
    )
    values.update(over)
    return Profile(**values)


def test_wilson_interval_matches_the_textbook_values():
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-3)
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)


@pytest.mark.parametrize(("k", "n", "z"), [(0, 1, 1.96), (1, 1, 1.96), (3, 7, 1.96), (50, 200, 1.96), (8, 10, 2.576)])
def test_wilson_is_the_closed_form_score_interval(k, n, z):
    p, denom = k / n, 1 + z * z / n
    centre, half = (p + z * z / (2 * n)) / denom, z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / denom
    assert wilson(k, n, z) == pytest.approx((max(0.0, centre - half), min(1.0, centre + half)), abs=1e-12)
    assert wilson(0, 0) == (0.0, 1.0)  # nothing measured: anything is possible


@pytest.mark.parametrize(
    ("answer", "value", "expected"),
    [
        ("Tighten it to 68 Nm.", "68 N·m", True),
        ("Tighten it to 168 Nm.", "68 N·m", False),
        ("It costs €1,200.", "€1200", True),
        ("The code is NP-4472.", "NP 4472", True),
        ("It weighs 41 kg", "41 kg", True),
        ("It weighs 4 kg", "41 kg", False),
        ("", "41 kg", False),
    ],
)
def test_contains_value_ignores_format_but_not_digits(answer, value, expected):
    assert contains_value(answer, value) is expected


def test_a_value_the_question_already_names_is_no_evidence():
    question = "Which part has a price of €89?"
    assert not is_correct("The part with a price of €89 is listed.", question, ["€89", "NP-4472"])
    assert is_correct("NP-4472 costs €89.", question, ["€89", "NP-4472"])
    assert is_correct("Yes, it is.", "Is it true that …?", ["yes"])
    assert not is_correct("No. It is 68 N·m.", "Is it true that …?", ["yes"])


def test_unanswerable_questions_name_codes_the_documents_never_use():
    rows = [{"meta": {"question": f"What is the price of part NP-44{i:02d}?", "expect": ["€1"]}} for i in range(12)]
    asked = unanswerable_questions(rows, 5)
    assert len(asked) == 5
    known = {r["meta"]["question"] for r in rows}
    for row in asked:
        assert row["unanswerable"] and row["question"] not in known and "NP-" in row["question"]


def test_change_rate_skips_the_first_sync_and_counts_quiet_ones():
    history = [
        SyncRecord(at=0, added=10, sources=10),
        SyncRecord(at=86400, updated=2, unchanged=8, sources=10),
        SyncRecord(at=2 * 86400, unchanged=10, sources=10),
    ]
    per_sync, days = change_rate(history)
    assert per_sync == pytest.approx(0.1) and days == pytest.approx(2.0)
    assert change_rate(history[:1]) == (None, 0.0)


def test_the_quick_rules_respond_to_the_data():
    changing = profile(syncs=4, changed_per_sync=0.3, facts=400, structured_share=0.8, perplexity=12.0)
    assert quick_advice(changing).recommendation == RAG
    rows = {v.row for v in votes(changing)}
    assert rows == {"changing", "small", "traceable", "many_facts"}
    stable = profile(syncs=4, changed_per_sync=0.0, words=80_000, traceable=False, perplexity=40.0)
    assert {v.row for v in votes(stable)} == {"stable", "vertical"}
    assert quick_advice(stable).recommendation == FT
    assert decide(votes(stable), traceable=True) == BOTH  # traceability keeps retrieval in
    assert quick_advice(profile(workflow=True)).recommendation == BOTH
    reasons = " ".join(quick_advice(changing).reasons)
    assert "30% of sources changed per sync" in reasons and "data that changes often" in reasons


def routes(**acc) -> dict[str, RouteResult]:
    out = {}
    for key in ("base", "rag", "fine_tuned", "rag_fine_tuned"):
        r = RouteResult(key, n=40, correct=round(acc.get(key, 0.1) * 40))
        r.not_found_asked, r.not_found_right = 8, 6
        out[key] = r
    return out


def test_the_measured_decision_follows_the_numbers_within_the_limits():
    free = profile(traceable=False)
    rec, reasons, changes = recommend_measured(routes(rag=0.3, fine_tuned=0.8, rag_fine_tuned=0.5), free)
    assert rec == FT and "fine-tuned 80% (32/40)" in reasons[0]
    assert any("traceable" in c for c in changes)
    # the same numbers, answers must be traceable: the best route with retrieval
    rec, _, changes = recommend_measured(routes(rag=0.3, fine_tuned=0.8, rag_fine_tuned=0.5), profile())
    assert rec == BOTH and any("advise.traceable = false" in c for c in changes)
    # RAG within 5 points of the best: the simpler route
    rec, reasons, _ = recommend_measured(routes(rag=0.7, fine_tuned=0.725, rag_fine_tuned=0.7), free)
    assert rec == RAG and any("simpler" in r for r in reasons)
    # sources that change often rule out a fine-tuned model alone
    moving = profile(traceable=False, syncs=5, changed_per_sync=0.4)
    rec, reasons, _ = recommend_measured(routes(rag=0.3, fine_tuned=0.8, rag_fine_tuned=0.5), moving)
    assert rec == BOTH and any("goes stale" in r for r in reasons)
    # ... and ask more of a route that needs retraining at every change
    rec, reasons, _ = recommend_measured(routes(rag=0.3, fine_tuned=0.8, rag_fine_tuned=0.375), moving)
    assert rec == RAG and any("retrained at every change" in r for r in reasons)


@pytest.fixture(scope="module")
def sample_ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("advise")
    docs = root / "docs"
    shutil.copytree(EXAMPLES, docs)
    ws = root / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    assert runner.invoke(app, ["ingest", str(docs), "-w", str(ws)]).exit_code == 0
    # one source changes and one is added: the second sync is history that advise reads
    csv = docs / "parts.csv"
    csv.write_text(csv.read_text().replace("318.00", "334.00"))
    (docs / "procedures" / "note.md").write_text("# Note\n\nThe NV-400 night shift ends at 06:00.\n")
    result = runner.invoke(app, ["ingest", str(docs), "-w", str(ws)])
    assert result.exit_code == 0, result.output
    return ws


def test_quick_advise_reads_the_workspace_and_writes_a_report(sample_ws):
    result = runner.invoke(app, ["advise", "-w", str(sample_ws), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    # a small corpus whose answers must be traceable (the default): both rows vote for retrieval
    assert out["recommendation"] == RAG, out["reasons"]
    assert any("traceable" in r for r in out["reasons"]) and any("words" in r for r in out["reasons"])
    assert set(out["routes"]) == {"base", "rag", "fine_tuned", "rag_fine_tuned"}
    for route in out["routes"].values():
        assert {"accuracy", "n", "latency_s"} <= set(route)
    p = out["profile"]
    assert p["documents"] == 7 and p["syncs"] == 2 and [h["changed"] for h in p["history"]] == [6, 2]
    assert p["changed_per_sync"] == pytest.approx(2 / 7, abs=1e-3)
    assert 1.0 < p["perplexity_ratio"] < 10.0  # part numbers and torque tables are far from generic text
    assert any("changed per sync" in r for r in out["reasons"])
    report = sample_ws / "advise" / "report.html"
    assert out["report"] == str(report) and report.exists() and (sample_ws / "advise" / "syncs.png").exists()
    assert json.loads((sample_ws / "advise" / "advice.json").read_text())["recommendation"] == out["recommendation"]


def test_advise_on_an_empty_workspace_says_what_to_do(tmp_path):
    runner.invoke(app, ["init", str(tmp_path / "ws")])
    result = runner.invoke(app, ["advise", "-w", str(tmp_path / "ws")])
    assert result.exit_code != 0
    assert "expertkit ingest" in str(result.exception) + result.output


def test_the_report_renders_in_chromium_and_its_images_load(sample_ws, browser):
    from tests.conftest import rendered_images

    result = runner.invoke(app, ["advise", "-w", str(sample_ws)])
    assert result.exit_code == 0, result.output
    report = sample_ws / "advise" / "report.html"
    assert "report: " in result.output
    title, images = rendered_images(browser, report.as_uri())
    assert title.startswith("expertkit advise")
    assert len(images) >= 1
    for image in images:
        assert image["complete"] and image["width"] > 100 and image["height"] > 100, image


ADVISE_EXAMPLES = EXAMPLES.parent / "advise"


def _measure(ws, budget: float, *settings: str) -> dict:
    sets = [arg for setting in ("advise.model_questions=0", *settings) for arg in ("--set", setting)]
    result = runner.invoke(app, ["advise", "--measure", "--budget", str(budget), "-w", str(ws), "--json", *sets])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


@pytest.mark.slow
def test_measure_runs_every_route_within_a_small_budget(tmp_path):
    """The measured path end to end at its smallest: held-out questions from the documents, both adapters
    trained (two steps each), the four routes asked through llama.cpp, the report written. Which route wins
    on which corpus, with adapters trained for real, is measured by benchmarks/advise_corpora.py (the two
    corpora of examples/advise/, about 16 minutes)."""
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    shutil.copy(ADVISE_EXAMPLES / "fine-tuning-wins" / "expertkit.toml", ws / "expertkit.toml")
    docs = ADVISE_EXAMPLES / "fine-tuning-wins" / "docs"
    for _ in range(2):  # two syncs, nothing changed: a change rate of 0
        assert runner.invoke(app, ["ingest", str(docs), "-w", str(ws)]).exit_code == 0
    budget = 5.0  # the smallest that leaves the 2 minutes training needs after the questions and routes
    out = _measure(ws, budget, "advise.questions=4", "advise.unanswerable=2", "advise.max_facts=8", "tune.max_steps=2")
    routes = out["routes"]
    assert set(routes) == {"base", "rag", "fine_tuned", "rag_fine_tuned"}
    for key, route in routes.items():
        assert route["n"] == 4 and route["unanswerable"] == 2 and route["latency_s"] > 0, (key, route)
        assert 0.0 <= route["accuracy"] <= 1.0 and route["not_found"] is not None
    for key in ("fine_tuned", "rag_fine_tuned"):  # the adapters were trained, and served through --lora
        assert routes[key]["train_steps"] == 2 and routes[key]["train_seconds"] > 0
        assert routes[key]["stale_share"] == 0.0  # nothing changed between syncs
    assert routes["base"]["train_steps"] is None and routes["rag"]["stale_share"] == 0.0
    assert out["recommendation"] in (RAG, FT, BOTH) and out["reasons"]
    assert not out["profile"]["traceable"]
    # no wall-clock assertion: on a shared 2-core machine the time is noise (benchmarks/advise_corpora.py times it)
    assert out["seconds"] > 0
    report = Path(out["report"])
    assert report.exists() and (report.parent / "advice.json").exists()


def test_greek_documents_are_measured_against_greek_generic_text(monkeypatch):
    """A corpus is compared with everyday text in its own language: per-token perplexity depends on the
    language and the tokenizer (SmolLM2 cuts Greek into bytes), so Greek chunks against English prose would
    measure the language, not how specialised the documents are."""
    from expertkit.advise import VERTICAL_RATIO, corpus_language, language_distance, reference_texts
    from expertkit.language import language_of

    everyday = [
        "Το καλοκαίρι οι περισσότερες οικογένειες πηγαίνουν διακοπές σε κάποιο νησί ή στο χωριό τους. Τα παιδιά "
        "κολυμπούν όλη μέρα στη θάλασσα και το βράδυ τρώνε όλοι μαζί στην αυλή κάτω από τα δέντρα.",
        "Ο φούρνος της γειτονιάς ανοίγει πολύ νωρίς το πρωί. Ο κόσμος αγοράζει ζεστό ψωμί, κουλούρια και "
        "τυρόπιτες πριν πάει στη δουλειά, και ο φούρναρης ξέρει τους περισσότερους πελάτες με το όνομά τους.",
    ]
    assert corpus_language(everyday) == "el" and corpus_language(reference_texts()) == "en"
    greek, english = reference_texts("el"), reference_texts("en")
    assert len(greek) == len(english) == 12 and all(language_of(t) == "el" for t in greek)
    measured = []
    real = language_distance.perplexity
    monkeypatch.setattr(
        language_distance, "perplexity", lambda m, t, texts: measured.append(texts) or real(m, t, texts)
    )
    text, reference = language_distance.domain_perplexity("smollm2-135m-instruct", everyday)
    assert sorted(measured[0]) == sorted(everyday) and measured[1:] == [greek]  # (a sample, in its own order)
    assert text / reference < VERTICAL_RATIO


def test_one_sync_is_a_table_row_and_several_a_plot(tmp_path):
    """A plot is drawn only where it has something to show: one sync is one point."""
    from expertkit.advise import Advice, build_report

    once = profile(history=[{"sources": 7, "changed": 7}])
    report = build_report(Advice(RAG, ["small"], once, "quick"), tmp_path / "once")
    html = report.read_text()
    assert not (tmp_path / "once" / "syncs.png").exists() and "syncs.png" not in html
    assert "<td>1</td>" in html.replace('<td class="num">', "<td>") and "changed (added+updated+removed)" in html
    twice = profile(syncs=2, history=[{"sources": 7, "changed": 7}, {"sources": 8, "changed": 2}])
    build_report(Advice(RAG, ["small"], twice, "quick"), tmp_path / "twice")
    assert (tmp_path / "twice" / "syncs.png").exists()
