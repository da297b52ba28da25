"""Reports people would rather look at than read: PNG plots and one self-contained report.html.

A report is a title and sections; a section holds paragraphs, tables and figures. Each figure is
written as a PNG file beside report.html and embedded in it as a data: URI, so the HTML can be mailed
or archived alone and still shows its plots. The page is the Jinja2 template report.html.j2 (autoescaped).
"""

from __future__ import annotations

import base64
import functools
import io
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import jinja2

from expertkit.errors import require


@dataclass
class Figure:
    name: str  # file name stem, e.g. "accuracy"
    caption: str
    png: bytes


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Section:
    heading: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)


def _pyplot():
    require("report", "matplotlib")
    import matplotlib

    matplotlib.use("Agg")  # no display here, and none needed
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    _pyplot().close(fig)
    return buf.getvalue()


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    title: str,
    ylabel: str,
    intervals: Sequence[tuple[float, float]] | None = None,
    percent: bool = False,
) -> bytes:
    """Bars with optional (low, high) intervals drawn as error bars; values printed on the bars."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    scale = 100.0 if percent else 1.0
    heights = [v * scale for v in values]
    yerr = None
    if intervals:
        yerr = [
            [max(v - lo, 0) * scale for v, (lo, _) in zip(values, intervals, strict=True)],
            [max(hi - v, 0) * scale for v, (_, hi) in zip(values, intervals, strict=True)],
        ]
    bars = ax.bar(labels, heights, yerr=yerr, capsize=6, color="#4C78A8")
    for bar, h in zip(bars, heights, strict=True):
        ax.annotate(f"{h:.0f}%" if percent else f"{h:.2g}", (bar.get_x() + bar.get_width() / 2, h), ha="center",
                    va="bottom", xytext=(0, 2), textcoords="offset points", fontsize=9)  # fmt: skip
    if percent:
        ax.set_ylim(0, 105)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def line_chart(
    series: dict[str, Sequence[tuple[float, float]]],
    title: str,
    xlabel: str,
    ylabel: str,
    percent: bool = False,
    counts: bool = False,
) -> bytes:
    """One line per series of (x, y) points; ``counts``: both axes count things, so their ticks are whole numbers
    and the y axis starts at 0 (a flat series is not blown up to fill the plot)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, points in series.items():
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, [y * (100 if percent else 1) for y in ys], marker="o" if len(points) < 30 else None,
                    label=name)  # fmt: skip
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if percent:
        ax.set_ylim(0, 105)
    if counts:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend()
    return _png(fig)


_NUMBER = re.compile(r"^[-+]?[\d.,]+\s*(%|s|ms|MB|min)?$")


def _number_text(cell: object) -> bool:
    """A table cell that reads as a number (``12``, ``0.91``, ``85%``, ``1.2 s``), right-aligned in its column."""
    return _NUMBER.match(str(cell).strip()) is not None


@functools.cache
def _template() -> jinja2.Template:
    """report.html.j2, beside this module; autoescaping on, so every piece of text is escaped exactly once."""
    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.tests["number_text"] = _number_text
    env.filters["base64"] = lambda png: base64.b64encode(png).decode("ascii")
    source = resources.files(__package__).joinpath("report.html.j2").read_text(encoding="utf-8")
    return env.from_string(source)


def write_report(folder: Path, title: str, sections: Sequence[Section], callout: str = "") -> Path:
    """Write ``folder/report.html`` (self-contained: each figure embedded as a data: URI) and each figure as
    ``folder/<name>.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    for section in sections:
        for figure in section.figures:
            (folder / f"{figure.name}.png").write_bytes(figure.png)
    page = _template().render(title=title, callout=callout, sections=sections, written=time.strftime("%Y-%m-%d %H:%M"))
    path = folder / "report.html"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


def retrieval_report(scores, set_name: str, folder: Path) -> Path:
    """``eval retrieval --report``: the scores and the recall@k curve."""
    curve = sorted(scores.recall_curve.items())
    table = Table(["set", "mode", "queries", "nDCG@10", "recall@10", "recall@100", "MRR@10"], [[
        set_name, scores.mode, str(scores.queries), f"{scores.ndcg10:.4f}", f"{scores.recall10:.4f}",
        f"{scores.recall100:.4f}", f"{scores.mrr10:.4f}"]])  # fmt: skip
    recall = Table(["k", *[str(k) for k, _ in curve]], [["recall@k", *[f"{v:.3f}" for _, v in curve]]])
    figure = Figure("recall", f"Recall@k on {set_name} ({scores.mode})",
                    line_chart({scores.mode: curve}, f"Recall@k, {set_name}", "k", "recall", percent=True))  # fmt: skip
    per_query = sorted(scores.per_query.values())
    spread = Figure("ndcg", "nDCG@10 per query, sorted (where retrieval fails)", line_chart(
        {"nDCG@10": list(enumerate(per_query))}, "nDCG@10 per query", "query (sorted)", "nDCG@10"))  # fmt: skip
    return write_report(folder, f"expertkit eval retrieval: {set_name}",
                        [Section("Scores", tables=[table, recall], figures=[figure, spread])])  # fmt: skip


def answers_report(scores, set_name: str, folder: Path) -> Path:
    """``eval answers --report``: the scores, the latency distribution, and every answer against its gold."""
    pct = lambda v: "–" if v is None else f"{v:.0%}"  # noqa: E731
    table = Table(["route", "questions", "ROUGE-L", "token F1", "found", "cited", "valid citations",
                   "citations in gold", "latency p50", "tok/s"], [[
        scores.route, str(scores.questions), f"{scores.rouge_l:.4f}", f"{scores.token_f1:.4f}", pct(scores.found),
        pct(scores.cited), pct(scores.citations_valid), pct(scores.citations_in_gold),
        f"{scores.latency_ms_p50 / 1000:.2f} s", f"{scores.tokens_per_s:.1f}"]])  # fmt: skip
    latencies = sorted(i["latency_ms"] / 1000 for i in scores.items)
    figures = [
        Figure("latency", "Seconds per answer, sorted", line_chart(
            {"latency": list(enumerate(latencies))}, "Latency per answer", "answer (sorted)", "seconds")),
        Figure("f1", "Token F1 per answer, sorted", line_chart(
            {"token F1": list(enumerate(sorted(i["token_f1"] for i in scores.items)))}, "Token F1 per answer",
            "answer (sorted)", "token F1")),
    ]  # fmt: skip
    rows = [[i["question"], i["answer"][:300], i["gold"][:300], f"{i['token_f1']:.2f}"] for i in scores.items]
    answers = Table(["question", "answer", "gold", "token F1"], rows)
    sections = [Section("Scores", tables=[table], figures=figures), Section("Answers", tables=[answers])]
    return write_report(folder, f"expertkit eval answers: {set_name} ({scores.route})", sections)
