"""PEFT LoRA adapters in llama.cpp's formats: a LoRA adapter GGUF (``llama-server --lora``), and a base
GGUF with the adapter merged in (one file for llama.cpp, Ollama and anything else that loads GGUF).

The adapter file follows llama.cpp's own converter (convert_lora_to_gguf.py): ``general.type = adapter``,
``adapter.type = lora``, ``adapter.lora.alpha``, and per adapted weight two tensors named after llama.cpp's
tensor (gguf's tensor-name map: ``model.layers.3.self_attn.q_proj`` → ``blk.3.attn_q``) with the suffixes
``.lora_a`` (PEFT's A, r × in) and ``.lora_b`` (PEFT's B, out × r). llama.cpp scales by alpha / r, as PEFT
does. For the llama architecture, llama.cpp's converter permutes the rows of the q and k projections
(rotary layout); B is the factor with those rows, so it gets the same permutation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from expertkit.errors import TrainingError
from expertkit.models.lineage import read_lineage

ADAPTER_GGUF = "adapter.gguf"


def _arch(model_type: str):
    import gguf

    name = {"mistral": "llama"}.get(model_type, model_type)
    for arch, arch_name in gguf.MODEL_ARCH_NAMES.items():
        if arch_name == name:
            return arch, arch_name
    raise TrainingError(f"llama.cpp has no architecture {model_type!r}: this adapter cannot be exported to GGUF")


def _permute(weights, n_head: int):
    """llama.cpp's rotary row order for the llama architecture's q/k projections (its converter does this)."""
    rows = weights.shape[0]
    return weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def _peft_pairs(adapter: Path) -> dict[str, tuple]:
    """{'model.layers.0.self_attn.q_proj': (A, B)} from the adapter's safetensors."""
    from safetensors.torch import load_file

    file = adapter / "adapter_model.safetensors"
    if not file.exists():
        raise TrainingError(f"{adapter} has no adapter_model.safetensors: only LoRA adapters export to GGUF")
    pairs: dict[str, dict[str, object]] = {}
    for key, tensor in load_file(str(file)).items():
        name = key.removeprefix("base_model.model.")
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in name:
                module = name.split(marker)[0]
                pairs.setdefault(module, {})[part] = tensor.float()
    missing = [m for m, p in pairs.items() if len(p) != 2]
    if missing:
        raise TrainingError(f"{adapter}: incomplete LoRA pair for {missing[0]}")
    return {m: (p["lora_A"], p["lora_B"]) for m, p in pairs.items()}


