"""Answer quality of each shipped model through the whole RAG pipeline (retrieve → prompt → llama.cpp →
citation repair), on two sets nobody tuned on:

- planted: benchmarks/data/planted (an invented cold-chain company, 8 formats, paraphrased questions,
  near-domain and off-domain unanswerable ones). Correct = the answer contains one of the key values.
- emanual: ../shared/data/emanual-tv, the first --emanual questions. Gold answers are free text, so the
  figure is token F1 and ROUGE-L against them, plus citation figures.

Reported per model: accuracy by key value (and correct AND cited), share of answers cited, share of
citations whose passage supports the sentence (numbers included, an independent strict check: every number
of the sentence is in the passage and half its content words are), invalid citations, not-found precision
and recall, extractive fallbacks, seconds per answer and time to first token (medians).

Run: .venv/bin/python benchmarks/answer_quality.py [--models a,b] [--emanual 30] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

from expertkit.config import GenerateSettings, SearchSettings
from expertkit.evaluate.answers import rouge_l, token_f1
from expertkit.index.sqlite import SQLiteIndex
from expertkit.ingest.sync import Ingestor
from expertkit.models.embedder import Embedder
from expertkit.models.generator import make_generator
from expertkit.rag import RAG, numbers_in, split_sentences, strip_citations
from expertkit.retrieve import Retriever

HERE = Path(__file__).resolve().parent
PLANTED = HERE / "data" / "planted"
EMANUAL = HERE.parent.parent / "shared" / "data" / "emanual-tv"
MODELS = ["qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct", "smollm2-135m-instruct"]


def norm(text: str) -> str:
    text = text.replace("−", "-").replace("–", "-")
    return re.sub(r"(?<=\d),(?=\d{3})", "", text).lower()


def correct(answer: str, keys: list[str]) -> bool:
    return any(norm(k) in norm(answer) for k in keys)


def strict_support(sentence: str, passage: str) -> bool:
    """Independent of the pipeline's own scorer: numbers must match, and half the content words."""
    words = {w for w in re.findall(r"[a-z0-9]+", norm(sentence)) if len(w) > 3 or w.isdigit()}
    p_words = set(re.findall(r"[a-z0-9]+", norm(passage)))
    lexical = len(words & p_words) / max(len(words), 1)
    return numbers_in(sentence) <= numbers_in(passage) and lexical >= 0.5


def citation_support(answer) -> tuple[int, int]:
    """(supported, total) over (sentence, cited passage) pairs of a verified answer."""
    supported = total = 0
    for sentence in split_sentences(answer.answer):
        numbers = [int(n) for n in re.findall(r"\[(\d+)\]", sentence)]
        for n in numbers:
            total += 1
            passage = answer.retrieved[n - 1].chunk.embed_text()
            supported += strict_support(strip_citations(sentence).strip("“”\"' "), passage)
    return supported, total


def build_index(folder: Path, embedder: Embedder, beir: bool = False) -> SQLiteIndex:
    index = SQLiteIndex(Path(tempfile.mkdtemp()) / "index.db")
    Ingestor(index, embedder).sync([folder / "corpus.jsonl"] if beir else [folder / "corpus"])
    return index


def run_set(rag: RAG, questions: list[dict], kind: str) -> dict:
    rows = []
    for q in questions:
        t0 = time.perf_counter()
        a = rag.ask(q["question"])
        seconds = time.perf_counter() - t0
        sup, tot = citation_support(a)
        row = {
            "id": q["id"],
            "answerable": q.get("answerable", True),
            "found": a.found,
            "cited": bool(a.citations),
            "cited_by_model": any(not c.attributed for c in a.citations),
            "extractive": a.extractive,
            "supported": sup,
            "citations": tot,
            "invalid": len(a.invalid_citations),
            "seconds": seconds,
            "first_token_s": a.timings.get("first_token_ms", 0) / 1e3 if "first_token_ms" in a.timings else None,
            "answer": a.answer,
        }
        if kind == "planted":
            row["correct"] = q["answerable"] and a.found and correct(a.answer, q["keys"])
        else:
            row["f1"] = token_f1(strip_citations(a.answer), q["gold"])
            row["rouge_l"] = rouge_l(strip_citations(a.answer), q["gold"])
        rows.append(row)
    return summarise(rows, kind)


