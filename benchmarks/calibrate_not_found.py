"""Calibrate the "not found" gate: rag.min_relevance (the dense cosine) and rag.min_rerank (the shipped
cross-encoder's score), below either of which `ask` answers "not found in the documents" without the model.

Cosine, on the shared sets: positives are each set's own questions against its own index; negatives are the
other set's questions (science claims asked of a TV manual, and TV questions asked of science abstracts),
which those documents cannot answer. The relevance of a question is what `ask` compares with the
threshold: ``RAG.relevance`` over the hybrid top rag.k, fusion alone (the best dense cosine, each passage scored
with and without its document header). Prints the distributions, the threshold with the best balanced
accuracy, and a sweep.

Cross-encoder, where the hard cases are: the planted set (benchmarks/data/planted: 51 answerable questions,
10 near-domain ones the documents almost answer, 2 off-domain), plus ``--sample`` own and foreign questions of
each shared set. Each question is searched as `ask` does with search.reranker = ms-marco-minilm-l12-int8 (top
rag.k after the rerank) and both signals are read off the same hits (``RAG.relevance``,
``RAG.rerank_relevance``). Prints their distributions, a sweep, and the gate's precision and recall at "not
found" (cosine alone, cross-encoder alone, either, both) on the planted set and the shared sample.
The heldout set (benchmarks/data/heldout: 34 answerable, 27 near, 5 off-domain) plays no part in the choice: it
is scored last, with the defaults (rag.min_relevance, rag.min_rerank), as a check of the gate on questions
nobody tuned on.

Run: .venv/bin/python benchmarks/calibrate_not_found.py [--sample 40]  (ingests the sets into benchmarks/out/
once). Writes benchmarks/results/calibrate_not_found.json.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from expertkit.config import RagSettings, SearchSettings
from expertkit.evaluate.beir import load_beir
from expertkit.index.sqlite import SQLiteIndex
from expertkit.ingest.sync import Ingestor
from expertkit.models.embedder import Embedder
from expertkit.rag import RAG
from expertkit.retrieve import Retriever

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).parent / "out"
PLANTED = Path(__file__).parent / "data" / "planted"
HELDOUT = Path(__file__).parent / "data" / "heldout"
PLANTED_EL = Path(__file__).parent / "data" / "planted-el"
OFFDOMAIN_EL = Path(__file__).parent / "data" / "offdomain-el"
RESULTS = Path(__file__).parent / "results" / "calibrate_not_found.json"
RERANKER = "ms-marco-minilm-l12-int8"


def relevance(retriever: Retriever, questions: list[str]) -> np.ndarray:
    rag = RAG(retriever, None, k=RagSettings().k)  # the gate `ask` applies, without a model
    vectors = retriever.embedder.encode(questions, role="query")
    return np.array(
        [rag.relevance(q, retriever.search(q, k=rag.k, vector=v)) for q, v in zip(questions, vectors, strict=True)]
    )


def gate_signals(retriever: Retriever, questions: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per question, what `ask`'s gate compares, from the same hits: the best dense cosine and the best
    cross-encoder score of the top rag.k after the rerank."""
    rag = RAG(retriever, None, k=RagSettings().k)
    cos, rerank = [], []
    for q in questions:
        hits = retriever.search(q, k=rag.k)
        cos.append(rag.relevance(q, hits))
        rerank.append(rag.rerank_relevance(hits))
    return np.array(cos), np.array(rerank)


def gate(cos: np.ndarray, rerank: np.ndarray, min_cos: float, min_rerank: float, rule: str) -> np.ndarray:
    """Where the gate says "not found" under ``rule``: cosine, rerank, either (below one), both (below both)."""
    low_cos, low_rerank = cos < min_cos, rerank < min_rerank
    return {"cosine": low_cos, "rerank": low_rerank, "either": low_cos | low_rerank, "both": low_cos & low_rerank}[rule]


def precision_recall(refused: np.ndarray, unanswerable: np.ndarray) -> dict:
    """Of the gate's "not found": precision (unanswerable among them), recall (of the unanswerable), and the
    share of answerable questions it refuses."""
    hit = int((refused & unanswerable).sum())
    return {
        "precision": round(hit / max(int(refused.sum()), 1), 4),
        "recall": round(hit / max(int(unanswerable.sum()), 1), 4),
        "answerable_refused": round(float((refused & ~unanswerable).sum() / max(int((~unanswerable).sum()), 1)), 4),
    }


