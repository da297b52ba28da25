"""Training: the tiny random Phi-3 for mechanics (fast), the real SmolLM2 for LoRA, QLoRA, full and merge."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from expertkit.config import TuneSettings
from expertkit.errors import TrainingError
from expertkit.tune.data import load_training_data
from expertkit.tune.train import COMPLETE, latest_checkpoint, train
from tests.conftest import ROOT


def settings(**kw) -> TuneSettings:
    base = {"max_steps": 4, "batch_size": 4, "grad_accum": 1, "save_steps": 2, "max_length": 128, "epochs": 1}
    return TuneSettings(**{**base, **kw})


def test_phi3_lora_targets_the_fused_projections(tiny_phi3, chat_file, tmp_path):
    from safetensors import safe_open

    result = train(load_training_data(chat_file), str(tiny_phi3), tmp_path, "phi", settings())
    lineage = json.loads((result.adapter_dir / "expertkit.json").read_text())
    assert lineage["targets"] == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    with safe_open(str(result.adapter_dir / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any("qkv_proj.lora_A" in k for k in keys) and any("gate_up_proj.lora_B" in k for k in keys)
    assert lineage["base_fingerprint"]["model_type"] == "phi3"
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["steps"] == 4 and run["data_sha256"] == load_training_data(chat_file).sha256
    assert run["peak_rss_mb"] > 0 and run["tokens_per_second"] > 0 and run["settings"]["r"] == 16
    assert (result.run_dir / "loss.png").stat().st_size > 1000
    assert all((c / COMPLETE).exists() for c in result.run_dir.glob("checkpoint-*"))


def test_existing_run_needs_resume_and_resume_needs_a_checkpoint(tiny_phi3, chat_file, tmp_path):
    data = load_training_data(chat_file)
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(data, str(tiny_phi3), tmp_path, "r", settings(), resume=True)
    train(data, str(tiny_phi3), tmp_path, "r", settings(max_steps=2))
    (tmp_path / "runs" / "r" / "run.json").unlink()  # as a run killed after its checkpoint leaves it
    with pytest.raises(TrainingError, match="--resume"):
        train(data, str(tiny_phi3), tmp_path, "r", settings(max_steps=2))
    resumed = train(data, str(tiny_phi3), tmp_path, "r", settings(max_steps=4), resume=True)
    assert resumed.steps == 4


def test_a_finished_run_is_not_resumed_or_overwritten(tiny_phi3, chat_file, tmp_path):
    data = load_training_data(chat_file)
    first = train(data, str(tiny_phi3), tmp_path, "done", settings(max_steps=2))
    weights = (first.adapter_dir / "adapter_model.safetensors").read_bytes()
    for resume in (True, False):
        with pytest.raises(TrainingError, match="already finished") as info:
            train(data, str(tiny_phi3), tmp_path, "done", settings(max_steps=4), resume=resume)
        assert "another --name" in str(info.value)
    assert (first.adapter_dir / "adapter_model.safetensors").read_bytes() == weights


@pytest.mark.parametrize(
    ("change", "needle"),
    [("data", "data_sha256"), ("r", "r 16 → 8"), ("method", "method 'lora' → 'full'")],
)
def test_resume_refuses_a_checkpoint_trained_on_something_else(tiny_phi3, chat_file, tmp_path, change, needle):
    data = load_training_data(chat_file)
    train(data, str(tiny_phi3), tmp_path, "x", settings(max_steps=2))
    (tmp_path / "runs" / "x" / "run.json").unlink()  # an unfinished run with a checkpoint
    other = tmp_path / "other.jsonl"
    other.write_text(chat_file.read_text().replace("torque", "force"))
    kwargs = {"data": {}, "r": {"r": 8}, "method": {"method": "full"}}[change]
    with pytest.raises(TrainingError, match="cannot resume") as info:
        train(
            load_training_data(other) if change == "data" else data,
            str(tiny_phi3),
            tmp_path,
            "x",
            settings(max_steps=4, **kwargs),
            resume=True,
        )
    assert needle in str(info.value)


def test_nan_loss_stops_with_a_clear_message(tiny_phi3, chat_file, tmp_path):
    """A base with one corrupted (inf) weight: a real NaN loss, as a broken checkpoint or fp16 overflow gives."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    broken = tmp_path / "broken-phi3"
    model = AutoModelForCausalLM.from_pretrained(tiny_phi3)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, 0] = float("inf")
    model.save_pretrained(broken)
    AutoTokenizer.from_pretrained(tiny_phi3).save_pretrained(broken)
    with pytest.raises(TrainingError, match="NaN at step 1.*lower tune.learning_rate"):
        train(load_training_data(chat_file), str(broken), tmp_path, "nan", settings())
    assert not (tmp_path / "adapters" / "nan").exists()


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(tiny_phi3, chat_file, tmp_path, monkeypatch):
    """A real ENOSPC cannot be made safely here; the checkpoint writer fails the way a full disk makes it fail."""
    import errno

    import transformers

    original = transformers.Trainer._save_checkpoint
    calls = {"n": 0}

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            folder = tmp_path / "runs" / "disk" / f"checkpoint-{self.state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "adapter_model.safetensors").write_bytes(b"half a file")
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Trainer, "_save_checkpoint", failing)
    with pytest.raises(TrainingError, match="No space left on device.*checkpoint-2 is intact.*--resume"):
        train(load_training_data(chat_file), str(tiny_phi3), tmp_path, "disk", settings(max_steps=6))
    assert latest_checkpoint(tmp_path / "runs" / "disk").name == "checkpoint-2"
    assert not (tmp_path / "runs" / "disk" / "checkpoint-4").exists()  # the half-written one is gone
    monkeypatch.setattr(transformers.Trainer, "_save_checkpoint", original)
    assert (
        train(load_training_data(chat_file), str(tiny_phi3), tmp_path, "disk", settings(max_steps=6), resume=True).steps
        == 6
    )


