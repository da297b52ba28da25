"""A local copy of a model that transformers loads fast: a registry GGUF is converted once into safetensors
in the model cache (training, merging and the transformers backend all read that copy).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

from expertkit.models.registry import REGISTRY, model_cache_dir, resolve


def local_model_path(name: str) -> str:
    """A folder transformers loads fast. A registry GGUF is converted once into safetensors in the cache.

    Loading the GGUF each time costs about 18 s on a small CPU, and a GGUF-loaded model keeps a GGUF
    quantizer attached that blocks saving and training; the converted copy has neither problem.
    """
    path = resolve(name, "generator")
    if not path.endswith(".gguf"):
        return path
    target = (
        model_cache_dir() / REGISTRY[name.lower()].name
        if name.lower() in REGISTRY
        else model_cache_dir() / Path(path).stem
    )
    if (target / "config.json").exists():
        return str(target)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, file = os.path.dirname(path), os.path.basename(path)
    # transformers' GGUF loader draws a tqdm bar on stderr that would land in `ask`'s output
    with contextlib.redirect_stderr(io.StringIO()):
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
    model.hf_quantizer = None  # transformers 5 keeps the GGUF quantizer; it blocks save_pretrained
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "expertkit-source.json").write_text(json.dumps({"gguf": path}))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, target)  # atomic: an interrupted conversion never leaves a half model behind
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
    return str(target)