def calibrate_rerank(embedder: Embedder, sets: dict, indexes: dict, sample: int) -> dict:
    """The cross-encoder's threshold: distributions, a sweep, and the gate's precision and recall."""
    settings = SearchSettings(reranker=RERANKER)
    index = SQLiteIndex(OUT / "planted.db", cache_dir=OUT / "cache-planted")
    Ingestor(index, embedder).sync([PLANTED / "corpus"])
    planted = [json.loads(line) for line in (PLANTED / "questions.jsonl").read_text().splitlines() if line.strip()]
    groups: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    kinds = {"answerable": lambda q: q["answerable"], "near": lambda q: q["kind"] == "near_miss"}
    kinds["off-domain"] = lambda q: q["kind"] == "off_domain"
    per_question = []
    for kind, chosen in kinds.items():
        chosen_ones = [q for q in planted if chosen(q)]
        groups[f"planted {kind}"] = gate_signals(Retriever(index, embedder, settings), [
            q["question"] for q in chosen_ones
        ])  # fmt: skip
        per_question += [{"id": q["id"], "kind": kind, "cosine": round(float(c), 3), "rerank": round(float(r), 2)}
                         for q, c, r in zip(chosen_ones, *groups[f"planted {kind}"], strict=True)]  # fmt: skip
    for name, other in (("emanual-tv", "scifact"), ("scifact", "emanual-tv")):
        retriever = Retriever(indexes[name], embedder, settings)
        for label, data in (("own", sets[name]), ("foreign", sets[other])):
            qs = sorted(data.queries.values())
            groups[f"{name} {label}"] = gate_signals(retriever, random.Random(7).sample(qs, min(sample, len(qs))))
    index.close()
    out: dict = {"groups": {}, "planted questions": per_question}
    for label, (cos, rerank) in groups.items():
        out["groups"][label] = {
            "questions": len(rerank),
            "rerank": {p: round(float(np.percentile(rerank, v)), 2) for p, v in
                       (("min", 0), ("p5", 5), ("median", 50), ("p95", 95), ("max", 100))},
            "cosine median": round(float(np.median(cos)), 3),
        }  # fmt: skip
        print(label, json.dumps(out["groups"][label]))
    answerable = np.concatenate([groups[g][1] for g in ("planted answerable", "emanual-tv own", "scifact own")])
    # as for the cosine: recall first, a wrong "not found" hides an answer. Below every answerable question seen
    # (rounded down to a whole logit), and, for comparison, below 98% of them
    keep_all = float(np.floor(answerable.min()))
    keep98 = float(np.floor(np.percentile(answerable, 2) * 2) / 2)
    out["keeps every answerable"], out["keeps 98% of answerable"] = keep_all, keep98
    sweep = []
    for t in np.arange(-11.0, 4.01, 1.0):
        row = {"min_rerank": round(float(t), 1)}
        row |= {label: round(float((rerank < t).mean()), 4) for label, (_, rerank) in groups.items()}
        sweep.append(row)  # the share of each group the cross-encoder alone refuses
    out["refused by the cross-encoder alone"] = sweep
    # the gate as `ask` applies it, on the planted set and on the shared sample
    min_cos = embedder.min_relevance
    sets_of = {
        "planted": ["planted answerable", "planted near", "planted off-domain"],
        "shared sample": ["emanual-tv own", "scifact own", "emanual-tv foreign", "scifact foreign"],
    }
    out["gate"] = {}
    for where, names in sets_of.items():
        cos = np.concatenate([groups[g][0] for g in names])
        rerank = np.concatenate([groups[g][1] for g in names])
        unanswerable = np.concatenate([np.full(len(groups[g][1]), "own" not in g and "answerable" not in g)
                                       for g in names])  # fmt: skip
        near = np.concatenate([np.full(len(groups[g][1]), g == "planted near") for g in names])
        for t in sorted({keep_all, keep98, -10.0, -8.0, -6.0, -4.0, -2.0, 0.0}):
            for rule in ("cosine", "rerank", "either", "both"):
                refused = gate(cos, rerank, min_cos, t, rule)
                row = {"where": where, "rule": rule, "min_relevance": min_cos, "min_rerank": t}
                row |= precision_recall(refused, unanswerable)
                if where == "planted":
                    row["near_refused"] = round(float(refused[near].mean()), 4)
                out["gate"].setdefault(where, []).append(row)
                print(json.dumps(row))
    out["heldout check"] = heldout_check(embedder)
    return out