def test_ctrl_c_saves_a_resumable_checkpoint(tiny_phi3, chat_file, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    # far more steps than can finish, so the interrupt always lands mid-run on any machine
    (ws / "expertkit.toml").write_text(
        f'[tune]\nbase = "{tiny_phi3}"\nmax_steps = 100000\nsave_steps = 20\n'
        "batch_size = 2\ngrad_accum = 1\nmax_length = 128\n"
    )
    cmd = [sys.executable, "-m", "expertkit.cli", "tune", str(chat_file), "--name", "ctrlc", "-w", str(ws)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = ws / "runs" / "ctrlc"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (run / "checkpoint-20" / COMPLETE).exists():
        time.sleep(0.2)  # training is under way once its first checkpoint is complete
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, errs = proc.communicate(timeout=180)
    assert proc.returncode == 130, out + errs
    assert "--resume" in out and "Traceback" not in errs
    checkpoint = latest_checkpoint(run)
    assert checkpoint is not None and not (ws / "adapters" / "ctrlc").exists()
    step = int(checkpoint.name.split("-")[1])
    assert 20 <= step < 100000
    done = subprocess.run(
        [*cmd, "--resume", "--max-steps", str(step + 2)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (ws / "adapters" / "ctrlc" / "adapter_model.safetensors").exists()
    assert json.loads((run / "run.json").read_text())["steps"] == step + 2


def test_adapter_for_another_base_is_refused(tiny_phi3, chat_file, tmp_path, generator):
    from expertkit.models.generator import TransformersGenerator

    result = train(load_training_data(chat_file), str(tiny_phi3), tmp_path, "phi-only", settings(max_steps=1))
    with pytest.raises(TrainingError, match="trained on .*tiny-phi3.*not on 'smollm2-135m-instruct'"):
        TransformersGenerator("smollm2-135m-instruct", adapter=result.adapter_dir)


def test_qlora_says_what_is_missing_before_loading(monkeypatch, chat_file, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_bnb(name, *args, **kwargs):
        if name == "bitsandbytes":
            raise ImportError("no bitsandbytes")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bnb)
    with pytest.raises(TrainingError, match="QLoRA needs bitsandbytes"):
        train(load_training_data(chat_file), "smollm2-135m-instruct", tmp_path, "q", settings(method="qlora"))


# -- the real shipped model --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_real_model_trains_and_the_loss_falls(method, chat_file, tmp_path):
    lr = 2e-5 if method == "full" else 2e-3
    result = train(
        load_training_data(chat_file),
        "smollm2-135m-instruct",
        tmp_path,
        method,
        settings(method=method, max_steps=6, learning_rate=lr, warmup_ratio=0.0, save_steps=100),
    )
    losses = [v for _, v in result.losses]
    assert len(losses) == 6 and losses[-1] < losses[0]
    files = {p.name for p in result.adapter_dir.iterdir()}
    if method == "full":
        assert "model.safetensors" in files and "chat_template.jinja" in files | {"tokenizer_config.json"}
    else:
        assert "adapter_model.safetensors" in files
        assert sum(p.stat().st_size for p in result.adapter_dir.iterdir()) < 30 * 2**20  # an adapter, not a model


def test_merged_model_keeps_the_template_and_matches_base_plus_adapter(chat_file, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from expertkit.models.generator import local_model_path
    from expertkit.tune.adapters import merge_adapter

    result = train(
        load_training_data(chat_file),
        "smollm2-135m-instruct",
        tmp_path,
        "m",
        settings(max_steps=8, learning_rate=5e-3, warmup_ratio=0.0, save_steps=100),
    )
    merged_dir = merge_adapter(result.adapter_dir, tmp_path / "merged")
    tok = AutoTokenizer.from_pretrained(merged_dir)
    base_tok = AutoTokenizer.from_pretrained(local_model_path("smollm2-135m-instruct"))
    assert tok.chat_template == base_tok.chat_template
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the torque for bolt B3?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    base = AutoModelForCausalLM.from_pretrained(local_model_path("smollm2-135m-instruct"), dtype=torch.float32)
    plain = base.generate(**prompt, max_new_tokens=12, do_sample=False)
    adapted = PeftModel.from_pretrained(base, str(result.adapter_dir)).eval()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        a = adapted.generate(**prompt, max_new_tokens=12, do_sample=False)
        m = merged.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert torch.equal(a, m)
    assert not torch.equal(a, plain)  # the adapter changed the answer, so the equality means something


def test_a_time_budget_stops_training_and_keeps_the_adapter(tiny_phi3, chat_file, tmp_path):
    started = time.perf_counter()
    result = train(
        load_training_data(chat_file), str(tiny_phi3), tmp_path, "budget", settings(max_steps=100_000, max_minutes=0.05)
    )
    assert time.perf_counter() - started < 120  # 3 s of training, not 100,000 steps
    assert result.out_of_time and 0 < result.steps < result.planned_steps == 100_000
    assert (result.adapter_dir / "adapter_model.safetensors").exists()
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["out_of_time"] is True and run["steps"] == result.steps
