"""What an adapter or a converted model carries about where it came from, and whether it fits a base.

Lives on the models side so that loading a model never imports the training package (``tune`` builds on
``models``, not the other way round). Also the one way this package replaces a folder on disk.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
from pathlib import Path

from expertkit.errors import TrainingError

LINEAGE_FILE = "expertkit.json"
_RENAME_EXCHANGE = 2  # linux/fs.h


def base_fingerprint(config) -> dict:
    """What must match for an adapter to fit a base: architecture and shapes."""
    keys = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size")
    return {k: getattr(config, k, None) for k in keys}


def read_lineage(path: Path) -> dict:
    try:
        return json.loads((Path(path) / LINEAGE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def check_compatible(adapter: Path, base_config, base_name: str) -> None:
    """Refuse an adapter trained on a different base model, naming both."""
    lineage = read_lineage(adapter)
    want = lineage.get("base_fingerprint")
    if want and want != base_fingerprint(base_config):
        raise TrainingError(
            f"adapter {Path(adapter).name} was trained on {lineage.get('base')!r}, not on {base_name!r} "
            f"({want.get('model_type')} {want.get('hidden_size')}-d × {want.get('num_hidden_layers')} layers vs "
            f"{base_config.model_type} {base_config.hidden_size}-d × {base_config.num_hidden_layers}). "
            f"Use --set generate.model={lineage.get('base')} or train a new adapter"
        )


def replace_dir(new: Path, target: Path) -> None:
    """Put the finished folder ``new`` at ``target`` so that a reader sees the old or the new folder, whole.

    On Linux the two are swapped in one step (renameat2 RENAME_EXCHANGE) and the old one is then removed;
    where that is not available the old folder is moved aside first (a reader may find nothing for a moment,
    never a mixture).
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        os.rename(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # `new` now holds the old folder
        return
    old = target.with_name(f"{target.name}.old{os.getpid()}")
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0
