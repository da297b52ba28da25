"""PEFT LoRA → llama.cpp: the adapter GGUF, served by llama.cpp's server with --lora, must give what
transformers gives with the same adapter (greedy), and must change what the base says."""

import pytest

from expertkit.errors import TrainingError
from expertkit.models.registry import resolve

PROMPTS = [f"What is the torque for bolt B{i}?" for i in (3, 7, 11, 19, 23)]
TOKENS = 16
REQUIRED_AGREEMENT = 0.9  # share of next tokens llama-server picks as transformers did, teacher-forced


@pytest.fixture(scope="module")
def adapter(smol_adapter):
    return smol_adapter  # the session's adapter: 10 steps on bolt torques (tests/conftest.py)


def _forced_agreement(server, prompt_ids: list[list[int]], references: list[list[int]]) -> float:
    """Teacher-forced: at every position of transformers' greedy answer, does llama-server's greedy next
    token agree? One near-tie between Q4 and fp32 arithmetic then costs one token, not the rest of it."""
    import httpx

    same = total = 0
    with httpx.Client(timeout=60) as http:
        for prompt, reference in zip(prompt_ids, references, strict=True):
            for i, expected in enumerate(reference):
                body = {"prompt": prompt + reference[:i], "n_predict": 1, "temperature": 0.0, "return_tokens": True}
                got = http.post(f"{server.url}/completion", json=body, headers=server.headers).json()["tokens"]
                same, total = same + (got[:1] == [expected]), total + 1
    return same / total


def test_adapter_gguf_has_llama_cpp_names_and_metadata(adapter):
    import gguf

    from expertkit.models.gguf_lora import export_lora_gguf

    path = export_lora_gguf(adapter)
    reader = gguf.GGUFReader(str(path))
    fields = {name: reader.get_field(name).contents() for name in reader.fields if not name.startswith("GGUF.")}
    assert fields["general.type"] == "adapter" and fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == 32.0 and fields["general.architecture"] == "llama"
    assert '"base": "smollm2-135m-instruct"' in fields["expertkit.lineage"]  # lineage travels with the file
    names = {t.name: t for t in reader.tensors}
    a, b = names["blk.0.attn_q.weight.lora_a"], names["blk.0.attn_q.weight.lora_b"]
    assert list(a.shape) == [576, 16] and list(b.shape) == [16, 576]  # ggml order: A is in × r, B is r × out
    assert len(names) == 2 * 7 * 30  # q k v o gate up down, 30 layers


def test_llama_server_with_the_adapter_matches_transformers(adapter):
    from expertkit.models.generator import TransformersGenerator
    from expertkit.models.gguf_lora import lora_gguf
    from expertkit.models.llamacpp import LlamaCppGenerator, LlamaServer

    tuned = TransformersGenerator("smollm2-135m-instruct", adapter=adapter, dtype="fp32")
    tok = tuned.tokenizer
    chats = [[{"role": "user", "content": p}] for p in PROMPTS]
    reference = [tuned.generate(chat, TOKENS, 0.0).text for chat in chats]
    rendered = [tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) for chat in chats]
    prompt_ids = [tok.encode(text, add_special_tokens=False) for text in rendered]
    reference_ids = [tok.encode(r, add_special_tokens=False) for r in reference]
    path = resolve("smollm2-135m-instruct", "generator")
    outputs, agreement = {}, {}
    for name, lora in (("lora", [str(lora_gguf(adapter))]), ("base", [])):
        server = LlamaServer(path, "smollm2-135m-instruct", 1024, 1, lora=lora).start()
        gen = LlamaCppGenerator(server, "smollm2-135m-instruct")
        try:
            outputs[name] = [gen.generate(chat, TOKENS, 0.0).text for chat in chats]
            agreement[name] = _forced_agreement(server, prompt_ids, reference_ids)
        finally:
            gen.close()
    assert agreement["lora"] >= REQUIRED_AGREEMENT, (agreement, outputs["lora"], reference)
    assert agreement["base"] <= agreement["lora"] - 0.2, agreement  # without the adapter it is another model
    assert outputs["lora"] != outputs["base"]  # the adapter visibly changes the output
    assert sum("takes" in o for o in outputs["lora"]) >= 4  # ... to what it was trained to say


