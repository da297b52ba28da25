"""LoRA vs QLoRA vs full fine-tuning of the shipped SmolLM2-135M, and expertkit's LoRA against a plain
TRL SFTTrainer run with its defaults, on the same data, settings and number of examples.

Data: `synth qa` over the sample corpus (examples/corpus), 97 short question–answer pairs of mixed
length. Each configuration runs in its own process (so peak RSS is its own) for --steps optimizer
steps of 8 examples, one after another in the same invocation; --rounds repeats the whole set and
medians are printed. Tokens/s counts real (non-padding) tokens.

Run: .venv/bin/python benchmarks/tune_methods.py [--steps 12] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent / "examples" / "corpus"


def make_data(folder: Path) -> Path:
    from expertkit.index.sqlite import SQLiteIndex
    from expertkit.ingest.sync import Ingestor
    from expertkit.models.embedder import Embedder
    from expertkit.tune.synth import synth_qa

    index = SQLiteIndex(folder / "index.db")
    Ingestor(index, Embedder()).sync([CORPUS])
    out = folder / "qa.jsonl"
    synth_qa(index, out, holdout=0.0)
    return out


def run_expertkit(data: Path, method: str, steps: int, out: Path) -> dict:
    from expertkit.config import TuneSettings
    from expertkit.tune.data import load_training_data
    from expertkit.tune.train import train

    s = TuneSettings(
        method=method,
        max_steps=steps,
        batch_size=4,
        grad_accum=2,
        save_steps=10_000,
        learning_rate=2e-5 if method == "full" else 2e-4,
        max_length=512,
    )
    r = train(load_training_data(data), "smollm2-135m-instruct", out, method, s)
    size = sum(p.stat().st_size for p in r.adapter_dir.rglob("*") if p.is_file())
    return {
        "s_per_step": r.seconds / r.steps,
        "tokens_per_s": r.tokens_per_second,
        "final_loss": r.losses[-1][1],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "size_mb": size / 2**20,
    }


def run_trl_defaults(data: Path, steps: int, out: Path) -> dict:
    """What a user writes from TRL's quickstart: SFTConfig defaults, a LoRA config, prompt-completion data
    (so the loss is on the completion only, as in expertkit, and the losses compare)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from expertkit.models.generator import local_model_path
    from expertkit.tune.data import load_training_data

    path = local_model_path("smollm2-135m-instruct")
    rows = [{"prompt": e.messages[:-1], "completion": e.messages[-1:]} for e in load_training_data(data).examples]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    config = SFTConfig(
        output_dir=str(out / "trl"),
        max_steps=steps,
        report_to="none",
        save_strategy="no",
        learning_rate=2e-4,
        disable_tqdm=True,
        logging_steps=1,
        use_cpu=True,
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        peft_config=LoraConfig(
            r=16,
            lora_alpha=32,
            lora_dropout=0.05,
            task_type="CAUSAL_LM",
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        ),
    )
    real_tokens = sum(len(x) for x in trainer.train_dataset["input_ids"])
    n_examples = len(trainer.train_dataset)
    t = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t
    seen = steps * config.per_device_train_batch_size * config.gradient_accumulation_steps
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "s_per_step": seconds / steps,
        "tokens_per_s": real_tokens / n_examples * seen / seconds,
        "final_loss": losses[-1],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "size_mb": None,
    }


def child(args: argparse.Namespace) -> None:
    out = Path(tempfile.mkdtemp(prefix="ek-tune-"))
    data = Path(args.data)
    result = (
        run_trl_defaults(data, args.steps, out)
        if args.child == "trl"
        else run_expertkit(data, args.child, args.steps, out)
    )
    shutil.rmtree(out, ignore_errors=True)
    print("RESULT " + json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--child")
    ap.add_argument("--data")
    args = ap.parse_args()
    if args.child:
        return child(args)
    folder = Path(tempfile.mkdtemp(prefix="ek-tune-data-"))
    data = make_data(folder)
    configs = ["lora", "qlora", "full", "trl"]
    results: dict[str, list[dict]] = {c: [] for c in configs}
    for _ in range(args.rounds):
        for c in configs:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", c, "--data", str(data), "--steps", str(args.steps)],
                capture_output=True,
                text=True,
            )
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                raise SystemExit(f"{c} failed:\n{proc.stderr[-2000:]}")
            results[c].append(json.loads(line[7:]))
            print(c, results[c][-1], flush=True)
    med = {
        c: {k: statistics.median(r[k] for r in rs) if rs[0][k] is not None else None for k in rs[0]}
        for c, rs in results.items()
    }
    print(f"\n{args.steps} steps × 8 examples, {args.rounds} rounds, medians")
    print(f"{'config':<22} {'s/step':>7} {'tok/s':>7} {'final loss':>10} {'peak RSS MB':>12} {'size MB':>8}")
    names = {"lora": "expertkit LoRA", "qlora": "expertkit QLoRA", "full": "expertkit full", "trl": "TRL defaults LoRA"}
    for c in configs:
        m = med[c]
        size = f"{m['size_mb']:.1f}" if m["size_mb"] is not None else "–"
        print(
            f"{names[c]:<22} {m['s_per_step']:>7.2f} {m['tokens_per_s']:>7.0f} {m['final_loss']:>10.4f} "
            f"{m['peak_rss_mb']:>12.0f} {size:>8}"
        )
    print(f"expertkit LoRA / TRL defaults tokens/s: {med['lora']['tokens_per_s'] / med['trl']['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
