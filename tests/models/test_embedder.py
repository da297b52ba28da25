"""The Embedder's backends: sentence-transformers (bf16/fp32) and the int8 ONNX graph, on the real model."""

from __future__ import annotations

import json

import numpy as np
import pytest

import expertkit.models.onnx_int8 as onnx_int8
from expertkit.errors import ConfigError
from expertkit.models.embedder import Embedder, auto_dtype, cpu_has_amx
from expertkit.models.registry import resolve

PASSAGES = [
    "Opened items can be returned within 30 days; a restocking fee of 15 percent of the price applies.",
    "The NV-400 compressor must be serviced every 2,000 operating hours by a certified technician.",
    "Our head office moved to Bergen in 2019 and now employs 240 people.",
    "Bananas ripen faster when stored next to apples because of the ethylene the apples release.",
]
QUESTIONS = [
    "How much is the fee for returning an opened product?",
    "How often does the NV-400 need servicing?",
    "Where is the company headquartered?",
    "Why do bananas ripen quicker beside apples?",
]


@pytest.fixture(scope="module")
def int8() -> Embedder:
    return Embedder(dtype="int8")


def test_int8_vectors_are_unit_length_and_close_to_fp32(int8):
    fp32 = Embedder(dtype="fp32")
    texts = PASSAGES + QUESTIONS + ["short", "x " * 400]  # the last is cut at max_seq_length, as in fp32
    a, b = int8.encode(texts), fp32.encode(texts)
    assert a.shape == b.shape == (len(texts), 384) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)
    cosine = np.sum(a * b, axis=1)
    assert cosine.min() > 0.97, cosine
    assert int8.dim == 384 and int8.max_tokens == 256 and int8.tokenizer is not None


def test_int8_ranks_each_question_s_passage_first(int8):
    scores = int8.encode(QUESTIONS) @ int8.encode(PASSAGES).T
    assert list(scores.argmax(axis=1)) == [0, 1, 2, 3]


def test_int8_keeps_input_order_across_batches_of_mixed_lengths(int8):
    texts = [PASSAGES[i % 4] * (1 + i % 3) for i in range(11)]
    together = int8.encode(texts, batch_size=3)  # sorted by length inside, scattered back
    alone = np.stack([int8.encode([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=2e-2)
    assert [int(np.argmax(together[i] @ alone.T)) for i in range(4)] == [0, 1, 2, 3]


def test_the_int8_graph_is_built_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPERTKIT_CACHE", str(tmp_path))
    exports = []
    real = onnx_int8._export
    monkeypatch.setattr(onnx_int8, "_export", lambda folder, path: exports.append(path) or real(folder, path))
    folder = resolve("all-minilm-l6-v2", "embedder")
    first = onnx_int8.int8_model(folder)
    second = onnx_int8.int8_model(folder)
    assert first == second and first.exists() and len(exports) == 1
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # the fp32 export and staging are gone


def _dense_head_model(tmp_path):
    folder = tmp_path / "model"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {"type": "sentence_transformers.models.Transformer"},
                {"type": "sentence_transformers.models.Pooling"},
                {"type": "sentence_transformers.models.Dense"},
            ]
        )
    )
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return folder


def test_int8_refuses_a_model_it_cannot_export_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="Set embed.dtype = auto") as err:
        onnx_int8.int8_model(_dense_head_model(tmp_path))
    assert "\n" not in str(err.value)


def test_auto_is_int8_where_the_model_exports_and_torch_elsewhere(tmp_path):
    assert Embedder().dtype == "int8"  # the shipped all-MiniLM-L6-v2
    assert auto_dtype(_dense_head_model(tmp_path)) == ("bf16" if cpu_has_amx() else "fp32")
    assert auto_dtype("sentence-transformers/all-MiniLM-L6-v2") == ("bf16" if cpu_has_amx() else "fp32")  # a hub id