def heldout_check(embedder: Embedder) -> list[dict]:
    """The gate at the defaults on the heldout set, which no threshold was chosen on."""
    index = SQLiteIndex(OUT / "heldout.db", cache_dir=OUT / "cache-heldout")
    Ingestor(index, embedder).sync([HELDOUT / "corpus"])
    questions = [json.loads(line) for line in (HELDOUT / "questions.jsonl").read_text().splitlines() if line.strip()]
    cos, rerank = gate_signals(Retriever(index, embedder, SearchSettings(reranker=RERANKER)),
                               [q["question"] for q in questions])  # fmt: skip
    index.close()
    unanswerable = np.array([not q["answerable"] for q in questions])
    kinds = np.array([q["kind"] for q in questions])
    rows = []
    for rule in ("cosine", "rerank", "either", "both"):
        refused = gate(cos, rerank, embedder.min_relevance, RagSettings().min_rerank, rule)
        row = {"rule": rule, "min_relevance": embedder.min_relevance, "min_rerank": RagSettings().min_rerank}
        row |= precision_recall(refused, unanswerable)
        row |= {f"{k}_refused": round(float(refused[kinds == k].mean()), 4) for k in ("near_miss", "off_domain")}
        rows.append(row)
        print("heldout", json.dumps(row))
    return rows


def calibrate_embedder(name: str, sample: int) -> dict:
    """The cosine gate of another embedder (its scale differs: e5's cosines of unrelated texts are often above
    0.7): answerable questions against unanswerable ones, in English (E-Manual's own questions against SciFact's,
    on an E-Manual index) and in Greek (the Greek planted set's answerable questions against its off-domain
    ones and benchmarks/data/offdomain-el, on its corpus). Near-domain questions are listed, not used: no cosine
    separates them (the key-terms check and the support check do). Prints each group's distribution, the
    threshold with the best balanced accuracy and the one keeping 99% of answerable questions, per language and
    over both."""
    embedder = Embedder(name)
    rng = random.Random(7)
    groups: dict[str, np.ndarray] = {}
    emanual, scifact = load_beir(DATA / "emanual-tv"), load_beir(DATA / "scifact")
    folder = OUT / f"{name}-emanual-tv"
    folder.mkdir(parents=True, exist_ok=True)
    index = SQLiteIndex(folder / "index.db", cache_dir=folder / "cache")
    Ingestor(index, embedder).sync([emanual.corpus])
    retriever = Retriever(index, embedder, SearchSettings(reranker=""))
    for label, data in (("en answerable", emanual), ("en unanswerable", scifact)):
        qs = sorted(data.queries.values())
        groups[label] = relevance(retriever, rng.sample(qs, min(sample, len(qs))))
    index.close()
    folder = OUT / f"{name}-planted-el"
    folder.mkdir(parents=True, exist_ok=True)
    index = SQLiteIndex(folder / "index.db", cache_dir=folder / "cache")
    Ingestor(index, embedder).sync([PLANTED_EL / "corpus"])
    retriever = Retriever(index, embedder, SearchSettings(reranker=""))
    greek = [json.loads(line) for path in (PLANTED_EL / "questions.jsonl", OFFDOMAIN_EL / "questions.jsonl")
             for line in path.read_text().splitlines() if line.strip()]  # fmt: skip
    for label, kind in (
        ("el answerable", None),
        ("el unanswerable", "off_domain"),
        ("el near (not used)", "near_miss"),
    ):
        chosen = [q["question"] for q in greek if (q["answerable"] if kind is None else q["kind"] == kind)]
        groups[label] = relevance(retriever, chosen)
    index.close()
    out: dict = {"embedder": name, "groups": {}, "support": support_scale(embedder, sample)}
    for label, cos in groups.items():
        out["groups"][label] = {"questions": len(cos)} | {
            p: round(float(np.percentile(cos, v)), 3)
            for p, v in (("min", 0), ("p5", 5), ("median", 50), ("p95", 95), ("max", 100))
        }
        print(label, json.dumps(out["groups"][label]))
    out["thresholds"] = []
    for where in ("en", "el", "both"):
        langs = ("en", "el") if where == "both" else (where,)
        p = np.concatenate([groups[f"{lang} answerable"] for lang in langs])
        n = np.concatenate([groups[f"{lang} unanswerable"] for lang in langs])
        best = max(np.arange(0.5, 0.95, 0.005), key=lambda t: ((p >= t).mean() + (n < t).mean()) / 2)
        keep99 = float(np.floor(np.percentile(p, 1) * 200) / 200)
        for rule, t in (("best balanced accuracy", best), ("keeps 99% of answerable", keep99)):
            row = {"where": where, "rule": rule, "threshold": round(float(t), 3),
                   "answerable_kept": round(float((p >= t).mean()), 4),
                   "unanswerable_refused": round(float((n < t).mean()), 4)}  # fmt: skip
            out["thresholds"].append(row)
            print(json.dumps(row))
    return out


