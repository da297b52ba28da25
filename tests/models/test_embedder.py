"""The Embedder's backends: sentence-transformers (bf16/fp32) and the int8 ONNX graph, on the real model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import expertkit.models.onnx_int8 as onnx_int8
from expertkit.errors import ConfigError
from expertkit.models.embedder import Embedder, auto_dtype
from expertkit.models.registry import resolve
from expertkit.system import cpu_has_amx

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


def test_int8_batches_texts_of_equal_token_count_together_not_equal_characters(int8, monkeypatch):
    # in characters the two kinds interleave (100, 101, 102, ...); in wordpieces they are 50 and 20 apiece,
    # so batching by token count pads nothing, where batching by characters would pad every batch
    digits = ["7 " * 50 + " " * (2 * k) for k in range(4)]
    words = ["the " * 20 + " " * (21 + 2 * k) for k in range(4)]
    texts = [t for pair in zip(digits, words, strict=True) for t in pair]
    assert sorted(texts, key=len) == texts
    masks = []
    session = int8.model.session

    class Recording:
        def run(self, names, feeds):
            masks.append(feeds["attention_mask"])
            return session.run(names, feeds)

    monkeypatch.setattr(int8.model, "session", Recording())
    vectors = int8.encode(texts, batch_size=4)
    assert [m.shape for m in masks] == [(4, 52), (4, 22)]
    assert all(m.all() for m in masks)  # no padding
    assert np.allclose(vectors[0], vectors[2], atol=1e-5) and not np.allclose(vectors[0], vectors[1], atol=0.1)


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
    both = _dense_head_model(tmp_path / "cls")  # mean and CLS pooling concatenated: another vector
    (both / "modules.json").write_text(json.dumps([{"type": "x.Transformer"}, {"type": "x.Pooling"}]))
    assert onnx_int8.exportable(both)
    (both / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True})
    )
    assert not onnx_int8.exportable(both)


def test_auto_is_int8_where_the_model_exports_and_torch_elsewhere(tmp_path):
    assert Embedder().dtype == "int8"  # the shipped all-MiniLM-L6-v2
    assert auto_dtype(_dense_head_model(tmp_path)) == ("bf16" if cpu_has_amx() else "fp32")
    assert auto_dtype("sentence-transformers/all-MiniLM-L6-v2") == ("bf16" if cpu_has_amx() else "fp32")  # a hub id


def test_auto_falls_back_to_torch_when_the_export_fails_and_forced_int8_says_why(monkeypatch):
    def refuse(folder):
        raise OSError("Read-only file system: the model cache")

    monkeypatch.setattr(onnx_int8, "int8_model", refuse)
    auto = Embedder()
    vectors = auto.encode(PASSAGES)
    assert auto.dtype == ("bf16" if cpu_has_amx() else "fp32") and auto.batch_size == 64
    assert list((auto.encode(QUESTIONS) @ vectors.T).argmax(axis=1)) == [0, 1, 2, 3]
    with pytest.raises(OSError, match="Read-only"):
        Embedder(dtype="int8").encode(["x"])


def test_int8_exports_a_model_without_token_types(tmp_path, monkeypatch):
    """DistilBERT/MPNet-like encoders take no token_type_ids: the graph gets only the inputs the model has."""
    import shutil

    from transformers import DistilBertConfig, DistilBertModel

    monkeypatch.setenv("EXPERTKIT_CACHE", str(tmp_path / "cache"))
    shipped = Path(resolve("all-minilm-l6-v2", "embedder"))
    folder = tmp_path / "tiny-distilbert"
    config = DistilBertConfig(
        vocab_size=30522, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=300
    )
    DistilBertModel(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "modules.json"):
        shutil.copy(shipped / name, folder / name)  # a BERT tokenizer: enough for random weights
    shutil.copytree(shipped / "1_Pooling", folder / "1_Pooling")
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True})
    )
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))
    encoder = onnx_int8.Int8Encoder(folder)
    assert encoder.inputs == ["input_ids", "attention_mask"]
    vectors = encoder.encode(PASSAGES + ["x " * 300], batch_size=2)
    assert vectors.shape == (5, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    reference = Embedder(str(folder), dtype="fp32").encode(PASSAGES + ["x " * 300])  # sentence-transformers
    assert np.sum(vectors * reference, axis=1).min() > 0.95
