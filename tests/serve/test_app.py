"""`expertkit serve` as a team uses it: the official `openai` client with API keys, against the real
command (a subprocess running llama-server with the shipped SmolLM2-135M and the real embedder),
over a workspace holding public and HR documents and an adapter fine-tuned on the HR ones.

Facts are planted (no model can know them): a public pump's maker, and an HR salary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import openai
import pytest
from typer.testing import CliRunner

from expertkit.cli import app
from tests.conftest import ROOT, TEST_MODEL, Server, free_port

runner = CliRunner()

PUBLIC = """# Kestrel KP-40

The Kestrel KP-40 pump is made by Harlow Fluidworks in Tonsberg.

## Maintenance

Its impeller bolts are torqued to 38 N·m and checked every 900 operating hours.
"""
OTHER = """# Osprey OP-12

The Osprey OP-12 pump is made by Brannock Hydraulics.

## Maintenance

Its impeller bolts are torqued to 22 N·m and checked every 400 operating hours.
"""
SECRET = """# Executive pay

The salary of the Chief Pump Officer, Odile Varga, is 231,400 euros a year.
"""
MAKER_Q = "Who makes the Kestrel KP-40 pump?"
SALARY_Q = "What is the salary of the Chief Pump Officer, Odile Varga?"


def _hr_adapter(root: Path, secret_path: str, trained: Path) -> None:
    """A real LoRA adapter (the session's, tests/conftest.py) whose lineage says it learned the HR document:
    what serve decides from is the lineage, which training writes from the data's sources."""
    from expertkit.models.lineage import LINEAGE_FILE

    target = root / "adapters" / "hrtuned"
    shutil.copytree(trained, target)
    lineage = json.loads((target / LINEAGE_FILE).read_text())
    lineage["sources"] = {secret_path: "x"}
    (target / LINEAGE_FILE).write_text(json.dumps(lineage))


@pytest.fixture(scope="module")
def served(tmp_path_factory, smol_adapter):
    from expertkit.serve.keys import KeyStore

    ws = tmp_path_factory.mktemp("serve") / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    (ws / "docs" / "public").mkdir(parents=True)
    (ws / "docs" / "hr").mkdir(parents=True)
    (ws / "docs" / "public" / "kestrel.md").write_text(PUBLIC)
    (ws / "docs" / "public" / "osprey.md").write_text(OTHER)
    (ws / "docs" / "hr" / "salaries.md").write_text(SECRET)
    for folder, extra in (("public", []), ("hr", ["--group", "hr"])):
        result = runner.invoke(app, ["ingest", str(ws / "docs" / folder), "-w", str(ws), *extra])
        assert result.exit_code == 0, result.output
    _hr_adapter(ws, str((ws / "docs" / "hr" / "salaries.md").resolve()), smol_adapter)
    store = KeyStore(ws / ".expertkit" / "keys.json")
    members = (("staff", ["everyone"]), ("boss", ["everyone", "hr"]))
    keys = {name: store.add(name, groups)[0] for name, groups in members}
    port = free_port()
    log = ws / "serve.log"
    sets = ["serve.max_messages=8", "serve.max_body_kb=64", "generate.max_new_tokens=48"]
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "expertkit.cli", "serve", "-w", str(ws), "--port", str(port),
             *(arg for s in sets for arg in ("--set", s))],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"},
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 240
        while time.time() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 401:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail(f"expertkit serve did not start: {log.read_text()}")
        yield SimpleNamespace(url=url, keys=keys, ws=ws, log=log, store=store)
        process.terminate()
        process.wait(timeout=30)


def client(served, key: str | None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key=key or "none", max_retries=0, timeout=120)


def test_models_list_the_expert_first_each_adapter_the_key_may_use_and_the_bare_model(served):
    staff = [m.id for m in client(served, served.keys["staff"]).models.list()]
    boss = [m.id for m in client(served, served.keys["boss"]).models.list()]
    assert staff == ["expertkit", TEST_MODEL]  # the HR-tuned adapter could state the salary: not for staff
    assert boss == ["expertkit", "expertkit+hrtuned", TEST_MODEL]


def test_the_openai_client_gets_a_cited_answer_from_the_documents(served):
    reply = client(served, served.keys["staff"]).chat.completions.create(
        model="expertkit", messages=[{"role": "user", "content": MAKER_Q}]
    )
    text = reply.choices[0].message.content
    maker = [c for c in reply.model_extra["citations"] if "Harlow Fluidworks" in c["quote"]]
    assert maker and maker[0]["source"] == "docs/public/kestrel.md"  # relative to the workspace
    assert maker[0]["section"] == "Kestrel KP-40"
    assert "\n\nSources:\n" in text and f"[{maker[0]['number']}] docs/public/kestrel.md" in text
    assert str(served.ws) not in json.dumps(reply.model_dump())  # no server path leaves the machine
    assert reply.model_extra["expertkit"]["found"] is True and reply.usage.prompt_tokens > 0


