"""Answer quality of each shipped model through the whole RAG pipeline (retrieve → prompt → llama.cpp →
citation repair), on sets nobody tuned on (--sets, default all three):

- planted: benchmarks/data/planted (an invented cold-chain company, 8 formats, paraphrased questions,
  near-domain and off-domain unanswerable ones).
- heldout: benchmarks/data/heldout (an invented bakery-equipment maker, same layout; 34 answerable,
  27 near-domain unanswerable questions that name something the documents almost contain, 5 off-domain).
- emanual: ../shared/data/emanual-tv, the last --emanual questions. Gold answers are free text, so the
  figure is token F1 and ROUGE-L against them, plus citation figures.

Correct (planted, heldout) = the answer is not "not found" and states one of the key values, after numbers,
units, dates and times are brought to one spelling on both sides (expertkit.evaluate.answers.contains_key:
"six years" = "6 years", "1.400,00" = "1400", "3 March 2025" = "2025-03-03", "−27" = "-27").

Reported per model and set: accuracy by key value (and correct AND cited), the share of answerable questions
refused ("not found"), not-found precision and recall over all unanswerable questions and separately for near
and far (off-domain) ones, share of answers cited, share of citations whose passage supports the sentence
(numbers included, an independent strict check: every number of the sentence is in the passage and half its
content words are), invalid citations, extractive fallbacks, seconds per answer and time to first token
(medians). Near (far) precision = near (far) questions answered "not found" / all "not found" answers to
answerable and near (far) questions: the precision a user would see if every unanswerable question were near
(far); recall = near (far) questions answered "not found" / near (far) questions.

Results are merged into --out/answer_quality.json by model and set: a run replaces only the entries it made.

Run: .venv/bin/python benchmarks/answer_quality.py [--models a,b] [--sets planted,heldout,emanual]
     [--emanual 30] [--out benchmarks/results]
     .venv/bin/python benchmarks/answer_quality.py --summarise   (re-scores the saved answers and prints them)
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from expertkit.answer import numbers_in, split_sentences, strip_citations
from expertkit.config import GenerateSettings, SearchSettings
from expertkit.evaluate.answers import matches_any_key, rouge_l, token_f1
from expertkit.index.sqlite import SQLiteIndex
from expertkit.ingest.sync import Ingestor
from expertkit.models.embedder import Embedder
from expertkit.models.generator import make_generator
from expertkit.rag import RAG
from expertkit.retrieve import Retriever
from expertkit.workspace import embedder_for

HERE = Path(__file__).resolve().parent
KEYED_SETS = {
    "planted": HERE / "data" / "planted",
    "heldout": HERE / "data" / "heldout",
    "planted-el": HERE / "data" / "planted-el",  # Greek (issue 23), held out
    "dev-el": HERE / "data" / "dev-el",  # Greek, examples/corpus-el: the set Greek settings are tuned on
}
EMANUAL = HERE.parent.parent / "shared" / "data" / "emanual-tv"
SCORER = "contains_key: key values matched after numbers, units, dates and times are normalised"
MODELS = ["qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct", "smollm2-135m-instruct"]


def norm(text: str) -> str:
    text = text.replace("−", "-").replace("–", "-")
    return re.sub(r"(?<=\d),(?=\d{3})", "", text).lower()


def correct(answer: str, keys: list[str]) -> bool:
    return matches_any_key(answer, keys)


def strict_support(sentence: str, passage: str) -> bool:
    """Independent of the pipeline's own scorer: numbers must match, and half the content words."""
    words = {w for w in re.findall(r"[a-z0-9]+", norm(sentence)) if len(w) > 3 or w.isdigit()}
    p_words = set(re.findall(r"[a-z0-9]+", norm(passage)))
    lexical = len(words & p_words) / max(len(words), 1)
    return numbers_in(sentence) <= numbers_in(passage) and lexical >= 0.5


