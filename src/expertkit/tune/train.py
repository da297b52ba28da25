"""The training recipe, top to bottom: LoRA, QLoRA or full fine-tuning with PEFT + TRL's SFTTrainer.

1. check the method can run here, before loading anything; check the run folder (tune/runs.py)
2. load the tokenizer and the base (the safetensors copy of the shipped model, or any folder / hub id)
3. read the data, add replay examples; tokenize with loss on the answers only; report over-long examples
4. wrap the base: LoRA on the architecture's projections, QLoRA on a 4-bit NF4 base, or no wrapper (full)
5. train (tune/loop.py): batches of similar length (little padding), bf16 where the CPU has it, a checkpoint
   every N steps, Ctrl-C → a resumable checkpoint, a NaN loss → a clear stop
6. save the adapter with its lineage, a loss curve PNG and a JSON run log
"""

from __future__ import annotations

import json
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from expertkit.config import TuneSettings
from expertkit.errors import TrainingError, require
from expertkit.models.lineage import LINEAGE_FILE, base_fingerprint, replace_dir
from expertkit.system import cpu_has_amx
from expertkit.tune.data import TrainingData, tokenize_examples
from expertkit.tune.runs import (  # noqa: F401 - COMPLETE, latest_checkpoint re-exported
    COMPLETE,
    checkpoint_to_resume,
    latest_checkpoint,
    record_identity,
)


@dataclass
class RunResult:
    name: str
    run_dir: Path
    adapter_dir: Path | None
    steps: int
    losses: list[tuple[int, float]]
    train_tokens: int  # answer+prompt tokens per epoch, padding excluded
    seconds: float
    tokens_per_second: float
    peak_rss_mb: float
    interrupted: bool = False
    overlong: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    out_of_time: bool = False  # stopped by tune.max_minutes before the planned steps
    planned_steps: int = 0


def check_hardware(method: str) -> str:
    """The device this method runs on; raises before any loading when it cannot run here."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if method == "qlora":
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise TrainingError(
                "QLoRA needs bitsandbytes: pip install 'expertkit[tune]' "
                "(it runs on CUDA, and on CPU through its pure-torch backend)"
            ) from None
    return device


def train(
    data: TrainingData,
    base: str,
    out_root: Path,
    name: str,
    settings: TuneSettings,
    resume: bool = False,
    progress=None,
) -> RunResult:
    """Run one training job; the adapter lands in ``out_root/adapters/name``, the run in ``out_root/runs/name``."""
    require("tune", "peft", "trl", "datasets", "accelerate", "matplotlib")
    from expertkit.models.local_model import local_model_path
    from expertkit.tune import loop

    method = settings.method
    device = check_hardware(method)
    _quiet_libraries()
    run_dir, adapter_dir = out_root / "runs" / name, out_root / "adapters" / name
    checkpoint = checkpoint_to_resume(run_dir, adapter_dir, name, resume)
    base_path = local_model_path(base)
    record_identity(run_dir, adapter_dir, name, _identity(data, base, base_path, settings), resume)
    started = time.perf_counter()

    tokenizer = load_tokenizer(base_path)
    bf16 = use_bf16(settings.precision, device)
    model = load_base(base_path, method, device, bf16)
    fingerprint = base_fingerprint(model.config)
    examples, n_replay = with_replay(list(data.examples), model, tokenizer, base_path, settings.replay)
    tokens = tokenize_examples(examples, tokenizer, settings.max_length, settings.overlong)
    if not tokens.input_ids:
        raise TrainingError(f"{data.path}: no example left to train on after max_length={settings.max_length}")
    model, targets = wrap_model(model, method, settings)

    state = loop.LoopState()
    config = loop.sft_config(run_dir, settings, bf16, device)
    trainer = loop.build_trainer(model, tokenizer, tokens, config, loop.watch(state, settings, progress))
    seconds = loop.run(trainer, run_dir, state, settings.learning_rate, checkpoint if resume else None)
    result = _result(name, run_dir, trainer, tokens, seconds, state, settings, device)

    run_dir.mkdir(parents=True, exist_ok=True)
    lineage = {
        "name": name,
        "method": method,
        "base": base,
        "base_path": base_path,
        "base_fingerprint": fingerprint,
        "data": str(data.path),
        "data_sha256": data.sha256,
        "examples": len(tokens.input_ids),
        "replay_examples": n_replay,
        "r": settings.r if method != "full" else None,
        "alpha": settings.alpha if method != "full" else None,
        "sources": data.source_hashes,
        "targets": targets,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if not state.interrupted:
        save_adapter(trainer.model, tokenizer if method == "full" else None, lineage, adapter_dir)
        result.adapter_dir = adapter_dir
    plot_loss(result.losses, run_dir / "loss.png", f"{name} ({method}, {base})")
    write_run_log(
        run_dir / "run.json", lineage, result, settings, device, bf16, data.skipped, time.perf_counter() - started
    )
    return result


def _quiet_libraries() -> None:
    """No progress bars or warnings from datasets and transformers: our own bar reports progress."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def _identity(data: TrainingData, base: str, base_path: str, settings: TuneSettings) -> dict:
    """What this run trains, which a resumed run must match (runs.record_identity)."""
    return {
        "data_sha256": data.sha256,
        "base": base,
        "base_path": str(base_path),
        "method": settings.method,
        "r": settings.r,
        "alpha": settings.alpha,
        "targets": settings.targets,
        "replay": settings.replay,
    }