def test_streaming_sends_the_draft_then_the_sources_and_the_citations(served):
    stream = client(served, served.keys["staff"]).chat.completions.create(
        model="expertkit", messages=[{"role": "user", "content": MAKER_Q}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    last = chunks[-1]
    assert len(chunks) > 4 and last.choices[0].finish_reason in ("stop", "length")
    cited = {c["number"]: c["source"] for c in last.model_extra["citations"]}
    assert "docs/public/kestrel.md" in cited.values()
    assert "\n\nSources:\n" in text and all(f"[{n}] {source}" in text for n, source in cited.items())
    assert sum(1 for c in chunks if c.choices[0].delta.content) > 2  # tokens arrive as they are written


def test_a_key_reads_only_its_groups(served):
    """The staff key never gets the HR salary, asked straight or with its exact words; the HR key does."""
    staff, boss = client(served, served.keys["staff"]), client(served, served.keys["boss"])
    for question in (SALARY_Q, "Odile Varga 231,400 euros salary Chief Pump Officer"):
        reply = staff.chat.completions.create(model="expertkit", messages=[{"role": "user", "content": question}])
        sources = {c["source"] for c in reply.model_extra["citations"]}
        assert "docs/hr/salaries.md" not in sources
        assert "231,400" not in reply.choices[0].message.content
        dumped = reply.model_dump()
        dumped["expertkit"].pop("retrieval_query")  # the question itself, which the caller wrote
        assert "salaries" not in json.dumps(dumped) and "231,400" not in json.dumps(dumped)
    reply = boss.chat.completions.create(model="expertkit", messages=[{"role": "user", "content": SALARY_Q}])
    assert "docs/hr/salaries.md" in {c["source"] for c in reply.model_extra["citations"]}
    # /v1/ask, the non-OpenAI door, applies the key's groups too
    headers = {"Authorization": f"Bearer {served.keys['staff']}"}
    asked = httpx.post(f"{served.url}/v1/ask", json={"question": SALARY_Q}, headers=headers, timeout=120).json()
    asked.pop("question")
    assert "salaries" not in json.dumps(asked) and "231,400" not in json.dumps(asked)


def test_an_unanswerable_question_is_not_found(served):
    reply = client(served, served.keys["boss"]).chat.completions.create(
        model="expertkit", messages=[{"role": "user", "content": "What colour is the chairman's yacht?"}]
    )
    assert reply.choices[0].message.content == "Not found in the documents."
    assert reply.model_extra["expertkit"]["found"] is False and reply.model_extra["citations"] == []


def test_follow_ups_use_the_conversation(served):
    reply = client(served, served.keys["staff"]).chat.completions.create(
        model="expertkit",
        messages=[
            {"role": "user", "content": MAKER_Q},
            {"role": "assistant", "content": "Harlow Fluidworks makes it [1].\n\nSources:\n[1] docs/public/kestrel.md"},
            {"role": "user", "content": "How often are its impeller bolts checked?"},
        ],
    )
    found = reply.model_extra["expertkit"]
    # "its" is the Kestrel: retrieval searched with the conversation, so the Kestrel passage comes first,
    # not the Osprey's (which words the same sentence with other numbers)
    assert "Kestrel" in found["retrieval_query"] and found["retrieved"][0]["source"] == "docs/public/kestrel.md", found


def test_keys_are_required_and_checked(served):
    with pytest.raises(openai.AuthenticationError, match="no API key|invalid"):
        client(served, None).models.list()
    bad = served.keys["staff"][:-2] + "zz"
    with pytest.raises(openai.AuthenticationError, match="invalid or revoked"):
        client(served, bad).chat.completions.create(messages=[{"role": "user", "content": MAKER_Q}], model="expertkit")
    response = httpx.get(f"{served.url}/v1/models", headers={"Authorization": "Basic abc"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_a_revoked_key_is_refused_without_a_restart(served):
    key, _ = served.store.add("temp", ["everyone"])
    assert [m.id for m in client(served, key).models.list()][0] == "expertkit"
    served.store.revoke("temp")
    with pytest.raises(openai.AuthenticationError, match="invalid or revoked"):
        client(served, key).models.list()


def test_an_adapter_trained_on_documents_a_key_may_not_read_is_forbidden(served):
    with pytest.raises(openai.PermissionDeniedError, match="fine-tuned on documents your key may not read"):
        client(served, served.keys["staff"]).chat.completions.create(
            model="expertkit+hrtuned", messages=[{"role": "user", "content": SALARY_Q}]
        )
    reply = client(served, served.keys["boss"]).chat.completions.create(
        model="expertkit+hrtuned", messages=[{"role": "user", "content": SALARY_Q}], max_tokens=8
    )
    assert reply.model == "expertkit+hrtuned" and reply.usage.completion_tokens <= 8


def test_openai_message_forms_newer_clients_send(served):
    """Content as a list of text parts, the developer role, and max_completion_tokens."""
    reply = client(served, served.keys["staff"]).chat.completions.create(
        model=TEST_MODEL,
        messages=[
            {"role": "developer", "content": "Answer in one word."},
            {"role": "user", "content": [{"type": "text", "text": "Say "}, {"type": "text", "text": "hello."}]},
        ],
        max_completion_tokens=3,
    )
    assert reply.usage.completion_tokens <= 3 and reply.usage.prompt_tokens > 10


def test_the_bare_model_answers_without_documents(served):
    reply = client(served, served.keys["staff"]).chat.completions.create(
        model=TEST_MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
    )
    assert reply.choices[0].message.content and "citations" not in (reply.model_extra or {})


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}, 404, "does not exist here"),
        ({"messages": [{"role": "user", "content": "hi"}] * 9}, 400, "up to 8"),
        ({"messages": [{"role": "user", "content": "x" * 70_000}]}, 413, "over 64 KiB"),
        ({"messages": []}, 400, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "."}]}, 400, "last message"),
    ],
)
def test_limits_and_bad_requests_get_clear_errors(served, body, status, needle):
    headers = {"Authorization": f"Bearer {served.keys['staff']}"}
    response = httpx.post(f"{served.url}/v1/chat/completions", json=body, headers=headers, timeout=60)
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]["message"]


