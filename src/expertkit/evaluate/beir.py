"""The BEIR folder layout: corpus.jsonl, queries.jsonl, qrels/<split>.tsv (and answers.jsonl where present)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from expertkit.errors import ExpertkitError


@dataclass
class BeirSet:
    root: Path
    queries: dict[str, str]  # query id → text, only those judged in the split
    qrels: dict[str, dict[str, int]]  # query id → corpus id → relevance
    answers: dict[str, str] = field(default_factory=dict)

    @property
    def corpus(self) -> Path:
        return self.root / "corpus.jsonl"


def load_beir(root: Path, split: str = "test") -> BeirSet:
    """Load the queries and judgements of one split; the corpus stays on disk for ingest."""
    root = Path(root)
    qrels_path = root / "qrels" / f"{split}.tsv"
    for needed in (root / "corpus.jsonl", root / "queries.jsonl", qrels_path):
        if not needed.exists():
            raise ExpertkitError(
                f"{needed} is missing: a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/{split}.tsv"
            )
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if len(row) < 3 or row[0] == "query-id":
                continue
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    queries = {}
    with (root / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                q = json.loads(line)
                if q["_id"] in qrels:
                    queries[q["_id"]] = q["text"]
    answers = {}
    if (root / "answers.jsonl").exists():
        with (root / "answers.jsonl").open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    a = json.loads(line)
                    answers[a["_id"]] = a["answer"]
    return BeirSet(root, queries, {q: qrels[q] for q in queries}, answers)
