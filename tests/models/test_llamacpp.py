"""The llama.cpp runtime: llama.cpp's real server (the default engine, from the xllamacpp wheel), running
the shipped SmolLM2 GGUF on the CPU. Private servers, the warm workspace server, and every failure a user
can meet: engine missing, corrupt model, port taken, server killed mid-answer, no orphan left. Choosing
between engines is in test_engines.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from expertkit.config import GenerateSettings
from expertkit.errors import GeneratorError, ModelNotInstalledError
from expertkit.models.generator import choose_backend, make_generator
from expertkit.models.llamacpp import (
    LlamaCppGenerator,
    LlamaServer,
    read_runtime,
    start_runtime,
    stop_runtime,
)
from expertkit.models.registry import resolve
from expertkit.system import physical_cores

ROOT = Path(__file__).resolve().parents[2]
MODEL = "smollm2-135m-instruct"
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")  # a zombie is dead


def wait_dead(pid: int, seconds: float = 15.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def llama():
    g = make_generator(GenerateSettings(model=MODEL, ctx_size=2048, parallel=2))
    yield g
    g.close()


def test_gguf_models_run_on_llama_cpp_by_default():
    assert choose_backend(GenerateSettings(model=MODEL)) == "llamacpp"
    assert choose_backend(GenerateSettings(model=MODEL), adapter="some/adapter") == "llamacpp"  # with --lora
    assert choose_backend(GenerateSettings(model="/models/phi3-folder")) == "transformers"
    assert choose_backend(GenerateSettings(model="/models/Phi-3-mini-4k-instruct-q4.gguf")) == "llamacpp"
    assert choose_backend(GenerateSettings(model=MODEL, base_url="http://x/v1")) == "openai"


def test_streams_with_the_ggufs_own_template_and_exact_token_counts(llama):
    assert isinstance(llama, LlamaCppGenerator) and llama.server.threads == physical_cores()
    assert llama.server.engine.name == "xllamacpp"  # the portable default
    assert llama.render(QUESTION).startswith("<|im_start|>")  # SmolLM2's ChatML, from the GGUF
    pieces: list[str] = []
    gen = llama.generate(QUESTION, 12, on_token=pieces.append)
    assert "Paris" in gen.text and "".join(pieces).strip() == gen.text
    assert gen.prompt_tokens == llama.count_tokens(QUESTION)  # our count is the server's own
    assert 0 < gen.first_token_s < gen.seconds and gen.tokens_per_second > 0
    assert llama.context_window == 2048


def test_a_llama_server_reached_as_a_remote_counts_tokens_exactly(llama):
    """Through its OpenAI API, a llama.cpp server elsewhere counts tokens with the model's own template and
    tokenizer (/apply-template, /tokenize), as the local generator does: Greek is not guessed at."""
    from expertkit.models.openai_compat import OpenAIGenerator

    remote = OpenAIGenerator(f"{llama.server.url}/v1", llama.name, api_key=llama.server.api_key)
    greek = [{"role": "user", "content": "Πόσους μήνες εγγύηση έχει ο θερμοστάτης ΘΡ-12;"}]
    assert remote.count_tokens(greek) == llama.count_tokens(greek)
    assert remote.generate(QUESTION, 4).prompt_tokens == remote.count_tokens(QUESTION)


def test_the_shared_system_prompt_comes_from_the_prompt_cache(llama):
    """RAG's system message is the same for every question: the second question reads it from the cache."""
    system = {"role": "system", "content": "You answer questions about Norvale pumps and nothing else. " * 20}
    first = llama.generate([system, {"role": "user", "content": "What is a pump?"}], 4)
    second = llama.generate([system, {"role": "user", "content": "What is a valve?"}], 4)
    assert first.prompt_tokens > 200 and first.cached_tokens < 200
    assert second.cached_tokens >= 200


def test_json_schema_output_always_parses(llama):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
    }
    gen = llama.generate([{"role": "user", "content": "Name a city in France."}], 48, json_schema=schema)
    data = json.loads(gen.text)
    assert set(data) == {"city", "country"} and all(isinstance(v, str) for v in data.values())


def test_generate_json_uses_the_grammar_and_checks_required_fields(llama):
    from expertkit.models.generator import generate_json

    schema = {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}
    ask = [{"role": "user", "content": 'Rewrite as a question about pumps. Reply as JSON {"question": "..."}: price'}]
    value = generate_json(llama, ask, schema, 48)
    assert set(value) == {"question"} and value["question"].strip()

    class Free:  # a backend without constrained decoding: the first JSON object in its text is used
        options = frozenset({"stop"})

        def generate(self, messages, max_new_tokens, temperature):
            return type("G", (), {"text": 'Sure! {"question": "What does it cost?"} Hope this helps.'})()

    assert generate_json(Free(), ask, schema) == {"question": "What does it cost?"}

    class Empty:  # declares no options: none
        options = frozenset()

        def generate(self, messages, max_new_tokens, temperature):
            return type("G", (), {"text": '{"question": "  "}'})()

    assert generate_json(Empty(), ask, schema) is None


