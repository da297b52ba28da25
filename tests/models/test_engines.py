"""Which llama.cpp engine serves the model, on any CPU: the portable default holds no AVX-512 code, a binary
that dies of SIGILL is replaced by one that runs and remembered per CPU, and a CPU on which nothing runs
gets one line naming the features it lacks. A failure this machine cannot show (an AVX-512 binary on an
AVX2 CPU) is played by a binary that dies the same way."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from expertkit.errors import ConfigError, GeneratorError, ModelNotInstalledError
from expertkit.models import engines
from expertkit.models.llamacpp import LlamaCppGenerator, LlamaServer
from expertkit.models.registry import module_dir, resolve

MODEL = "smollm2-135m-instruct"
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(autouse=True)
def engine_cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "engines.json"
    monkeypatch.setattr(engines, "_cache_path", lambda: path)
    return path


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def sigill_binary(tmp_path) -> tuple[str, Path]:
    """A llama-server built for a CPU this one is not: it prints what skulk's build printed, then dies of
    SIGILL. Each run is counted, to see whether the cached verdict spares the retry."""
    runs = tmp_path / "runs"
    body = f'echo run >> {runs}\necho "AMX is not ready to be used!"\nkill -ILL $$\n'
    return script(tmp_path / "llama-server", body), runs


def test_the_default_engine_holds_no_avx512_instruction():
    """The failure this guards against cannot happen on an AVX-512 machine, so read the code instead: the
    prebuilt engine's library uses AVX2 (ymm registers) and never an AVX-512 (zmm) or AMX (tile) one."""
    objdump = shutil.which("objdump")
    assert objdump, "objdump (binutils) is needed to read the engine's machine code"
    libraries = sorted(module_dir("xllamacpp").glob("*.so"))
    assert libraries
    text = subprocess.run(
        [objdump, "-d", "--no-show-raw-insn", *map(str, libraries)], capture_output=True, text=True, check=True
    ).stdout
    assert text.count("%ymm") > 1000  # real vector code was read
    # AVX-512 in any form: zmm registers, mask registers, the upper 16 xmm/ymm registers (EVEX only); AMX tiles;
    # AVX-VNNI ({vex} vpdpbusd), which AVX2-only AMD CPUs (Zen 1 to 3) lack too
    avx512 = re.findall(
        r"%zmm\d|%k[0-7]\b|%[xy]mm(?:1[6-9]|2\d|3[01])\b|\{vex\}|vpdpbu?sd|vpdpwssd|tileloadd|tdpb", text
    )
    assert avx512 == []


def test_auto_replaces_an_engine_that_dies_of_sigill_and_remembers_it(sigill_binary):
    binary, runs = sigill_binary
    first = LlamaServer(resolve(MODEL, "generator"), ctx_size=512, parallel=1, binary=binary).start()
    try:
        assert first.engine.name == "xllamacpp"
        assert "Paris" in LlamaCppGenerator(first, MODEL).generate(QUESTION, 8).text
    finally:
        first.stop()
    assert runs.read_text().count("run") == 1
    bad = engines.installed(binary)[0]
    assert bad.name == "llama-server" and engines.verdict(bad)["ok"] is False
    assert "SIGILL" in engines.verdict(bad)["detail"]
    assert [e.name for e in engines.candidates("auto", binary)] == ["xllamacpp"]  # not tried again here
    second = LlamaServer(resolve(MODEL, "generator"), ctx_size=512, parallel=1, binary=binary).start()
    second.stop()
    assert runs.read_text().count("run") == 1


def test_the_verdict_is_per_cpu(sigill_binary, monkeypatch):
    binary, _ = sigill_binary
    engines.record(engines.installed(binary)[0], False, "SIGILL")
    assert [e.name for e in engines.candidates("auto", binary)] == ["xllamacpp"]
    monkeypatch.setattr(engines, "cpu_key", lambda: "another-cpu")  # the same disk in another machine
    assert [e.name for e in engines.candidates("auto", binary)] == ["llama-server", "xllamacpp"]


def test_nothing_runs_names_the_missing_cpu_features(sigill_binary, monkeypatch):
    binary, _ = sigill_binary
    with pytest.raises(GeneratorError, match=r"no llama\.cpp engine runs on this CPU .*llama-server crashed"):
        LlamaServer(resolve(MODEL, "generator"), ctx_size=512, parallel=1, engine="llama-server", binary=binary).start()
    portable = engines.installed()[0]
    monkeypatch.setattr(engines, "cpu_flags", lambda: {"sse2", "avx", "fma"})  # a CPU from before AVX2
    line = engines.no_engine_message([portable])
    assert "xllamacpp needs AVX2, F16C, BMI2" in line and "expertkit doctor" in line and "\n" not in line


