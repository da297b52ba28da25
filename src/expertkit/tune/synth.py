"""Training data made from the ingested chunks: facts asked many ways, documents as text, and RAFT examples.

A model learns a fact it can state afterwards when it has seen the fact asked in many different
words (Abonizio et al. 2025; Allen-Zhu & Li, *Physics of Language Models 3.1*): one question per fact
teaches the question, not the fact. So ``synth qa``:

1. finds the facts (facts.py): every field of a table row or record, and every informative sentence of
   prose (its key value: a number with its unit, a code, or a name);
2. asks each fact many ways (questions.py; ``questions``, at least 10 by default): model-free templates
   (the value given the entity, the entity given the value, yes/no with the true and with a wrong value),
   plus questions written by the local model through the llama.cpp runtime (``model_questions``), which
   bring the synonyms and word orders templates cannot;
3. answers every question with the fact restated as a full sentence, so the answer carries its context;
4. removes duplicate questions, and holds out by paraphrase (some questions of every fact) and, when
   asked, by fact (whole facts), so evaluation asks questions never seen in training;
5. adds the documents themselves (and, with a model, rephrasings of them) as continued-pretraining
   text, ``text_ratio`` examples of text per example of QA.

RAFT (Zhang et al. 2024, arXiv 2403.10131): each question comes with its oracle chunk and N
distractors (the retriever's best wrong answers), in the exact prompt ``ask`` builds; a fraction
1 − P of examples leaves the oracle out. The answer restates the oracle's fact and cites it.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from expertkit.answer import numbers_in
from expertkit.errors import DataError
from expertkit.language import NOT_FOUND as NOT_FOUND_IN
from expertkit.language import language_of
from expertkit.rag import build_messages
from expertkit.schema import Chunk, SearchHit
from expertkit.tune.facts import Fact, extract_facts, readable
from expertkit.tune.questions import MODEL_QUESTIONS, QA, QUESTIONS, ask_facts, norm_question


@dataclass
class SynthReport:
    written: int
    heldout: int
    duplicates: int
    out: Path
    heldout_path: Path
    kinds: dict[str, int] = field(default_factory=dict)
    facts: int = 0
    texts: int = 0  # continued-pretraining text examples among the written ones
    model_questions: int = 0  # questions the model wrote that passed the checks
    model_rejected: int = 0


# --- documents as text (5.) -----------------------------------------------------------------------

REPHRASE_PROMPT = (
    "Rewrite this passage from {where} in your own words as one short paragraph. Keep every name, code, "
    "number and unit exactly as written; add nothing.\n\nPassage:\n{text}"
)


def document_texts(
    chunks: list[Chunk], titles: dict[str, str], generator=None, rephrasings: int = 0
) -> list[tuple[str, Chunk]]:
    """Each chunk as continued-pretraining text under its title and section, plus model rephrasings that
    keep every number of the original (others are dropped)."""
    out = []
    for chunk in chunks:
        numbers = numbers_in(chunk.text)
        where = titles.get(chunk.source) or readable(Path(chunk.source).stem)
        header = " — ".join([where, *[s for s in chunk.section if s != where]])
        out.append((f"{header}\n\n{chunk.text}", chunk))
        for _ in range(rephrasings if generator is not None else 0):
            prompt = REPHRASE_PROMPT.format(where=where, text=chunk.text[:2000])
            text = generator.generate([{"role": "user", "content": prompt}], 400, 0.3).text.strip()
            if len(text) > 40 and numbers_in(text) == numbers:  # every number kept, none added
                out.append((f"{header}\n\n{text}", chunk))
    return out


# --- held-out splits (4.) and files ---------------------------------------------------------------------


def _hash_fraction(key: str, seed: int) -> float:
    h = int(hashlib.blake2b(f"{seed}|{key}".encode(), digest_size=8).hexdigest(), 16)
    return (h % 10_000) / 10_000


def is_heldout(question: str, fraction: float, seed: int = 0) -> bool:
    """A stable split: the same question lands on the same side every run."""
    return _hash_fraction(norm_question(question), seed) < fraction


def split_questions(qas: list[QA], holdout: float, holdout_facts: float, seed: int) -> dict[int, str]:
    """Which questions are held out, and why: ``fact`` (the whole fact never trains) or ``paraphrase``
    (other wordings of the same fact do). Model-written questions, the most natural ones, are held out
    first; every fact keeps at least two questions for training."""
    by_fact: dict[str, list[int]] = {}
    for i, qa in enumerate(qas):
        by_fact.setdefault(qa.fact_id, []).append(i)
    held: dict[int, str] = {}
    for fact_id, idx in by_fact.items():
        if _hash_fraction("fact|" + fact_id, seed) < holdout_facts:
            held.update({i: "fact" for i in idx})
            continue
        n = min(int(round(holdout * len(idx))), max(len(idx) - 2, 0))
        if holdout > 0 and n == 0 and len(idx) >= 4:
            n = 1
        ranked = sorted(idx, key=lambda i: (qas[i].angle != "model", _hash_fraction(qas[i].question, seed)))
        held.update({i: "paraphrase" for i in ranked[:n]})
    return held


def qa_record(qa: QA, source_hashes: dict[str, str], messages: list[dict] | None = None, **meta) -> dict:
    messages = messages or [{"role": "user", "content": qa.question}, {"role": "assistant", "content": qa.answer}]
    return {
        "messages": messages,
        "meta": {
            "kind": qa.kind,
            "angle": qa.angle,
            "fact": qa.fact_id,
            "chunk_id": qa.chunk.chunk_id,
            "source": qa.chunk.source,
            "sources": {qa.chunk.source: source_hashes.get(qa.chunk.source, "")},
            "question": qa.question,
            "answer": qa.answer,
            "expect": list(qa.expect),
            **meta,
        },
    }


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


def heldout_path_for(out: Path) -> Path:
    return out.with_name(out.stem + ".heldout" + out.suffix)


def synth_qa(
    index,
    out: Path,
    generator=None,
    questions: int = QUESTIONS,
    model_questions_: int = MODEL_QUESTIONS,
    holdout: float = 0.1,
    holdout_facts: float = 0.0,
    text_ratio: float = 0.25,
    rephrasings: int = 0,
    seed: int = 0,
    on_fact: Callable[[], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    max_facts: int = 0,
    model_until: float | None = None,
) -> SynthReport:
    """QA pairs (many per fact) plus document text, written to ``out``; held-out questions beside it."""
    if text_ratio < 0:
        raise DataError(f"--text-ratio {text_ratio}: 0 or more text examples per QA example")
    asked = _ask_index(
        index,
        generator,
        questions,
        model_questions_,
        holdout,
        holdout_facts,
        seed,
        on_fact,
        on_start,
        max_facts,
        model_until,
    )
    qas, held, hashes = asked.qas, asked.held, asked.hashes
    train = [qa_record(qa, hashes) for i, qa in enumerate(qas) if i not in held]
    heldout = [qa_record(qa, hashes, split=held[i]) for i, qa in enumerate(qas) if i in held]
    # documents of facts held out whole would teach those facts: leave them out of the text too
    held_chunks = {qas[i].chunk.chunk_id for i, why in held.items() if why == "fact"}
    texts = [
        {
            "text": text,
            "meta": {
                "kind": "text",
                "chunk_id": c.chunk_id,
                "source": c.source,
                "sources": {c.source: hashes.get(c.source, "")},
            },
        }
        for text, c in document_texts(asked.chunks, asked.titles, generator, rephrasings)
        if c.chunk_id not in held_chunks
    ]
    n_text = int(round(text_ratio * len(train)))
    rng = random.Random(seed)
    text_rows = [texts[i % len(texts)] for i in range(n_text)] if texts else []
    rows = train + text_rows
    rng.shuffle(rows)
    return _write(asked, out, rows, heldout, len(text_rows))


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
        answer = NOT_FOUND_IN[language_of(qa.question)] if absent == "refuse" else qa.answer
    return [*messages, {"role": "assistant", "content": answer}], position


def synth_raft(
    index,
    retriever,
    out: Path,
    distractors: int = 3,
    p_oracle: float = 0.8,
    absent: str = "refuse",
    generator=None,
    questions: int = 3,
    model_questions_: int = 1,
    holdout: float = 0.2,
    holdout_facts: float = 0.0,
    seed: int = 0,
    on_fact: Callable[[], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    max_facts: int = 0,
) -> SynthReport:
    """RAFT examples: each fact asked ``questions`` ways, in the ``ask`` prompt with its chunk among distractors."""
    if not 0.0 <= p_oracle <= 1.0:
        raise DataError(f"--p-oracle {p_oracle}: a fraction between 0 and 1")
    if absent not in ("refuse", "memorize"):
        raise DataError(f"--absent {absent!r}: use refuse or memorize")
    asked = _ask_index(
        index, generator, questions, model_questions_, holdout, holdout_facts, seed, on_fact, on_start, max_facts
    )
    qas, held, hashes = asked.qas, asked.held, asked.hashes
    rng = random.Random(seed)
    pool = list(asked.chunks)
    train, heldout = [], []
    for i, qa in enumerate(qas):
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
        meta = {
            "oracle": position + 1 if position is not None else None,
            "distractors": [c.chunk_id for c in chosen],
            # every document the row carries text of: the oracle's (the question and answer state its fact,
            # left out of the prompt or not) and each distractor's, which the model reads and may learn.
            # An adapter's lineage, its staleness and who may use it (serve) go by these.
            "sources": {c.source: hashes.get(c.source, "") for c in (qa.chunk, *chosen)},
        }
        if i in held:
            heldout.append(qa_record(qa, hashes, messages, split=held[i], **meta))
        else:
            train.append(qa_record(qa, hashes, messages, **meta))
    return _write(asked, out, train, heldout)


@dataclass
class _Asked:
    chunks: list[Chunk]
    titles: dict[str, str]
    hashes: dict[str, str]
    facts: list[Fact]
    qas: list[QA]
    held: dict[int, str]
    duplicates: int
    kept: int
    rejected: int


def _ask_index(
    index,
    generator,
    questions,
    model_share,
    holdout,
    holdout_facts,
    seed,
    on_fact,
    on_start,
    max_facts=0,
    model_until=None,
) -> _Asked:
    """The index's facts, asked and split: what synth qa and synth raft both start from. ``max_facts``: a
    stable sample of that many facts (the same for the same seed), for a measurement on a budget."""
    if not 0.0 <= holdout < 1.0 or not 0.0 <= holdout_facts < 1.0:
        raise DataError("--holdout and --holdout-facts: fractions from 0 up to (not including) 1")
    chunks, titles, hashes = all_chunks(index)
    facts = extract_facts(chunks, titles)
    if not facts:
        raise DataError("no facts found in the ingested documents: nothing to ask about")
    if 0 < max_facts < len(facts):
        chosen = set(sorted(range(len(facts)), key=lambda i: _hash_fraction("sample|" + facts[i].id, seed))[:max_facts])
        facts = [f for i, f in enumerate(facts) if i in chosen]
    if on_start:
        on_start(len(facts))
    qas, dupes, kept, rejected = ask_facts(facts, questions, generator, model_share, seed, on_fact, model_until)
    held = split_questions(qas, holdout, holdout_facts, seed)
    return _Asked(chunks, titles, hashes, facts, qas, held, dupes, kept, rejected)


def _write(asked: _Asked, out: Path, rows: list[dict], heldout: list[dict], texts: int = 0) -> SynthReport:
    """Write the training rows to ``out`` and the held-out ones beside it; what was written."""
    write_jsonl(out, rows)
    held_path = heldout_path_for(out)
    write_jsonl(held_path, heldout)
    kinds = _kinds([qa for i, qa in enumerate(asked.qas) if i not in asked.held])
    if texts:
        kinds["text"] = texts
    return SynthReport(
        len(rows),
        len(heldout),
        asked.duplicates,
        out,
        held_path,
        kinds,
        len(asked.facts),
        texts,
        asked.kept,
        asked.rejected,
    )


def _same_fact(chunk: Chunk, qa: QA) -> bool:
    # a distractor that states the answer is not a distractor
    return qa.answer.rstrip(".").lower() in chunk.text.lower()


def all_chunks(index) -> tuple[list[Chunk], dict[str, str], dict[str, str]]:
    sources = index.sources()
    if not sources:
        raise DataError("the index is empty: ingest documents before synthesizing training data")
    chunks = [c for s in sources for c in index.source_chunks(s.path)]
    return chunks, {s.path: s.title or "" for s in sources}, {s.path: s.content_hash for s in sources}


def _kinds(qas: list[QA]) -> dict[str, int]:
    out: dict[str, int] = {}
    for qa in qas:
        out[qa.kind] = out.get(qa.kind, 0) + 1
    return out