def citation_support(answer) -> tuple[int, int, int]:
    """(supported, total, out of range) over (sentence, cited passage) pairs of a verified answer. A printed [n]
    that names no passage of the prompt counts as an unsupported citation, and as out of range."""
    supported = total = out_of_range = 0
    for sentence in split_sentences(answer.answer):
        # a citation stands apart: 'codes[3]' in a quoted JSON record is a path, not a citation
        numbers = [int(n) for n in re.findall(r"(?<!\w)\[(\d+)\]", sentence)]
        for n in numbers:
            total += 1
            if not 1 <= n <= len(answer.retrieved):
                out_of_range += 1
                continue
            passage = answer.retrieved[n - 1].chunk.embed_text()
            supported += strict_support(strip_citations(sentence).strip("“”\"' "), passage)
    return supported, total, out_of_range


def build_index(folder: Path, embedder: Embedder, beir: bool = False) -> SQLiteIndex:
    index = SQLiteIndex(Path(tempfile.mkdtemp()) / "index.db")
    Ingestor(index, embedder).sync([folder / "corpus.jsonl"] if beir else [folder / "corpus"])
    return index


def run_set(rag: RAG, questions: list[dict], kind: str) -> dict:
    rows = []
    for q in questions:
        t0 = time.perf_counter()
        a = rag.ask(q["question"])
        seconds = time.perf_counter() - t0
        sup, tot, out_of_range = citation_support(a)
        row = {
            "id": q["id"],
            "answerable": q.get("answerable", True),
            "found": a.found,
            "cited": bool(a.citations),
            "cited_by_model": any(not c.attributed for c in a.citations),
            "extractive": a.extractive,
            "supported": sup,
            "citations": tot,
            "invalid": len(a.invalid_citations),
            "printed_out_of_range": out_of_range,
            "seconds": seconds,
            "first_token_s": a.timings.get("first_token_ms", 0) / 1e3 if "first_token_ms" in a.timings else None,
            "answer": a.answer,
            "reason": a.reason or None,  # why not found: no_relevant_passage | missing_term | not_stated
            "explanation": a.explanation or None,
            "terms_ms": a.timings.get("terms_ms"),  # the key-term check, where the question has key terms
        }
        if kind in KEYED_SETS:
            row["kind"] = q["kind"]
            row["format"] = q.get("format")
            row["trap"] = q.get("trap")
            row["correct"] = q["answerable"] and a.found and correct(a.answer, q["keys"])
        else:
            row["f1"] = token_f1(strip_citations(a.answer), q["gold"])
            row["rouge_l"] = rouge_l(strip_citations(a.answer), q["gold"])
        rows.append(row)
    return summarise(rows, kind)


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def not_found_figures(rows: list[dict], unanswerable: list[dict]) -> tuple[float | None, float | None]:
    """(precision, recall) of "not found" over the answerable rows and the given unanswerable ones."""
    answerable = [r for r in rows if r["answerable"]]
    right = sum(not r["found"] for r in unanswerable)
    wrong = sum(not r["found"] for r in answerable)
    return _share(right, right + wrong), _share(right, len(unanswerable))


