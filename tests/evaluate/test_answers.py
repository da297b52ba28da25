import json
import os
import subprocess
import sys

from tests.conftest import ROOT, rendered_images, shared_set


def test_eval_answers_runs_a_route_and_reports_its_scores(tmp_path, browser):
    root = shared_set("emanual-tv")
    out = tmp_path / "items.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "expertkit.cli",
            "eval",
            "answers",
            "--beir",
            str(root),
            "--limit",
            "3",
            "-w",
            str(tmp_path / "ws"),
            "--json",
            "--out",
            str(out),
            "--set",
            "generate.max_new_tokens=24",
            "--report",
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    assert scores["route"] == "rag" and scores["questions"] == 3
    assert 0.0 <= scores["rouge_l"] <= 1.0 and scores["tokens_per_s"] > 0
    items = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(items) == 3 and all({"answer", "gold", "rouge_l", "citations_in_gold"} <= set(i) for i in items)
    if scores["citations_valid"] is not None:
        assert 0.0 <= scores["citations_valid"] <= 1.0
    report = tmp_path / "report" / "report.html"
    assert scores["report"] == str(report)
    title, images = rendered_images(browser, report.as_uri())
    assert title.startswith("expertkit eval answers") and len(images) == 2
    assert all(i["complete"] and i["width"] > 100 for i in images), images
    assert items[0]["question"] in report.read_text()  # every answer is listed against its gold