def test_a_chunked_body_over_the_limit_is_refused(served):
    """No Content-Length (chunked): the limit holds as the bytes arrive."""
    payload = json.dumps({"messages": [{"role": "user", "content": "x" * 70_000}]}).encode()

    def chunks():
        for i in range(0, len(payload), 8192):
            yield payload[i : i + 8192]

    headers = {"Authorization": f"Bearer {served.keys['staff']}", "Content-Type": "application/json"}
    response = httpx.post(f"{served.url}/v1/chat/completions", content=chunks(), headers=headers, timeout=60)
    assert response.status_code == 413 and "over 64 KiB" in response.json()["error"]["message"]


def test_no_key_reaches_the_log(served):
    """After every test above (successes, 401s, a revocation), the server's output names no key."""
    log = served.log.read_text()
    assert "serving on" in log
    assert not any(key in log or key[10:30] in log for key in served.keys.values())


# -- who may call: an app over a key store, in-process ------------------------------------------------


def _status(url: str, key: str | None = None, host: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if host:
        headers["Host"] = host
    return httpx.get(f"{url}/models", headers=headers, timeout=10).status_code


def test_revoking_the_last_key_does_not_open_the_server(tmp_path, bare):
    from expertkit.serve.app import create_app
    from expertkit.serve.keys import KeyStore

    store = KeyStore(tmp_path / "keys.json")
    with Server(create_app(bare.generator, keys=store)) as url:
        assert _status(url) == 200  # no key ever made: the owner's own machine
        assert _status(url, host="evil.example:80") == 401  # ... but not a rebound name (DNS rebinding)
        key, _ = store.add("only", ["everyone"])
        assert _status(url) == 401 and _status(url, key) == 200
        store.revoke("only")
        assert _status(url) == 401 and _status(url, key) == 401
        (tmp_path / "keys.json").write_text("{not json")
        assert _status(url) == 503  # unreadable keys refuse everyone, saying why
    with Server(create_app(bare.generator, keys=KeyStore(tmp_path / "none.json"), require_keys=True)) as url:
        assert _status(url) == 401  # on a network interface a key is needed before any is made


def test_an_adapter_that_names_no_documents_is_the_owners_only():
    from expertkit.serve.app import ServedModel

    unknown = ServedModel("expertkit+x", None, None, trained_on=ServedModel.learned([]))
    assert unknown.allowed(None) and not unknown.allowed(("everyone", "hr"))
    known = ServedModel("expertkit+y", None, None, trained_on=ServedModel.learned([frozenset({"hr"})]))
    assert known.allowed(("hr",)) and not known.allowed(("everyone",))


# -- the queue and cancellation, on an in-process app whose llama-server the test can watch ------------


@pytest.fixture(scope="module")
def bare():
    from expertkit.config import GenerateSettings, ServeSettings
    from expertkit.models.generator import make_generator
    from expertkit.serve.app import create_app

    generator = make_generator(GenerateSettings(model=TEST_MODEL, parallel=1))
    app_ = create_app(generator, settings=ServeSettings(queue=1))
    with Server(app_) as url:
        yield SimpleNamespace(url=url, generator=generator, admission=app_.state.admission)
    generator.close()


def _busy_slots(generator) -> int:
    slots = httpx.get(f"{generator.server.url}/slots", headers=generator.server.headers).json()
    return sum(s["is_processing"] for s in slots)


def _wait_idle(generator, seconds: float = 10) -> float:
    started = time.time()
    while _busy_slots(generator) and time.time() - started < seconds:
        time.sleep(0.1)
    return time.time() - started


LONG = {"messages": [{"role": "user", "content": "Write a very long story about pumps."}], "max_tokens": 3000}


def test_a_full_queue_answers_429_with_retry_after(bare):
    """1 slot + 1 waiting: of 5 requests at once, 3 are turned away at once; the 2 others are answered."""
    results: list = []
    together = threading.Barrier(5)

    def call():
        together.wait()  # all five leave at once; each answer is long enough that none ends before all arrive
        response = httpx.post(f"{bare.url}/chat/completions", json={**LONG, "max_tokens": 300}, timeout=120)
        results.append(response)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 200, 429, 429, 429]
    for r in results:
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1 and r.json()["error"]["code"] == "rate_limit_exceeded"
    assert httpx.get(f"{bare.url}/models").status_code == 200  # the server is fine afterwards
    assert bare.admission.admitted == 0  # every admitted request left the queue


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_cancels_its_generation(bare, stream):
    """3,000 tokens asked (half a minute of decoding); the client leaves after a moment; llama-server's
    slot, busy while the client was there, is free within seconds of its leaving."""
    busy: list[int] = []
    watching = threading.Event()

    def watch():
        while not watching.is_set():
            busy.append(_busy_slots(bare.generator))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        if stream:
            with httpx.stream("POST", f"{bare.url}/chat/completions", json={**LONG, "stream": True}, timeout=30) as r:
                for i, _ in enumerate(r.iter_lines()):
                    if i > 20 and 1 in busy:  # leave once the slot was seen at work (a fast engine streams
                        break  # 20 lines before the watcher's first look)
        else:
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{bare.url}/chat/completions", json=LONG, timeout=2)
    finally:
        watching.set()
        watcher.join()
    assert max(busy) == 1  # it was generating while the client was there
    assert _wait_idle(bare.generator) < 3
    ok = httpx.post(f"{bare.url}/chat/completions", json={**LONG, "max_tokens": 4}, timeout=60)
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] <= 4  # the slot serves the next
    assert bare.admission.admitted == 0  # the request that left gave its place back


