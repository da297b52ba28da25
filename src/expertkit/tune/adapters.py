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

from expertkit.errors import WorkspaceError, require
from expertkit.models.lineage import (  # noqa: F401 - re-exported: the adapters API
    LINEAGE_FILE,
    base_fingerprint,
    check_compatible,
    read_lineage,
    replace_dir,
)


@dataclass
class AdapterInfo:
    name: str
    path: Path
    lineage: dict
    stale: list[str] = field(default_factory=list)  # "changed: path" / "removed: path"


def adapters_dir(root: Path) -> Path:
    return root / "adapters"


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


def merge_adapter(adapter: Path, out: Path) -> Path:
    """Write base + adapter as one model folder that keeps the base's tokenizer and chat template."""
    import torch

    require("tune", "peft")
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
    replace_dir(tmp, out)
    return out
