"""Which backend runs a model and an adapter: the one place that decides (``ask``/``chat`` through
cli/common.py, ``serve``, ``make_generator``).

- A full fine-tune is a whole model, not an adapter: it replaces ``generate.model`` and nothing is applied.
- A LoRA adapter runs on the base it was trained on: its lineage's base replaces ``generate.model``.
- The backend: ``generate.backend`` unless it is ``auto``; under ``auto``, an OpenAI-compatible server where
  ``generate.base_url`` is set, llama.cpp for a GGUF model (a LoRA adapter goes along as a llama.cpp LoRA
  GGUF), transformers otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expertkit.models.lineage import read_lineage
from expertkit.models.registry import is_gguf

LLAMACPP, TRANSFORMERS, OPENAI = "llamacpp", "transformers", "openai"


@dataclass(frozen=True)
class Choice:
    """What runs: ``backend`` with ``settings`` (the GenerateSettings, their model the one the adapter
    needs) and ``adapter`` (a LoRA adapter to apply; None for none, or for a full fine-tune that is the model)."""

    backend: str
    settings: Any
    adapter: Path | None = None


def choose(settings, adapter: str | Path | None = None) -> Choice:
    """The backend, model and adapter that run ``settings.model`` with ``adapter`` (see the module's rules)."""
    path = Path(adapter) if adapter is not None else None
    if path is not None:
        lineage = read_lineage(path)
        if lineage.get("method") == "full":  # a full fine-tune is a whole model, not an adapter
            settings, path = settings.model_copy(update={"model": str(path)}), None
        elif lineage.get("base") and lineage["base"] != settings.model:
            settings = settings.model_copy(update={"model": lineage["base"]})  # the base it was trained on
    if settings.backend != "auto":
        backend = settings.backend
    elif settings.base_url:
        backend = OPENAI
    else:
        backend = LLAMACPP if is_gguf(settings.model) else TRANSFORMERS
    return Choice(backend, settings, path)


def choose_backend(settings, adapter: str | Path | None = None) -> str:
    """The backend that runs ``settings.model`` with ``adapter``: ``choose(settings, adapter).backend``."""
    return choose(settings, adapter).backend


def switchable(settings, adapter: Path, lineage: dict | None = None) -> bool:
    """Whether one llama.cpp server of ``settings.model`` can apply ``adapter`` to the requests that ask for it
    (``serve``: the base and every adapter on one server): a LoRA adapter trained on that very model."""
    lineage = read_lineage(adapter) if lineage is None else lineage
    trained_on_it = lineage.get("base") == settings.model and lineage.get("method") != "full"
    return trained_on_it and choose(settings).backend == LLAMACPP
