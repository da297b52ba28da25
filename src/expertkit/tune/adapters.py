"""Adapters in a workspace: stored under a name with their lineage, checked for staleness, merged.

Lineage (``expertkit.json`` beside the PEFT files): the base model and its fingerprint, the training
data's hash and, for data made by ``synth``, the content hash of every source document. When a
source document changes or disappears after training, the adapter is stale: it may state facts the
documents no longer support. ``adapters`` and ``ask --adapter`` say so.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from expertkit.errors import TrainingError, WorkspaceError

LINEAGE_FILE = "expertkit.json"


def base_fingerprint(config) -> dict:
    """What must match for an adapter to fit a base: architecture and shapes."""
    keys = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size")
    return {k: getattr(config, k, None) for k in keys}


@dataclass
class AdapterInfo:
    name: str
    path: Path
    lineage: dict
    stale: list[str] = field(default_factory=list)  # "changed: path" / "removed: path"


def adapters_dir(root: Path) -> Path:
    return root / "adapters"


def read_lineage(path: Path) -> dict:
    try:
        return json.loads((path / LINEAGE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def staleness(lineage: dict, index) -> list[str]:
    """Source documents that changed or were removed since training, by content hash."""
    out = []
    for path, digest in sorted((lineage.get("sources") or {}).items()):
        now = index.get_source(path) if index is not None else None
        if now is None:
            out.append(f"removed: {path}")
        elif now.content_hash != digest:
            out.append(f"changed: {path}")
    return out


def list_adapters(root: Path, index=None) -> list[AdapterInfo]:
    folder = adapters_dir(root)
    if not folder.exists():
        return []
    out = []
    for path in sorted(
        p for p in folder.iterdir() if (p / "adapter_config.json").exists() or (p / "config.json").exists()
    ):
        lineage = read_lineage(path)
        out.append(AdapterInfo(path.name, path, lineage, staleness(lineage, index)))
    return out


def check_compatible(adapter: Path, base_config, base_name: str) -> None:
    """Refuse an adapter trained on a different base model, naming both."""
    lineage = read_lineage(adapter)
    want = lineage.get("base_fingerprint")
    if want and want != base_fingerprint(base_config):
        raise TrainingError(
            f"adapter {adapter.name} was trained on {lineage.get('base')!r}, not on {base_name!r} "
            f"({want.get('model_type')} {want.get('hidden_size')}-d × {want.get('num_hidden_layers')} layers vs "
            f"{base_config.model_type} {base_config.hidden_size}-d × {base_config.num_hidden_layers}). "
            f"Use --set generate.model={lineage.get('base')} or train a new adapter"
        )


def merge_adapter(adapter: Path, out: Path) -> Path:
    """Write base + adapter as one model folder that keeps the base's tokenizer and chat template."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from expertkit.models.generator import local_model_path

    lineage = read_lineage(adapter)
    if not lineage:
        raise WorkspaceError(f"{adapter} has no {LINEAGE_FILE}: it was not made by expertkit tune")
    if lineage.get("method") == "full":
        raise WorkspaceError(f"{adapter.name} is a full fine-tune, already a whole model: use it directly")
    base_path = local_model_path(lineage["base"])
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    check_compatible(adapter, base.config, lineage["base"])
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(base_path).save_pretrained(tmp)
    (tmp / LINEAGE_FILE).write_text(json.dumps({**lineage, "merged_from": str(adapter)}, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