def summarise(rows: list[dict], kind: str) -> dict:
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    found = [r for r in rows if r["found"]]
    ttft = [r["first_token_s"] for r in rows if r["first_token_s"] is not None]
    out = {
        "questions": len(rows),
        "answered_share": len(found) / max(len(rows), 1),
        "cited_share": sum(r["cited"] for r in found) / max(len(found), 1),
        "cited_by_model_share": sum(r["cited_by_model"] for r in found) / max(len(found), 1),
        "citation_support": sum(r["supported"] for r in rows) / max(sum(r["citations"] for r in rows), 1),
        "invalid_citations": sum(r["invalid"] for r in rows),  # numbers the pipeline removed: not passages
        "printed_out_of_range_citations": sum(r.get("printed_out_of_range", 0) for r in rows),  # ones it left in
        "extractive_share": sum(r["extractive"] for r in found) / max(len(found), 1),
        "seconds_median": statistics.median(r["seconds"] for r in rows),
        "first_token_median_s": statistics.median(ttft) if ttft else None,
    }
    checked = [r["terms_ms"] for r in rows if r.get("terms_ms") is not None]
    if checked:  # what the key-term check added, on the questions that have key terms
        out["terms_ms_median"], out["terms_ms_max"] = statistics.median(checked), max(checked)
    reasons: dict[str, int] = {}
    for r in rows:
        if r.get("reason"):
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    if reasons:
        out["not_found_reasons"] = dict(sorted(reasons.items()))
    if kind in KEYED_SETS:
        near = [r for r in unanswerable if r["kind"] == "near_miss"]
        far = [r for r in unanswerable if r["kind"] != "near_miss"]
        out["answerable"], out["near"], out["far"] = len(answerable), len(near), len(far)
        out["accuracy"] = sum(r["correct"] for r in answerable) / len(answerable)
        out["correct_and_cited"] = sum(r["correct"] and r["cited"] for r in answerable) / len(answerable)
        out["refused_answerable_share"] = sum(not r["found"] for r in answerable) / len(answerable)
        out["not_found_precision"], out["not_found_recall"] = not_found_figures(rows, unanswerable)
        out["near_not_found_precision"], out["near_not_found_recall"] = not_found_figures(rows, near)
        out["far_not_found_precision"], out["far_not_found_recall"] = not_found_figures(rows, far)
        by_format: dict[str, list[int]] = {}
        for r in answerable:
            tally = by_format.setdefault(r.get("format") or "?", [0, 0])
            tally[0] += bool(r["correct"])
            tally[1] += 1
        out["correct_by_format"] = {f: f"{c}/{n}" for f, (c, n) in sorted(by_format.items())}
        traps: dict[str, list[int]] = {}
        for r in near:
            tally = traps.setdefault(r.get("trap") or "?", [0, 0])
            tally[0] += not r["found"]
            tally[1] += 1
        if any(r.get("trap") for r in near):  # the heldout set labels what each near question almost matches
            out["near_not_found_by_trap"] = {t: f"{c}/{n}" for t, (c, n) in sorted(traps.items())}
    else:
        out["token_f1"] = statistics.mean(r["f1"] for r in rows)
        out["rouge_l"] = statistics.mean(r["rouge_l"] for r in rows)
    out["rows"] = rows
    return out


def load_questions(name: str) -> list[dict]:
    path = KEYED_SETS[name] / "questions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rescore(rows: list[dict], name: str) -> list[dict]:
    """Saved rows scored again with today's scorer and question metadata (rows of older runs lack kind and format)."""
    if name not in KEYED_SETS:
        return rows
    questions = {q["id"]: q for q in load_questions(name)}
    out = []
    for row in rows:
        q = questions[row["id"]]
        out.append(
            {
                **row,
                "kind": q["kind"],
                "format": q.get("format"),
                "trap": q.get("trap"),
                "correct": q["answerable"] and row["found"] and correct(row["answer"], q["keys"]),
            }
        )
    return out


def rounded(res: dict) -> dict:
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items() if k != "rows"}


