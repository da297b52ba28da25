"""Generators: chat messages → text, streamed. Local transformers (+ PEFT adapter), llama.cpp's
llama-server (models/llamacpp.py, the default for GGUF models), and any OpenAI-compatible HTTP endpoint
(vLLM, Ollama, a llama.cpp server elsewhere, a hosted API).

The prompt is always built with the model's own chat template where the tokenizer has one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from expertkit.errors import GeneratorError, ModelNotInstalledError, require
from expertkit.models.registry import REGISTRY, is_gguf, model_cache_dir, resolve
from expertkit.system import cpu_has_native_bf16

Messages = list[dict[str, str]]
OnToken = Callable[[str], None]


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float  # time to generate, model load excluded
    finish_reason: str = "stop"  # stop | length | interrupted
    first_token_s: float | None = None  # time to the first streamed token (prompt processing included)
    cached_tokens: int = 0  # prompt tokens the server read from its prompt cache instead of computing them

    @property
    def tokens_per_second(self) -> float:
        """Decode speed: tokens after the first over the time after it (prompt processing excluded)."""
        if self.first_token_s is not None and self.completion_tokens > 1 and self.seconds > self.first_token_s:
            return (self.completion_tokens - 1) / (self.seconds - self.first_token_s)
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


class Generator(Protocol):
    """What RAG, chat, synth and evaluation need from a model."""

    name: str
    context_window: int

    def count_tokens(self, messages: Messages) -> int:
        """Tokens of the prompt these messages make, template included."""

    def generate(
        self, messages: Messages, max_new_tokens: int = 256, temperature: float = 0.0, on_token: OnToken | None = None
    ) -> Generation: ...


def local_model_path(name: str) -> str:
    """A folder transformers loads fast. A registry GGUF is converted once into safetensors in the cache.

    Loading the GGUF each time costs about 18 s on a small CPU, and a GGUF-loaded model keeps a GGUF
    quantizer attached that blocks saving and training; the converted copy has neither problem.
    """
    path = resolve(name, "generator")
    if not path.endswith(".gguf"):
        return path
    target = (
        model_cache_dir() / REGISTRY[name.lower()].name
        if name.lower() in REGISTRY
        else model_cache_dir() / Path(path).stem
    )
    if (target / "config.json").exists():
        return str(target)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, file = os.path.dirname(path), os.path.basename(path)
    # transformers' GGUF loader draws a tqdm bar on stderr that would land in `ask`'s output
    with contextlib.redirect_stderr(io.StringIO()):
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
    model.hf_quantizer = None  # transformers 5 keeps the GGUF quantizer; it blocks save_pretrained
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "expertkit-source.json").write_text(json.dumps({"gguf": path}))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, target)  # atomic: an interrupted conversion never leaves a half model behind
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
    return str(target)


class _Stop:
    """A stopping criterion that Ctrl-C (or anything else) can set from another thread."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, input_ids, scores, **kwargs) -> bool:
        return self.event.is_set()


class _NoRepeatInAnswer:
    """Forbid repeating an n-gram of the answer itself. Unlike transformers' no_repeat_ngram_size and
    repetition_penalty, it ignores the prompt, so copying facts from the passages stays free while the
    loops small models fall into ("1. 1. 1. ...") are cut."""

    def __init__(self, prompt_length: int, n: int = 6) -> None:
        self.start = prompt_length
        self.n = n

    def __call__(self, input_ids, scores):
        generated = input_ids[0, self.start :].tolist()
        if len(generated) < self.n:
            return scores
        prefix = tuple(generated[-(self.n - 1) :])
        banned = {
            generated[i + self.n - 1]
            for i in range(len(generated) - self.n + 1)
            if tuple(generated[i : i + self.n - 1]) == prefix
        }
        if banned:
            scores[0, list(banned)] = float("-inf")
        return scores


