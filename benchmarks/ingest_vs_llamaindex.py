"""Ingest wall time against LlamaIndex's default pipeline: same corpus, same embedder, one invocation.

Corpora (written once under benchmarks/out/ingest-peers/):
  scifact-txt  the first --docs SciFact abstracts, one .txt file each (title, blank line, abstract)
  scifact-pdf  the same abstracts typeset into PDFs of 20 abstracts each (fpdf2), so PDF extraction counts

Sides, each a fresh process on a fresh index, alternated round by round (A B C D, A B C D, ...):
  expertkit          `Ingestor.sync` with the default settings (embed.dtype auto = the int8 ONNX graph, chunks
                     of 200 tokens, context headers), into SQLite
  expertkit fp32     the same with embed.dtype = fp32 (sentence-transformers in fp32, as LlamaIndex runs it)
  llamaindex         SimpleDirectoryReader + VectorStoreIndex.from_documents + HuggingFaceEmbedding, all
                     defaults (SentenceSplitter 1024/200): nodes longer than the embedder's 256 wordpieces
                     are cut, so it does not embed all the text (the share cut is reported)
  llamaindex 200     the same with SentenceSplitter(200, 20), so every node fits the embedder: all the text

Times exclude loading the model (each side loads it before the clock starts) and include reading, splitting,
embedding and writing. Medians of --rounds rounds; the ratio column is what carries across machines.
LlamaIndex is installed into its own venv (benchmarks/out/venv-llamaindex) by this script on first run, with
the same torch, transformers and sentence-transformers pins as expertkit.

Run: .venv/bin/python benchmarks/ingest_vs_llamaindex.py [--docs 1000] [--rounds 3] [--corpora scifact-txt]
Writes benchmarks/results/ingest_vs_llamaindex.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "scifact" / "corpus.jsonl"
OUT = ROOT / "benchmarks" / "out"
VENV = OUT / "venv-llamaindex"
PEER = ["llama-index-core==0.14.25", "llama-index-embeddings-huggingface==0.8.0", "llama-index-readers-file==0.7.0"]
PDF_DOCS_PER_FILE = 20


def setup_llamaindex() -> Path:
    """LlamaIndex's venv, built once; returns its python."""
    python = VENV / "bin" / "python"
    marker = VENV / ".installed"
    if marker.exists() and marker.read_text() == " ".join(PEER):
        return python
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    # the same torch (the local CPU build), transformers, tokenizers and sentence-transformers as expertkit;
    # the rest is LlamaIndex's own choice (it wants pandas < 3, for one)
    pins = VENV / "constraints.txt"
    same = ("torch", "transformers", "tokenizers", "sentence-transformers", "safetensors", "numpy")
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins.write_text("\n".join(line for line in lines if line.split("==")[0].lower() in same) + "\n")
    pip = [str(python), "-m", "pip", "install", "-q", "-c", str(pins)]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, *PEER], check=True)
    marker.write_text(" ".join(PEER))
    return python


def abstracts(n: int) -> list[tuple[str, str, str]]:
    out = []
    with DATA.open(encoding="utf-8") as fh:
        for line in itertools.islice(fh, n):
            r = json.loads(line)
            out.append((r["_id"], r.get("title", ""), r["text"]))
    return out


def write_corpus(name: str, docs: int) -> Path:
    folder = OUT / "ingest-peers" / f"{name}-{docs}"
    if (folder / ".complete").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    items = abstracts(docs)
    if name == "scifact-txt":
        for doc_id, title, text in items:
            (folder / f"{doc_id}.txt").write_text(f"{title}\n\n{text}\n", encoding="utf-8")
    else:
        from fpdf import FPDF

        for start in range(0, len(items), PDF_DOCS_PER_FILE):
            pdf = FPDF()
            pdf.set_auto_page_break(True, margin=15)
            for _, title, text in items[start : start + PDF_DOCS_PER_FILE]:
                pdf.add_page()
                pdf.set_font("Helvetica", "B", 12)
                pdf.multi_cell(0, 6, _latin1(title), new_x="LMARGIN", new_y="NEXT")
                pdf.set_font("Helvetica", size=10)
                pdf.multi_cell(0, 5, _latin1(text), new_x="LMARGIN", new_y="NEXT")
            pdf.output(str(folder / f"abstracts-{start // PDF_DOCS_PER_FILE:03d}.pdf"))
    (folder / ".complete").write_text("")
    return folder


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")  # the core fonts' character set


