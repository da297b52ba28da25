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
        for number, row in enumerate(csv.reader(fh, delimiter="\t"), start=1):
            if len(row) < 3 or row[0] == "query-id":
                continue
            if not row[2].strip().lstrip("-").isdigit():
                raise ExpertkitError(
                    f"{qrels_path} line {number}: the score {row[2]!r} is not a whole number (query-id, corpus-id, "
                    "score, tab-separated)"
                )
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    queries = {q["_id"]: q["text"] for q in _lines(root / "queries.jsonl", ("_id", "text")) if q["_id"] in qrels}
    answers = {}
    if (root / "answers.jsonl").exists():
        answers = {a["_id"]: a["answer"] for a in _lines(root / "answers.jsonl", ("_id", "answer"))}
    return BeirSet(root, queries, {q: qrels[q] for q in queries}, answers)


def _lines(path: Path, needed: tuple[str, ...]) -> list[dict]:
    """The JSON objects of a JSON Lines file, each with the ``needed`` fields; a line that is not one is named in
    one line that says what it must hold."""
    out = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ExpertkitError(f"{path} line {number} is not JSON ({exc.msg}): fix or remove it") from None
            missing = [k for k in needed if not isinstance(item, dict) or k not in item]
            if missing:
                raise ExpertkitError(
                    f"{path} line {number} has no {', '.join(repr(k) for k in missing)}: a BEIR {path.name} line is "
                    f"an object with {', '.join(repr(k) for k in needed)}"
                )
            out.append(item)
    return out