def code_version() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], capture_output=True, text=True, cwd=HERE)
    except OSError:
        return "unknown"
    return head.stdout.strip() + (" + uncommitted changes in src/" if dirty.stdout.strip() else "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--sets", default="planted,heldout,emanual", help="comma-separated: planted, heldout, emanual")
    ap.add_argument("--emanual", type=int, default=30, help="E-Manual questions (0 = skip)")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument(
        "--only", default="", help="question ids to run (comma-separated); their rows replace those of the saved run"
    )
    ap.add_argument("--version", default="", help="what code is measured (default: git HEAD and whether src/ differs)")
    ap.add_argument("--summarise", action="store_true", help="re-score --out's answer_quality.json and print it")
    ap.add_argument(
        "--rescore", action="store_true", help="re-score the saved answers of keyed sets with today's scorer and keys"
    )
    ap.add_argument(
        "--embedder", default="", help="embed with this model instead of the default; results are kept as SET+MODEL"
    )
    args = ap.parse_args()
    result_file = args.out / "answer_quality.json"
    if args.rescore:
        saved = json.loads(result_file.read_text())
        for sets in saved.values():
            for name, res in sets.items():
                if name.split("+")[0] in KEYED_SETS:  # SET+EMBEDDER: a run with another embedder
                    meta = {k: v for k, v in res.items() if k in ("measured", "code", "rerun_ids")}
                    meta["scorer"] = SCORER
                    meta["rescored"] = datetime.date.today().isoformat()
                    base = name.split("+")[0]
                    sets[name] = {**meta, **summarise(rescore(res["rows"], base), base)}
        result_file.write_text(json.dumps(saved, indent=1, ensure_ascii=False))
        print(f"re-scored {result_file}")
    if args.summarise or args.rescore:
        saved = json.loads(result_file.read_text())
        for model, sets in saved.items():
            for name, res in sets.items():
                base = name.split("+")[0]
                shown = {"code": res.get("code", "?"), **rounded(summarise(rescore(res["rows"], base), base))}
                print(model, name, json.dumps(shown))
        return
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = set(names) - {*KEYED_SETS, "emanual"}
    if unknown:
        ap.error(f"unknown set(s): {', '.join(sorted(unknown))}")
    # the default is what `ingest` picks (embed.model = auto): by the language of the set's documents
    embedders: dict[str, Embedder] = {}

    def embedder_of(corpus: Path) -> Embedder:
        name = args.embedder or embedder_for([corpus])
        return embedders.setdefault(name, Embedder(name))

    suffix = f"+{args.embedder}" if args.embedder else ""
    sets = {}
    for name in names:
        if name in KEYED_SETS:
            questions = load_questions(name)
            if args.only:
                questions = [q for q in questions if q["id"] in args.only.split(",")]
            embedder = embedder_of(KEYED_SETS[name] / "corpus")
            sets[name] = (build_index(KEYED_SETS[name], embedder), questions, embedder)
        elif args.emanual and (EMANUAL / "queries.jsonl").exists():
            gold = {
                (r := json.loads(line))["_id"]: r["answer"]
                for line in (EMANUAL / "answers.jsonl").read_text().splitlines()
            }
            queries = [json.loads(line) for line in (EMANUAL / "queries.jsonl").read_text().splitlines()]
            # the last questions: earlier benchmarks (routes_emanual.py) train on the first ones
            chosen = [q for q in queries if q["_id"] in gold][-args.emanual :]
            qs = [{"id": q["_id"], "question": q["text"], "gold": gold[q["_id"]]} for q in chosen]
            embedder = embedder_of(EMANUAL / "corpus.jsonl")
            sets["emanual"] = (build_index(EMANUAL, embedder, beir=True), qs, embedder)
    # earlier runs' entries (other models, other sets) are kept; this run replaces only what it measures
    results: dict = json.loads(result_file.read_text()) if result_file.exists() else {}
    version = args.version or code_version()
    for model in args.models.split(","):
        generator = make_generator(GenerateSettings(model=model))
        try:
            for name, (index, questions, embedder) in sets.items():
                rag = RAG(Retriever(index, embedder, SearchSettings()), generator, k=args.k)
                res = run_set(rag, questions, name)
                res = {
                    "measured": datetime.date.today().isoformat(),
                    "code": version,
                    "embedder": embedder.name,
                    "scorer": SCORER if name in KEYED_SETS else "token F1, ROUGE-L",
                    **res,
                }
                name_kept = name + suffix  # a run with another embedder is kept beside the default's
                saved = results.get(model, {}).get(name_kept)
                if args.only and saved:  # the listed questions' rows replace theirs in the saved run
                    fresh = {r["id"]: r for r in res["rows"]}
                    rows = [fresh.get(r["id"], r) for r in saved["rows"]]
                    meta = {k: v for k, v in saved.items() if k in ("measured", "code", "scorer", "rescored")}
                    rerun = sorted({*saved.get("rerun_ids", []), *fresh})
                    res = {**meta, "rerun_ids": rerun, **summarise(rescore(rows, name), name)}
                print(model, name_kept, json.dumps(rounded(res)), flush=True)
                if args.only and not saved:
                    continue  # a partial run is not a result
                results.setdefault(model, {})[name_kept] = res
                args.out.mkdir(parents=True, exist_ok=True)  # written as it goes: a long run keeps what it did
                result_file.write_text(json.dumps(results, indent=1, ensure_ascii=False))
        finally:
            generator.close()
    print(f"wrote {result_file}")


if __name__ == "__main__":
    main()