def test_parallel_slots_serve_concurrent_requests(llama):
    results: list[str] = []

    def ask() -> None:
        results.append(llama.generate(QUESTION, 8).text)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 2 and all("Paris" in r for r in results)


def test_engine_missing_says_which_pip_command(monkeypatch):
    from expertkit.models import engines

    real = engines.module_dir
    monkeypatch.setattr(engines, "module_dir", lambda name: None if name == "xllamacpp" else real(name))
    with pytest.raises(ModelNotInstalledError, match="pip install xllamacpp"):
        LlamaServer(resolve(MODEL, "generator"), ctx_size=512, parallel=1).start()


def test_corrupt_model_file_is_named(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(4096))
    with pytest.raises(GeneratorError, match=r"broken\.gguf"):
        LlamaServer(str(bad), ctx_size=512, parallel=1).start(timeout=60)


def test_port_taken_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = LlamaServer(resolve(MODEL, "generator"), ctx_size=512, parallel=1, port=port)
        with pytest.raises(GeneratorError, match=f"port {port} on 127.0.0.1 is taken"):
            server.start(timeout=60)
    assert server.process is None  # refused before anything was started


def test_server_dying_mid_answer_is_reported_not_hidden():
    g = make_generator(GenerateSettings(model=MODEL, ctx_size=1024, parallel=1))

    def kill_on_first_token(piece: str) -> None:
        os.kill(g.server.pid, signal.SIGKILL)

    with pytest.raises(GeneratorError, match="died mid-answer"):
        g.generate([{"role": "user", "content": "Write a long story about a ship."}], 400, on_token=kill_on_first_token)
    g.close()


def test_private_server_is_stopped_with_its_generator():
    g = make_generator(GenerateSettings(model=MODEL, ctx_size=512, parallel=1))
    pid = g.server.pid
    assert alive(pid)
    g.close()
    assert wait_dead(pid)