class TransformersGenerator:
    """A local causal LM via transformers, in bf16 where the CPU has native bf16, optionally with a LoRA adapter."""

    def __init__(
        self,
        model: str = "smollm2-135m-instruct",
        adapter: str | Path | None = None,
        dtype: str = "auto",
        repetition_penalty: float = 1.0,
    ) -> None:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        self.name = model
        self.path = local_model_path(model)
        self.dtype = ("bf16" if cpu_has_native_bf16() else "fp32") if dtype == "auto" else dtype
        torch_dtype = torch.bfloat16 if self.dtype == "bf16" else torch.float32
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=torch_dtype)
        except OSError as exc:
            raise ModelNotInstalledError(f"cannot load model {model!r} from {self.path}: {exc}") from None
        self.adapter = None
        if adapter is not None:
            require("tune", "peft")
            from peft import PeftModel

            from expertkit.models.lineage import check_compatible

            check_compatible(Path(adapter), self.model.config, model)

            self.model = PeftModel.from_pretrained(self.model, str(adapter))
            self.adapter = str(adapter)
        self.model.eval()
        # 1.0: a penalty also punishes copying numbers and names from the passages, which RAG needs
        self.repetition_penalty = repetition_penalty
        self.context_window = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)
        self.has_chat_template = bool(self.tokenizer.chat_template)

    def render(self, messages: Messages) -> str:
        """The prompt text: the model's own chat template; a plain transcript only for base models without one."""
        if self.has_chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n\n".join(lines) + "\n\nAssistant:"

    def count_tokens(self, messages: Messages) -> int:
        return len(self.tokenizer(self.render(messages), add_special_tokens=False)["input_ids"])

    def generate(
        self, messages: Messages, max_new_tokens: int = 256, temperature: float = 0.0, on_token: OnToken | None = None
    ) -> Generation:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList, TextIteratorStreamer

        prompt = self.render(messages)
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        n_prompt = int(inputs["input_ids"].shape[1])
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = _Stop()
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        kwargs = dict(
            **inputs,
            max_new_tokens=max_new_tokens,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([stop]),
            logits_processor=LogitsProcessorList([_NoRepeatInAnswer(n_prompt)]),
            repetition_penalty=self.repetition_penalty,
            pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            **sampling,
        )
        result: dict = {}

        def run() -> None:
            try:
                with torch.inference_mode():
                    result["ids"] = self.model.generate(**kwargs)
            except BaseException as exc:  # surfaced in the caller's thread
                result["error"] = exc
                streamer.end()

        started = time.perf_counter()
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        parts: list[str] = []
        finish = "stop"
        first: float | None = None
        try:
            for piece in streamer:
                if first is None and piece:
                    first = time.perf_counter() - started
                parts.append(piece)
                if on_token and piece:
                    on_token(piece)
        except KeyboardInterrupt:
            stop.event.set()  # let generate() return cleanly, then report what was produced
            finish = "interrupted"
            worker.join()
        except BaseException:  # on_token raised (the client went away): stop decoding, then pass it on
            stop.event.set()
            worker.join()
            raise
        worker.join()
        seconds = time.perf_counter() - started
        if "error" in result:
            raise result["error"]
        n_out = int(result["ids"].shape[1]) - n_prompt if "ids" in result else len(parts)
        if finish != "interrupted" and n_out >= max_new_tokens:
            finish = "length"
        return Generation("".join(parts).strip(), n_prompt, n_out, seconds, finish, first)