def expertkit_child(folder: str, dtype: str) -> None:
    """One expertkit ingest in this (fresh) process; prints its JSON line."""
    from expertkit.config import IngestSettings
    from expertkit.index.sqlite import SQLiteIndex
    from expertkit.ingest.sync import Ingestor
    from expertkit.models.embedder import Embedder

    settings = IngestSettings()
    with tempfile.TemporaryDirectory() as tmp:
        embedder = Embedder(dtype=dtype)
        t = time.perf_counter()
        embedder.encode(["warm up"])
        load_s = time.perf_counter() - t
        index = SQLiteIndex(Path(tmp) / "index.db", cache_dir=Path(tmp) / "cache")
        ingestor = Ingestor(
            index, embedder, settings.chunk_tokens, settings.chunk_overlap, context_headers=settings.context_headers
        )
        t = time.perf_counter()
        report = ingestor.sync([Path(folder)])
        seconds = time.perf_counter() - t
        assert report.ok, [r.reason for r in report.failed]
        t = time.perf_counter()
        again = ingestor.sync([Path(folder)])
        reingest_s = time.perf_counter() - t
        assert again.count("unchanged") == len(again.results)
        print(
            json.dumps(
                {
                    "seconds": round(seconds, 2),
                    "load_s": round(load_s, 2),
                    "documents": len(report.results),
                    "nodes": sum(r.chunks for r in report.results),
                    "nodes_cut": 0.0,  # the chunker budgets every chunk, header included, to the embedder's limit
                    "tokens_cut": 0.0,
                    "reingest_s": round(reingest_s, 3),
                }
            )
        )
        index.close()


def run_side(side: str, folder: Path, python: Path) -> dict:
    from expertkit.models.registry import resolve

    if side.startswith("expertkit"):
        dtype = side.split()[1] if " " in side else "auto"
        cmd = [sys.executable, __file__, "--child", str(folder), dtype]
    else:
        cmd = [str(python), str(ROOT / "benchmarks" / "llamaindex_ingest.py"), str(folder)]
        cmd += ["--model", str(resolve("all-minilm-l6-v2", "embedder"))]
        if side != "llamaindex":
            cmd += ["--chunk-size", side.split()[-1], "--chunk-overlap", "20"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    if proc.returncode != 0:
        raise SystemExit(f"{side} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _env() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        expertkit_child(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1000, help="SciFact abstracts")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--corpora", nargs="+", default=["scifact-txt", "scifact-pdf"])
    ap.add_argument("--sides", nargs="+", default=["expertkit", "expertkit fp32", "llamaindex", "llamaindex 200"])
    args = ap.parse_args()
    python = setup_llamaindex()
    results = {}
    for corpus in args.corpora:
        folder = write_corpus(corpus, args.docs)
        runs: dict[str, list[dict]] = {side: [] for side in args.sides}
        for r in range(args.rounds):
            for side in args.sides:
                row = run_side(side, folder, python)
                runs[side].append(row)
                print(f"{corpus} round {r + 1} {side}: {json.dumps(row)}", flush=True)
        summary = {}
        for side, rows in runs.items():
            median = statistics.median(row["seconds"] for row in rows)
            summary[side] = rows[0] | {"seconds": round(median, 2), "runs_s": [row["seconds"] for row in rows]}
        for side in summary:
            summary[side]["llamaindex_s / this_s"] = {
                peer: round(summary[peer]["seconds"] / summary[side]["seconds"], 2)
                for peer in summary
                if peer.startswith("llamaindex")
            }
        results[corpus] = {"docs": args.docs, "rounds": args.rounds, "sides": summary}
        out = ROOT / "benchmarks" / "results" / "ingest_vs_llamaindex.json"
        kept = json.loads(out.read_text()) if out.exists() else {}
        out.write_text(json.dumps(kept | {corpus: results[corpus]}, indent=2) + "\n")
    for corpus, result in results.items():
        print(f"\n{corpus} ({result['docs']} abstracts), median of {result['rounds']} rounds")
        print(f"{'side':<16} {'seconds':>8} {'nodes':>6} {'cut':>6}  llamaindex_s / this_s")
        for side, row in result["sides"].items():
            ratios = ", ".join(f"{k}: {v}" for k, v in row["llamaindex_s / this_s"].items())
            print(f"{side:<16} {row['seconds']:>8} {row['nodes']:>6} {row['tokens_cut']:>6.1%}  {ratios}")


if __name__ == "__main__":
    main()
