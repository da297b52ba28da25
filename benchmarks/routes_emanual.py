"""Four routes on the E-Manual QA set (Smart TV manual, questions asked by people, gold answers):
base model, fine-tuned (RAFT adapter, no retrieval), RAG, and RAG + fine-tuned.

Questions are split by a stable hash: the training part becomes RAFT examples (the question, its gold
section as oracle among retrieved distractors, in the prompt `ask` builds; the gold answer, citing the
oracle); the held-out part is answered by every route and scored with ROUGE-L and token F1.

Run: .venv/bin/python benchmarks/routes_emanual.py [--train 160] [--test 30] [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from expertkit.config import TuneSettings
from expertkit.evaluate.answers import evaluate_answers
from expertkit.evaluate.beir import load_beir
from expertkit.index.sqlite import SQLiteIndex
from expertkit.ingest.sync import Ingestor
from expertkit.models.embedder import Embedder
from expertkit.models.generator import TransformersGenerator
from expertkit.rag import RAG, build_messages
from expertkit.retrieve import Retriever
from expertkit.schema import SearchHit
from expertkit.tune.data import load_training_data
from expertkit.tune.synth import is_heldout
from expertkit.tune.train import train

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "emanual-tv"
OUT = Path(__file__).parent / "out" / "routes"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=160, help="training questions")
    ap.add_argument("--test", type=int, default=30, help="held-out questions answered by every route")
    ap.add_argument("--steps", type=int, default=40, help="LoRA steps (effective batch 8)")
    ap.add_argument("--k", type=int, default=3, help="passages in the prompt")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    data = load_beir(DATA)
    embedder = Embedder()
    index = SQLiteIndex(OUT / "index.db")
    Ingestor(index, embedder).sync([data.corpus])
    retriever = Retriever(index, embedder)
    ids = sorted(q for q in data.queries if q in data.answers)
    held = [q for q in ids if is_heldout(data.queries[q], 0.2)]
    train_ids = [q for q in ids if q not in held]
    rng = random.Random(0)
    test_ids = sorted(rng.sample(held, min(args.test, len(held))))
    train_ids = sorted(rng.sample(train_ids, min(args.train, len(train_ids))))

    # RAFT examples: oracle = the gold section's chunk best matching the question, distractors = retrieved others
    records = []
    for qid in train_ids:
        question, gold_docs = data.queries[qid], set(data.qrels[qid])
        hits = retriever.search(question, k=10)
        oracle = next((h for h in hits if h.chunk.record_id in gold_docs), None)
        distractors = [h for h in hits if h.chunk.record_id not in gold_docs][: args.k - 1]
        if oracle is None or rng.random() > 0.8:  # RAFT: some examples have no oracle
            passages = [h for h in hits if h.chunk.record_id not in gold_docs][: args.k]
            answer = "Not found in the documents."
        else:
            passages = distractors[:]
            position = rng.randrange(len(passages) + 1)
            passages.insert(position, SearchHit(oracle.chunk, 0.0))
            answer = f"{data.answers[qid].strip()[:600]} [{position + 1}]"
        records.append({"messages": [*build_messages(question, passages), {"role": "assistant", "content": answer}]})
    train_file = OUT / "raft-train.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    name = "emanual-raft"
    for folder in (OUT / "runs" / name, OUT / "adapters" / name):
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
    t0 = time.perf_counter()
    run = train(
        load_training_data(train_file),
        "smollm2-135m-instruct",
        OUT,
        name,
        TuneSettings(max_steps=args.steps, max_length=768, learning_rate=3e-4, save_steps=1000),
    )
    print(
        f"trained {name}: {run.steps} steps, loss {run.losses[0][1]:.3f} → {run.losses[-1][1]:.3f}, "
        f"{run.tokens_per_second:.0f} tok/s, {time.perf_counter() - t0:.0f}s"
    )

    rows = []
    for route, adapter, use_rag in (
        ("base", None, False),
        ("fine-tuned", run.adapter_dir, False),
        ("RAG", None, True),
        ("RAG + fine-tuned", run.adapter_dir, True),
    ):
        generator = TransformersGenerator(adapter=adapter)
        rag = RAG(retriever, generator, k=args.k, max_new_tokens=160)
        scores = evaluate_answers(rag, data, test_ids, use_rag=use_rag, route=route)
        rows.append(scores.to_json())
        (OUT / f"answers-{route.replace(' ', '').replace('+', '-')}.jsonl").write_text(
            "".join(json.dumps(i) + "\n" for i in scores.items)
        )
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{len(train_ids)} training questions (RAFT), {len(test_ids)} held-out questions, k={args.k}")
    print(f"{'route':<18} {'ROUGE-L':>8} {'token F1':>9} {'cited':>6} {'in gold':>8} {'p50 s':>6}")
    for r in rows:
        gold = "–" if r["citations_in_gold"] is None else f"{r['citations_in_gold']:.0%}"
        print(
            f"{r['route']:<18} {r['rouge_l']:>8.4f} {r['token_f1']:>9.4f} {r['cited']:>6.0%} {gold:>8} "
            f"{r['latency_ms_p50'] / 1000:>6.1f}"
        )


if __name__ == "__main__":
    main()