def _config(adapter: Path) -> tuple[dict, dict]:
    try:
        peft_cfg = json.loads((adapter / "adapter_config.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise TrainingError(f"{adapter} has no readable adapter_config.json: not a PEFT LoRA adapter") from None
    if peft_cfg.get("peft_type", "LORA") != "LORA":
        raise TrainingError(f"{adapter} is a {peft_cfg.get('peft_type')} adapter; only LoRA exports to GGUF")
    lineage = read_lineage(adapter)
    base_path = lineage.get("base_path") or peft_cfg.get("base_model_name_or_path")
    if (not base_path or not (Path(base_path) / "config.json").exists()) and lineage.get("base"):
        from expertkit.models.local_model import local_model_path

        base_path = local_model_path(lineage["base"])  # a registry base's converted copy, made again if deleted
    try:
        base_cfg = json.loads((Path(base_path) / "config.json").read_text())
    except (OSError, TypeError, json.JSONDecodeError):
        raise TrainingError(f"the base model of {adapter.name} ({base_path}) is not here: cannot export") from None
    return peft_cfg, base_cfg


def _llama_tensors(adapter: Path):
    """(llama.cpp tensor base name, A, B, scale) for every adapted weight, B permuted where llama.cpp permutes."""
    import gguf

    peft_cfg, base_cfg = _config(adapter)
    arch, arch_name = _arch(base_cfg.get("model_type", ""))
    names = gguf.get_tensor_name_map(arch, int(base_cfg["num_hidden_layers"]))
    n_head = int(base_cfg["num_attention_heads"])
    n_kv = int(base_cfg.get("num_key_value_heads") or n_head)
    r = int(peft_cfg["r"])
    alpha = float(peft_cfg.get("lora_alpha", r))
    out = []
    for module, (a, b) in sorted(_peft_pairs(adapter).items()):
        target = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if target is None:
            raise TrainingError(f"{module}: no llama.cpp tensor for this weight; it cannot be exported to GGUF")
        if arch_name == "llama" and module.endswith("q_proj"):
            b = _permute(b, n_head)
        elif arch_name == "llama" and module.endswith("k_proj"):
            b = _permute(b, n_kv)
        out.append((target.removesuffix(".weight"), a, b))
    return arch_name, alpha, r, out


def export_lora_gguf(adapter: Path, out: Path | None = None) -> Path:
    """Write the adapter as a llama.cpp LoRA GGUF (f32), beside it by default; its lineage goes into the file."""
    import gguf

    adapter = Path(adapter)
    out = Path(out) if out else adapter / ADAPTER_GGUF
    arch_name, alpha, r, tensors = _llama_tensors(adapter)
    lineage = read_lineage(adapter)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), arch_name)
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_name(lineage.get("name", adapter.name))
    writer.add_string("expertkit.lineage", json.dumps(lineage, sort_keys=True))
    for name, a, b in tensors:
        writer.add_tensor(f"{name}.weight.lora_a", a.contiguous().numpy())
        writer.add_tensor(f"{name}.weight.lora_b", b.contiguous().numpy())
    _finish(writer, tmp, out)
    return out


def lora_gguf(adapter: Path) -> Path:
    """The adapter's GGUF, written (again) when missing or older than the adapter's weights."""
    adapter = Path(adapter)
    path = adapter / ADAPTER_GGUF
    weights = adapter / "adapter_model.safetensors"
    if path.exists() and weights.exists() and path.stat().st_mtime >= weights.stat().st_mtime:
        return path
    return export_lora_gguf(adapter, path)


def merge_into_gguf(adapter: Path, base_gguf: str | Path, out: Path) -> Path:
    """The base GGUF with the adapter merged in: adapted weights are rewritten as f16 (W + B·A·alpha/r, on the
    base's dequantized values), every other tensor and all metadata are copied unchanged."""
    import gguf
    import numpy as np
    import torch

    adapter = Path(adapter)
    arch_name, alpha, r, tensors = _llama_tensors(adapter)
    deltas = {f"{name}.weight": (a, b) for name, a, b in tensors}
    reader = gguf.GGUFReader(str(base_gguf))
    base_arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    if base_arch != arch_name:
        raise TrainingError(f"{base_gguf} is a {base_arch} model; adapter {adapter.name} was trained on {arch_name}")
    tmp = Path(out).with_name(Path(out).name + f".tmp{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), arch_name)
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == gguf.Keys.General.ARCHITECTURE:
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
    writer.add_string("expertkit.lineage", json.dumps({**read_lineage(adapter), "merged_into": str(base_gguf)}))
    done = set()
    for t in reader.tensors:
        if t.name in deltas:
            a, b = deltas[t.name]
            w = torch.from_numpy(np.array(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32))
            w = w.reshape(b.shape[0], a.shape[1]) + (b @ a) * (alpha / r)
            writer.add_tensor(t.name, w.to(torch.float16).numpy())
            done.add(t.name)
        else:
            writer.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
    if done != set(deltas):
        raise TrainingError(f"{base_gguf} lacks tensors the adapter changes: {sorted(set(deltas) - done)[:3]}")
    _finish(writer, tmp, Path(out))
    return Path(out)


def _finish(writer, tmp: Path, out: Path) -> None:
    """Write the file in gguf's order (header, metadata, tensors), then put it in place in one step."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out)
