import json

import pytest

from expertkit.errors import DataError
from expertkit.tune.data import load_training_data, parse_record, tokenize_examples
from tests.tune.conftest import PHI3_TEMPLATE


def write(tmp_path, lines, name="d.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_all_user_formats(tmp_path):
    path = write(
        tmp_path,
        [
            json.dumps(
                {
                    "messages": [
                        {"role": "system", "content": "s"},
                        {"role": "user", "content": "q"},
                        {"role": "assistant", "content": "a"},
                    ]
                }
            ),
            json.dumps({"instruction": "Translate", "input": "Pumpe", "output": "pump"}),
            json.dumps({"prompt": "2+2?", "completion": "4"}),
            json.dumps({"text": "Raw domain text about impellers."}),
        ],
    )
    data = load_training_data(path)
    assert [e.line for e in data.examples] == [1, 2, 3, 4]
    assert data.examples[1].messages[0]["content"] == "Translate\n\nPumpe"
    assert data.examples[2].messages == [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    assert data.examples[3].text.startswith("Raw")
    assert len(data.sha256) == 64
    raw = tmp_path / "notes.txt"
    raw.write_text("Continued pretraining text.")
    assert load_training_data(raw).examples[0].text == "Continued pretraining text."


def test_malformed_lines_are_named_and_refuse_the_run(tmp_path):
    path = write(
        tmp_path,
        [
            json.dumps({"prompt": "q", "completion": "a"}),
            "{not json",
            json.dumps({"messages": [{"role": "user", "content": "q"}]}),
            json.dumps({"foo": 1}),
        ],
    )
    with pytest.raises(DataError) as exc:
        load_training_data(path)
    message = str(exc.value)
    assert "3 bad line(s)" in message and "line 2: not valid JSON" in message and "line 3:" in message
    assert "--skip-bad" in message
    data = load_training_data(path, skip_bad=True)
    assert len(data.examples) == 1 and len(data.skipped) == 3


@pytest.mark.parametrize(
    "record",
    [
        [],
        {"messages": []},
        {"messages": [{"role": "robot", "content": "x"}]},
        {"prompt": "", "completion": "a"},
        {"text": ""},
    ],
)
def test_bad_records(record):
    with pytest.raises(ValueError):
        parse_record(record)


def test_loss_falls_on_the_assistant_answer_only(smol_tokenizer):
    data = parse_record(
        {"messages": [{"role": "user", "content": "What torque?"}, {"role": "assistant", "content": "68 N·m."}]}
    )
    tokens = tokenize_examples([data], smol_tokenizer, max_length=256)
    ids, labels = tokens.input_ids[0], tokens.labels[0]
    learned = smol_tokenizer.decode([t for t, lab in zip(ids, labels, strict=True) if lab != -100])
    assert learned.startswith("68 N·m.") and "<|im_end|>" in learned and "What torque" not in learned
    assert smol_tokenizer.decode(ids).startswith("<|im_start|>system")  # the model's own template


def test_phi3_template_masks(smol_tokenizer):
    import copy

    tok = copy.deepcopy(smol_tokenizer)
    tok.chat_template = PHI3_TEMPLATE
    ex = parse_record(
        {
            "messages": [
                {"role": "user", "content": "Q1"},
                {"role": "assistant", "content": "A1"},
                {"role": "user", "content": "Q2"},
                {"role": "assistant", "content": "A2"},
            ]
        }
    )
    tokens = tokenize_examples([ex], tok, max_length=256)
    learned = tok.decode([t for t, lab in zip(tokens.input_ids[0], tokens.labels[0], strict=True) if lab != -100])
    assert "A1<|end|>" in learned and "A2<|end|>" in learned and "Q1" not in learned and "<|user|>" not in learned


def test_overlong_examples_are_reported_then_truncated_or_dropped(smol_tokenizer):
    short = parse_record({"prompt": "q", "completion": "short"})
    long = parse_record({"prompt": "q", "completion": "word " * 300})
    short.line, long.line = 1, 2
    t = tokenize_examples([short, long], smol_tokenizer, max_length=64, overlong="truncate")
    assert t.overlong == [2] and len(t.input_ids) == 2 and len(t.input_ids[1]) == 64
    d = tokenize_examples([short, long], smol_tokenizer, max_length=64, overlong="drop")
    assert d.overlong == [2] and d.dropped == [2] and len(d.input_ids) == 1
    prompt_heavy = parse_record({"prompt": "word " * 300, "completion": "a"})
    prompt_heavy.line = 3
    p = tokenize_examples([prompt_heavy], smol_tokenizer, max_length=64)
    assert p.dropped == [3] and p.input_ids == []  # truncation left no answer to learn from


def test_raw_text_is_cut_into_blocks_with_full_loss(smol_tokenizer):
    ex = parse_record({"text": "impeller " * 200})
    t = tokenize_examples([ex], smol_tokenizer, max_length=64)
    assert len(t.input_ids) >= 3 and all(len(x) <= 64 for x in t.input_ids)
    assert t.labels == t.input_ids
