"""Fixtures for training tests: a tiny random Phi-3 (fused qkv_proj / gate_up_proj, Phi-3 chat template)
and small chat datasets. The tiny model makes the training mechanics fast; the real SmolLM2 is used
where the behaviour depends on a real model."""

from __future__ import annotations

import json

import pytest

# The Phi-3-mini-4k-instruct chat template, as published with the model.
PHI3_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + "
    "'<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)


@pytest.fixture(scope="session")
def smol_tokenizer(generator):
    return generator.tokenizer


@pytest.fixture(scope="session")
def tiny_phi3(tmp_path_factory, smol_tokenizer):
    """A randomly initialised 2-layer Phi-3 saved as a local model folder, with the Phi-3 chat template."""
    import copy

    import torch
    from transformers import Phi3Config, Phi3ForCausalLM

    torch.manual_seed(0)
    config = Phi3Config(
        vocab_size=len(smol_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        pad_token_id=smol_tokenizer.pad_token_id or 0,
        eos_token_id=smol_tokenizer.eos_token_id,
        bos_token_id=smol_tokenizer.bos_token_id,
    )
    folder = tmp_path_factory.mktemp("tiny-phi3")
    Phi3ForCausalLM(config).save_pretrained(folder)
    tokenizer = copy.deepcopy(smol_tokenizer)
    tokenizer.chat_template = PHI3_TEMPLATE
    tokenizer.save_pretrained(folder)
    return folder


def chat_rows(n: int = 24) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"What is the torque for bolt B{i}?"},
                {"role": "assistant", "content": f"Bolt B{i} takes {10 + i} N·m."},
            ]
        }
        for i in range(n)
    ]


@pytest.fixture
def chat_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in chat_rows()))
    return path
