"""Training data made from the ingested chunks: question–answer pairs, and RAFT examples.

``extractive`` mode needs no model, so it works (and is testable) with a weak local model:
  - a table row or record → one question per field ("What is the price eur of NP-4471?")
  - a sentence stating a number or code → a cloze question, answered by the sentence itself
  - a section → "What does <document> say about <heading>?", answered by its first sentences
``model`` mode asks the generator (local, or a stronger OpenAI-compatible endpoint) to write a question
and answer per chunk, and keeps only answers whose words come from the chunk.

RAFT (Zhang et al. 2024, arXiv 2403.10131): each question comes with its oracle chunk and N
distractors (the retriever's best wrong answers), in the exact prompt ``ask`` builds; a fraction
1 − P of examples leaves the oracle out. The answer restates the oracle's fact and cites it.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from expertkit.errors import DataError
from expertkit.rag import NOT_FOUND, build_messages, split_sentences
from expertkit.schema import Chunk, SearchHit

_FIELD = re.compile(r"(?:^|;\s*)([^:;]{1,40}):\s*([^;]+)")
_UNITS = (
    r"N·m|Nm|mm/s|m3/h|m³/h|mm|cm|km|m|bar|kW|W|V|A|rpm|°C|°F|hours?|minutes?|seconds?|months?|days?|"
    r"weeks?|years?|percent|%|g|kg|l|litres?|liters?|drops|MB|GB"
)
_FACT = re.compile(rf"(?<![\w-])(\d[\d,]*(?:\.\d+)?)(\s*(?:{_UNITS})(?![\w]))?")


@dataclass
class QA:
    question: str
    answer: str
    chunk: Chunk
    kind: str  # record | fact | section | model


@dataclass
class SynthReport:
    written: int
    heldout: int
    duplicates: int
    out: Path
    heldout_path: Path
    kinds: dict[str, int] = field(default_factory=dict)


def _human(name: str) -> str:
    return re.sub(r"[_\-.]+", " ", name).strip()


def record_questions(chunk: Chunk) -> list[QA]:
    fields = [(k.strip(), v.strip()) for k, v in _FIELD.findall(chunk.text)]
    if len(fields) < 2:
        return []
    key_name, entity = fields[0]
    out = []
    for name, value in fields[1:]:
        q = f"What is the {_human(name)} of {entity}?"
        a = f"The {_human(name)} of {entity} ({_human(key_name)}) is {value}."
        out.append(QA(q, a, chunk, "record"))
    return out


def fact_questions(chunk: Chunk, per_chunk: int = 3) -> list[QA]:
    out = []
    for sentence in split_sentences(chunk.text):
        if len(sentence) < 25 or len(sentence) > 400 or sentence.count(":") > 2:
            continue
        # prefer a number with a unit ("68 N·m") over a bare one; a leading number is a heading's
        matches = [m for m in _FACT.finditer(sentence) if m.start() > 0]
        match = next((m for m in matches if m.group(2)), matches[0] if matches else None)
        if not match:
            continue
        cloze = (sentence[: match.start()] + "what" + sentence[match.end() :]).rstrip(" .;:")
        out.append(QA(f"{cloze}?", sentence if sentence.endswith(".") else sentence + ".", chunk, "fact"))
        if len(out) >= per_chunk:
            break
    return out


def section_question(chunk: Chunk, title: str) -> list[QA]:
    if not chunk.section or not chunk.text.startswith(chunk.section[-1]):
        return []  # only the chunk that opens its section
    sentences = [s for s in split_sentences(chunk.text) if s.strip() != chunk.section[-1]]
    if not sentences:
        return []
    heading = chunk.section[-1]
    where = title or Path(chunk.source).stem.replace("-", " ")
    answer = " ".join(sentences[:2])
    return [QA(f"What does {where} say about {heading.lower()}?", answer, chunk, "section")]


MODEL_PROMPT = (
    "Read the passage and write one question that a customer or technician could ask and that the passage "
    "answers, then the answer in one sentence taken from the passage. Reply with a JSON object: "
    '{{"question": "...", "answer": "..."}}\n\nPassage:\n{passage}'
)
QA_SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question", "answer"],
}


def model_questions(chunk: Chunk, generator) -> list[QA]:
    from expertkit.models.generator import generate_json

    messages = [{"role": "user", "content": MODEL_PROMPT.format(passage=chunk.text[:2000])}]
    pair = generate_json(generator, messages, QA_SCHEMA, 128)
    if pair is None:
        return []
    question, answer = pair["question"].strip(), pair["answer"].strip().split("\n")[0]
    words = {w for w in re.findall(r"\w+", answer.lower()) if len(w) > 2}
    passage = set(re.findall(r"\w+", chunk.text.lower()))
    if not words or len(words & passage) / len(words) < 0.6:  # the answer must come from the passage
        return []
    return [QA(question if question.endswith("?") else question + "?", answer, chunk, "model")]


def _norm(q: str) -> str:
    return " ".join(re.findall(r"\w+", q.lower()))


def make_qa(
    chunks: Iterable[Chunk], titles: dict[str, str], mode: str = "extractive", generator=None, per_chunk: int = 3
) -> tuple[list[QA], int]:
    """Question–answer pairs for the chunks, duplicates (same normalised question) removed."""
    if mode not in ("extractive", "model"):
        raise DataError(f"synth mode {mode!r}: use extractive or model")
    if mode == "model" and generator is None:
        raise DataError("synth mode model needs a generator")
    seen, out, dupes = set(), [], 0
    for chunk in chunks:
        if mode == "model":
            items = model_questions(chunk, generator)
        elif chunk.record_id is not None:
            items = record_questions(chunk) or fact_questions(chunk, per_chunk)
        else:
            items = section_question(chunk, titles.get(chunk.source, "")) + fact_questions(chunk, per_chunk)
        for qa in items:
            key = _norm(qa.question)
            if key in seen:
                dupes += 1
                continue
            seen.add(key)
            out.append(qa)
    return out, dupes


def is_heldout(question: str, fraction: float, seed: int = 0) -> bool:
    """A stable split: the same question lands on the same side every run."""
    h = int(hashlib.blake2b(f"{seed}|{_norm(question)}".encode(), digest_size=8).hexdigest(), 16)
    return (h % 10_000) / 10_000 < fraction


def qa_record(qa: QA, source_hashes: dict[str, str], messages: list[dict] | None = None, **meta) -> dict:
    messages = messages or [{"role": "user", "content": qa.question}, {"role": "assistant", "content": qa.answer}]
    return {
        "messages": messages,
        "meta": {
            "kind": qa.kind,
            "chunk_id": qa.chunk.chunk_id,
            "source": qa.chunk.source,
            "sources": {qa.chunk.source: source_hashes.get(qa.chunk.source, "")},
            "question": qa.question,
            "answer": qa.answer,
            **meta,
        },
    }


def raft_example(
    qa: QA, distractors: list[Chunk], include_oracle: bool, rng: random.Random, absent: str = "refuse"
) -> tuple[list[dict], int | None]:
    """The ``ask`` prompt with the oracle (maybe) among distractors, and the answer citing it."""
    passages = list(distractors)
    position = None
    if include_oracle:
        position = rng.randrange(len(passages) + 1)
        passages.insert(position, qa.chunk)
    hits = [SearchHit(c, 0.0) for c in passages]
    messages = build_messages(qa.question, hits)
    if position is not None:
        answer = f"{qa.answer.rstrip('.')} [{position + 1}]."
    else:
        answer = NOT_FOUND if absent == "refuse" else qa.answer
    return [*messages, {"role": "assistant", "content": answer}], position


def write_split(records: list[dict], out: Path, holdout: float, seed: int) -> tuple[int, int, Path]:
    heldout_path = out.with_name(out.stem + ".heldout" + out.suffix)
    train, held = [], []
    for r in records:
        (held if is_heldout(r["meta"]["question"], holdout, seed) else train).append(r)
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, rows in ((out, train), (heldout_path, held)):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        tmp.replace(path)
    return len(train), len(held), heldout_path


def synth_qa(
    index,
    out: Path,
    mode: str = "extractive",
    generator=None,
    holdout: float = 0.1,
    seed: int = 0,
    per_chunk: int = 3,
    on_chunk: Callable[[], None] | None = None,
) -> SynthReport:
    chunks, titles, hashes = _all_chunks(index)
    qas, dupes = make_qa(_tick(chunks, on_chunk), titles, mode, generator, per_chunk)
    records = [qa_record(qa, hashes) for qa in qas]
    n_train, n_held, held_path = write_split(records, out, holdout, seed)
    return SynthReport(n_train, n_held, dupes, out, held_path, _kinds(qas))


def synth_raft(
    index,
    retriever,
    out: Path,
    distractors: int = 3,
    p_oracle: float = 0.8,
    absent: str = "refuse",
    mode: str = "extractive",
    generator=None,
    holdout: float = 0.1,
    seed: int = 0,
    per_chunk: int = 3,
    on_chunk: Callable[[], None] | None = None,
) -> SynthReport:
    if not 0.0 <= p_oracle <= 1.0:
        raise DataError(f"--p-oracle {p_oracle}: a fraction between 0 and 1")
    if absent not in ("refuse", "memorize"):
        raise DataError(f"--absent {absent!r}: use refuse or memorize")
    chunks, titles, hashes = _all_chunks(index)
    qas, dupes = make_qa(_tick(chunks, on_chunk), titles, mode, generator, per_chunk)
    rng = random.Random(seed)
    pool = list(chunks)
    records = []
    for qa in qas:
        hard = [
            h.chunk
            for h in retriever.search(qa.question, k=distractors + 3)
            if h.chunk.chunk_id != qa.chunk.chunk_id and not _same_fact(h.chunk, qa)
        ]
        chosen = hard[:distractors]
        while len(chosen) < distractors and len(pool) > len(chosen) + 1:
            c = rng.choice(pool)
            if c.chunk_id != qa.chunk.chunk_id and c not in chosen:
                chosen.append(c)
        include = rng.random() < p_oracle
        messages, position = raft_example(qa, chosen, include, rng, absent)
        records.append(
            qa_record(
                qa,
                hashes,
                messages,
                oracle=position + 1 if position is not None else None,
                distractors=[c.chunk_id for c in chosen],
            )
        )
    n_train, n_held, held_path = write_split(records, out, holdout, seed)
    return SynthReport(n_train, n_held, dupes, out, held_path, _kinds(qas))


def _same_fact(chunk: Chunk, qa: QA) -> bool:
    # a distractor that states the answer is not a distractor
    return qa.answer.rstrip(".").lower() in chunk.text.lower()


def _all_chunks(index) -> tuple[list[Chunk], dict[str, str], dict[str, str]]:
    sources = index.sources()
    if not sources:
        raise DataError("the index is empty: ingest documents before synthesizing training data")
    chunks = [c for s in sources for c in index.source_chunks(s.path)]
    return chunks, {s.path: s.title or "" for s in sources}, {s.path: s.content_hash for s in sources}


def _tick(chunks: list[Chunk], on_chunk):
    for c in chunks:
        yield c
        if on_chunk:
            on_chunk()


def _kinds(qas: list[QA]) -> dict[str, int]:
    out: dict[str, int] = {}
    for qa in qas:
        out[qa.kind] = out.get(qa.kind, 0) + 1
    return out