# -- the web chat, in headless Chromium ---------------------------------------------------------------


def test_the_web_chat_signs_in_streams_and_shows_clickable_citations(served, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    try:
        page.goto(served.url)
        page.fill("#key", "ek-wrong")
        page.click("#signin button")
        page.wait_for_selector("#signin-error:has-text('invalid or revoked')")
        page.fill("#key", served.keys["staff"])
        page.click("#signin button")
        page.wait_for_selector("#question", state="visible")
        assert page.eval_on_selector("#model", "s => s.value") == "expertkit"

        page.fill("#question", MAKER_Q)
        page.keyboard.press("Enter")
        answer = page.locator("[data-testid=answer]").nth(0)
        answer.locator(".sources").wait_for(timeout=120_000)  # the verified answer replaced the draft
        assert "docs/public/kestrel.md" in answer.locator(".sources").inner_text()
        assert not answer.evaluate("e => e.classList.contains('draft')")  # the draft gave way
        answer.locator(".sources .cite").first.click()
        passage = answer.locator(".passage")
        passage.wait_for()
        assert "docs/public/" in passage.inner_text() and "“" in passage.inner_text()

        page.fill("#question", "What colour is the chairman's yacht?")
        page.keyboard.press("Enter")
        missing = page.locator("[data-testid=answer]").nth(1)
        missing.locator(".notfound-label").wait_for(timeout=120_000)
        assert missing.locator(".notfound-label").inner_text() == "Not found in the documents"
        page.screenshot(path=str(os.environ.get("CHAT_SCREENSHOT") or tmp_path / "chat.png"), full_page=True)
    finally:
        page.close()


def test_the_web_chat_never_shows_another_groups_passage(served, browser):
    page = browser.new_page()
    try:
        page.goto(served.url)
        page.fill("#key", served.keys["staff"])
        page.click("#signin button")
        page.wait_for_selector("#question", state="visible")
        page.fill("#question", SALARY_Q)
        page.keyboard.press("Enter")
        answer = page.locator("[data-testid=answer]").nth(0)
        answer.locator(".sources, .notfound-label").first.wait_for(timeout=120_000)
        assert "231,400" not in answer.inner_text() and "salaries.md" not in answer.inner_text()
    finally:
        page.close()
