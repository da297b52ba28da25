"""Models and answers: models, ask, chat, serve."""

from __future__ import annotations

import json
import os
from pathlib import Path
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
    ensure_model,
    err,
    make_rag,
    open_from_options,
    warn_stale,
)
from expertkit.errors import ExpertkitError
from expertkit.language import say


@app.command()
def models(json_: JsonOpt = False) -> None:
    """Known models: size, whether installed, and the command that installs each."""
    from expertkit.models.registry import REGISTRY, model_cache_dir

    rows = []
    for spec in REGISTRY.values():
        path = spec.locate()
        installed = spec.installed()
        size = spec.split.size if spec.split else (_size(path) if path else 0)
        converted = model_cache_dir() / spec.name
        rows.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "installed": installed,
                "ready": path is not None,  # a split GGUF is joined on first use
                "size_mb": round(size / 2**20, 1),
                "path": str(path) if path else None,
                "package": spec.package,
                "install": spec.install,
                "description": spec.description,
                "license": spec.license,
                "converted": str(converted) if (converted / "config.json").exists() else None,
            }
        )
    if json_:
        print(json.dumps({"models": rows}, indent=2))
        return
    from expertkit.config import EmbedSettings, GenerateSettings, SearchSettings
    from expertkit.retrieve import SHIPPED_RERANKER

    reranker = SearchSettings().reranker
    defaults = {EmbedSettings().model, GenerateSettings().model, SHIPPED_RERANKER if reranker == "auto" else reranker}
    table = Table("name", "kind", "installed", "size", "notes")
    for r in rows:
        notes = r["description"]
        if r["installed"] and not r["ready"]:
            notes += "\njoined and verified on first use"
        if r["converted"]:
            notes += f"\nsafetensors copy (training): {r['converted']}"
        table.add_row(
            r["name"] + ("\n(default)" if r["name"] in defaults else ""),
            r["kind"],
            "yes" if r["installed"] else f"no: {r['install']}",
            f"{r['size_mb']:.0f} MB" if r["size_mb"] else "",
            escape(notes),
        )
    console.print(table)
    console.print(
        "[dim]Any GGUF file (Phi-3-mini, Phi-3.5-mini, Phi-4-mini...) or HF folder works too: "
        "--set generate.model=/path/to/model.gguf[/dim]"
    )


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _print_answer(answer, streamed: bool, shown: bool = False) -> None:
    """The verified answer (streamed tokens were the model's draft), its citations and timings.
    ``shown``: the caller printed the answer already."""
    if streamed:
        console.print()
    if not shown and (not streamed or answer.answer != answer.model_answer.strip()):
        console.print(escape(answer.answer))
    lang = answer.language  # the labels that carry the answer are in the question's language
    if answer.extractive:
        console.print(f"[yellow]{say(lang, 'quoted')}[/yellow]")
    if answer.finish_reason == "interrupted":
        console.print("[yellow]interrupted: the answer above is partial[/yellow]")
    if not answer.rag:
        console.print("[dim]bare model, no retrieval (--no-rag): nothing to cite[/dim]")
    elif not answer.found:
        why = answer.explanation or say(lang, "irrelevant")
        console.print(f"[dim]{escape(why)}[/dim]")
    elif not answer.citations:
        console.print(f"[yellow]{say(lang, 'uncited')}[/yellow]")
    for c in answer.citations:
        where = (
            display_path(c.source)
            + (f" {say(lang, 'p', n=str(c.page))}" if c.page else "")
            + (f" #{c.record_id}" if c.record_id else "")
        )
        where += f" § {c.section}" if c.section else ""
        how = f" [dim]({say(lang, 'attributed')})[/dim]" if c.attributed and not answer.extractive else ""
        quote = "" if answer.extractive else f"\n      [dim]“{escape(c.quote)}”[/dim]"  # the answer is the quote
        console.print(f"  [bold cyan][{c.number}][/bold cyan] {escape(where)}{how}{quote}")
    if answer.invalid_citations:
        console.print(
            f"[yellow]removed citation numbers that were not passages in the prompt: "
            f"{', '.join(map(str, answer.invalid_citations))}[/yellow]"
        )
    if answer.citations and answer.unsupported:
        for sentence in answer.unsupported:
            console.print(f"[yellow]  {say(lang, 'unsupported')}:[/yellow] {escape(sentence)}")
    t = answer.timings
    if t:
        parts = [
            f"retrieve {t['retrieve_ms']:.0f} ms" if "retrieve_ms" in t else "",
            f"prompt {t['prompt_tokens']:.0f} tok" if "prompt_tokens" in t else "",
            f"first token {t['first_token_ms']:.0f} ms" if "first_token_ms" in t else "",
            f"generate {t['generate_ms']:.0f} ms ({t['tokens_per_s']:.1f} tok/s)" if "generate_ms" in t else "",
            f"grounded {answer.groundedness:.0%}" if answer.groundedness is not None else "",
        ]
        console.print("[dim]" + " · ".join(p for p in parts if p) + "[/dim]")


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question")],
    k: Annotated[int | None, typer.Option("-k", help="passages to give the model")] = None,
    tag: TagOpt = None,
    adapter: Annotated[str | None, typer.Option(help="a tuned adapter's name (RAG + fine-tuning)")] = None,
    no_rag: Annotated[bool, typer.Option("--no-rag", help="ask the bare model, without retrieval")] = False,
    as_group: AsGroupOpt = None,
    workspace: WorkspaceOpt = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Answer from the documents, citing passages; every citation is checked after generation."""
    from expertkit.index.base import Filters

    ws = open_from_options(workspace, set_, {"rag": {"k": k}})
    if not question.strip():
        raise ExpertkitError('the question is empty: ask something, e.g. expertkit ask "What is the warranty?"')
    rag = make_rag(ws, adapter)
    streamed = not json_ and (console.is_terminal or os.environ.get("EXPERTKIT_STREAM") == "1")
    shown: list[str] = []
    live = None
    if streamed and console.is_terminal:  # the draft streams, then gives way to the verified answer
        from rich.live import Live

        draft = Text(style="dim")
        live = Live(draft, console=console, transient=True, refresh_per_second=12)

    def on_token(piece: str) -> None:
        shown.append(piece)
        if live is not None:
            draft.append(piece)
        else:
            console.print(piece, end="", markup=False, highlight=False)

    if live is not None:
        live.start()
    try:
        filters = Filters(tuple(tag or ()), groups=caller_groups(as_group))
        answer = rag.ask(question, filters, rag=not no_rag, on_token=on_token if streamed else None)
    finally:
        if live is not None:
            live.stop()
    if json_:
        print(json.dumps(answer.to_json(), indent=2, ensure_ascii=False))
        return
    # "not found" is never streamed: the model was not called
    _print_answer(answer, streamed=bool(shown) and live is None)
    if answer.finish_reason == "interrupted":
        raise typer.Exit(130)


@app.command()
def chat(
    adapter: Annotated[str | None, typer.Option(help="a tuned adapter's name")] = None,
    as_group: AsGroupOpt = None,
    workspace: WorkspaceOpt = None,
    set_: SetOpt = None,
) -> None:
    """An interactive session: follow-ups are rewritten into standalone questions before retrieval.

    /sources shows the last answer's passages, /reset starts over, /exit (or Ctrl-D) leaves.
    The history is saved under .expertkit/chats/ in the workspace.
    """
    from expertkit.chat import ChatSession
    from expertkit.index.base import Filters

    ws = open_from_options(workspace, set_)
    session = ChatSession(make_rag(ws, adapter), ws.data_dir / "chats", Filters(groups=caller_groups(as_group)))
    console.print(f"[dim]chat saved to {session.path} · /sources /reset /exit[/dim]")
    while True:
        try:
            line = console.input("[bold green]you>[/bold green] ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            break
        if not line:
            continue
        if line in ("/exit", "/quit"):
            break
        if line == "/reset":
            session.reset()
            console.print("[dim]history cleared[/dim]")
            continue
        if line == "/sources":
            last = session.last
            if last is None or not last.retrieved:
                console.print("[dim]no sources yet[/dim]")
            for i, hit in enumerate(last.retrieved if last else [], start=1):
                console.print(
                    f"  [{i}] {escape(hit.chunk.location())}\n      [dim]{escape(hit.chunk.text[:200])}[/dim]"
                )
            continue
        try:
            answer = session.ask(line)
        except ExpertkitError as exc:
            console.print(f"[red]error:[/red] {escape(str(exc))}")
            continue
        if session.last_query and session.last_query != line:
            console.print(f"[dim]searched for: {escape(session.last_query)}[/dim]")
        console.print("[bold blue]expertkit>[/bold blue] " + escape(answer.answer))
        _print_answer(answer, streamed=False, shown=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to bind (another than loopback needs API keys)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    behind_proxy: Annotated[
        bool, typer.Option("--behind-proxy", help="a reverse proxy forwards to this server: always ask for a key")
    ] = False,
    workspace: WorkspaceOpt = None,
    set_: SetOpt = None,
) -> None:
    """Serve the expert: OpenAI's API at /v1 (the expert, each adapter, the bare model), a web chat at /.

    Callers send an API key (`expertkit keys add`) and read only their key's access groups.
    """
    import uvicorn

    from expertkit.config import is_loopback_host as is_loopback
    from expertkit.models.backend import switchable as can_switch
    from expertkit.models.generator import make_generator
    from expertkit.serve.app import create_app
    from expertkit.tune.adapters import list_adapters

    ws = open_from_options(workspace, set_)
    keys = ws.key_store()
    if not keys.has_keys() and (behind_proxy or not is_loopback(host)):
        reaches = "the proxy" if behind_proxy else host
        raise ExpertkitError(
            f"no API keys yet, so anyone who reaches {reaches} could read every document: make one with "
            "`expertkit keys add NAME --group G`" + ("" if behind_proxy else ", or serve on 127.0.0.1")
        )
    index = ws.open_index()
    g = ws.settings.generate
    switchable = []
    for a in list_adapters(ws.root, index):
        if can_switch(g, a.path, a.lineage):
            switchable.append(a)
        else:
            err.print(f"[dim]not serving adapter {a.name}: trained on {a.lineage.get('base')}, served {g.model}[/dim]")
    ensure_model(g.model)
    with err.status(f"loading {g.model}…"):
        generator = make_generator(
            g, runtime_dir=None if switchable else ws.data_dir, switchable=[a.path for a in switchable]
        )
    rag = ws.rag(generator, index)
    adapters = _served_adapters(switchable, generator, rag, index, g.model)
    app_ = create_app(
        generator,
        rag,
        g.max_new_tokens,
        adapters=adapters,
        keys=keys,
        settings=ws.settings.serve,
        root=ws.root,
        require_keys=behind_proxy or not is_loopback(host),
    )
    rag.embedder.model  # noqa: B018 - loaded now, not by the first question
    _print_serving(host, port, [m.id for m in adapters], generator.name, keys)
    # proxy_headers off: X-Forwarded-For never rewrites who the caller is (the keyless owner is the loopback peer)
    uvicorn.run(app_, host=host, port=port, log_level="warning", proxy_headers=False)


def _served_adapters(switchable: list, generator, rag, index, model: str) -> list:
    """Each adapter the server switches to as a model of its own: the expert's retriever, the adapter's
    answers, and the groups of the documents it learned (a caller must be allowed to read each one)."""
    import copy

    from expertkit.serve.app import EXPERT_ID, ServedModel

    adapters = []
    for position, a in enumerate(switchable):
        warn_stale(a.name, a.lineage, index)
        tuned = copy.copy(rag)  # the same retriever; the adapter's answers
        tuned.generator = generator.with_adapter(position, f"{model}+{a.name}")
        records = [index.get_source(path) for path in a.lineage.get("sources") or {}]
        adapters.append(
            ServedModel(
                f"{EXPERT_ID}+{a.name}",
                tuned.generator,
                tuned,
                f"the expert with adapter {a.name} (fine-tuned on {len(records)} documents)",
                ServedModel.learned([frozenset(r.groups) if r else None for r in records]),
            )
        )
    return adapters


def _print_serving(host: str, port: int, adapter_ids: list[str], bare: str, keys) -> None:
    from expertkit.serve.app import EXPERT_ID

    names = [EXPERT_ID + " (default: answers from the documents, cited)", *adapter_ids, bare]
    console.print(f"serving on http://{host}:{port}: the web chat at /, OpenAI's API at /v1")
    console.print(f"models: {', '.join(names)}")
    n_keys = sum(r.active for r in keys.records())
    console.print(
        f"{n_keys} API key(s) active (`expertkit keys list`)"
        if n_keys
        else "[yellow]no API keys: anyone on this machine can read every document; "
        "`expertkit keys add NAME --group G` makes the server ask for keys[/yellow]"
    )
