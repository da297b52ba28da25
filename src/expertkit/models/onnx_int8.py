"""A sentence-transformers model as an int8 ONNX graph, run by onnxruntime: the fast CPU embedder.

The model folder (Transformer, mean Pooling, Normalize, as all-MiniLM-L6-v2 is) is exported once with
``torch.onnx.export`` into one graph that ends in the unit sentence vector, then its weights are quantised to
int8 with onnxruntime's dynamic quantisation (activations are quantised per batch at run time, so no
calibration data is needed). The result is cached under the model cache, keyed by the model's files, so it is
built once per model and machine; nothing is downloaded. On CPUs with VNNI the int8 matrix products run
several times faster than fp32. What it costs in retrieval quality is measured in
``benchmarks/embed_int8.py``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from expertkit.errors import ConfigError
from expertkit.models.registry import model_cache_dir

OPSET = 17


def _weights_digest(folder: Path) -> str:
    """The cache key: the small config files by content, the weights (shards too) by size and mtime, so that a
    process that only searches does not read 90 MB of weights to find its graph (a changed file is a new key)."""
    h = hashlib.blake2b(digest_size=8)
    for name in ("config.json", "modules.json", "1_Pooling/config.json", "sentence_bert_config.json"):
        f = folder / name
        if f.exists():
            h.update(name.encode() + f.read_bytes())
    for f in sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")):
        stat = f.stat()
        h.update(f"{f.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()


def _check_layout(folder: Path) -> None:
    """Only Transformer → mean Pooling (→ Normalize) is exported; anything else says what to use instead."""
    modules = folder / "modules.json"
    listed = json.loads(modules.read_text()) if modules.exists() else []
    kinds = [m["type"].rsplit(".", 1)[-1] for m in listed]
    pooling = folder / (listed[1].get("path", "1_Pooling") if len(listed) > 1 else "1_Pooling") / "config.json"
    modes = json.loads(pooling.read_text()) if pooling.exists() else {}
    mean = modes.get("pooling_mode_mean_tokens") is True and not any(
        v for k, v in modes.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"
    )  # mean alone: CLS or max concatenated with it is another vector
    st_config = folder / "sentence_bert_config.json"
    lower = st_config.exists() and json.loads(st_config.read_text()).get("do_lower_case") is True
    if kinds[:2] != ["Transformer", "Pooling"] or not set(kinds[2:]) <= {"Normalize"} or not mean or lower:
        raise ConfigError(
            f"embed.dtype = int8 supports sentence-transformers models made of a Transformer and mean pooling; "
            f"{folder} is not one. Set embed.dtype = auto (or bf16, fp32)."
        )


def exportable(folder: Path) -> bool:
    """True where ``int8_model`` can build this folder's graph and onnxruntime is installed."""
    try:
        _check_layout(folder)
    except (ConfigError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return importlib.util.find_spec("onnxruntime") is not None  # found, not imported: commands that never embed


def int8_model(folder: Path) -> Path:
    """The cached int8 ONNX file for the sentence-transformers model in ``folder``, built on first use."""
    folder = Path(folder)
    _check_layout(folder)
    out = model_cache_dir() / "onnx" / f"{folder.parent.name}-{folder.name}-{_weights_digest(folder)}-int8.onnx"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constant shapes, which do not apply to BERT here
        fp32 = Path(tmp) / "fp32.onnx"
        _export(folder, fp32)
        from onnxruntime.quantization import QuantType, quantize_dynamic

        staged = Path(tmp) / "int8.onnx"
        # quantize_dynamic advises pre-processing through logging.warning, which would also give the root logger
        # a stderr handler for good: a null handler and a raised level, both for this call only
        root, quiet, null = logging.getLogger(), logging.getLogger().level, logging.NullHandler()
        root.addHandler(null)
        root.setLevel(logging.ERROR)
        try:
            quantize_dynamic(fp32, staged, weight_type=QuantType.QInt8, per_channel=True)
        finally:
            root.setLevel(quiet)
            root.removeHandler(null)
        os.replace(staged, out)  # atomic: a concurrent first use builds its own copy and renames over
    return out


def _export(folder: Path, path: Path) -> None:
    import torch
    import transformers
    from transformers import AutoModel

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()

    encoder = AutoModel.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
    # BERT-like models take token types; RoBERTa/MPNet-like ones do not: the graph has the inputs the model has
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(encoder.forward).parameters:
        names.append("token_type_ids")

    class Sentence(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, *inputs):
            feeds = dict(zip(names, inputs, strict=True))
            hidden = self.encoder(**feeds).last_hidden_state
            mask = feeds["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    sample = torch.ones((2, 8), dtype=torch.long)
    samples = tuple(torch.zeros_like(sample) if n == "token_type_ids" else sample for n in names)
    with torch.inference_mode():
        torch.onnx.export(
            Sentence(),
            samples,
            str(path),
            input_names=names,
            output_names=["sentence_embedding"],
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in names} | {"sentence_embedding": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


class Int8Encoder:
    """Tokenize, run the int8 graph, return unit vectors. Batches are built from texts of similar length."""

    def __init__(self, folder: Path, threads: int | None = None) -> None:
        import onnxruntime as ort
        import transformers
        from transformers import AutoTokenizer

        transformers.utils.logging.set_verbosity_error()  # as the torch path: the chunker counts long texts
        folder = Path(folder)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        config = folder / "sentence_bert_config.json"
        limit = json.loads(config.read_text()).get("max_seq_length") if config.exists() else None
        self.max_seq_length = int(limit or min(self.tokenizer.model_max_length, 512))
        options = ort.SessionOptions()
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        options.intra_op_num_threads = threads or cpus
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(int8_model(folder)), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        width = self.session.get_outputs()[0].shape[1]  # static in the exported graph
        self.dim = width if isinstance(width, int) else 0
        if not self.dim:
            self.dim = int(self.session.run(None, self._pad(self._tokenize(["probe"])))[0].shape[1])

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, truncation=True, max_length=self.max_seq_length)["input_ids"]

    def _pad(self, ids: list[list[int]]) -> dict[str, np.ndarray]:
        """One batch as the graph's inputs: the tokenizer pads the ids to the longest (its pad token and side) and
        gives the mask; token types are zero, as for any single text."""
        feeds = dict(self.tokenizer.pad({"input_ids": ids}, return_tensors="np"))
        feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
        return {name: feeds[name].astype(np.int64) for name in self.inputs}

    def get_embedding_dimension(self) -> int:  # the name sentence-transformers uses
        return self.dim

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        # tokenized once, and batched by token count, longest first: a batch pads to its longest text, and
        # characters are a poor proxy for wordpieces (scientific text runs ~20% more padding sorted by characters,
        # and ~40% more time)
        ids = self._tokenize(texts)
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]), reverse=True)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i in range(0, len(order), batch_size):
            rows = order[i : i + batch_size]
            out[rows] = self.session.run(None, self._pad([ids[j] for j in rows]))[0]
        return out
