"""`expertkit serve` as a team uses it: the official `openai` client with API keys, against the real
command (a subprocess running llama-server with the shipped SmolLM2-135M and the real embedder),
over a workspace holding public and HR documents and an adapter fine-tuned on the HR ones.

Facts are planted (no model can know them): a public pump's maker, and an HR salary."""

from __future__ import annotations

import contextlib
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


def test_an_unanswerable_question_is_not_found_and_says_why(served):
    boss = client(served, served.keys["boss"])
    reply = boss.chat.completions.create(
        model="expertkit", messages=[{"role": "user", "content": "What colour is the chairman's yacht?"}]
    )
    info = reply.model_extra["expertkit"]
    assert info["found"] is False and reply.model_extra["citations"] == []
    assert info["reason"] == "no_relevant_passage" and info["explanation"].startswith("no passage is close enough")
    why = info["explanation"]
    assert reply.choices[0].message.content == f"Not found in the documents. {why[0].upper()}{why[1:]}."
    # a pump the documents almost name: what is missing, and what they cover instead
    reply = boss.chat.completions.create(
        model="expertkit", messages=[{"role": "user", "content": "Who makes the Kestrel KP-90 pump?"}]
    )
    info = reply.model_extra["expertkit"]
    assert info["found"] is False and info["reason"] == "missing_term"
    assert info["explanation"].startswith("no passage mentions KP-90; the documents cover KP-40"), info
    assert "No passage mentions KP-90" in reply.choices[0].message.content


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


def _post(served, body: dict | bytes | str, path: str = "/v1/chat/completions") -> httpx.Response:
    """A staff request; a bytes or str body goes as it is, a dict as JSON."""
    headers = {"Authorization": f"Bearer {served.keys['staff']}", "Content-Type": "application/json"}
    content = json.dumps(body) if isinstance(body, dict) else body
    return httpx.post(f"{served.url}{path}", content=content, headers=headers, timeout=60)


def test_a_lone_surrogate_is_the_clients_400_not_a_server_error(served):
    """JSON may spell a lone UTF-16 surrogate, which is no text: it used to reach the tokenizer and come
    back as 500 with a traceback (bare model) or a 502 blaming the model (expert)."""
    raw = '{"model": "%s", "messages": [{"role": "user", "content": "price of \\ud800 pump"}]}'
    for model in ("expertkit", TEST_MODEL):
        response = _post(served, raw % model)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == "messages.0.content" and "surrogate" in error["message"]
    asked = _post(served, '{"question": "\\udfff"}', "/v1/ask")
    assert asked.status_code == 400 and asked.json()["error"]["param"] == "question"


def test_every_error_comes_in_openais_shape(served):
    """Unknown paths (404), wrong methods (405) and bodies that are not JSON: {"error": {...}} as OpenAI's
    clients expect, never FastAPI's {"detail": ...}."""
    headers = {"Authorization": f"Bearer {served.keys['staff']}"}
    cases = [
        (httpx.get(f"{served.url}/v1/nothing", headers=headers), 404, "no such endpoint"),
        (httpx.get(f"{served.url}/v1/chat/completions", headers=headers), 405, "does not take GET"),
        (httpx.post(f"{served.url}/v1/chat/completions", content=b"{not json", headers=headers), 400, "not valid JSON"),
        (httpx.post(f"{served.url}/v1/chat/completions", content=b"\xff\xfe{", headers=headers), 400, "not valid JSON"),
    ]
    for response, status, needle in cases:
        assert response.status_code == status, response.text
        body = response.json()
        assert set(body) == {"error"} and needle in body["error"]["message"], body
        assert body["error"]["type"] == "invalid_request_error"


