"""The advice's report.html: why, the routes side by side (measured), the corpus's figures and the criteria.
The sections are data; ``expertkit.evaluate.report.write_report`` renders them, as it does eval's."""

from __future__ import annotations

import statistics
from pathlib import Path

from expertkit.advise.advice import Advice
from expertkit.advise.criteria import CRITERIA, Recommendation
from expertkit.advise.grading import wilson
from expertkit.advise.profile import Profile
from expertkit.advise.routes import ROUTE_NAMES, ROUTES
from expertkit.evaluate.report import Figure, Section, Table, bar_chart, line_chart, write_report

ROUTE_HEADERS = [
    "route",
    "accuracy",
    "95% interval",
    "questions",
    "facts never trained on",
    "“not found” when unanswerable",
    "valid citations",
    "groundedness",
    "latency p50",
    "training",
    "peak memory",
    "stale after one sync",
]


def build_report(advice: Advice, folder: Path) -> Path:
    """Write ``folder/report.html`` and its figures as PNG files; returns the report's path."""
    sections = [_why(advice)]
    if advice.routes:
        sections.append(_routes_section(advice))
    sections.append(_corpus_section(advice.profile))
    criteria = [[situation, str(route)] for situation, route in CRITERIA.values()]
    sections.append(Section("The criteria", tables=[Table(["situation", "route"], criteria)]))
    title = "expertkit advise: " + Recommendation(advice.recommendation).label
    callout = f"Recommendation ({advice.mode}): {advice.recommendation}. " + (
        advice.reasons[0] if advice.reasons else ""
    )
    return write_report(folder, title, sections, callout)


def _why(advice: Advice) -> Section:
    why = Section("Why", bullets=list(advice.reasons))
    if advice.changes:
        why.tables.append(Table(["what would change the recommendation"], [[c] for c in advice.changes]))
    return why


def _fmt(value, form: str = "{:.0%}") -> str:
    return "–" if value is None else form.format(value)


def _route_row(key: str, j: dict) -> list[str]:
    """One route's row of the side-by-side table, from its JSON."""
    return [
        ROUTE_NAMES[key],
        f"{j['accuracy']:.0%}",
        f"{j['ci95'][0]:.0%}–{j['ci95'][1]:.0%}",
        str(j["n"]),
        _fmt(j["unseen_facts"]),
        _fmt(j["not_found"]),
        _fmt(j["citation_validity"]),
        _fmt(j["groundedness"]),
        _fmt(j["latency_s"], "{:.2f} s"),
        _fmt(j["train_seconds"], "{:.0f} s"),
        _fmt(j["peak_rss_mb"], "{:.0f} MB"),
        _fmt(j["stale_share"]),
    ]


def _routes_section(advice: Advice) -> Section:
    keys = [k for k in ROUTES if k in advice.routes]
    rows = [_route_row(k, advice.routes[k].to_json()) for k in keys]
    names = [ROUTE_NAMES[k] for k in keys]
    results = [advice.routes[k] for k in keys]
    accuracy = bar_chart(
        names,
        [r.accuracy for r in results],
        "Held-out accuracy per route",
        "accuracy (%)",
        [wilson(r.correct, r.n) for r in results],
        percent=True,
    )
    latencies = [statistics.median(r.latencies) if r.latencies else 0 for r in results]
    figures = [
        Figure("accuracy", "Accuracy on held-out questions, with 95% Wilson intervals", accuracy),
        Figure(
            "latency", "Median seconds per answer", bar_chart(names, latencies, "Latency per answer (p50)", "seconds")
        ),
    ]
    if advice.losses:
        loss = line_chart(dict(advice.losses), "Training loss", "step", "loss")
        figures.append(Figure("loss", "Training loss of the adapters", loss))
    return Section("Routes, side by side", advice.method, [Table(ROUTE_HEADERS, rows)], figures)


def _corpus_rows(p: Profile) -> list[list[str]]:
    changed = "not known (one sync)" if p.changed_per_sync is None else f"{p.changed_per_sync:.1%}"
    return [
        ["documents", str(p.documents)],
        ["chunks", str(p.chunks)],
        ["words", f"{p.words:,}"],
        ["records (share of chunks)", f"{p.structured_share:.0%}"],
        ["separate facts found", str(p.facts)],
        ["syncs recorded", str(p.syncs)],
        ["sources changed per re-sync", changed],
        ["days of history", f"{p.days_observed:.1f}"],
        [f"perplexity of {p.base} on the documents", _fmt(p.perplexity, "{:.1f}")],
        ["… on generic text", _fmt(p.perplexity_reference, "{:.1f}")],
        ["ratio", _fmt(p.perplexity_ratio, "{:.2f}×")],
        ["answers must be traceable (advise.traceable)", str(p.traceable).lower()],
        ["automated workflow (advise.workflow)", str(p.workflow).lower()],
    ]


def _corpus_section(p: Profile) -> Section:
    corpus = Section("The corpus", tables=[Table(["figure", "value"], _corpus_rows(p))])
    changed_label = "changed (added+updated+removed)"
    if len(p.history) > 1:  # one sync is one point: a table says it better than a plot
        series = {
            changed_label: [(i + 1, h["changed"]) for i, h in enumerate(p.history)],
            "sources": [(i + 1, h["sources"]) for i, h in enumerate(p.history)],
        }
        plot = line_chart(series, "Sync history", "sync", "sources", counts=True)
        corpus.figures.append(Figure("syncs", "Sources added, changed and removed per sync", plot))
    elif p.history:
        first = p.history[0]
        corpus.tables.append(
            Table(["sync", "sources", changed_label], [["1", str(first["sources"]), str(first["changed"])]])
        )
    return corpus
