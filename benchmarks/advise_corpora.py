"""`advise --measure` on the two shipped corpora with opposite profiles (examples/advise/): a weekly price list
whose answers must cite (RAG should win) and a small, stable house handbook whose answers need not cite
(fine-tuning should win). Each runs the four routes end to end within its budget, on SmolLM2-135M unless
--model says otherwise; the figures and the two recommendations are printed and written to JSON.

Run: .venv/bin/python benchmarks/advise_corpora.py [--budget 9] [--out benchmarks/results/advise_corpora.json]
(about 16 minutes on 2 cores at --budget 9)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from typer.testing import CliRunner

from expertkit.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "advise"
runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    if result.exit_code != 0:
        raise SystemExit(f"expertkit {' '.join(args)} failed: {result.output}")
    return result.output


def price_list(root: Path) -> Path:
    """Two syncs: the second brings next week's prices and delivery terms (every source changes)."""
    ws, docs = root / "rag-wins", root / "rag-docs"
    shutil.copytree(EXAMPLES / "rag-wins" / "docs", docs)
    invoke("init", str(ws))
    shutil.copy(EXAMPLES / "rag-wins" / "expertkit.toml", ws / "expertkit.toml")
    invoke("ingest", str(docs), "-w", str(ws))
    for changed in (EXAMPLES / "rag-wins" / "next-sync").iterdir():
        shutil.copy(changed, docs / changed.name)
    invoke("ingest", str(docs), "-w", str(ws))
    return ws


def handbook(root: Path) -> Path:
    """Three syncs, nothing changed."""
    ws = root / "fine-tuning-wins"
    invoke("init", str(ws))
    shutil.copy(EXAMPLES / "fine-tuning-wins" / "expertkit.toml", ws / "expertkit.toml")
    for _ in range(3):
        invoke("ingest", str(EXAMPLES / "fine-tuning-wins" / "docs"), "-w", str(ws))
    return ws


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=9.0, help="minutes per corpus")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["EXPERTKIT_GENERATE__MODEL"] = args.model
    expected = {"rag-wins": "rag", "fine-tuning-wins": "fine-tuning"}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in (("rag-wins", price_list), ("fine-tuning-wins", handbook)):
            ws = build(Path(tmp))
            out = invoke("advise", "--measure", "--budget", str(args.budget), "-w", str(ws), "--json",
                         "--set", "advise.model_questions=0")  # fmt: skip
            advice = json.loads(out.strip().splitlines()[-1])
            r = advice["routes"]
            results[name] = {
                "recommendation": advice["recommendation"],
                "expected": expected[name],
                "accuracy": {k: v["accuracy"] for k, v in r.items()},
                "n": {k: v["n"] for k, v in r.items()},
                "not_found": {k: v["not_found"] for k, v in r.items()},
                "stale_share": {k: v["stale_share"] for k, v in r.items()},
                "changed_per_sync": advice["profile"]["changed_per_sync"],
                "seconds": round(advice["seconds"]),
                "reasons": advice["reasons"],
            }
    print(f"{'corpus':<18} {'base':>6} {'rag':>6} {'ft':>6} {'rag+ft':>7}  advice (expected)      time")
    for name, res in results.items():
        acc = res["accuracy"]
        print(f"{name:<18} {acc['base']:6.0%} {acc['rag']:6.0%} {acc['fine_tuned']:6.0%} {acc['rag_fine_tuned']:7.0%}"
              f"  {res['recommendation']:<12} ({res['expected']})  {res['seconds']} s")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps({"budget_minutes": args.budget, "model": args.model, **results}, indent=2))


if __name__ == "__main__":
    main()