def support_scale(embedder: Embedder, sample: int) -> dict:
    """rag.support_threshold for another embedder. The support check scores an answer sentence against a
    passage by its best sentence's cosine; an embedder whose unrelated texts sit closer needs a higher bar.
    Pairs from SciFact: each claim (a query) against its judged abstract (related) and against a random other
    abstract (unrelated), scored as the check scores them (query role for the claim, passage role for each
    sentence). The threshold for ``embedder`` is the one that lets through the same share of unrelated pairs as
    all-MiniLM-L6-v2 at the default 0.55 (a quantile match); related pairs kept are shown for both."""
    from expertkit.answer import split_sentences

    scifact = load_beir(DATA / "scifact")
    docs = {}
    for line in scifact.corpus.read_text().splitlines():
        row = json.loads(line)
        docs[row["_id"]] = split_sentences(row.get("text", ""))[:12]
    rng = random.Random(11)
    ids = rng.sample(sorted(scifact.queries), min(sample, len(scifact.queries)))
    all_docs = sorted(docs)
    pairs = []
    for qid in ids:
        gold = next(iter(scifact.qrels[qid]))
        other = rng.choice(all_docs)
        while other in scifact.qrels[qid]:
            other = rng.choice(all_docs)
        pairs += [(scifact.queries[qid], docs[gold], True), (scifact.queries[qid], docs[other], False)]

    def best(model: Embedder) -> tuple[np.ndarray, np.ndarray]:
        scores, related = [], []
        for claim, sentences, rel in pairs:
            vectors = model.encode([claim, *sentences], role=["query"] + ["passage"] * len(sentences))
            scores.append(float((vectors[1:] @ vectors[0]).max()) if sentences else 0.0)
            related.append(rel)
        return np.array(scores), np.array(related)

    base = Embedder("all-minilm-l6-v2")
    base_scores, related = best(base)
    scores, _ = best(embedder)
    default = base.support_threshold
    unrelated_passed = float((base_scores[~related] >= default).mean())
    matched = float(np.quantile(scores[~related], 1 - unrelated_passed))
    out = {
        "pairs": len(pairs),
        "all-minilm-l6-v2": {"threshold": default, "unrelated_passed": round(unrelated_passed, 4),
                             "related_passed": round(float((base_scores[related] >= default).mean()), 4)},
        embedder.name: {"threshold": round(matched, 3),
                        "unrelated_passed": round(float((scores[~related] >= matched).mean()), 4),
                        "related_passed": round(float((scores[related] >= matched).mean()), 4),
                        "unrelated_median": round(float(np.median(scores[~related])), 3),
                        "related_median": round(float(np.median(scores[related])), 3)},
    }  # fmt: skip
    print("support", json.dumps(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", type=int, default=40, help="own and foreign questions of each shared set (rerank)")
    ap.add_argument(
        "--embedder", default="", help="calibrate only this embedder's cosine gate (see calibrate_embedder)"
    )
    args = ap.parse_args()
    if args.embedder:
        found = calibrate_embedder(args.embedder, max(args.sample, 300))
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        results.setdefault("embedders", {})[args.embedder] = found
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {RESULTS}")
        return
    embedder = Embedder()
    sets = {name: load_beir(DATA / name) for name in ("emanual-tv", "scifact")}
    retrievers, indexes = {}, {}
    for name, data in sets.items():
        OUT.mkdir(parents=True, exist_ok=True)
        folder = OUT / f"rerank-{name}"  # the index benchmarks/rerank_llm.py and rerank.py build (same settings)
        folder.mkdir(parents=True, exist_ok=True)
        index = indexes[name] = SQLiteIndex(folder / "index.db", cache_dir=folder / "cache")
        Ingestor(index, embedder).sync([data.corpus])
        retrievers[name] = Retriever(index, embedder, SearchSettings(reranker=""))  # the cosine over fusion
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
    default = embedder.min_relevance
    rules = [("best balanced accuracy", best), ("keeps 99% of answerable", keep99), ("expertkit default", default)]
    rules += [("sweep", t) for t in (0.2, 0.22, 0.24, 0.26, 0.28, 0.3, 0.32)]
    results: dict = {"min_relevance": []}
    for rule, t in rules:
        kept, refused = float((p >= t).mean()), float((n < t).mean())
        row = {
            "rule": rule,
            "threshold": round(float(t), 2),
            "answerable_kept": round(kept, 4),
            "unanswerable_refused": round(refused, 4),
        }
        results["min_relevance"].append(row)
        print(json.dumps(row))
    results["min_rerank"] = calibrate_rerank(embedder, sets, indexes, args.sample)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
