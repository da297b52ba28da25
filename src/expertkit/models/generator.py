"""Generators: chat messages → text, streamed, and ``make_generator``, which builds the one the settings name.

The backends: local transformers (+ PEFT adapter), here; llama.cpp's llama-server (models/llamacpp.py, the
default for GGUF models); and any OpenAI-compatible HTTP endpoint (models/openai_compat.py: vLLM, Ollama, a
llama.cpp server elsewhere, a hosted API). Which one runs a model and an adapter is decided in
models/backend.py; what every generator is and gives (``Generator``, ``Generation``) is in models/base.py.

The prompt is always built with the model's own chat template where the tokenizer has one.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from expertkit.errors import ModelNotInstalledError, require
from expertkit.models.backend import choose, choose_backend  # noqa: F401 - re-exported: the backend decision
from expertkit.models.base import (  # noqa: F401 - re-exported: what most callers import from here
    JSON_SCHEMA,
    LOGPROBS,
    STOP,
    Generation,
    Generator,
    Messages,
    OnToken,
    accepts,
    generate_json,
    plain_transcript,
)
from expertkit.models.local_model import local_model_path
from expertkit.models.openai_compat import OpenAIGenerator
from expertkit.models.registry import model_cache_dir, resolve  # noqa: F401 - model_cache_dir re-exported
from expertkit.system import cpu_has_native_bf16


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

    parallel = 1  # one generation at a time (each uses every core)
    options: frozenset[str] = frozenset()  # no stop strings, no grammar, no token probabilities

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

    def close(self) -> None:
        """Nothing to release: the weights go with the object."""

    def render(self, messages: Messages) -> str:
        """The prompt text: the model's own chat template; a plain transcript only for base models without one."""
        if self.has_chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return plain_transcript(messages)

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


def make_generator(
    settings,
    adapter: str | Path | None = None,
    runtime_dir: Path | None = None,
    switchable: list[Path] | None = None,
) -> Generator:
    """The generator that ``settings`` (a GenerateSettings) names, with ``adapter`` applied.

    ``settings`` are taken as they are: the backend follows their model (``choose(settings).backend``);
    ``choose(settings, adapter)`` first, to run an adapter on the base it was trained on, or a full
    fine-tune as the model. For llama.cpp, a warm server recorded in ``runtime_dir`` (``expertkit runtime
    start``) serving the same model is reused; otherwise a private server is started for this process and
    stopped with it. ``switchable`` adapters (llama.cpp) are loaded into that private server but applied
    only to the requests that ask for one (``LlamaCppGenerator.with_adapter``): one server, the base and
    each adapter.
    """
    from expertkit.config import api_key_for
    from expertkit.errors import ConfigError

    backend = choose(settings).backend
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
        return _llamacpp_generator(settings, adapter, runtime_dir, switchable)
    return TransformersGenerator(settings.model, adapter=adapter, dtype=settings.dtype)


def _llamacpp_generator(settings, adapter, runtime_dir: Path | None, switchable: list[Path] | None):
    """A warm server's generator where one serves the model and no adapter is asked for, else a private server's."""
    from expertkit.config import server_binary_for
    from expertkit.errors import ConfigError
    from expertkit.models.llamacpp import LlamaCppGenerator, LlamaServer, read_runtime

    lora = _lora_files(settings, [adapter] if adapter is not None else switchable or [])
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


def _lora_files(settings, adapters: list) -> list[str]:
    """The adapters as llama.cpp LoRA GGUFs (written once beside each); each must be trained on the model."""
    from expertkit.errors import ConfigError
    from expertkit.models.gguf_lora import lora_gguf
    from expertkit.models.lineage import read_lineage

    lora: list[str] = []
    for path in adapters:
        trained_on = read_lineage(Path(path)).get("base")
        if trained_on and trained_on != settings.model:
            raise ConfigError(
                f"adapter {Path(path).name} was trained on {trained_on!r}, not on {settings.model!r}: "
                f"use --set generate.model={trained_on}"
            )
        lora.append(str(lora_gguf(Path(path))))
    return lora
