"""Knowledge injection: does a fine-tuned adapter learn the sample corpus's invented facts?

The Norvale Pumps corpus (examples/corpus) holds facts no general model knows. `synth qa` turns it
into training pairs (extractive: rows, stated facts, sections) for the fine-tuned route, and
`synth raft` into RAFT examples for RAG + fine-tuned. Then 12 questions that paraphrase those facts
(written by hand, not generated) are asked of base, fine-tuned, RAG and RAG + fine-tuned; an answer
counts when it contains the fact's key value.

Run: .venv/bin/python benchmarks/knowledge_injection.py [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
from pathlib import Path

from expertkit.config import TuneSettings
from expertkit.index.sqlite import SQLiteIndex
from expertkit.ingest.sync import Ingestor
from expertkit.models.embedder import Embedder
from expertkit.models.generator import TransformersGenerator
from expertkit.rag import RAG
from expertkit.retrieve import Retriever
from expertkit.tune.data import load_training_data
from expertkit.tune.synth import synth_qa, synth_raft
from expertkit.tune.train import train

CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus"

QUESTIONS = [
    ("How tight should the impeller nut be?", "68"),
    ("What does the 45 mm mechanical seal kit cost?", "318"),
    ("How many months of warranty come with NV-400 pumps?", "36"),
    ("After how many operating hours must the mechanical seal be swapped?", "8000"),
    ("What restocking fee is charged on returned unused parts?", "15"),
    ("What final torque do the M16 casing bolts need?", "145"),
    ("Which fault code means the pump ran dry?", "E-17"),
    ("What working length is set when fitting a new mechanical seal?", "42.5"),
    ("What should the bearing housing vent be drilled to under SB-2025-03?", "4 mm"),
    ("How long must the foundation grout cure before the first start?", "72"),
    ("Where is the PTC motor sensor kit stocked?", "Linz A-01"),
    ("Which grease goes into the motor-side bearing?", "Isoflex"),
]


def correct(answer: str, key: str) -> bool:
    norm = lambda s: re.sub(r"(?<=\d),(?=\d)", "", s).lower()  # noqa: E731 - 8,000 == 8000
    return norm(key) in norm(answer)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument(
        "--raft",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train a RAFT adapter for RAG + fine-tuned (else reuse the synth-qa adapter; much cheaper)",
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ek-inject-"))
    embedder = Embedder()
    index = SQLiteIndex(work / "index.db")
    Ingestor(index, embedder).sync([CORPUS])
    retriever = Retriever(index, embedder)
    qa, raft = work / "qa.jsonl", work / "raft.jsonl"
    synth_qa(index, qa, holdout=0.0)
    synth_raft(index, retriever, raft, holdout=0.0)
    adapters = {}
    for name, data in (("qa", qa), ("raft", raft))[: 2 if args.raft else 1]:
        s = TuneSettings(epochs=args.epochs, learning_rate=5e-4, max_length=768, save_steps=10_000)
        run = train(load_training_data(data), "smollm2-135m-instruct", work, name, s)
        adapters[name] = run.adapter_dir
        print(
            f"trained {name}: {run.steps} steps, loss {run.losses[0][1]:.3f} → {run.losses[-1][1]:.3f}, "
            f"{run.tokens_per_second:.0f} tok/s",
            flush=True,
        )
    both = (
        ("RAG + fine-tuned (RAFT)", adapters["raft"]) if args.raft else ("RAG + fine-tuned (synth qa)", adapters["qa"])
    )
    routes = [
        ("base", None, False),
        ("fine-tuned (synth qa)", adapters["qa"], False),
        ("RAG", None, True),
        (*both, True),
    ]
    table = []
    for route, adapter, use_rag in routes:
        rag = RAG(retriever, TransformersGenerator(adapter=adapter), k=3, max_new_tokens=60)
        hits = 0
        for question, key in QUESTIONS:
            answer = rag.ask(question, rag=use_rag)
            ok = correct(answer.answer, key)
            hits += ok
            print(
                json.dumps(
                    {
                        "route": route,
                        "question": question,
                        "key": key,
                        "ok": ok,
                        "answer": answer.answer[:160],
                        "cited": [c.number for c in answer.citations],
                    }
                ),
                flush=True,
            )
        table.append((route, hits))
    print(f"\n{len(QUESTIONS)} paraphrased questions about invented facts; accuracy = key value in the answer")
    for route, hits in table:
        print(f"{route:<26} {hits:>2}/{len(QUESTIONS)}  {hits / len(QUESTIONS):.0%}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