def test_a_caller_without_a_key_learns_nothing_from_validation(served):
    """Authentication comes first: a stranger's malformed or unsupported request is 401, not a 400 that
    describes the server's API."""
    for body in (b"{not json", b'{"messages": []}', b'{"messages": [{"role": "user", "content": "hi"}], "n": 5}'):
        response = httpx.post(f"{served.url}/v1/chat/completions", content=body, timeout=60)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert httpx.post(f"{served.url}/v1/ask", content=b"[]", timeout=60).status_code == 401


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 5}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}], "tool_choice": "required"},
         "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),
        ({"logprobs": True}, "logprobs"),
        ({"top_p": 0.5}, "top_p"),
        ({"seed": 7}, "seed"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"stop": ["\n"]}, "stop"),  # on the expert: its answer is verified whole
        ({"response_format": {"type": "json_object"}}, "response_format"),
    ],
)  # fmt: skip
def test_a_parameter_the_server_would_ignore_is_refused_by_name(served, extra, param):
    response = _post(served, {"model": "expertkit", "messages": [{"role": "user", "content": MAKER_Q}], **extra})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and param in error["message"]


def test_parameters_at_their_neutral_values_pass(served):
    """What SDKs send by default (n = 1, top_p = 1, no tools, no logprobs, a user id) asks for nothing new."""
    neutral = {"n": 1, "top_p": 1.0, "tools": [], "tool_choice": "none", "logprobs": False, "presence_penalty": 0,
               "frequency_penalty": 0.0, "user": "u-1", "stream_options": {"include_usage": True},
               "response_format": {"type": "text"}}  # fmt: skip
    body = {"model": TEST_MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 3, **neutral}
    response = _post(served, body)
    assert response.status_code == 200, response.text
    assert len(response.json()["choices"]) == 1


def test_no_key_reaches_the_log(served):
    """After every test above (successes, 401s, a revocation), the server's output names no key."""
    log = served.log.read_text()
    assert "serving on" in log
    assert not any(key in log or key[10:30] in log for key in served.keys.values())


# -- who may call: an app over a key store, in-process ------------------------------------------------


def _status(url: str, key: str | None = None, host: str | None = None, **headers: str) -> int:
    headers = {k.replace("_", "-"): v for k, v in headers.items()}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if host:
        headers["Host"] = host
    return httpx.get(f"{url}/models", headers=headers, timeout=10).status_code


def test_a_reverse_proxy_does_not_make_remote_users_the_owner(tmp_path, bare):
    """Keyless, the server trusts only direct requests from this machine. An nginx on the same host
    connects from 127.0.0.1 with `Host: 127.0.0.1:PORT`; the forwarding headers it adds give it away."""
    from expertkit.serve.app import create_app
    from expertkit.serve.keys import KeyStore

    with Server(create_app(bare.generator, keys=KeyStore(tmp_path / "keys.json"))) as url:
        assert _status(url) == 200  # the owner, directly
        port = url.rsplit(":", 1)[1].split("/")[0]
        for header in ({"X_Forwarded_For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"},
                       {"X_Real_IP": "203.0.113.9"}, {"X_Forwarded_Host": "expert.example.com"}):  # fmt: skip
            assert _status(url, host=f"127.0.0.1:{port}", **header) == 401, header
        asked = httpx.post(f"{url}/ask", json={"question": "hi"}, headers={"X-Forwarded-For": "203.0.113.9"})
        assert asked.status_code == 401 and "through a proxy" in asked.json()["error"]["message"]


def test_serve_behind_a_proxy_needs_a_key_before_it_starts(tmp_path):
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    result = runner.invoke(app, ["serve", "--behind-proxy", "-w", str(ws)])
    message = str(result.exception)  # main() prints it as one line: error: ...
    assert result.exit_code == 1 and "no API keys yet" in message and "keys add" in message


def test_every_response_carries_security_headers(bare):
    from expertkit.serve.app import create_app

    with Server(create_app(bare.generator)) as url:
        root = url.removesuffix("/v1")
        page = httpx.get(f"{root}/")
        policy = page.headers["content-security-policy"]
        assert "script-src 'sha256-" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
        assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
        api = httpx.get(f"{url}/models")
        assert api.headers["x-content-type-options"] == "nosniff" and "content-security-policy" not in api.headers


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
    app_ = create_app(generator, settings=ServeSettings(queue=1, per_key=2))
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