class OpenAIGenerator:
    """Any OpenAI-compatible /v1/chat/completions endpoint, streamed, with timeouts and retries.

    Retries cover connection errors, 429 and 5xx before the first token arrives; after that a broken
    stream is an error, never a silently shortened answer.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "",
        timeout: float = 60.0,
        retries: int = 2,
        context_window: int = 4096,
        backoff: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = model
        self.api_key = api_key  # never read from the environment here: config.api_key_for decides what may go
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.context_window = context_window
        self._client = None

    def count_tokens(self, messages: Messages) -> int:
        # the remote tokenizer is unknown; 4 characters a token is the usual estimate for English
        return sum(len(m["content"]) // 4 + 4 for m in messages)

    def _http(self):
        """One client per generator: its connection is kept alive between requests (a new one cost
        20 to 30 ms before the first token, measured by benchmarks/generation_speed.py)."""
        import httpx

        if self._client is None:
            self._client = httpx.Client(timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)))
        return self._client

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def generate(
        self,
        messages: Messages,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        on_token: OnToken | None = None,
        stop: list[str] | None = None,
    ) -> Generation:
        return self._generate(messages, max_new_tokens, temperature, on_token, {"stop": stop} if stop else None)

    def _generate(
        self,
        messages: Messages,
        max_new_tokens: int,
        temperature: float,
        on_token: OnToken | None,
        extra: dict | None = None,
    ) -> Generation:
        import httpx

        body = {
            "model": self.name,
            "messages": messages,
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
            **(extra or {}),
        }
        url = f"{self.base_url}/chat/completions"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            started = time.perf_counter()
            try:
                with self._http().stream("POST", url, json=body, headers=self._headers()) as response:
                    if response.status_code in (429, 500, 502, 503, 504):
                        last = f"HTTP {response.status_code}: {response.read().decode(errors='replace')[:200]}"
                        continue
                    if response.status_code >= 400:
                        detail = response.read().decode(errors="replace")[:300]
                        raise GeneratorError(f"{url} answered HTTP {response.status_code}: {detail}")
                    return self._read_stream(response, url, started, on_token, messages)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last = f"cannot connect ({exc})"
            except httpx.TimeoutException:
                raise GeneratorError(
                    f"{url} did not answer within {self.timeout:.0f}s; raise the timeout or check the server"
                ) from None
            except httpx.HTTPError as exc:
                raise GeneratorError(f"{url}: {type(exc).__name__}: {exc}") from None
        raise GeneratorError(f"{url} failed after {self.retries + 1} attempts: {last}. Is the server running?")

    def _read_stream(
        self, response, url: str, started: float, on_token: OnToken | None, messages: Messages
    ) -> Generation:
        parts: list[str] = []
        usage: dict = {}
        finish = "stop"
        done = False
        first: float | None = None
        try:
            for line in response.iter_lines():
                if not line.strip() or line.startswith(":"):
                    continue
                if not line.startswith("data:"):
                    raise GeneratorError(f"malformed stream from {url}: expected 'data:' lines, got {line[:80]!r}")
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    event = json.loads(data)
                except json.JSONDecodeError:
                    raise GeneratorError(f"malformed stream from {url}: not JSON: {data[:80]!r}") from None
                if "error" in event:
                    raise GeneratorError(f"{url} reported an error mid-stream: {event['error']}")
                usage = event.get("usage") or usage
                for choice in event.get("choices", []):
                    piece = (choice.get("delta") or {}).get("content") or ""
                    if piece:
                        if first is None:
                            first = time.perf_counter() - started
                        parts.append(piece)
                        if on_token:
                            on_token(piece)
                    finish = choice.get("finish_reason") or finish
        except KeyboardInterrupt:
            finish, done = "interrupted", True
        if not done:
            raise GeneratorError(f"malformed stream from {url}: it ended without [DONE]")
        text = "".join(parts)
        return Generation(
            text.strip(),
            int(usage.get("prompt_tokens") or self.count_tokens(messages)),
            int(usage.get("completion_tokens") or len(parts)),
            time.perf_counter() - started,
            finish,
            first,
            int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
        )


def accepts(generator: Generator, option: str) -> bool:
    """Whether ``generator.generate`` takes ``option`` beyond the Generator protocol: ``stop`` (the
    OpenAI-compatible and llama.cpp backends) or ``json_schema`` (llama.cpp, as a grammar)."""
    import inspect

    return option in inspect.signature(generator.generate).parameters


def generate_json(generator: Generator, messages: Messages, schema: dict, max_new_tokens: int = 128) -> dict | None:
    """A JSON object that follows ``schema``: constrained decoding where the backend has it (llama.cpp
    turns the schema into a grammar, so the output always parses), else the first JSON object in the text."""
    if accepts(generator, "json_schema"):
        text = generator.generate(messages, max_new_tokens, 0.0, json_schema=schema).text
    else:
        text = generator.generate(messages, max_new_tokens, 0.0).text
        start, end = text.find("{"), text.rfind("}")
        text = text[start : end + 1] if 0 <= start < end else ""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    required = schema.get("required", [])

    def filled(v) -> bool:
        return isinstance(v, str) and bool(v.strip()) or isinstance(v, list) and bool(v)

    if not isinstance(value, dict) or not all(filled(value.get(k)) for k in required):
        return None
    return value


def choose_backend(settings, adapter: str | Path | None = None) -> str:
    """``auto``: llama.cpp for a GGUF model (a LoRA adapter goes along as a llama.cpp LoRA GGUF), transformers
    otherwise."""
    if settings.backend != "auto":
        return settings.backend
    if settings.base_url:
        return "openai"
    return "llamacpp" if is_gguf(settings.model) else "transformers"


def make_generator(
    settings,
    adapter: str | Path | None = None,
    runtime_dir: Path | None = None,
    switchable: list[Path] | None = None,
) -> Generator:
    """The generator that ``settings`` (a GenerateSettings) names.

    For llama.cpp, a warm server recorded in ``runtime_dir`` (``expertkit runtime start``) serving the
    same model is reused; otherwise a private server is started for this process and stopped with it.
    ``switchable`` adapters (llama.cpp) are loaded into that private server but applied only to the
    requests that ask for one (``LlamaCppGenerator.with_adapter``): one server, the base and each adapter.
    """
    from expertkit.config import api_key_for, server_binary_for
    from expertkit.errors import ConfigError

    backend = choose_backend(settings, adapter)
    if backend == "openai":
        if not settings.base_url:
            raise ConfigError("generate.base_url: required for backend = openai, e.g. http://localhost:8000/v1")
        return OpenAIGenerator(
            settings.base_url,
            settings.model,
            api_key_for(settings),  # refused when a workspace chose the server, or over http to another host
            settings.timeout_s,
            settings.retries,
        )
    if backend == "llamacpp":
        from expertkit.models.llamacpp import LlamaCppGenerator, LlamaServer, read_runtime

        lora: list[str] = []
        for path in [adapter] if adapter is not None else switchable or []:
            from expertkit.models.gguf_lora import lora_gguf
            from expertkit.models.lineage import read_lineage

            trained_on = read_lineage(Path(path)).get("base")
            if trained_on and trained_on != settings.model:
                raise ConfigError(
                    f"adapter {Path(path).name} was trained on {trained_on!r}, not on {settings.model!r}: "
                    f"use --set generate.model={trained_on}"
                )
            lora.append(str(lora_gguf(Path(path))))  # written once beside the adapter
        info = read_runtime(runtime_dir) if runtime_dir is not None and not lora else None
        if info is not None and info.model == settings.model:
            server = LlamaServer.attach(info)
        else:
            path = resolve(settings.model, "generator")
            if not path.endswith(".gguf"):
                raise ConfigError(f"generate.backend = llamacpp needs a GGUF model; {settings.model} is {path}")
            server = LlamaServer(
                path,
                settings.model,
                settings.ctx_size,
                settings.parallel,
                settings.threads,
                lora=lora,
                lora_per_request=adapter is None and bool(lora),
                engine=settings.engine,
                binary=server_binary_for(settings),  # refused when a workspace chose it and you did not allow it
            )
            server.start()
        return LlamaCppGenerator(server, settings.model, settings.timeout_s)
    return TransformersGenerator(settings.model, adapter=adapter, dtype=settings.dtype)