def load_tokenizer(base_path: str):
    """The base's tokenizer, padding with its end-of-sequence token where it has no pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base(base_path: str, method: str, device: str, bf16: bool):
    """The base model in bf16 or fp32; for QLoRA quantized to 4-bit NF4 on load."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if bf16 else torch.float32
    load_kwargs: dict = {"dtype": dtype}
    if method == "qlora":
        from transformers import BitsAndBytesConfig

        load_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
        )
        load_kwargs["device_map"] = {"": 0} if device == "cuda" else "cpu"
    return AutoModelForCausalLM.from_pretrained(base_path, **load_kwargs)


def with_replay(examples: list, model, tokenizer, base_path: str, share: float) -> tuple[list, int]:
    """The examples plus ``share`` × as many replay examples (the base's own answers to general prompts, so
    the adapter keeps what the base could do), and how many were added."""
    n_replay = int(round(share * len(examples)))
    if not n_replay:
        return examples, 0
    from expertkit.tune.replay import replay_examples

    replayed = replay_examples(model, tokenizer, str(base_path), n_replay)
    return examples + replayed, len(replayed)


def wrap_model(model, method: str, settings: TuneSettings):
    """The model to train and the modules LoRA adapts: LoRA on the architecture's projections (the ones
    ``tune.targets`` names, else tune/targets.py's choice), QLoRA the same on the 4-bit base prepared for
    training; a full fine-tune trains the model itself (no targets)."""
    if method not in ("lora", "qlora"):
        return model, []
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    from expertkit.tune.targets import lora_targets

    if method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=settings.gradient_checkpointing)
    targets = settings.targets or lora_targets(model)
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config), targets


def _result(name: str, run_dir: Path, trainer, tokens, seconds: float, state, settings, device: str) -> RunResult:
    """What the run did: steps, losses, tokens per second (padding excluded), peak memory."""
    epochs_done = trainer.state.epoch or settings.epochs
    tokens_seen = int(tokens.tokens * epochs_done)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device == "cuda":
        import torch

        peak = max(peak, torch.cuda.max_memory_allocated() / 2**20)
    return RunResult(
        name,
        run_dir,
        None,
        trainer.state.global_step,
        state.losses,
        tokens.tokens,
        seconds,
        tokens_seen / seconds if seconds else 0.0,
        peak,
        state.interrupted,
        tokens.overlong,
        tokens.dropped,
        state.out_of_time,
        state.planned,
    )


def save_adapter(model, tokenizer, lineage: dict, adapter_dir: Path) -> None:
    """Write the adapter (or, with ``tokenizer``, the full model) and its lineage, then put it in place in one
    step: a reader never sees half an adapter."""
    tmp = adapter_dir.with_name(adapter_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    (tmp / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2))
    replace_dir(tmp, adapter_dir)


def write_run_log(
    path: Path,
    lineage: dict,
    result: RunResult,
    settings: TuneSettings,
    device: str,
    bf16: bool,
    skipped: list,
    total_seconds: float,
) -> None:
    """The JSON run log: the lineage, the settings and device, and what the run did."""
    log = {
        **lineage,
        "settings": settings.model_dump(),
        "device": device,
        "bf16": bf16,
        "steps": result.steps,
        "losses": result.losses,
        "train_seconds": round(result.seconds, 2),
        "total_seconds": round(total_seconds, 2),
        "tokens_per_epoch": result.train_tokens,
        "tokens_per_second": round(result.tokens_per_second, 1),
        "peak_rss_mb": round(result.peak_rss_mb, 1),
        "interrupted": result.interrupted,
        "out_of_time": result.out_of_time,
        "planned_steps": result.planned_steps,
        "overlong_lines": result.overlong,
        "dropped_lines": result.dropped,
        "skipped_lines": skipped,
        "adapter_mb": round(_size(result.adapter_dir) / 2**20, 2) if result.adapter_dir else None,
    }
    path.write_text(json.dumps(log, indent=2))


def use_bf16(precision: str, device: str) -> bool:
    """bf16 on a GPU that has it, and on a CPU with AMX. On AVX512-BF16 alone, fp32 trains faster (a LoRA
    forward + backward measured 1.67× faster on SmolLM2-135M, 1.27× on Qwen2.5-0.5B: README, Speed)."""
    import torch

    if precision != "auto":
        return precision == "bf16"
    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_amx()


def plot_loss(losses: list[tuple[int, float]], path: Path, title: str) -> None:
    from expertkit.evaluate.report import _pyplot

    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    if losses:
        ax.plot([s for s, _ in losses], [v for _, v in losses], marker=".", linewidth=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
