"""The Embedder: texts → unit-length float32 vectors, batched: as an int8 ONNX graph where the model exports
(the default, see ``onnx_int8``), else sentence-transformers in bf16 (CPUs with AMX) or fp32."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from expertkit.models.registry import REGISTRY, ModelSpec, resolve
from expertkit.system import cpu_has_amx

log = logging.getLogger(__name__)


def auto_dtype(path: str | Path) -> str:
    """What ``dtype="auto"`` runs: int8 ONNX wherever the model can be exported (a Transformer with mean
    pooling, in a local folder), else bf16 on CPUs with AMX, else fp32. On this project's 2-core Xeon
    (avx512_bf16, no AMX), SciFact abstracts encoded at 54.6/s in int8, 34.1/s in fp32 and 23.6/s in bf16:
    bf16 without AMX tiles is emulated and loses to fp32 (benchmarks/embed_int8.py)."""
    from expertkit.models.onnx_int8 import exportable

    return "int8" if exportable(Path(path)) else torch_dtype()


def torch_dtype() -> str:
    """The sentence-transformers precision ``auto`` falls back to: bf16 only where AMX makes it fast."""
    return "bf16" if cpu_has_amx() else "fp32"


class Embedder:
    """A sentence-transformers model. Configuration in __init__; texts flow through ``encode``.

    The model loads on first use, so commands that find nothing to embed never pay for it. A model trained with
    prefixes (multilingual-e5-small: "query: ", "passage: ") gets them from the registry, by each text's role.
    """

    def __init__(self, model: str = "all-minilm-l6-v2", batch_size: int = 0, dtype: str = "auto") -> None:
        self.name = model
        self._path = resolve(model, "embedder")  # fail early with the install command
        spec = REGISTRY.get(model.lower())
        self.prefixes = {"query": spec.query_prefix, "passage": spec.passage_prefix} if spec else {}
        # the rag gates on this model's cosine scale; a model outside the registry gets all-MiniLM-L6-v2's
        self.min_relevance = spec.min_relevance if spec else ModelSpec.min_relevance
        self.support_threshold = spec.support_threshold if spec else ModelSpec.support_threshold
        self._auto = dtype == "auto"
        self._batch_size = batch_size
        self.dtype = auto_dtype(self._path) if self._auto else dtype
        self._model = None
        # one encode at a time: a server encodes from several threads, and a fast tokenizer refuses
        # concurrent use ("Already borrowed"); encoding takes milliseconds, generation seconds
        self._lock = threading.RLock()

    @property
    def model(self):
        with self._lock:
            return self._load()

    def _load(self):
        if self._model is None:
            if self.dtype == "int8":
                from expertkit.models.onnx_int8 import Int8Encoder

                try:
                    self._model = Int8Encoder(Path(self._path))
                    return self._model
                except Exception as exc:  # noqa: BLE001 - an export that fails must not stop an ingest
                    if not self._auto:
                        raise
                    self.dtype = torch_dtype()  # auto: the same model in torch instead
                    log.warning("embed.dtype auto: the int8 export failed (%s); using %s", exc, self.dtype)
            import torch
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.utils.logging.disable_progress_bar()  # our own bars show progress
            transformers.utils.logging.set_verbosity_error()

            m = SentenceTransformer(self._path, device="cpu")
            if self.dtype == "bf16":
                m = m.to(torch.bfloat16)
            self._model = m
        return self._model

    @property
    def batch_size(self) -> int:
        """Texts per forward pass: the setting, else the backend's best. onnxruntime is fastest on small batches
        (1,000 SciFact abstracts' 2,291 chunks at 4/8/16/32/64: 20.4, 20.0, 21.5, 23.9, 25.3 s), torch on
        larger ones."""
        return self._batch_size or (8 if self.dtype == "int8" else 64)

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def dim(self) -> int:
        m = self.model
        return int(
            m.get_embedding_dimension()
            if hasattr(m, "get_embedding_dimension")
            else m.get_sentence_embedding_dimension()
        )

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def encode(
        self, texts: list[str], batch_size: int | None = None, role: str | Sequence[str] = "passage"
    ) -> np.ndarray:
        """Encode texts to an (n, dim) float32 array of unit vectors. ``role`` says what the texts are, "query"
        (a question, a claim to check) or "passage" (a document's text), for all of them or one per text: a model
        trained with prefixes gets each text's (one call either way, so that the batches are those of today)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        roles = [role] * len(texts) if isinstance(role, str) else list(role)
        if len(roles) != len(texts) or not set(roles) <= {"query", "passage"}:
            raise ValueError(f"role must be 'query' or 'passage', or one of them per text; got {role!r}")
        if any(self.prefixes.values()):
            texts = [self.prefixes[r] + t for r, t in zip(roles, texts, strict=True)]
        with self._lock:
            model = self.model  # loads first: a failed int8 export under auto switches to torch here
            if self.dtype == "int8":
                return model.encode(texts, batch_size or self.batch_size)
        import torch

        with self._lock, torch.inference_mode():
            out = model.encode(
                texts,
                batch_size=batch_size or self.batch_size,
                convert_to_tensor=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return out.float().cpu().numpy()