def _wait_admitted(admission, n: int, seconds: float = 30) -> int:
    deadline = time.time() + seconds
    while admission.admitted != n and time.time() < deadline:
        time.sleep(0.05)
    return admission.admitted


def test_a_full_queue_answers_429_with_retry_after(bare):
    """1 slot + 1 waiting, both held by open streams of 3,000 tokens: every further request is turned away
    at once with Retry-After; once the streams close, the server is free again."""
    with contextlib.ExitStack() as held:
        for _ in range(2):  # headers come back once a request is admitted: answering, then waiting
            r = held.enter_context(httpx.stream("POST", f"{bare.url}/chat/completions", json={**LONG, "stream": True},
                                                timeout=120))  # fmt: skip
            assert r.status_code == 200
        assert bare.admission.admitted == 2
        turned_away = [httpx.post(f"{bare.url}/chat/completions", json=LONG, timeout=30) for _ in range(3)]
    assert [r.status_code for r in turned_away] == [429, 429, 429]
    for r in turned_away:
        assert int(r.headers["Retry-After"]) >= 1 and r.json()["error"]["code"] == "rate_limit_exceeded"
        assert "the server is busy" in r.json()["error"]["message"]
    assert _wait_admitted(bare.admission, 0) == 0  # both streams gave their places back as they closed
    assert httpx.post(f"{bare.url}/chat/completions", json={**LONG, "max_tokens": 2}, timeout=60).status_code == 200


