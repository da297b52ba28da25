"""Calibrate rag.min_relevance: the dense cosine below which `ask` answers "not found in the documents".

Positives are each set's own questions against its own index; negatives are the other set's
questions (science claims asked of a TV manual, and TV questions asked of science abstracts),
which those documents cannot answer. The relevance of a question is what `ask` compares with the
threshold: ``RAG.relevance`` over the hybrid top rag.k (the best dense cosine, each passage scored with
and without its document header). Prints the distributions, the threshold with the best balanced
accuracy, and a sweep.

Run: .venv/bin/python benchmarks/calibrate_not_found.py  (ingests both sets into benchmarks/out/ once)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from expertkit.config import RagSettings
from expertkit.evaluate.beir import load_beir
from expertkit.index.sqlite import SQLiteIndex
from expertkit.ingest.sync import Ingestor
from expertkit.models.embedder import Embedder
from expertkit.rag import RAG
from expertkit.retrieve import Retriever

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).parent / "out"


def relevance(retriever: Retriever, questions: list[str]) -> np.ndarray:
    rag = RAG(retriever, None, k=RagSettings().k)  # the gate `ask` applies, without a model
    vectors = retriever.embedder.encode(questions)
    return np.array(
        [rag.relevance(q, retriever.search(q, k=rag.k, vector=v)) for q, v in zip(questions, vectors, strict=True)]
    )


def main() -> None:
    embedder = Embedder()
    sets = {name: load_beir(DATA / name) for name in ("emanual-tv", "scifact")}
    retrievers = {}
    for name, data in sets.items():
        OUT.mkdir(parents=True, exist_ok=True)
        index = SQLiteIndex(OUT / f"{name}.db", cache_dir=OUT / f"cache-{name}")
        Ingestor(index, embedder).sync([data.corpus])
        retrievers[name] = Retriever(index, embedder)
    pos, neg = [], []
    for name, other in (("emanual-tv", "scifact"), ("scifact", "emanual-tv")):
        pos.append(relevance(retrievers[name], list(sets[name].queries.values())))
        neg.append(relevance(retrievers[name], list(sets[other].queries.values())))
        print(
            f"{name} index: own questions median {np.median(pos[-1]):.3f} (p5 {np.percentile(pos[-1], 5):.3f}); "
            f"foreign questions median {np.median(neg[-1]):.3f} (p95 {np.percentile(neg[-1], 95):.3f})"
        )
    p, n = np.concatenate(pos), np.concatenate(neg)
    best = max(np.arange(0.05, 0.8, 0.01), key=lambda t: ((p >= t).mean() + (n < t).mean()) / 2)
    # recall first: a wrong "not found" hides an answer, while a weak passage still goes through the
    # citation checks; and questions from another domain are easier to refuse than in-domain ones
    keep99 = float(np.floor(np.percentile(p, 1) * 100) / 100)
    default = RagSettings().min_relevance
    rules = [("best balanced accuracy", best), ("keeps 99% of answerable", keep99), ("expertkit default", default)]
    rules += [("sweep", t) for t in (0.2, 0.22, 0.24, 0.26, 0.28, 0.3, 0.32)]
    for rule, t in rules:
        kept, refused = float((p >= t).mean()), float((n < t).mean())
        print(
            json.dumps(
                {
                    "rule": rule,
                    "threshold": round(float(t), 2),
                    "answerable_kept": round(kept, 4),
                    "unanswerable_refused": round(refused, 4),
                }
            )
        )


if __name__ == "__main__":
    main()
