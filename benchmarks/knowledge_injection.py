"""Knowledge injection: does fine-tuning teach a corpus's invented facts so that the model states them
when asked in words it never saw in training?

The set (default benchmarks/data/injection: an invented grower, 3 small documents, 24 hand-written
questions that paraphrase its facts, none generated) is ingested; ``synth qa`` asks every fact many ways
(templates + questions written by --paraphraser through llama.cpp); an adapter is trained on that data
with the settings given; then every route answers the hand-written questions:

- base: the bare base model
- fine-tuned: base + adapter, no retrieval
- rag: base with retrieval (expertkit's ask)
- rag+raft: base + a RAFT adapter (``synth raft``), with retrieval  (--raft)

An answer counts when it contains one of the question's key values. Forgetting: the same routes without
retrieval answer a control set of general questions (data/injection/control.jsonl), base against tuned.

Run: .venv/bin/python benchmarks/knowledge_injection.py [--base smollm2-135m-instruct] [--epochs 6]
     [--lr 1e-3] [--r 16] [--alpha 32] [--questions 12] [--model-questions 5] [--raft] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import tempfile
import time
from pathlib import Path

from expertkit.config import GenerateSettings, TuneSettings
from expertkit.index.sqlite import SQLiteIndex
from expertkit.ingest.sync import Ingestor
from expertkit.models.embedder import Embedder
from expertkit.models.generator import TransformersGenerator, make_generator
from expertkit.rag import RAG
from expertkit.retrieve import Retriever
from expertkit.tune.data import load_training_data
from expertkit.tune.synth import synth_qa, synth_raft
from expertkit.tune.train import train

HERE = Path(__file__).resolve().parent
SET = HERE / "data" / "injection"


def norm(text: str) -> str:
    text = text.replace("−", "-").replace("–", "-")
    return re.sub(r"(?<=\d),(?=\d{3})", "", text).lower()


def correct(answer: str, keys: list[str]) -> bool:
    return any(norm(k) in norm(answer) for k in keys)


def ask_all(rag: RAG, rows: list[dict], use_rag: bool, route: str, log) -> int:
    hits = 0
    for row in rows:
        answer = rag.ask(row["question"], rag=use_rag)
        ok = correct(answer.answer, row["keys"])
        hits += ok
        log.write(
            json.dumps({"route": route, "question": row["question"], "ok": ok, "answer": answer.answer[:200]}) + "\n"
        )
    return hits


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", type=Path, default=SET)
    ap.add_argument("--base", default="smollm2-135m-instruct")
    ap.add_argument("--paraphraser", default="qwen2.5-coder-1.5b-instruct", help="model writing questions; '' = none")
    ap.add_argument("--questions", type=int, default=12)
    ap.add_argument("--model-questions", type=int, default=5)
    ap.add_argument("--text-ratio", type=float, default=0.25)
    ap.add_argument("--epochs", type=float, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--r", type=int, default=None)
    ap.add_argument("--alpha", type=int, default=None)
    ap.add_argument("--replay", type=float, default=None)
    ap.add_argument("--targets", default=None, help="comma-separated LoRA targets (default: all linear)")
    ap.add_argument("--raft", action="store_true", help="also train a RAFT adapter for the rag+raft route")
    ap.add_argument("--routes", default="base,fine-tuned,rag", help="comma-separated")
    ap.add_argument("--data", type=Path, help="reuse this synth qa file (skips synth)")
    ap.add_argument("--keep", type=Path, help="keep the workspace here")
    ap.add_argument("--out", type=Path, help="append the summary (JSON) to this file")
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="ek-inject-"))
    work.mkdir(parents=True, exist_ok=True)
    questions = [json.loads(x) for x in (args.set / "questions.jsonl").read_text().splitlines() if x.strip()]
    control = [json.loads(x) for x in (args.set / "control.jsonl").read_text().splitlines() if x.strip()]
    embedder = Embedder()
    index = SQLiteIndex(work / "index.db")
    Ingestor(index, embedder).sync([args.set / "corpus"])
    retriever = Retriever(index, embedder)
    summary: dict = {
        "base": args.base,
        "paraphraser": args.paraphraser,
        "questions_per_fact": args.questions,
        "model_questions": args.model_questions,
    }
    paraphraser = None
    data = args.data or work / "qa.jsonl"
    wanted = args.routes.split(",") + (["rag+raft"] if args.raft and "rag+raft" not in args.routes else [])
    tuning = "fine-tuned" in wanted or args.raft  # base and rag alone need no data and no adapter
    if tuning and (not args.data or args.raft) and args.paraphraser and args.model_questions:
        paraphraser = make_generator(GenerateSettings(model=args.paraphraser))
    if tuning and not args.data:
        t0 = time.perf_counter()
        report = synth_qa(
            index, data, paraphraser, args.questions, args.model_questions, holdout=0.0, text_ratio=args.text_ratio
        )
        summary["synth"] = {
            "facts": report.facts,
            "examples": report.written,
            "texts": report.texts,
            "model_questions": report.model_questions,
            "model_rejected": report.model_rejected,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print("synth", summary["synth"], flush=True)
    overrides = {
        k: v
        for k, v in {
            "epochs": args.epochs,
            "learning_rate": args.lr,
            "r": args.r,
            "alpha": args.alpha,
            "replay": args.replay,
        }.items()
        if v is not None
    }
    if args.targets:
        overrides["targets"] = args.targets.split(",")
    settings = TuneSettings(save_steps=100_000, **overrides)
    summary["settings"] = {
        k: getattr(settings, k)
        for k in ("epochs", "learning_rate", "r", "alpha", "targets", "replay", "batch_size", "grad_accum")
    }
    adapters = {}
    jobs = [("qa", data)] if "fine-tuned" in wanted else []
    if args.raft:
        raft = work / "raft.jsonl"
        synth_raft(index, retriever, raft, generator=paraphraser, holdout=0.0)
        jobs.append(("raft", raft))
    if paraphraser is not None:
        paraphraser.close()
    for name, path in jobs:
        shutil.rmtree(work / "runs" / name, ignore_errors=True)
        shutil.rmtree(work / "adapters" / name, ignore_errors=True)
        run = train(load_training_data(path), args.base, work, name, settings)
        adapters[name] = run.adapter_dir
        summary[f"train_{name}"] = {
            "steps": run.steps,
            "seconds": round(run.seconds, 1),
            "loss_first": run.losses[0][1],
            "loss_last": run.losses[-1][1],
            "tokens_per_second": round(run.tokens_per_second, 1),
            "peak_rss_mb": round(run.peak_rss_mb),
            "examples": len(load_training_data(path).examples),
        }
        print(name, summary[f"train_{name}"], flush=True)
    routes = {
        "base": (None, False),
        "fine-tuned": (adapters.get("qa"), False),
        "rag": (None, True),
        "rag+raft": (adapters.get("raft"), True),
    }
    with (work / "answers.jsonl").open("w") as log:
        for route in wanted:
            adapter, use_rag = routes[route]
            rag = RAG(retriever, TransformersGenerator(args.base, adapter=adapter), k=3, max_new_tokens=80)
            t0 = time.perf_counter()
            hits = ask_all(rag, questions, use_rag, route, log)
            seconds = (time.perf_counter() - t0) / len(questions)
            entry = {
                "correct": hits,
                "n": len(questions),
                "accuracy": round(hits / len(questions), 3),
                "s_per_answer": round(seconds, 2),
            }
            if not use_rag:
                kept = ask_all(rag, control, False, route + " (control)", log)
                entry["control"] = f"{kept}/{len(control)}"
            summary[route] = entry
            print(route, entry, flush=True)
    summary["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    summary["work"] = str(work)
    print(json.dumps(summary))
    if args.out:
        with args.out.open("a") as f:
            f.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