def test_one_keys_burst_leaves_room_for_another_key(tmp_path, bare):
    """The attack: one key fills every slot and the queue, and everyone else gets 429. Each key holds at
    most serve.per_key places, so the other key is admitted, waits its turn, and is answered."""
    from expertkit.config import ServeSettings
    from expertkit.serve.app import create_app
    from expertkit.serve.keys import KeyStore

    store = KeyStore(tmp_path / "keys.json")
    greedy, _ = store.add("greedy", ["everyone"])
    other, _ = store.add("other", ["everyone"])
    app_ = create_app(bare.generator, keys=store, settings=ServeSettings(queue=2, per_key=1))
    admission = app_.state.admission
    results: list[httpx.Response] = []

    def ask(url: str, key: str) -> httpx.Response:
        body = {**LONG, "max_tokens": 2}
        return httpx.post(f"{url}/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=120)

    with Server(app_) as url, contextlib.ExitStack() as held:
        r = held.enter_context(httpx.stream("POST", f"{url}/chat/completions", json={**LONG, "stream": True},
                                            headers={"Authorization": f"Bearer {greedy}"}, timeout=120))  # fmt: skip
        assert r.status_code == 200  # greedy's first request holds the one slot
        burst = [ask(url, greedy) for _ in range(3)]
        waiter = threading.Thread(target=lambda: results.append(ask(url, other)))
        waiter.start()
        assert _wait_admitted(admission, 2) == 2  # the other key's request is in, waiting for the slot
    waiter.join(timeout=120)  # the stream closed: the slot went to the other key
    assert [b.status_code for b in burst] == [429, 429, 429]
    assert all("your key has 1 requests" in b.json()["error"]["message"] for b in burst)
    assert [r.status_code for r in results] == [200]


def test_stop_and_json_output_are_honoured_on_the_bare_model(bare):
    """Cheap to honour, so honoured (llama.cpp applies both): the reply ends before the stop string, and a
    JSON response format gives a JSON object (a grammar, so it always parses)."""
    ask = {"messages": [{"role": "user", "content": "List five kinds of pump, one per line."}], "max_tokens": 40}
    full = httpx.post(f"{bare.url}/chat/completions", json=ask, timeout=120).json()["choices"][0]["message"]["content"]
    words = full.split()
    assert len(words) >= 6, full
    cut = words[len(words) // 2]
    stopped = httpx.post(f"{bare.url}/chat/completions", json={**ask, "stop": [cut]}, timeout=120).json()
    text = stopped["choices"][0]["message"]["content"]
    assert cut not in text and full.startswith(text.strip()) and stopped["choices"][0]["finish_reason"] == "stop"
    body = {**ask, "max_tokens": 200, "response_format": {"type": "json_object"},
            "messages": [{"role": "user", "content": "Describe a pump as JSON with a name and a price."}]}  # fmt: skip
    reply = httpx.post(f"{bare.url}/chat/completions", json=body, timeout=120).json()
    assert isinstance(json.loads(reply["choices"][0]["message"]["content"]), dict), reply


def test_waiting_keys_take_free_slots_in_turn():
    """Round robin, not first come first served: a key that arrives after another key's burst waits behind
    one of its requests, not all of them; a waiter that leaves gives its turn up."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from expertkit.serve.admission import Admission

    async def scenario() -> list[str]:
        admission = Admission(slots=1, queue=5, per_key=4)
        order: list[str] = []

        async def request(name: str) -> None:
            await admission.acquire(name[0])
            order.append(name)

        await admission.acquire("a")  # a0 answers
        waiting = [asyncio.ensure_future(request(n)) for n in ("a1", "a2", "a3", "b1", "c1")]
        await asyncio.sleep(0)
        leaver = asyncio.ensure_future(request("c2"))
        await asyncio.sleep(0)
        leaver.cancel()  # c2's client disconnected while it waited
        for _ in range(5):
            admission.release()
            await asyncio.sleep(0)
        await asyncio.gather(*waiting)
        assert admission.running == 1 and admission.waiting == {}
        return order

    # a thread of its own: the session's browser fixture (Playwright's sync API) keeps an event loop running in
    # this one, where asyncio.run refuses to start
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, scenario()).result() == ["a1", "b1", "c1", "a2", "a3"]


def test_one_key_is_refused_past_its_share_while_others_get_in():
    from expertkit.serve.admission import Admission
    from expertkit.serve.api import ApiError

    admission = Admission(slots=2, queue=16)  # per_key 0: half of the 18 places
    assert admission.per_key == 9
    for _ in range(9):
        admission.enter("greedy")
    with pytest.raises(ApiError) as refused:
        admission.enter("greedy")
    assert refused.value.status == 429 and "serve.per_key = 9" in str(refused.value)
    assert int(refused.value.headers["Retry-After"]) >= 1
    admission.enter("other")  # the other key still gets in
    admission.leave("greedy")
    admission.enter("greedy")  # a place given back can be taken again
    assert admission.admitted == 10 and admission.held == {"greedy": 9, "other": 1}


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
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
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
        assert missing.locator(".notfound-why").inner_text().startswith("No passage is close enough to the question")
        page.screenshot(path=str(os.environ.get("CHAT_SCREENSHOT") or tmp_path / "chat.png"), full_page=True)
        # the page works under its Content-Security-Policy: nothing of its own was refused
        assert not [m for m in console if "Content Security Policy" in m], console
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


def test_a_greek_answer_lists_its_sources_under_greek_labels_and_a_follow_up_reads_past_them():
    from expertkit.answer import Answer, Citation
    from expertkit.serve.render import SOURCES_START, sources_text

    cite = Citation(1, "c1", "/ws/docs/timokatalogos.pdf", 3, "Τιμές", None, "ΣΑ-08: 412,50 €", False)
    greek = Answer("Πόσο κοστίζει ο ΣΑ-08;", "Κοστίζει 412,50 € [1].", True, citations=[cite], language="el")
    text = sources_text(greek, Path("/ws"))
    assert text == "\n\nΠηγές:\n[1] docs/timokatalogos.pdf, σελίδα 3, § Τιμές: “ΣΑ-08: 412,50 €”"
    english = Answer("What does the SA-08 cost?", "412.50 € [1].", True, citations=[cite])
    assert sources_text(english, Path("/ws")).startswith("\n\nSources:\n[1] docs/timokatalogos.pdf, page 3, ")
    # a client sends the earlier answer back with its sources: the history keeps the answer alone
    assert SOURCES_START.split(greek.answer + text)[0] == greek.answer
    assert SOURCES_START.split(english.answer + "\n\nSources:\n[1] x")[0] == english.answer
