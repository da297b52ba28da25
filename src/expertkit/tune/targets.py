"""LoRA target modules per architecture. Phi-3 fuses q/k/v into ``qkv_proj`` and gate/up into ``gate_up_proj``."""

from __future__ import annotations

_LLAMA_LIKE = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

TARGETS: dict[str, list[str]] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "gemma3": _LLAMA_LIKE,
    "gemma3_text": _LLAMA_LIKE,
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
}


def lora_targets(model) -> list[str]:
    """The module names to adapt: known per model_type, else every Linear layer but the output head."""
    known = TARGETS.get(getattr(model.config, "model_type", ""))
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    if known and set(known) <= names:
        return list(known)
    import torch

    found = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "lm_head" not in name:
            found.add(name.rsplit(".", 1)[-1])
    return sorted(found)
