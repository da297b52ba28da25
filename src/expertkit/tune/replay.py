"""Replay: the base model's own answers to generic prompts, mixed into training so that an adapter that
learns a business's facts keeps the base's general behaviour (a cheap guard against forgetting).

The answers are generated once per base model (greedy, in batches) and cached beside the converted models.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

from expertkit.models.base import plain_transcript
from expertkit.tune.data import Example

MAX_NEW_TOKENS = 160


def replay_prompts() -> list[str]:
    text = resources.files("expertkit.tune").joinpath("replay_prompts.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def replay_examples(model, tokenizer, base_path: str, n: int) -> list[Example]:
    """``n`` chat examples (cycling over the prompts) answered by ``model`` as it is now (the base)."""
    if n <= 0:
        return []
    prompts = replay_prompts()
    answers = _cached_answers(model, tokenizer, base_path, prompts)
    pairs = [(p, a) for p, a in zip(prompts, answers, strict=True) if a.strip()]
    if not pairs:
        return []
    chosen = [pairs[i % len(pairs)] for i in range(n)]
    return [
        Example(
            messages=[{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
            meta={"kind": "replay"},
        )
        for prompt, answer in chosen
    ]


def _cached_answers(model, tokenizer, base_path: str, prompts: list[str]) -> list[str]:
    from expertkit.models.registry import model_cache_dir

    key = hashlib.sha256(json.dumps([str(base_path), prompts, MAX_NEW_TOKENS]).encode()).hexdigest()[:16]
    path = model_cache_dir() / "replay" / f"{Path(str(base_path)).name}-{key}.json"
    try:
        answers = json.loads(path.read_text())
        if isinstance(answers, list) and len(answers) == len(prompts):
            return answers
    except (OSError, json.JSONDecodeError):
        pass
    answers = generate_answers(model, tokenizer, prompts)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(answers, ensure_ascii=False))
    tmp.replace(path)
    return answers


def generate_answers(model, tokenizer, prompts: list[str], batch: int = 10) -> list[str]:
    """Greedy answers, left-padded batches."""
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out: list[str] = []
    try:
        for start in range(0, len(prompts), batch):
            texts = [_render(tokenizer, p) for p in prompts[start : start + batch]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.no_grad():
                ids = model.generate(
                    **enc, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id
                )
            for row in ids[:, enc["input_ids"].shape[1] :]:
                text = tokenizer.decode(row, skip_special_tokens=True).strip()
                if tokenizer.eos_token_id not in row.tolist():  # cut off: keep whole sentences only
                    end = max(text.rfind(". "), text.rfind(".\n"))
                    text = text[: end + 1] if end > 0 else ""
                out.append(text)
    finally:
        tokenizer.padding_side = side
    return out


def _render(tokenizer, prompt: str) -> str:
    messages = [{"role": "user", "content": prompt}]
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return plain_transcript(messages)
