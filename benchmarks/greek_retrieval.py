"""Greek paragraph retrieval: nDCG@10 of bm25, dense and hybrid search with each shipped embedder.

Issue 23's goal is Greek hybrid nDCG@10 >= 0.95 on paragraph retrieval. Its hidden set is not here, so this
builds one from the two Greek question sets that are: every paragraph, table row and record of their documents
(read by expertkit's own readers, PDF and DOCX included) is a corpus entry, each answerable question is a query,
and the paragraphs of the question's source document that state its key value are the relevant ones (the
scorer's `contains_key`, as the sets' own key check). Questions are typed as people type them (without accents,
in capitals, inflected otherwise than the documents), so this measures the Greek keyword folding and the
embedder together. The corpus is small (a few hundred entries), so a figure here is easier than one on a
large collection; the two embedders and three modes are compared side by side on the same entries.

- dev-el: examples/corpus-el, the set Greek settings were tuned on;
- planted-el: held out (nothing was tuned on it; its answers are measured by answer_quality.py);
- dev-el+planted-el: both questions sets over both corpora pooled, the larger haystack.

Run: .venv/bin/python benchmarks/greek_retrieval.py [--sets dev-el,planted-el]
Writes benchmarks/results/greek_retrieval.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from answer_quality import KEYED_SETS, code_version, load_questions  # noqa: E402

from expertkit.config import SearchSettings  # noqa: E402
from expertkit.evaluate.answers import contains_key  # noqa: E402
from expertkit.evaluate.beir import load_beir  # noqa: E402
from expertkit.evaluate.retrieval import evaluate_retrieval  # noqa: E402
from expertkit.index.sqlite import SQLiteIndex  # noqa: E402
from expertkit.ingest.readers import read_document, supported  # noqa: E402
from expertkit.ingest.sync import Ingestor  # noqa: E402
from expertkit.models.embedder import Embedder  # noqa: E402
from expertkit.retrieve import Retriever  # noqa: E402

HERE = Path(__file__).resolve().parent
EMBEDDERS = ["all-minilm-l6-v2", "multilingual-e5-small"]
MODES = ["bm25", "dense", "hybrid"]


def paragraph_set(names: list[str], out: Path) -> tuple[int, int]:
    """Write a BEIR folder for Greek sets pooled into one corpus: (corpus entries, queries)."""
    entries, queries, qrels = [], [], []
    for name in names:
        corpus_dir = (KEYED_SETS[name] / "corpus").resolve()
        mine = []
        for path in sorted(p for p in corpus_dir.rglob("*") if p.is_file() and supported(p)):
            rel = f"{name}/{path.relative_to(corpus_dir).as_posix()}"
            for i, block in enumerate(read_document(path).blocks):
                if block.kind != "heading" and len(block.text.strip()) >= 20:
                    mine.append({"_id": f"{rel}#{i}", "title": " > ".join(block.section), "text": block.text})
        for q in load_questions(name):
            if not q["answerable"]:
                continue
            source = f"{name}/{q['source'].removeprefix('corpus/')}"
            in_source = [e for e in mine if e["_id"].split("#")[0] == source]
            relevant = [e["_id"] for e in in_source if contains_key(e["text"], q["keys"][0])]
            if relevant:  # a key that no single paragraph states (a table split over blocks) cannot be judged
                queries.append({"_id": f"{name}/{q['id']}", "text": q["question"]})
                qrels += [(f"{name}/{q['id']}", r) for r in relevant]
        entries += mine
    out.mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    (out / "corpus.jsonl").write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries))
    (out / "queries.jsonl").write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries))
    (out / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{c}\t1\n" for q, c in qrels)
    )
    return len(entries), len(queries)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default="dev-el,planted-el,dev-el+planted-el", help="'+' pools sets into one corpus")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    results: dict = {"measured": datetime.date.today().isoformat(), "code": code_version(), "sets": {}}
    work = Path(tempfile.mkdtemp())
    for name in args.sets.split(","):
        folder = work / name
        n_entries, n_queries = paragraph_set(name.split("+"), folder)
        data = load_beir(folder)
        row: dict = {"corpus_entries": n_entries, "queries": n_queries}
        for model in EMBEDDERS:
            embedder = Embedder(model)
            index = SQLiteIndex(work / f"{name}-{model}.db")
            t0 = time.perf_counter()
            Ingestor(index, embedder).sync([folder / "corpus.jsonl"])
            row[f"{model} ingest_s"] = round(time.perf_counter() - t0, 2)
            retriever = Retriever(index, embedder, SearchSettings())
            for mode in MODES:
                if mode == "bm25" and model != EMBEDDERS[0]:
                    continue  # keyword search does not depend on the embedder
                score = evaluate_retrieval(retriever, data, mode).ndcg10
                key = "bm25" if mode == "bm25" else f"{mode} {model}"
                row[key] = round(score, 4)
                print(f"{name:11s} {key:32s} nDCG@10 {score:.3f}", flush=True)
        results["sets"][name] = row
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "greek_retrieval.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    print(json.dumps(results, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