def summarise(rows: list[dict], kind: str) -> dict:
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    said_not_found = [r for r in rows if not r["found"]]
    found = [r for r in rows if r["found"]]
    ttft = [r["first_token_s"] for r in rows if r["first_token_s"] is not None]
    out = {
        "questions": len(rows),
        "answered_share": len(found) / max(len(rows), 1),
        "cited_share": sum(r["cited"] for r in found) / max(len(found), 1),
        "cited_by_model_share": sum(r["cited_by_model"] for r in found) / max(len(found), 1),
        "citation_support": sum(r["supported"] for r in rows) / max(sum(r["citations"] for r in rows), 1),
        "invalid_citations": sum(r["invalid"] for r in rows),
        "extractive_share": sum(r["extractive"] for r in found) / max(len(found), 1),
        "seconds_median": statistics.median(r["seconds"] for r in rows),
        "first_token_median_s": statistics.median(ttft) if ttft else None,
    }
    if kind == "planted":
        out["accuracy"] = sum(r["correct"] for r in answerable) / len(answerable)
        out["correct_and_cited"] = sum(r["correct"] and r["cited"] for r in answerable) / len(answerable)
        nf_right = sum(not r["answerable"] for r in said_not_found)
        out["not_found_precision"] = nf_right / max(len(said_not_found), 1)
        out["not_found_recall"] = nf_right / max(len(unanswerable), 1)
    else:
        out["token_f1"] = statistics.mean(r["f1"] for r in rows)
        out["rouge_l"] = statistics.mean(r["rouge_l"] for r in rows)
    out["rows"] = rows
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--emanual", type=int, default=30, help="E-Manual questions (0 = skip)")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--only", default="", help="question ids to run (comma-separated), for debugging")
    ap.add_argument("--summarise", action="store_true", help="re-read --out's answer_quality.json and print it")
    args = ap.parse_args()
    if args.summarise:
        saved = json.loads((args.out / "answer_quality.json").read_text())
        for model, sets in saved.items():
            for name, res in sets.items():
                shown = {
                    k: (round(v, 3) if isinstance(v, float) else v) for k, v in summarise(res["rows"], name).items()
                }
                print(model, name, json.dumps({k: v for k, v in shown.items() if k != "rows"}))
        return
    embedder = Embedder()
    planted = [json.loads(line) for line in (PLANTED / "questions.jsonl").read_text().splitlines() if line.strip()]
    if args.only:
        planted = [q for q in planted if q["id"] in args.only.split(",")]
    sets = {"planted": (build_index(PLANTED, embedder), planted)}
    if args.emanual and (EMANUAL / "queries.jsonl").exists():
        gold = {
            (r := json.loads(line))["_id"]: r["answer"] for line in (EMANUAL / "answers.jsonl").read_text().splitlines()
        }
        queries = [json.loads(line) for line in (EMANUAL / "queries.jsonl").read_text().splitlines()]
        # the last questions: earlier benchmarks (routes_emanual.py) train on the first ones
        chosen = [q for q in queries if q["_id"] in gold][-args.emanual :]
        qs = [{"id": q["_id"], "question": q["text"], "gold": gold[q["_id"]]} for q in chosen]
        sets["emanual"] = (build_index(EMANUAL, embedder, beir=True), qs)
    results: dict = {}
    for model in args.models.split(","):
        generator = make_generator(GenerateSettings(model=model))
        try:
            for name, (index, questions) in sets.items():
                rag = RAG(Retriever(index, embedder, SearchSettings()), generator, k=args.k)
                res = run_set(rag, questions, name)
                results.setdefault(model, {})[name] = res
                shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items() if k != "rows"}
                print(model, name, json.dumps(shown), flush=True)
                args.out.mkdir(parents=True, exist_ok=True)  # written as it goes: a long run keeps what it did
                (args.out / "answer_quality.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
        finally:
            generator.close()
    print(f"wrote {args.out / 'answer_quality.json'}")


if __name__ == "__main__":
    main()
