"""Generation speed, side by side in one run, same model and same prompt.

--engines: llama.cpp engines against each other, each its own server on the same GGUF and thread count:
the default (xllamacpp, the portable AVX2 wheel) and any llama-server binary named NAME=PATH (a native
-march=native build, a CUDA build). Decode and prompt tokens/s come from llama.cpp's own timings; each
round runs every engine once, in turn, and the medians are compared as ratios to the default.

Otherwise, one engine and its clients:
- expertkit's llama.cpp generator (LlamaCppGenerator: token counting, streaming parse, error handling),
- bare llama-server: the same server process, driven by a minimal streaming HTTP client,
- transformers bf16 on the same weights (the GGUF converted once to safetensors), for --transformers models.

Decode tokens/s (tokens after the first over the time after it) and time to first token, medians of
--rounds rounds; the backends interleave so machine noise hits each alike, and every request gets a fresh
question so no backend profits from another's prompt cache.

Run: .venv/bin/python benchmarks/generation_speed.py [--models smollm2-135m-instruct,qwen2.5-coder-1.5b-instruct]
     [--transformers smollm2-135m-instruct] [--tokens 128] [--rounds 5]
     .venv/bin/python benchmarks/generation_speed.py --engines native=/path/to/llama-server
     [--models qwen2.5-coder-1.5b-instruct] [--tokens 128] [--rounds 5] [--out benchmarks/results/engines.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import httpx

from expertkit.config import GenerateSettings
from expertkit.models.generator import Generation, TransformersGenerator, make_generator

TOPICS = ["a centrifugal pump's mechanical seal", "a plate heat exchanger", "a pressure relief valve", "a gearbox"]


def prompt(i: int) -> list[dict[str, str]]:
    topic = TOPICS[i % len(TOPICS)]
    return [{"role": "user", "content": f"({i}) Explain step by step how to service {topic}."}]


CLIENT = httpx.Client(timeout=600)  # keep-alive, as expertkit's own client


def bare(url: str, messages, tokens: int, headers: dict) -> Generation:
    """The thinnest client: POST, read the SSE lines, time the first and last token."""
    body = {"messages": messages, "max_tokens": tokens, "temperature": 0, "stream": True}
    started = time.perf_counter()
    first, n = None, 0
    with CLIENT.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as r:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0]["delta"].get("content") if line[6:7] == "{" else None
            if delta:
                n += 1
                first = first or time.perf_counter() - started
    return Generation("", 0, n, time.perf_counter() - started, "stop", first)


def engine_timings(url: str, tokens: int, i: int, headers: dict) -> dict:
    """One request: a fresh ~400-token prompt (no prompt cache), then ``tokens`` decoded; llama.cpp's timings."""
    text = f"({i}) " + " ".join(f"Step {k}: inspect {TOPICS[(i + k) % len(TOPICS)]} and log it." for k in range(40))
    body = {"prompt": text, "n_predict": tokens, "ignore_eos": True, "temperature": 0, "cache_prompt": False}
    t = CLIENT.post(f"{url}/completion", json=body, headers=headers).json()["timings"]
    return {"decode": t["predicted_per_second"], "prompt": t["prompt_per_second"], "prompt_n": t["prompt_n"]}


def compare_engines(models: list[str], binaries: dict[str, str], tokens: int, rounds: int, out: str) -> None:
    from expertkit.models.engines import cpu_name
    from expertkit.models.llamacpp import LlamaServer
    from expertkit.models.registry import resolve

    results = {"cpu": cpu_name(), "tokens": tokens, "rounds": rounds, "models": {}}
    for model in models:
        path = resolve(model, "generator")
        servers = {"xllamacpp": LlamaServer(path, model, 2048, 1, engine="xllamacpp").start()}
        for name, binary in binaries.items():
            servers[name] = LlamaServer(path, model, 2048, 1, engine="llama-server", binary=binary).start()
        try:
            for server in servers.values():
                engine_timings(server.url, 8, -1, server.headers)  # warm up
            runs: dict[str, list[dict]] = {name: [] for name in servers}
            for r in range(rounds):
                for name, server in servers.items():
                    runs[name].append(engine_timings(server.url, tokens, r, server.headers))
        finally:
            for server in servers.values():
                server.stop()
        med = {
            name: {k: statistics.median(x[k] for x in rs) for k in ("decode", "prompt")} for name, rs in runs.items()
        }
        results["models"][model] = {"threads": servers["xllamacpp"].threads, "median": med, "runs": runs}
        print(f"\n{model}: {tokens} tokens decoded after a ~{runs['xllamacpp'][0]['prompt_n']}-token prompt, "
              f"median of {rounds}, {servers['xllamacpp'].threads} threads")  # fmt: skip
        base = med["xllamacpp"]
        for name, m in med.items():
            print(f"  {name:<12} decode {m['decode']:6.1f} tok/s ({m['decode'] / base['decode']:.2f}x xllamacpp)   "
                  f"prompt {m['prompt']:6.1f} tok/s ({m['prompt'] / base['prompt']:.2f}x)")  # fmt: skip
    if out:
        with open(out, "w") as f:
            json.dump(results, f, indent=2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engines", nargs="*", metavar="NAME=PATH", help="compare engines: llama-server binaries")
    ap.add_argument("--out", default="", help="--engines: write the figures to this JSON file")
    ap.add_argument("--models", default="smollm2-135m-instruct,qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--transformers", default="smollm2-135m-instruct", help="models also run with transformers bf16")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if args.engines is not None:
        binaries = dict(item.split("=", 1) for item in args.engines)
        compare_engines(args.models.split(","), binaries, args.tokens, args.rounds, args.out)
        return
    for model in args.models.split(","):
        g = make_generator(GenerateSettings(model=model, parallel=1))
        runners = {
            "expertkit (llama.cpp)": lambda m, g=g: g.generate(m, args.tokens),
            "bare llama-server": lambda m, g=g: bare(g.server.url, m, args.tokens, g.server.headers),
        }
        if model in args.transformers.split(","):
            tf = TransformersGenerator(model, dtype="bf16")
            runners["transformers bf16"] = lambda m, tf=tf: tf.generate(m, args.tokens)
        for run in runners.values():
            run(prompt(-1))  # warm up
        stats: dict[str, list[Generation]] = {name: [] for name in runners}
        i = 0
        for _ in range(args.rounds):
            for name, run in runners.items():
                stats[name].append(run(prompt(i)))
                i += 1
        g.close()
        base = statistics.median(x.tokens_per_second for x in stats["bare llama-server"])
        base_ttft = statistics.median(x.first_token_s for x in stats["bare llama-server"])
        print(f"\n{model}: {args.tokens} new tokens, median of {args.rounds}")
        for name, gens in stats.items():
            tps = statistics.median(x.tokens_per_second for x in gens)
            ttft = statistics.median(x.first_token_s for x in gens)
            print(
                f"  {name:<22} {tps:7.1f} tok/s ({tps / base:.2f}x bare)   first token {ttft * 1e3:6.0f} ms "
                f"({ttft / base_ttft:.2f}x bare)"
            )


if __name__ == "__main__":
    main()
