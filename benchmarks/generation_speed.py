"""Generation tokens/s of the shipped SmolLM2-135M: transformers bf16 and fp32, and llama.cpp on the same
GGUF when llama-cpp-python is installed (pip install 'expertkit[llamacpp]'; it builds from source).

Same prompt, greedy, --tokens new tokens, --rounds rounds each, medians; the runs interleave so that
machine noise hits every backend alike.

Run: .venv/bin/python benchmarks/generation_speed.py [--tokens 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics

from expertkit.models.generator import LlamaCppGenerator, TransformersGenerator

PROMPT = [{"role": "user", "content": "Explain step by step how to replace the mechanical seal of a centrifugal pump."}]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    backends = {
        "transformers bf16": TransformersGenerator(dtype="bf16"),
        "transformers fp32": TransformersGenerator(dtype="fp32"),
    }
    try:
        backends["llama.cpp (Q4_1 GGUF)"] = LlamaCppGenerator()
    except Exception as exc:  # not installed: say so and measure the rest
        print(f"llama.cpp skipped: {exc}")
    for g in backends.values():
        g.generate(PROMPT, max_new_tokens=8)  # warm up
    speeds: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(args.rounds):
        for name, g in backends.items():
            speeds[name].append(g.generate(PROMPT, max_new_tokens=args.tokens).tokens_per_second)
    base = statistics.median(speeds["transformers bf16"])
    for name, values in speeds.items():
        med = statistics.median(values)
        print(f"{name:<24} {med:>7.1f} tok/s  ({med / base:.2f}x transformers bf16)")


if __name__ == "__main__":
    main()
