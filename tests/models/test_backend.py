"""Which backend runs a model and an adapter (models/backend.py), what every generator declares (the Generator
protocol in models/base.py), and that the models package imports no circle. No model is loaded."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from expertkit.config import GenerateSettings
from expertkit.models.backend import choose, choose_backend, switchable
from expertkit.models.base import JSON_SCHEMA, LOGPROBS, STOP, accepts
from expertkit.models.generator import OpenAIGenerator, TransformersGenerator
from expertkit.models.lineage import LINEAGE_FILE
from expertkit.models.llamacpp import LlamaCppGenerator

MODEL = "smollm2-135m-instruct"
SRC = Path(__file__).resolve().parents[2] / "src"


def adapter(tmp_path: Path, **lineage) -> Path:
    folder = tmp_path / lineage.get("name", "a")
    folder.mkdir()
    (folder / LINEAGE_FILE).write_text(json.dumps(lineage))
    return folder


def test_a_lora_adapter_runs_on_the_base_it_was_trained_on(tmp_path):
    settings = GenerateSettings(model="/models/phi3-folder")
    lora = adapter(tmp_path, name="lora", method="lora", base=MODEL)
    choice = choose(settings, lora)
    assert (choice.backend, choice.settings.model, choice.adapter) == ("llamacpp", MODEL, lora)
    assert settings.model == "/models/phi3-folder"  # the caller's settings are left as they were
    assert choose_backend(settings, lora) == "llamacpp" and choose_backend(settings) == "transformers"


def test_a_full_fine_tune_is_the_model_not_an_adapter(tmp_path):
    full = adapter(tmp_path, name="full", method="full", base=MODEL)
    choice = choose(GenerateSettings(model=MODEL), full)
    assert (choice.backend, choice.settings.model, choice.adapter) == ("transformers", str(full), None)


def test_no_adapter_or_no_lineage_keeps_the_settings(tmp_path):
    settings = GenerateSettings(model=MODEL)
    assert choose(settings).settings is settings and choose(settings).adapter is None
    bare = tmp_path / "bare"
    bare.mkdir()
    assert choose(settings, bare).settings is settings and choose(settings, bare).adapter == bare
    assert choose(GenerateSettings(model=MODEL, backend="transformers")).backend == "transformers"
    assert choose(GenerateSettings(model=MODEL, base_url="http://x/v1")).backend == "openai"


def test_serve_switches_only_loras_trained_on_the_served_gguf(tmp_path):
    gguf = GenerateSettings(model=MODEL)
    assert switchable(gguf, adapter(tmp_path, name="mine", method="lora", base=MODEL))
    assert not switchable(gguf, adapter(tmp_path, name="other", method="lora", base="qwen2.5-coder-0.5b-instruct"))
    assert not switchable(gguf, adapter(tmp_path, name="full", method="full", base=MODEL))
    folder = GenerateSettings(model="/models/phi3-folder")
    lineage = {"method": "lora", "base": "/models/phi3-folder"}
    assert not switchable(folder, tmp_path / "mine", lineage)  # transformers: one adapter per model


@pytest.mark.parametrize(
    ("cls", "options"),
    [
        (TransformersGenerator, frozenset()),
        (OpenAIGenerator, {STOP}),
        (LlamaCppGenerator, {STOP, JSON_SCHEMA, LOGPROBS}),
    ],
)
def test_every_generator_declares_what_the_protocol_asks(cls, options):
    assert cls.options == options and callable(cls.close)
    assert isinstance(getattr(cls, "parallel", None), int) or cls is LlamaCppGenerator  # its server's slots


def test_accepts_reads_the_declared_options():
    remote = OpenAIGenerator("http://127.0.0.1:9/v1", "m")
    assert remote.parallel == 1 and accepts(remote, STOP) and not accepts(remote, JSON_SCHEMA)
    remote.close()  # nothing opened yet: closing is still safe, twice too
    remote.close()

    class Plain:  # a generator that declares no option: the protocol's member, read as declared
        options = frozenset()

        def generate(self, messages, max_new_tokens=256, temperature=0.0, on_token=None, stop=None): ...

    assert not accepts(Plain(), STOP)
    with pytest.raises(ValueError, match="unknown generator option 'stops'"):
        accepts(remote, "stops")


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """The expertkit modules ``module`` imports, function-local imports included."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def test_the_models_package_imports_no_circle():
    files = {
        ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (SRC / "expertkit").rglob("*.py")
    }
    graph = {m: _imports(p, m, set(files)) for m, p in files.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            if m == goal:
                return True
            if m not in seen:
                seen.add(m)
                todo.extend(graph.get(m, ()))
        return False

    circles = [(m, n) for m in graph if m.startswith("expertkit.models") for n in graph[m] if reaches(n, m)]
    assert circles == []
