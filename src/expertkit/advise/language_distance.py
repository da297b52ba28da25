"""How far the domain's language is from what the base model knows: its perplexity on a sample of the
corpus's chunks against its perplexity on generic text in the same language."""

from __future__ import annotations

import math
import random
from pathlib import Path

from expertkit.errors import ExpertkitError
from expertkit.language import language_of

# generic text per language (reference_<language>.txt), the same twelve paragraphs (everyday topics) written in
# each; another language is measured against the English one
REFERENCES = {p.stem.removeprefix("reference_"): p for p in sorted(Path(__file__).parent.glob("reference_*.txt"))}


def perplexity(model, tokenizer, texts: list[str], max_tokens: int = 256) -> float:
    """exp(mean negative log-likelihood per token) over ``texts``, each cut to ``max_tokens``."""
    import torch

    total_nll, total_tokens = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_tokens).input_ids
            if ids.shape[1] < 2:
                continue
            loss = model(input_ids=ids, labels=ids).loss
            total_nll += float(loss) * (ids.shape[1] - 1)
            total_tokens += ids.shape[1] - 1
    if not total_tokens:
        raise ExpertkitError("no text long enough to measure perplexity on")
    return math.exp(total_nll / total_tokens)


def reference_texts(language: str = "en") -> list[str]:
    text = REFERENCES.get(language, REFERENCES["en"]).read_text(encoding="utf-8")
    return [p.strip() for p in text.split("\n\n") if p.strip()]


def corpus_language(texts: list[str]) -> str:
    """The language most of ``texts`` are in (language.language_of: "el" or "en")."""
    votes = [language_of(t) for t in texts]
    return max(set(votes), key=votes.count) if votes else "en"


def domain_perplexity(base: str, chunks: list[str], sample: int = 24, seed: int = 0) -> tuple[float, float]:
    """The base model's perplexity on a stable sample of the corpus's chunks, and on generic text in the
    sample's language: a model reads Greek at a higher perplexity than English whatever the domain, so a Greek
    corpus against English text would look "vertical" for its language alone."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from expertkit.models.generator import local_model_path

    transformers.utils.logging.disable_progress_bar()
    path = local_model_path(base)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    rng = random.Random(seed)
    picked = rng.sample(chunks, min(sample, len(chunks)))
    reference = reference_texts(corpus_language(picked))
    return perplexity(model, tokenizer, picked), perplexity(model, tokenizer, reference)