def test_merged_gguf_answers_like_base_plus_adapter(adapter, tmp_path):
    """The merged GGUF holds its merged weights at another precision than base (Q4) + adapter (fp32), so near
    ties may flip: compared teacher-forced, token by token, against the adapter served on the base."""
    import gguf
    import httpx

    from expertkit.models.gguf_lora import lora_gguf, merge_into_gguf
    from expertkit.models.llamacpp import LlamaServer

    base = resolve("smollm2-135m-instruct", "generator")
    merged = merge_into_gguf(adapter, base, tmp_path / "merged.gguf")
    reader = gguf.GGUFReader(str(merged))
    assert reader.get_field("tokenizer.chat_template").contents()  # the template travels
    server = LlamaServer(base, "lora", 1024, 1, lora=[str(lora_gguf(adapter))]).start()
    try:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as http:
            prompt_ids, reference_ids = [], []
            for p in PROMPTS:
                text = http.post("/apply-template", json={"messages": [{"role": "user", "content": p}]}).json()
                ids = http.post("/tokenize", json={"content": text["prompt"], "parse_special": True}).json()["tokens"]
                body = {"prompt": ids, "n_predict": TOKENS, "temperature": 0.0, "return_tokens": True}
                prompt_ids.append(ids)
                reference_ids.append(http.post("/completion", json=body).json()["tokens"])
    finally:
        server.stop()
    assert all(reference_ids) and len(reference_ids) == len(PROMPTS)
    server = LlamaServer(str(merged), "merged", 1024, 1).start()
    try:
        agreement = _forced_agreement(server, prompt_ids, reference_ids)
    finally:
        server.stop()
    assert agreement >= REQUIRED_AGREEMENT, agreement


def test_one_server_answers_as_the_base_and_as_each_adapter_per_request(adapter):
    """`expertkit serve` loads adapters switchable: a request without one gets the base model's answer,
    a request through ``with_adapter`` gets what a server started with --lora gives."""
    from expertkit.config import GenerateSettings
    from expertkit.models.generator import make_generator
    from expertkit.models.gguf_lora import lora_gguf
    from expertkit.models.llamacpp import LlamaCppGenerator, LlamaServer

    chats = [[{"role": "user", "content": p}] for p in PROMPTS]
    path = resolve("smollm2-135m-instruct", "generator")
    expected = {}
    for name, lora in (("lora", [str(lora_gguf(adapter))]), ("base", [])):
        server = LlamaServer(path, "smollm2-135m-instruct", 1024, 1, lora=lora).start()
        gen = LlamaCppGenerator(server, "smollm2-135m-instruct")
        try:
            expected[name] = [gen.generate(chat, TOKENS, 0.0).text for chat in chats]
        finally:
            gen.close()
    both = make_generator(GenerateSettings(model="smollm2-135m-instruct", parallel=1), switchable=[adapter])
    try:
        tuned = both.with_adapter(0, "smollm2-135m-instruct+bolts")
        got_tuned = [tuned.generate(chat, TOKENS, 0.0).text for chat in chats]
        got_base = [both.generate(chat, TOKENS, 0.0).text for chat in chats]  # after the adapter: it must be off
    finally:
        both.close()
    assert expected["lora"] != expected["base"]
    assert got_tuned == expected["lora"] and got_base == expected["base"]


def test_a_folder_without_lora_weights_is_refused(tmp_path):
    from expertkit.models.gguf_lora import export_lora_gguf

    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8}')
    with pytest.raises(TrainingError, match="base model|adapter_model"):
        export_lora_gguf(tmp_path)
