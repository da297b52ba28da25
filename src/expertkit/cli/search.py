"""Search the index: search."""

from __future__ import annotations

import json
import re
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from expertkit.cli.common import (
    AsGroupOpt,
    JsonOpt,
    SetOpt,
    TagOpt,
    WorkspaceOpt,
    app,
    caller_groups,
    console,
    display_path,
    make_embedder,
    open_from_options,
)


def snippet(text: str, terms: list[str], width: int = 220) -> Text:
    """The window of ``text`` with the most query terms, with those terms highlighted."""
    flat = re.sub(r"\s+", " ", text)
    pattern = re.compile(r"\b(" + "|".join(re.escape(t) for t in terms) + r")\w*", re.IGNORECASE) if terms else None
    start = 0
    if pattern and len(flat) > width:
        best = -1
        for m in pattern.finditer(flat):
            s = max(0, m.start() - width // 4)
            n = len(pattern.findall(flat[s : s + width]))
            if n > best:
                best, start = n, s
    piece = flat[start : start + width]
    out = Text(("…" if start else "") + piece + ("…" if start + width < len(flat) else ""))
    if pattern:
        out.highlight_regex(pattern, style="bold yellow")
    return out


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="what to look for")],
    k: Annotated[int | None, typer.Option("-k", help="number of results")] = None,
    mode: Annotated[str | None, typer.Option(help="hybrid | bm25 | dense")] = None,
    tag: TagOpt = None,
    path: Annotated[str | None, typer.Option(help="only sources whose path matches this glob")] = None,
    file_type: Annotated[list[str] | None, typer.Option("--type", help="only these file types, e.g. pdf")] = None,
    as_group: AsGroupOpt = None,
    workspace: WorkspaceOpt = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Search the index: BM25 and dense results fused by reciprocal rank fusion (hybrid) by default."""
    from expertkit.index.base import Filters, keyword_terms

    ws = open_from_options(workspace, set_, {"search": {"k": k, "mode": mode}})
    index = ws.open_index()
    retriever = ws.retriever(index, make_embedder(ws, index))  # with search.reranker = "llm", it starts the model
    filters = Filters(tuple(tag or ()), path, tuple(file_type or ()), caller_groups(as_group))
    hits = retriever.search(query, filters=filters)
    index.close()
    if json_:
        print(
            json.dumps(
                {
                    "query": query,
                    "mode": ws.settings.search.mode,
                    "results": [h.to_json() for h in hits],
                    "timings": {k: round(v, 2) for k, v in retriever.last_timings.items()},
                    "rerank": retriever.last_rerank or None,
                },
                indent=2,
            )
        )
        return
    if not hits:
        console.print("no results")
        return
    terms = keyword_terms(query)
    table = Table("#", "score", "source", "text", show_lines=True)
    for rank, hit in enumerate(hits, start=1):
        c = hit.chunk
        where = display_path(c.source) + "".join(
            [
                f" p.{c.page}" if c.page else "",
                f" #{c.record_id}" if c.record_id else "",
                f"\n§ {c.heading}" if c.section else "",
            ]
        )
        table.add_row(str(rank), f"{hit.score:.4f}", escape(where), snippet(c.text, terms))
    console.print(table)
    t = retriever.last_timings
    rerank = f" · {retriever.last_rerank}" if retriever.last_rerank else ""
    rerank += f" {t['rerank_ms']:.0f} ms" if "rerank_ms" in t else ""
    console.print(f"[dim]{ws.settings.search.mode} · {t['total_ms']:.0f} ms{escape(rerank)}[/dim]")
