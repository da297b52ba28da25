"""Training data: the formats users bring, validated line by line, tokenized with loss on the answer only.

Accepted, one JSON object a line (or a .txt/.md file for continued pretraining):
  chat               {"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}
  alpaca             {"instruction": ..., "input": ..., "output": ...}
  prompt/completion  {"prompt": ..., "completion": ...}
  text               {"text": ...}  (loss on every token: the domain's vocabulary)
A ``meta`` object on any line is carried along (synth writes the source chunk and document hash there).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expertkit.errors import DataError
from expertkit.models.base import plain_transcript

ROLES = {"system", "user", "assistant"}


@dataclass
class Example:
    messages: list[dict[str, str]] | None = None  # chat-shaped examples
    text: str | None = None  # raw text (continued pretraining)
    meta: dict[str, Any] = field(default_factory=dict)
    line: int = 0


@dataclass
class TrainingData:
    examples: list[Example]
    path: Path
    sha256: str  # of the file's bytes: the run log and the adapter's lineage name it
    skipped: list[str] = field(default_factory=list)  # "line N: reason" for lines skipped with --skip-bad

    @property
    def source_hashes(self) -> dict[str, str]:
        """Documents the examples were made from (synth writes them): path → content hash."""
        out: dict[str, str] = {}
        for ex in self.examples:
            for path, digest in (ex.meta.get("sources") or {}).items():
                out[path] = digest
        return out


def parse_record(record: Any) -> Example:
    """One JSON value → Example; raises ValueError naming what is wrong."""
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object")
    meta = record.get("meta") or {}
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError("'messages' must be a non-empty list")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise ValueError(f"messages[{i}] needs a role (system|user|assistant) and string content")
        if messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
            raise ValueError("the last message must be a non-empty assistant answer")
        return Example(messages=[{"role": m["role"], "content": m["content"]} for m in messages], meta=meta)
    if "instruction" in record and "output" in record:
        prompt = str(record["instruction"]).strip()
        if record.get("input"):
            prompt += "\n\n" + str(record["input"]).strip()
        return _pair(prompt, record["output"], meta)
    if "prompt" in record and "completion" in record:
        return _pair(record["prompt"], record["completion"], meta)
    if "text" in record:
        if not isinstance(record["text"], str) or not record["text"].strip():
            raise ValueError("'text' must be a non-empty string")
        return Example(text=record["text"], meta=meta)
    raise ValueError("unknown format: expected messages, instruction/output, prompt/completion or text")


def _pair(prompt: Any, answer: Any, meta: dict) -> Example:
    if not isinstance(prompt, str) or not isinstance(answer, str) or not prompt.strip() or not answer.strip():
        raise ValueError("prompt and answer must be non-empty strings")
    return Example(messages=[{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}], meta=meta)


def load_training_data(path: Path, skip_bad: bool = False) -> TrainingData:
    """Read and validate every line. A bad line stops the run (naming it) unless ``skip_bad``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read training data ({exc.strerror or exc})") from None
    digest = hashlib.sha256(raw).hexdigest()
    if path.suffix.lower() in (".txt", ".md"):
        text = raw.decode("utf-8", errors="replace")
        if not text.strip():
            raise DataError(f"{path}: empty file")
        return TrainingData([Example(text=text, line=1)], path, digest)
    examples, bad = [], []
    for lineno, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            example = parse_record(json.loads(line))
        except json.JSONDecodeError as exc:
            bad.append(f"line {lineno}: not valid JSON ({exc.msg})")
            continue
        except ValueError as exc:
            bad.append(f"line {lineno}: {exc}")
            continue
        example.line = lineno
        examples.append(example)
    if bad and not skip_bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise DataError(
            f"{path}: {len(bad)} bad line(s): "
            + "; ".join(bad[:3])
            + more
            + ". Fix them, or pass --skip-bad to train without them"
        )
    if not examples:
        raise DataError(f"{path}: no usable examples")
    return TrainingData(examples, path, digest, bad)


@dataclass
class Tokenized:
    input_ids: list[list[int]]
    labels: list[list[int]]
    overlong: list[int]  # data-file line numbers of examples longer than max_length
    dropped: list[int]  # ... of those dropped (or left with no answer tokens after truncation)

    @property
    def tokens(self) -> int:
        return sum(len(x) for x in self.input_ids)


def tokenize_examples(examples: list[Example], tokenizer, max_length: int, overlong: str = "truncate") -> Tokenized:
    """Token ids and labels: -100 everywhere except the assistant's answers (chat) or everywhere (text).

    The chat template renders the conversation; the spans of assistant turns are found by rendering the
    prefix before each turn, so loss falls on exactly the tokens the model must produce.
    """
    if overlong not in ("truncate", "drop"):
        raise DataError(f"overlong={overlong!r}: use truncate or drop")
    ids_out, labels_out, long_lines, dropped = [], [], [], []
    eos = tokenizer.eos_token_id
    for ex in examples:
        if ex.text is not None:
            # continued pretraining: long text is cut into max_length blocks, none of it is lost
            ids = tokenizer(ex.text, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
            for start in range(0, len(ids), max_length):
                block = ids[start : start + max_length]
                if len(block) > 8:
                    ids_out.append(block)
                    labels_out.append(list(block))
            continue
        ids, labels = _chat_ids(ex.messages, tokenizer)
        if len(ids) > max_length:
            long_lines.append(ex.line)
            if overlong == "drop":
                dropped.append(ex.line)
                continue
            ids, labels = ids[:max_length], labels[:max_length]
            if all(t == -100 for t in labels):
                dropped.append(ex.line)  # truncation left no answer to learn from
                continue
        ids_out.append(ids)
        labels_out.append(labels)
    return Tokenized(ids_out, labels_out, long_lines, dropped)


def _chat_ids(messages: list[dict[str, str]], tokenizer) -> tuple[list[int], list[int]]:
    if not tokenizer.chat_template:
        # a base model without a chat template: a plain transcript, the same one generation uses
        prompt = plain_transcript(messages[:-1])
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a = tokenizer(" " + messages[-1]["content"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        return p + a, [-100] * len(p) + a
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        # a template may end a conversation with EOS (Phi-3 does); the turn ends where `upto` and `full` part
        end = len(os.path.commonprefix([full, upto]))
        if not full.startswith(before) or m["content"].strip() not in full[len(before) : end]:
            raise DataError(
                "this model's chat template does not render conversations prefix by prefix; "
                "convert the data to prompt/completion records"
            )
        spans.append((len(before), end))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    for tid, (s, _) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
        labels.append(tid if any(a <= s < b for a, b in spans) else -100)
    return list(enc["input_ids"]), labels
