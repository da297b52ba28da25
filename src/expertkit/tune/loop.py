"""The training loop: TRL's SFTTrainer as the recipe configures it, and what watches it.

Batches of similar length (little padding), bf16 where the device has it, a checkpoint every N steps (marked
complete once on disk), Ctrl-C → a resumable checkpoint, a NaN loss → a clear stop, ``tune.max_minutes`` → the
cosine decay ends with the time budget, a full disk → which checkpoint is intact. Imported by
:func:`expertkit.tune.train.train` once the training extras are known to be installed.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from expertkit.config import TuneSettings
from expertkit.errors import TrainingError
from expertkit.tune.runs import COMPLETE, latest_checkpoint


@dataclass
class LoopState:
    """What the callback saw while training; read by the recipe once the loop ends."""

    losses: list[tuple[int, float]] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C: a checkpoint was saved at the end of that step
    nan_step: int | None = None  # the step whose loss (or gradient norm) was not finite
    out_of_time: bool = False  # stopped by tune.max_minutes before the planned steps
    began: float = 0.0
    planned: int = 0  # the steps the trainer planned


def watch(state: LoopState, settings: TuneSettings, progress=None):
    """The TrainerCallback that records losses into ``state``, reports ``progress``, stops on NaN, on the time
    budget and on Ctrl-C, and marks each checkpoint complete once saved."""
    from transformers import TrainerCallback

    class Watch(TrainerCallback):
        def on_log(self, args, st, control, logs=None, **kw):
            loss = (logs or {}).get("loss")
            grad_norm = (logs or {}).get("grad_norm")
            if loss is not None:
                state.losses.append((st.global_step, float(loss)))
                if not math.isfinite(loss) or grad_norm is not None and not math.isfinite(grad_norm):
                    state.nan_step = st.global_step
                    control.should_training_stop = True
            if progress:  # TRL logs the tokens seen so far (padding excluded)
                progress.update(st.global_step, st.max_steps, loss, (logs or {}).get("num_tokens"))

        def on_train_begin(self, args, st, control, **kw):
            state.began, state.planned = time.perf_counter(), st.max_steps

        def on_step_end(self, args, st, control, **kw):
            limit = settings.max_minutes * 60
            if limit and st.global_step < st.max_steps:
                _time_budget(state, settings, st, control, kw.get("optimizer"), limit)
            if progress and not state.losses:
                progress.update(st.global_step, st.max_steps, None, None)
            if state.interrupted:
                control.should_save = True
                control.should_training_stop = True

        def on_save(self, args, st, control, **kw):
            folder = Path(args.output_dir) / f"checkpoint-{st.global_step}"
            if folder.exists():
                (folder / COMPLETE).write_text(str(st.global_step))

    return Watch()


def _time_budget(state: LoopState, settings: TuneSettings, st, control, optimizer, limit: float) -> None:
    """A time budget: the cosine decay runs on whichever ends first, the steps or the minutes, so a run cut
    short still ends at a low learning rate instead of mid-schedule."""
    done = max(st.global_step / st.max_steps, (time.perf_counter() - state.began) / limit)
    if done >= 1.0:
        state.out_of_time = True  # the adapter as it stands is saved like a finished one
        control.should_training_stop = True
    elif optimizer is not None:
        cap = settings.learning_rate * 0.5 * (1 + math.cos(math.pi * done))
        for group in optimizer.param_groups:
            group["lr"] = min(group["lr"], cap)


def sft_config(run_dir: Path, settings: TuneSettings, bf16: bool, device: str):
    """TRL's SFTConfig for this run."""
    from trl import SFTConfig

    grouping = settings.grouping
    return SFTConfig(
        output_dir=str(run_dir),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup_ratio,
        lr_scheduler_type="cosine",
        logging_steps=settings.logging_steps,
        save_steps=settings.save_steps,
        save_total_limit=2,
        bf16=bf16,
        gradient_checkpointing=settings.gradient_checkpointing,
        max_length=settings.max_length,
        packing=grouping == "packing",
        train_sampling_strategy="group_by_length" if grouping == "length" else "random",
        seed=settings.seed,
        report_to="none",
        logging_nan_inf_filter=False,  # a NaN loss must be seen, not averaged away
        disable_tqdm=True,
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
        optim="adamw_torch",
    )


def build_trainer(model, tokenizer, tokens, config, callback):
    """The SFTTrainer over the tokenized examples (loss on the answers only), reporting through ``callback``."""
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import SFTTrainer

    dataset = Dataset.from_dict({"input_ids": tokens.input_ids, "labels": tokens.labels})
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[callback]
    )
    trainer.remove_callback(PrinterCallback)  # our progress bar reports the loss
    return trainer


def run(trainer, run_dir: Path, state: LoopState, learning_rate: float, checkpoint: Path | None = None) -> float:
    """Train (from ``checkpoint`` when resuming) with Ctrl-C turned into a checkpoint; the seconds it took.
    A full disk and a NaN loss end it with a TrainingError that says which checkpoint is intact."""

    def on_sigint(signum, frame):
        state.interrupted = True  # the callback saves a checkpoint at the end of this step

    previous = signal.signal(signal.SIGINT, on_sigint) if _main_thread() else None
    t0 = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
    except OSError as exc:
        raise _disk_full(run_dir, exc) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    seconds = time.perf_counter() - t0
    if state.nan_step is not None:
        good = latest_checkpoint(run_dir)
        raise TrainingError(
            f"the loss became NaN at step {state.nan_step}: lower tune.learning_rate (now {learning_rate}), "
            "check the data, or check the base model's weights; "
            f"the last good checkpoint is {good.name if good else 'none'}"
        )
    return seconds


def _disk_full(run_dir: Path, exc: OSError) -> TrainingError:
    """A checkpoint could not be written: the half-written ones go, and the error names the intact one."""
    broken = [p for p in run_dir.glob("checkpoint-*") if not (p / COMPLETE).exists()]
    for p in broken:
        shutil.rmtree(p, ignore_errors=True)
    good = latest_checkpoint(run_dir)
    return TrainingError(
        f"could not write a checkpoint ({exc.strerror or exc}); "
        + (
            f"{good.name} is intact: free space and run again with --resume"
            if good
            else "no earlier checkpoint exists: free space and start again"
        )
    )


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread() and os.name == "posix"