def test_a_users_own_llama_server_is_run_with_llama_servers_arguments(tmp_path, monkeypatch):
    """EXPERTKIT_LLAMA_SERVER names a binary (here one that hands its arguments to llama.cpp's server, as a
    CUDA or native build would take them); auto runs it before the default."""
    own = script(tmp_path / "my-llama-server", f'exec {sys.executable} -m expertkit.models.xllamacpp_server "$@"\n')
    monkeypatch.setenv("EXPERTKIT_LLAMA_SERVER", own)
    server = LlamaServer(resolve(MODEL, "generator"), ctx_size=512, parallel=1).start()
    try:
        assert server.engine.name == "llama-server" and server.engine.argv == (own,)
        assert engines.verdict(server.engine)["ok"] is True
        assert "Paris" in LlamaCppGenerator(server, MODEL).generate(QUESTION, 8).text
    finally:
        server.stop()


def test_bad_engine_settings_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="is not a file"):
        engines.candidates("auto", str(tmp_path / "nowhere"))
    with pytest.raises(ModelNotInstalledError, match="needs generate.server_binary"):
        engines.candidates("llama-server")
    with pytest.raises(ConfigError, match="use auto, xllamacpp, llama-server"):
        engines.candidates("vulkan")


# -- a llama-server named by someone else's workspace ----------------------------------------------------------


@pytest.fixture
def planted(tmp_path, monkeypatch) -> tuple[Path, Path, Path]:
    """Someone else's folder whose expertkit.toml names a program of theirs as the llama-server: it only
    writes down that it ran (and as what), then exits. Returns the folder, the program and its trace; the
    user's own config file is tmp_path/mine/config.toml, absent until a test writes it."""
    theirs, trace = tmp_path / "theirs", tmp_path / "it-ran"
    theirs.mkdir()
    program = Path(script(theirs / "llama-server", f'echo "$0" > {trace}\nexit 1\n'))
    (theirs / "expertkit.toml").write_text(f'[generate]\nserver_binary = "{program}"\n')
    (tmp_path / "mine").mkdir()
    monkeypatch.setenv("EXPERTKIT_CONFIG", str(tmp_path / "mine" / "config.toml"))
    return theirs, program, trace


def test_a_workspace_cannot_run_a_program_it_names(planted, tmp_path):
    """The attack: expertkit, run inside someone else's folder (found by searching upward), starts the
    llama-server that folder's expertkit.toml names: any program. It is never run; the one-line error names
    the workspace's file, the program and the line the user's own file would need."""
    from expertkit.config import load_settings
    from expertkit.models.generator import make_generator

    theirs, program, trace = planted
    with pytest.raises(ConfigError) as exc:
        make_generator(load_settings(theirs).generate)
    assert not trace.exists()
    message = str(exc.value)
    assert "\n" not in message and str(theirs / "expertkit.toml") in message and str(program) in message
    assert f'add to {tmp_path / "mine" / "config.toml"}: [secrets] allow_binaries = ["{program}"]' in message


def test_a_program_the_user_allows_runs_by_its_own_path(planted, tmp_path):
    """Allowed by its resolved path in the user's file, it runs, as that path: a link in the workspace to it
    runs the real file (its folder, not the workspace, supplies the libraries)."""
    from expertkit.config import load_settings
    from expertkit.models.generator import make_generator

    theirs, program, trace = planted
    link = theirs / "bin" / "server"
    link.parent.mkdir()
    link.symlink_to(program)
    (theirs / "expertkit.toml").write_text(f'[generate]\nserver_binary = "{link}"\n')
    (tmp_path / "mine" / "config.toml").write_text(f'[secrets]\nallow_binaries = ["{program}"]\n')
    with pytest.raises(GeneratorError):  # it started, and exited
        make_generator(load_settings(theirs).generate)
    assert trace.read_text().strip() == str(program)


@pytest.mark.parametrize("how", ["EXPERTKIT_LLAMA_SERVER", "EXPERTKIT_GENERATE__SERVER_BINARY", "--set", "user file"])
def test_the_users_own_choice_of_program_needs_no_entry(planted, tmp_path, monkeypatch, how):
    """The environment, --set and the user's own file choose for the user. The workspace's file is the one
    `expertkit init` writes, which names no program (below it, the user's file sets what it leaves out)."""
    from expertkit.config import default_toml, load_settings
    from expertkit.models.generator import make_generator

    theirs, program, trace = planted
    (theirs / "expertkit.toml").write_text("[search]\nk = 5\n" if how == "user file" else default_toml())
    overrides = {"generate": {"server_binary": str(program)}} if how == "--set" else None
    if how.startswith("EXPERTKIT_"):
        monkeypatch.setenv(how, str(program))
    if how == "user file":
        (tmp_path / "mine" / "config.toml").write_text(f'[generate]\nserver_binary = "{program}"\n')
    with pytest.raises(GeneratorError):  # it started, and exited
        make_generator(load_settings(theirs, overrides).generate)
    assert trace.read_text().strip() == str(program)