def test_no_orphan_when_the_command_is_killed(tmp_path):
    """SIGKILL leaves no chance to clean up: the kernel's parent-death signal stops the server."""
    script = (
        "from expertkit.config import GenerateSettings\n"
        "from expertkit.models.generator import make_generator\n"
        f"g = make_generator(GenerateSettings(model={MODEL!r}, ctx_size=512, parallel=1))\n"
        "print(g.server.pid, flush=True)\n"
        "import time; time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    pid = int(proc.stdout.readline())
    assert alive(pid)
    proc.kill()
    proc.wait()
    assert wait_dead(pid), "llama-server outlived the process that started it"


def test_warm_runtime_is_reused_then_stopped(tmp_path):
    data = tmp_path / ".expertkit"
    info = start_runtime(data, MODEL, resolve(MODEL, "generator"), 1024, 1)
    try:
        assert json.loads((data / "runtime.json").read_text())["pid"] == info.pid
        assert read_runtime(data) == info
        g = make_generator(GenerateSettings(model=MODEL), runtime_dir=data)
        assert g.server.pid == info.pid and g.server.process is None  # attached, not started
        assert "Paris" in g.generate(QUESTION, 8).text
        g.close()  # a command's close leaves the warm server running
        assert alive(info.pid)
        other = make_generator(GenerateSettings(model="qwen2.5-coder-0.5b-instruct"), runtime_dir=data)
        assert other.server.pid != info.pid  # another model: a private server, the warm one untouched
        other.close()
    finally:
        stopped = stop_runtime(data)
    assert stopped.pid == info.pid and wait_dead(info.pid) and not (data / "runtime.json").exists()
    assert stop_runtime(data) is None


def test_the_runtime_answers_no_one_without_its_key(tmp_path, llama):
    """The attack: another local process (or a web page that finds the port) calls the warm runtime directly,
    around expertkit's keys, to use the model and its adapters. It gets 401; expertkit's own clients, in this
    process and in later commands through the workspace's record, carry the key; the key is on no command
    line, in no log, and in no file but the owner's 0600 record."""
    import httpx

    data = tmp_path / ".expertkit"
    info = start_runtime(data, MODEL, resolve(MODEL, "generator"), 1024, 1)
    try:
        url = info.url
        chat = {"messages": QUESTION, "max_tokens": 4}
        assert httpx.get(f"{url}/health").status_code == 200  # the readiness probe needs no key
        for method, path, body in [
            ("POST", "/v1/chat/completions", chat),
            ("POST", "/completion", {"prompt": "The capital of France is", "n_predict": 4}),
            ("POST", "/tokenize", {"content": "hello"}),
            ("GET", "/slots", None),
            ("GET", "/lora-adapters", None),
            ("GET", "/v1/models", None),
        ]:
            assert httpx.request(method, f"{url}{path}", json=body, timeout=30).status_code == 401, path
        wrong = {"Authorization": "Bearer " + "x" * len(info.api_key)}
        assert httpx.post(f"{url}/v1/chat/completions", json=chat, headers=wrong, timeout=30).status_code == 401
        # a web page's preflight: the server's own origin only, never '*' or the page's
        preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        allowed = httpx.options(f"{url}/v1/chat/completions", headers=preflight).headers["access-control-allow-origin"]
        assert allowed == url

        g = make_generator(GenerateSettings(model=MODEL), runtime_dir=data)  # a later command, via the record
        assert g.server.pid == info.pid and g.server.api_key == info.api_key
        assert "Paris" in g.generate(QUESTION, 8).text and g.count_tokens(QUESTION) > 5
        assert llama.server.api_key not in ("", info.api_key)  # every start draws its own key

        record = data / "runtime.json"
        assert record.stat().st_mode & 0o777 == 0o600
        assert json.loads(record.read_text())["api_key"] == info.api_key
        argv = Path(f"/proc/{info.pid}/cmdline").read_bytes().split(b"\0")
        assert not any(info.api_key.encode() in arg for arg in argv)
        key_file = Path(argv[argv.index(b"--api-key-file") + 1].decode())
        assert not key_file.exists()  # deleted once the server had read it
        assert info.api_key not in Path(info.log).read_text(errors="replace")
        assert info.api_key not in repr(info)
    finally:
        stop_runtime(data)


# llama-server as llama.cpp builds it, played by the default engine: LLAMA_API_KEY (its --api-key) adds a key
# to those of --api-key-file, and so do the LLAMA_ARG_ spellings of the option and of the file
LLAMA_SERVER_AS_BUILT = """#!{python}
import os, sys
args = sys.argv[1:]
at = args.index("--api-key-file") + 1
keys = open(args[at]).read().split()
keys += [os.environ[name] for name in ("LLAMA_API_KEY", "LLAMA_ARG_API_KEY") if name in os.environ]
keys += open(os.environ["LLAMA_ARG_API_KEY_FILE"]).read().split() if "LLAMA_ARG_API_KEY_FILE" in os.environ else []
args[at] = "{folder}/keys-%d" % os.getpid()
with open(args[at], "w") as f:
    f.write("\\n".join(keys))
os.execv(sys.executable, [sys.executable, "-m", "expertkit.models.xllamacpp_server", *args])
"""


def test_an_api_key_in_the_users_environment_opens_no_runtime(tmp_path, monkeypatch):
    """The attack: the user's shell holds LLAMA_API_KEY (set for another llama-server), the managed server
    inherits it, and it becomes a second key to the runtime that anyone who knows it can use. The runtime
    answers only its own key."""
    import httpx

    from expertkit.models import engines

    monkeypatch.setattr(engines, "_cache_path", lambda: tmp_path / "engines.json")
    binary = tmp_path / "llama-server"
    binary.write_text(LLAMA_SERVER_AS_BUILT.format(python=sys.executable, folder=tmp_path))
    binary.chmod(0o755)
    (tmp_path / "more-keys").write_text("key-from-a-file\n")
    monkeypatch.setenv("LLAMA_API_KEY", "key-from-the-shell")
    monkeypatch.setenv("LLAMA_ARG_API_KEY", "key-from-an-arg-variable")
    monkeypatch.setenv("LLAMA_ARG_API_KEY_FILE", str(tmp_path / "more-keys"))
    data = tmp_path / ".expertkit"
    info = start_runtime(data, MODEL, resolve(MODEL, "generator"), 512, 1, binary=str(binary))
    try:
        assert info.engine == "llama-server"
        models = f"{info.url}/v1/models"
        for key in ("key-from-the-shell", "key-from-an-arg-variable", "key-from-a-file"):
            assert httpx.get(models, headers={"Authorization": f"Bearer {key}"}).status_code == 401, key
        assert httpx.get(models, headers={"Authorization": f"Bearer {info.api_key}"}).status_code == 200
    finally:
        stop_runtime(data)


def test_stale_runtime_record_is_dropped_and_replaced(tmp_path):
    data = tmp_path / ".expertkit"
    data.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    record = {
        "pid": dead.pid,
        "port": 9,
        "host": "127.0.0.1",
        "model": MODEL,
        "model_path": "x.gguf",
        "ctx_size": 512,
        "parallel": 1,
        "threads": 1,
        "log": "x.log",
        "started": 0.0,
    }
    (data / "runtime.json").write_text(json.dumps(record))
    assert read_runtime(data) is None and not (data / "runtime.json").exists()
    (data / "runtime.json").write_text("{not json")
    assert read_runtime(data) is None and not (data / "runtime.json").exists()
    g = make_generator(GenerateSettings(model=MODEL, ctx_size=512, parallel=1), runtime_dir=data)
    assert g.server.process is not None  # a fresh private server replaced the stale one
    g.close()
