"""The fine-tuning commands as users run them: synth → tune → adapters (staleness) → ask --adapter → merge."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from expertkit.cli import app
from tests.conftest import EXAMPLES, ROOT

runner = CliRunner()


def run(*args, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "expertkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"},
    )


@pytest.fixture(scope="module")
def tuned_ws(tmp_path_factory):
    """A workspace over a copy of the sample corpus, with a RAFT adapter trained on it (a few steps)."""
    root = tmp_path_factory.mktemp("tuned")
    docs = root / "docs"
    shutil.copytree(EXAMPLES, docs)
    ws = root / "ws"
    assert runner.invoke(app, ["ingest", str(docs), "-w", str(ws)]).exit_code == 0
    result = runner.invoke(
        app, ["synth", "raft", "--out", str(root / "raft.jsonl"), "--model-questions", "0", "-w", str(ws)]
    )
    assert result.exit_code == 0, result.output
    result = run(
        "tune",
        str(root / "raft.jsonl"),
        "--name",
        "norvale",
        "--max-steps",
        "3",
        "--max-length",
        "512",
        "-w",
        str(ws),
        "--set",
        "tune.batch_size=2",
        "--set",
        "tune.grad_accum=1",
    )
    assert result.returncode == 0, result.stderr
    assert "adapter:" in result.stdout and "final loss" in result.stdout
    return ws, docs


def test_adapters_lists_lineage(tuned_ws):
    ws, docs = tuned_ws
    data = json.loads(runner.invoke(app, ["adapters", "-w", str(ws), "--json"]).output)
    (adapter,) = data["adapters"]
    assert adapter["name"] == "norvale" and adapter["method"] == "lora" and adapter["stale"] == []
    assert adapter["base"] == "smollm2-135m-instruct" and len(adapter["data_sha256"]) == 64
    assert set(adapter["sources"]) == {str(p) for p in docs.rglob("*") if p.is_file()}
    assert (ws / "runs" / "norvale" / "loss.png").exists()
    assert json.loads((ws / "runs" / "norvale" / "run.json").read_text())["steps"] == 3
    # what was learnt from the documents (weights, checkpoints) is the owner's only, as the index is
    assert {oct((ws / d).stat().st_mode & 0o777) for d in ("adapters", "runs")} == {"0o700"}


def test_ask_with_adapter_both_routes(tuned_ws):
    ws, _ = tuned_ws
    for extra in ([], ["--no-rag"]):
        result = run(
            "ask", "What torque for the impeller nut?", "--adapter", "norvale", "-w", str(ws), "--json", *extra
        )
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["rag"] is (not extra) and data["answer"]
        assert "stale" not in result.stderr


def test_ask_with_adapter_runs_it_in_llama_cpp(tuned_ws):
    """The base is a GGUF, so ask --adapter goes through llama-server --lora with the exported adapter."""
    ws, _ = tuned_ws
    result = run("ask", "What torque for the impeller nut?", "--adapter", "norvale", "-w", str(ws), "--json")
    assert result.returncode == 0, result.stderr
    assert (ws / "adapters" / "norvale" / "adapter.gguf").stat().st_size > 1_000_000


def test_export_and_merge_gguf(tuned_ws, tmp_path):
    ws, _ = tuned_ws
    result = run("export", "norvale", "--gguf", "--out", str(tmp_path / "norvale.gguf"), "-w", str(ws))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "norvale.gguf").exists() and "--lora" in result.stdout and "ADAPTER" in result.stdout
    result = run("merge", "norvale", "--gguf", "-w", str(ws))
    assert result.returncode == 0, result.stderr
    merged = ws / "models" / "norvale-merged.gguf"
    assert (merged.parent.stat().st_mode & 0o777) == 0o700  # a model that learned the documents: the owner's only
    answer = run(
        "ask", "What torque for the impeller nut?", "-w", str(ws), "--json", "--set", f"generate.model={merged}"
    )
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["answer"]


def test_merge_writes_a_model_folder_with_the_chat_template(tuned_ws):
    ws, _ = tuned_ws
    result = run("merge", "norvale", "-w", str(ws))
    assert result.returncode == 0, result.stderr
    merged = ws / "models" / "norvale-merged"
    assert (merged / "model.safetensors").exists() and (merged / "chat_template.jinja").exists()
    answer = run(
        "ask", "What torque for the impeller nut?", "-w", str(ws), "--json", "--set", f"generate.model={merged}"
    )
    assert answer.returncode == 0, answer.stderr


def test_changed_or_removed_documents_make_the_adapter_stale(tuned_ws):
    ws, docs = tuned_ws
    (docs / "parts.csv").write_text((docs / "parts.csv").read_text().replace("318.00", "329.00"))
    (docs / "service-bulletin-2025-03.html").unlink()
    assert runner.invoke(app, ["ingest", str(docs), "-w", str(ws), "--prune"]).exit_code == 0
    result = run("adapters", "-w", str(ws))
    assert "stale" in result.stdout and "changed:" in result.stdout and "removed:" in result.stdout
    assert "warning: adapter norvale is stale" in result.stderr
    ask = run("ask", "What does the 45 mm seal kit cost?", "--adapter", "norvale", "-w", str(ws), "--json")
    assert ask.returncode == 0 and "adapter norvale is stale" in ask.stderr and "parts.csv" in ask.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--base", "no-such-model"], "not installed"),
        (["--method", "dora"], "tune.method"),
        (["--overlong", "wrap"], "tune.overlong"),
    ],
)
def test_tune_user_errors(tuned_ws, tmp_path, args, needle):
    ws, _ = tuned_ws
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n")
    result = run("tune", str(data), "-w", str(ws), *args)
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr


def test_tune_refuses_malformed_data_naming_the_line(tuned_ws, tmp_path):
    ws, _ = tuned_ws
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n{oops\n")
    result = run("tune", str(data), "-w", str(ws))
    assert result.returncode == 2 and "line 2" in result.stderr and "--skip-bad" in result.stderr
    assert not (ws / "runs" / "bad").exists()
