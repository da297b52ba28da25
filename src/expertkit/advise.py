"""`expertkit advise`: which route suits this business's data: RAG, fine-tuning, or both.

The quick path reads the workspace: corpus size and the share of structured records, how often the
sources change (the index keeps every sync's counts), how far the domain's language is from what the
base model knows (its perplexity on a sample of chunks against a generic reference text), and the
``advise`` settings (traceable answers, an automated workflow). Each figure is tied to a row of the
criteria table below, and the rows vote.

The measured path (``--measure``) builds a question set from the documents with ``synth``, held out by
fact and by paraphrase, trains a QA adapter and a RAFT adapter within the budget, and runs base, RAG,
fine-tuned and RAG + fine-tuned side by side on the held-out questions and on unanswerable ones.
The recommendation then follows the measured accuracy, with traceability and change rate as limits.
"""

from __future__ import annotations

import json
import math
import random
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from expertkit.errors import ExpertkitError
from expertkit.language import language_of
from expertkit.private import private_dir

RAG, FT, BOTH = "rag", "fine-tuning", "rag+fine-tuning"
ROUTES = ("base", "rag", "fine_tuned", "rag_fine_tuned")
ROUTE_NAMES = {"base": "base", "rag": "RAG", "fine_tuned": "fine-tuned", "rag_fine_tuned": "RAG + fine-tuned"}

# the criteria we start from: row → (situation, route it favours)
CRITERIA: dict[str, tuple[str, str]] = {
    "changing": ("the answer needs facts from outside the model, or data that changes often", RAG),
    "stable": ("stable, precise knowledge; the domain's own vocabulary and phrasing", FT),
    "small": ("small or narrow training data", RAG),
    "traceable": ("answers must be traceable, so that hallucinations can be found and fixed", RAG),
    "many_facts": ("QA that combines many separate pieces of knowledge", RAG),
    "vertical": ("a vertical industry with specialised terms", FT),
    "workflow": ("an automated business workflow", BOTH),
}

# thresholds, named so that the report can say what would change the advice
CHANGING_PER_SYNC = 0.05  # share of sources added, changed or removed per re-sync
SMALL_WORDS = 20_000  # a corpus under this gives fine-tuning little to learn from
MANY_FACTS = 150  # separate facts (rows, fields, stated values)
STRUCTURED_SHARE = 0.5  # share of chunks that are records (rows of tables, CSV, JSON)
VERTICAL_RATIO = 2.0  # the base model's perplexity on the corpus ÷ on generic text
AS_GOOD = 0.05  # a route within this accuracy of the best counts as good as the best
# generic text per language, the same twelve paragraphs (everyday topics) written in each; another language
# is measured against the English one
REFERENCES = {
    "en": Path(__file__).parent / "advise_reference.txt",
    "el": Path(__file__).parent / "advise_reference_el.txt",
}


@dataclass
class Vote:
    row: str  # a key of CRITERIA
    route: str
    figure: str  # the measured figure behind it

    def reason(self) -> str:
        situation, _ = CRITERIA[self.row]
        return f"{self.figure} → “{situation}” favours {self.route}"


@dataclass
class Profile:
    documents: int
    chunks: int
    words: int
    structured_share: float
    facts: int
    syncs: int
    changed_per_sync: float | None  # mean share of sources changed per re-sync; None with one sync
    days_observed: float
    history: list[dict] = field(default_factory=list)
    perplexity: float | None = None  # base model on a sample of chunks
    perplexity_reference: float | None = None  # the same model on generic text
    base: str = ""
    traceable: bool = True
    workflow: bool = False

    @property
    def perplexity_ratio(self) -> float | None:
        if self.perplexity is None or not self.perplexity_reference:
            return None
        return self.perplexity / self.perplexity_reference

    def to_json(self) -> dict:
        out = asdict(self)
        out["perplexity_ratio"] = None if self.perplexity_ratio is None else round(self.perplexity_ratio, 3)
        for key in ("structured_share", "changed_per_sync", "perplexity", "perplexity_reference", "days_observed"):
            if isinstance(out[key], float):
                out[key] = round(out[key], 4)
        return out


# --- 1. the quick path ------------------------------------------------------------------------------------


def change_rate(history) -> tuple[float | None, float]:
    """Mean share of sources added, changed or removed per re-sync (the first sync adds everything, so it
    does not count; syncs that changed nothing do), and the days the history covers."""
    later = history[1:]
    days = (history[-1].at - history[0].at) / 86400 if len(history) > 1 else 0.0
    if not later:
        return None, days
    shares = [h.changed / max(h.sources, 1) for h in later]
    return sum(shares) / len(shares), days


def perplexity(model, tokenizer, texts: list[str], max_tokens: int = 256) -> float:
    """exp(mean negative log-likelihood per token) over ``texts``, each cut to ``max_tokens``."""
    import torch

    total_nll, total_tokens = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_tokens).input_ids
            if ids.shape[1] < 2:
                continue
            loss = model(input_ids=ids, labels=ids).loss
            total_nll += float(loss) * (ids.shape[1] - 1)
            total_tokens += ids.shape[1] - 1
    if not total_tokens:
        raise ExpertkitError("no text long enough to measure perplexity on")
    return math.exp(total_nll / total_tokens)


def reference_texts(language: str = "en") -> list[str]:
    text = REFERENCES.get(language, REFERENCES["en"]).read_text(encoding="utf-8")
    return [p.strip() for p in text.split("\n\n") if p.strip()]


def corpus_language(texts: list[str]) -> str:
    """The language most of ``texts`` are in (language.language_of: "el" or "en")."""
    votes = [language_of(t) for t in texts]
    return max(set(votes), key=votes.count) if votes else "en"


def domain_perplexity(base: str, chunks: list[str], sample: int = 24, seed: int = 0) -> tuple[float, float]:
    """The base model's perplexity on a stable sample of the corpus's chunks, and on generic text in the
    sample's language: a model reads Greek at a higher perplexity than English whatever the domain, so a Greek
    corpus against English text would look "vertical" for its language alone."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from expertkit.models.generator import local_model_path

    transformers.utils.logging.disable_progress_bar()
    path = local_model_path(base)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    rng = random.Random(seed)
    picked = rng.sample(chunks, min(sample, len(chunks)))
    reference = reference_texts(corpus_language(picked))
    return perplexity(model, tokenizer, picked), perplexity(model, tokenizer, reference)


def profile_workspace(index, settings, base: str, measure_language: bool = True) -> Profile:
    """What the quick path reads: size, structure, facts, change history, language distance, settings."""
    from expertkit.tune.synth import all_chunks, extract_facts

    chunks, titles, _ = all_chunks(index)  # refuses an empty index
    history = index.sync_history()
    per_sync, days = change_rate(history)
    texts = [c.text for c in chunks]
    profile = Profile(
        documents=len(titles),
        chunks=len(chunks),
        words=sum(len(t.split()) for t in texts),
        structured_share=sum(c.record_id is not None for c in chunks) / len(chunks),
        facts=len(extract_facts(chunks, titles)),
        syncs=len(history),
        changed_per_sync=per_sync,
        days_observed=days,
        history=[asdict(h) | {"changed": h.changed} for h in history],
        base=base,
        traceable=settings.advise.traceable,
        workflow=settings.advise.workflow,
    )
    if measure_language:
        profile.perplexity, profile.perplexity_reference = domain_perplexity(base, texts)
    return profile


def votes(profile: Profile) -> list[Vote]:
    """Each criterion the workspace's figures meet, with the figure."""
    out = []
    if profile.changed_per_sync is None:
        pass  # one sync: how often the sources change is not known yet (said in the report)
    elif profile.changed_per_sync >= CHANGING_PER_SYNC:
        out.append(Vote("changing", RAG, f"{profile.changed_per_sync:.0%} of sources changed per sync "
                                         f"over {profile.syncs - 1} re-syncs"))  # fmt: skip
    elif profile.syncs >= 3:
        out.append(Vote("stable", FT, f"{profile.changed_per_sync:.0%} of sources changed per sync "
                                      f"over {profile.syncs - 1} re-syncs"))  # fmt: skip
    if profile.words < SMALL_WORDS:
        out.append(Vote("small", RAG, f"the corpus has {profile.words:,} words (under {SMALL_WORDS:,})"))
    if profile.traceable:
        out.append(Vote("traceable", RAG, "advise.traceable = true (only RAG cites the passage behind an answer)"))
    if profile.facts >= MANY_FACTS or profile.structured_share >= STRUCTURED_SHARE:
        out.append(
            Vote("many_facts", RAG, f"{profile.facts} separate facts, {profile.structured_share:.0%} of chunks records")
        )
    ratio = profile.perplexity_ratio
    if ratio is not None and ratio >= VERTICAL_RATIO:
        out.append(Vote("vertical", FT, f"the base model's perplexity is {ratio:.1f}× higher on these documents "
                                        "than on generic text"))  # fmt: skip
    if profile.workflow:
        out.append(Vote("workflow", BOTH, "advise.workflow = true (answers feed an automated workflow)"))
    return out


def decide(ballot: list[Vote], traceable: bool) -> str:
    """The route the rows favour: the workflow row asks for both; otherwise the majority, both on a tie;
    traceability keeps retrieval in whatever is chosen."""
    if any(v.route == BOTH for v in ballot):
        return BOTH
    rag = sum(v.route == RAG for v in ballot)
    ft = sum(v.route == FT for v in ballot)
    if ft > rag:
        return BOTH if traceable else FT
    if rag > ft:
        return RAG
    return BOTH if ft else RAG


# --- 2. the measured path ---------------------------------------------------------------------------------


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a proportion (95% by default); sound at small n and at 0 or 1."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _compact(text: str) -> str:
    text = text.lower().replace("−", "-").replace("–", "-").replace(",", "")
    return re.sub(r"[^0-9a-z]+", "", text)


def contains_value(answer: str, value: str) -> bool:
    """Does the answer state ``value``? Spacing, punctuation, case and thousands separators aside, and not
    as part of a longer number (68 is not in 168)."""
    v = _compact(value)
    if not v:
        return False
    a = _compact(answer)
    return re.search(r"(?<![0-9])" + re.escape(v) + (r"(?![0-9])" if v[-1].isdigit() else ""), a) is not None


def is_correct(answer: str, question: str, expect: list[str]) -> bool:
    """Yes/no questions: the answer starts with the right word. Others: the answer states an expected value
    that the question did not already contain."""
    if expect in (["yes"], ["no"]):
        first = re.findall(r"[a-z]+", answer.lower())[:1]
        return first == expect
    wanted = [e for e in expect if e and not contains_value(question, e)] or [e for e in expect if e]
    return any(contains_value(answer, e) for e in wanted)


_CODE = re.compile(r"\b[A-Z]{1,5}-?\d{2,6}[A-Z]?\b")
_NAME = re.compile(r"(?<=[a-z,] )[A-Z][a-z]{3,}\b")  # a capitalised word inside a sentence: a name
_SOURCE_LEAD = re.compile(r"^(?:According to (?:the )?[^,?]+,\s*|[^:?]{0,80}:\s*)")
_INVENTED = ("Quorlby", "Vaskelund", "Threnmoor", "Ostravel", "Kindrith", "Pellowan", "Marrask", "Elvedon")


def unanswerable_questions(heldout: list[dict], n: int, seed: int = 0) -> list[dict]:
    """Questions shaped like the held-out ones but about a product, part, place or person the documents never
    name: the right answer is "not found". A code in the question gets other digits (NP-4472 → NP-9031);
    without a code, a name is swapped for an invented one."""
    rng = random.Random(seed)
    text = " ".join(row["meta"]["question"] + " " + " ".join(row["meta"].get("expect", [])) for row in heldout)
    known_codes, known_words = set(_CODE.findall(text)), set(re.findall(r"\w+", text.lower()))
    out, seen = [], set()
    for row in sorted(heldout, key=lambda r: r["meta"]["question"]):
        q = row["meta"]["question"]
        if row["meta"].get("expect") in (["yes"], ["no"]):
            continue
        question = None
        lead = _SOURCE_LEAD.match(q)  # "According to the NV-400 Service Manual, …" names the source, not the subject
        at = lead.end() if lead else 0
        if m := _CODE.search(q, at):
            code = m.group(0)
            for _ in range(20):
                fake = re.sub(r"\d", lambda _: str(rng.randrange(10)), code)
                if fake not in known_codes:
                    question = q[: m.start()] + fake + q[m.end() :]
                    break
        elif m := _NAME.search(q, at):
            invented = [w for w in _INVENTED if w.lower() not in known_words]
            if invented:
                question = q[: m.start()] + rng.choice(invented) + q[m.end() :]
        if question and question not in seen:
            seen.add(question)
            out.append({"question": question, "unanswerable": True})
    rng.shuffle(out)
    return out[:n]


@dataclass
class RouteResult:
    route: str
    n: int = 0
    correct: int = 0
    unseen_n: int = 0  # questions about facts held out of training whole
    unseen_correct: int = 0
    not_found_asked: int = 0  # unanswerable questions asked
    not_found_right: int = 0  # ... answered "not found"
    citations_printed: int = 0
    citations_invalid: int = 0
    groundedness: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    train_seconds: float | None = None
    train_steps: int | None = None
    planned_steps: int | None = None
    peak_rss_mb: float | None = None
    stale_share: float | None = None
    items: list[dict] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    def to_json(self) -> dict:
        lo, hi = wilson(self.correct, self.n)
        printed = self.citations_printed + self.citations_invalid
        r4 = lambda v: None if v is None else round(v, 4)  # noqa: E731
        return {
            "accuracy": round(self.accuracy, 4),
            "ci95": [round(lo, 4), round(hi, 4)],
            "n": self.n,
            "correct": self.correct,
            "latency_s": round(statistics.median(self.latencies), 3) if self.latencies else None,
            "unseen_facts": r4(self.unseen_correct / self.unseen_n if self.unseen_n else None),
            "unseen_n": self.unseen_n,
            "not_found": r4(self.not_found_right / self.not_found_asked if self.not_found_asked else None),
            "unanswerable": self.not_found_asked,
            "citation_validity": r4(self.citations_printed / printed if printed else None),
            "groundedness": r4(statistics.mean(self.groundedness) if self.groundedness else None),
            "train_seconds": r4(self.train_seconds),
            "train_steps": self.train_steps,
            "planned_steps": self.planned_steps,
            "peak_rss_mb": None if self.peak_rss_mb is None else round(self.peak_rss_mb),
            "stale_share": r4(self.stale_share),
        }


def run_route(rag, route: str, questions: list[dict], use_rag: bool, on_item: Callable[[], None] | None = None):
    """Ask every question through one route and score it; as many at once as the runtime has slots."""
    from concurrent.futures import ThreadPoolExecutor

    def ask(row: dict):
        started = time.perf_counter()
        answer = rag.ask(row["question"], rag=use_rag)
        return answer, time.perf_counter() - started

    result = RouteResult(route)
    workers = max(1, int(getattr(rag.generator, "parallel", 1) or 1))
    with ThreadPoolExecutor(workers) as pool:
        for row, (answer, seconds) in zip(questions, pool.map(ask, questions), strict=True):
            result.latencies.append(seconds)
            text = answer.answer
            if row.get("unanswerable"):
                right = not answer.found
                result.not_found_asked += 1
                result.not_found_right += right
            else:
                right = is_correct(text, row["question"], row["expect"])
                if row.get("split") == "fact":
                    result.unseen_n += 1
                    result.unseen_correct += right
                else:
                    result.n += 1
                    result.correct += right
            if use_rag:
                result.citations_printed += len(answer.citations)
                result.citations_invalid += len(answer.invalid_citations)
                if answer.found and answer.groundedness is not None:
                    result.groundedness.append(answer.groundedness)
            result.items.append({"question": row["question"], "expect": row.get("expect"), "answer": text[:300],
                                 "right": bool(right), "split": row.get("split") or "unanswerable",
                                 "seconds": round(seconds, 2)})  # fmt: skip
            if on_item:
                on_item()
    return result


def recommend_measured(results: dict[str, RouteResult], profile: Profile) -> tuple[str, list[str], list[str]]:
    """(recommendation, reasons, what would change it) from the measured accuracies and the limits."""
    acc = {k: r.accuracy for k, r in results.items()}
    pct = lambda k: f"{acc[k]:.0%} ({results[k].correct}/{results[k].n})"  # noqa: E731
    reasons = ["held-out accuracy: " + ", ".join(f"{ROUTE_NAMES[k]} {pct(k)}" for k in ROUTES if k in acc)]
    candidates = {"rag": RAG, "fine_tuned": FT, "rag_fine_tuned": BOTH}
    changing = profile.changed_per_sync is not None and profile.changed_per_sync >= CHANGING_PER_SYNC
    if profile.traceable:
        candidates.pop("fine_tuned")
        reasons.append(f"{CRITERIA['traceable'][0]} (advise.traceable = true): only routes with retrieval qualify")
    if changing and "fine_tuned" in candidates:
        candidates.pop("fine_tuned")
        reasons.append(f"{profile.changed_per_sync:.0%} of sources change per sync: a fine-tuned model alone goes "
                       "stale between trainings")  # fmt: skip
    best = max(candidates, key=lambda k: acc[k])
    # the simplest route that is as good as the best: no training beats training, one route beats two; when
    # the sources change, an adapter must be retrained at every change, so training has to win by more
    margin = 2 * AS_GOOD if changing else AS_GOOD
    simplest = ("rag", "fine_tuned", "rag_fine_tuned")
    chosen = next(k for k in simplest if k in candidates and acc[k] >= acc[best] - margin)
    if changing and "rag" in candidates:
        reasons.append(f"{profile.changed_per_sync:.0%} of sources change per sync: an adapter is retrained at every "
                       f"change, so a route with one must answer {margin:.0%} more than RAG")  # fmt: skip
    route = candidates[chosen]
    if chosen != best:
        reasons.append(f"{ROUTE_NAMES[chosen]} is within {margin:.0%} of the best ({ROUTE_NAMES[best]}) "
                       "and simpler to run")  # fmt: skip
    else:
        others = [k for k in candidates if k != chosen]
        if others:
            runner = max(others, key=lambda k: acc[k])
            reasons.append(f"{ROUTE_NAMES[chosen]} answers {100 * (acc[chosen] - acc[runner]):.0f} points more "
                           f"than {ROUTE_NAMES[runner]}, the next route allowed")  # fmt: skip
    if route != FT and results["rag"].not_found_asked:
        nf = results[chosen].not_found_right / results[chosen].not_found_asked
        reasons.append(f"{ROUTE_NAMES[chosen]} says “not found” on {nf:.0%} of questions the documents cannot answer")
    changes = []
    if chosen == "rag":
        top = max((k for k in ("fine_tuned", "rag_fine_tuned")), key=lambda k: acc[k])
        changes.append(f"{ROUTE_NAMES[top]} would be recommended if it answered more than {margin:.0%} more "
                       f"held-out questions than RAG (now {acc[top]:.0%} against {acc['rag']:.0%})")  # fmt: skip
    if chosen == "rag_fine_tuned":
        changes.append(f"RAG alone would be recommended if it came within {margin:.0%} of RAG + fine-tuned "
                       f"(now {acc['rag']:.0%} against {acc['rag_fine_tuned']:.0%}), saving the training")  # fmt: skip
    if chosen == "fine_tuned":
        changes.append("RAG would be recommended if answers had to be traceable (advise.traceable = true)")
        changes.append(f"… or if more than {CHANGING_PER_SYNC:.0%} of sources changed per sync")
    if profile.traceable and acc["fine_tuned"] > max(acc[k] for k in candidates) + AS_GOOD:
        changes.append(f"fine-tuning alone answers more ({acc['fine_tuned']:.0%}) and would be recommended if "
                       "answers did not have to be traceable (advise.traceable = false)")  # fmt: skip
    if not changing and chosen != "fine_tuned" and profile.changed_per_sync is None:
        changes.append("how often the sources change is not measured yet (one sync): frequent changes favour RAG")
    return route, reasons, changes


# --- 3. the advice and its report ------------------------------------------------------------------------


@dataclass
class Advice:
    recommendation: str
    reasons: list[str]
    profile: Profile
    mode: str  # quick | measured
    routes: dict[str, RouteResult] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    losses: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    method: list[str] = field(default_factory=list)  # how the measurement was made
    report: Path | None = None
    seconds: float = 0.0

    def to_json(self) -> dict:
        routes = {
            k: (self.routes[k].to_json() if k in self.routes else {"accuracy": None, "n": 0, "latency_s": None})
            for k in ROUTES
        }
        return {
            "recommendation": self.recommendation,
            "reasons": self.reasons,
            "routes": routes,
            "report": str(self.report) if self.report else None,
            "mode": self.mode,
            "what_would_change": self.changes,
            "profile": self.profile.to_json(),
            "method": self.method,
            "seconds": round(self.seconds, 1),
        }


def quick_advice(profile: Profile) -> Advice:
    ballot = votes(profile)
    route = decide(ballot, profile.traceable)
    reasons = [v.reason() for v in ballot]
    if profile.changed_per_sync is None:
        reasons.append("how often the sources change is not known yet: one sync so far (run `expertkit ingest` "
                       "again as they change; the index keeps the history)")  # fmt: skip
    changes = ["`expertkit advise --measure` trains adapters and measures every route on held-out questions "
               "from these documents; its numbers replace these rules of thumb"]  # fmt: skip
    return Advice(route, reasons, profile, "quick", changes=changes)


def build_report(advice: Advice, folder: Path) -> Path:
    from expertkit.evaluate.report import Figure, Section, Table, bar_chart, line_chart, write_report

    p = advice.profile
    sections = []
    why = Section("Why", bullets=list(advice.reasons))
    if advice.changes:
        why.tables.append(Table(["what would change the recommendation"], [[c] for c in advice.changes]))
    sections.append(why)
    if advice.routes:
        rows = []
        for k in ROUTES:
            r = advice.routes.get(k)
            if r is None:
                continue
            j = r.to_json()
            fmt = lambda v, f="{:.0%}": "–" if v is None else f.format(v)  # noqa: E731
            rows.append([
                ROUTE_NAMES[k], f"{j['accuracy']:.0%}", f"{j['ci95'][0]:.0%}–{j['ci95'][1]:.0%}", str(j["n"]),
                fmt(j["unseen_facts"]), fmt(j["not_found"]), fmt(j["citation_validity"]), fmt(j["groundedness"]),
                fmt(j["latency_s"], "{:.2f} s"), fmt(j["train_seconds"], "{:.0f} s"),
                fmt(j["peak_rss_mb"], "{:.0f} MB"), fmt(j["stale_share"]),
            ])  # fmt: skip
        headers = ["route", "accuracy", "95% interval", "questions", "facts never trained on",
                   "“not found” when unanswerable",
                   "valid citations", "groundedness", "latency p50", "training", "peak memory",
                   "stale after one sync"]  # fmt: skip
        keys = [k for k in ROUTES if k in advice.routes]
        figures = [
            Figure("accuracy", "Accuracy on held-out questions, with 95% Wilson intervals", bar_chart(
                [ROUTE_NAMES[k] for k in keys], [advice.routes[k].accuracy for k in keys],
                "Held-out accuracy per route", "accuracy (%)",
                [wilson(advice.routes[k].correct, advice.routes[k].n) for k in keys], percent=True)),
            Figure("latency", "Median seconds per answer", bar_chart(
                [ROUTE_NAMES[k] for k in keys],
                [statistics.median(advice.routes[k].latencies) if advice.routes[k].latencies else 0 for k in keys],
                "Latency per answer (p50)", "seconds")),
        ]  # fmt: skip
        if advice.losses:
            figures.append(Figure("loss", "Training loss of the adapters", line_chart(
                {name: pts for name, pts in advice.losses.items()}, "Training loss", "step", "loss")))  # fmt: skip
        sections.append(Section("Routes, side by side", advice.method, [Table(headers, rows)], figures))
    corpus_rows = [
        ["documents", str(p.documents)], ["chunks", str(p.chunks)], ["words", f"{p.words:,}"],
        ["records (share of chunks)", f"{p.structured_share:.0%}"], ["separate facts found", str(p.facts)],
        ["syncs recorded", str(p.syncs)],
        ["sources changed per re-sync", "not known (one sync)" if p.changed_per_sync is None
         else f"{p.changed_per_sync:.1%}"],
        ["days of history", f"{p.days_observed:.1f}"],
        [f"perplexity of {p.base} on the documents", "–" if p.perplexity is None else f"{p.perplexity:.1f}"],
        ["… on generic text", "–" if p.perplexity_reference is None else f"{p.perplexity_reference:.1f}"],
        ["ratio", "–" if p.perplexity_ratio is None else f"{p.perplexity_ratio:.2f}×"],
        ["answers must be traceable (advise.traceable)", str(p.traceable).lower()],
        ["automated workflow (advise.workflow)", str(p.workflow).lower()],
    ]  # fmt: skip
    corpus = Section("The corpus", tables=[Table(["figure", "value"], corpus_rows)])
    if len(p.history) > 1:  # one sync is one point: a table says it better than a plot
        corpus.figures.append(Figure("syncs", "Sources added, changed and removed per sync", line_chart(
            {"changed (added+updated+removed)": [(i + 1, h["changed"]) for i, h in enumerate(p.history)],
             "sources": [(i + 1, h["sources"]) for i, h in enumerate(p.history)]},
            "Sync history", "sync", "sources", counts=True)))  # fmt: skip
    elif p.history:
        corpus.tables.append(Table(["sync", "sources", "changed (added+updated+removed)"],
                                   [["1", str(p.history[0]["sources"]), str(p.history[0]["changed"])]]))  # fmt: skip
    sections.append(corpus)
    criteria = Section("The criteria", tables=[Table(["situation", "route"], [[s, r] for s, r in CRITERIA.values()])])
    sections.append(criteria)
    title = "expertkit advise: " + {"rag": "RAG", FT: "fine-tuning", BOTH: "RAG + fine-tuning"}[advice.recommendation]
    callout = f"Recommendation ({advice.mode}): {advice.recommendation}. " + (
        advice.reasons[0] if advice.reasons else ""
    )
    return write_report(folder, title, sections, callout)


def save_json(advice: Advice, folder: Path) -> None:
    """advice.json, and with measured routes answers.jsonl: every question, answer and verdict per route."""
    (folder / "advice.json").write_text(json.dumps(advice.to_json(), indent=2), encoding="utf-8")
    if advice.routes:
        rows = [{"route": k, **item} for k, r in advice.routes.items() for item in r.items]
        (folder / "answers.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


# --- 4. the measured path, end to end ----------------------------------------------------------------------


class MeasureProgress:
    """What ``measure`` reports as it goes; the CLI draws it with Rich. ``update`` is the training progress
    that ``train`` calls, so the same object is passed to it."""

    def stage(self, name: str, total: int | None = None) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def update(self, step: int, max_steps: int, loss: float | None, tokens: float | None) -> None: ...


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def measure(
    ws,
    embedder,
    budget_minutes: float,
    progress: MeasureProgress | None = None,
    paraphraser=None,
) -> Advice:
    """Build held-out questions from the documents, train within the budget, run the four routes.
    Work files (training data, adapters, runs) go to ``<workspace>/advise/work`` and are replaced each run."""
    import shutil

    from expertkit.models.generator import make_generator
    from expertkit.rag import RAG as RagPipeline
    from expertkit.retrieve import Retriever
    from expertkit.tune.data import load_training_data
    from expertkit.tune.synth import heldout_path_for, norm_question, synth_qa, synth_raft, write_jsonl
    from expertkit.tune.train import train

    progress = progress or MeasureProgress()
    started = time.perf_counter()
    deadline = started + budget_minutes * 60
    s = ws.settings
    a = s.advise
    base = s.tune.base or s.generate.model
    index = ws.open_index()
    progress.stage("reading the workspace")
    profile = profile_workspace(index, s, base)
    work = ws.root / "advise" / "work"
    shutil.rmtree(work, ignore_errors=True)
    private_dir(work)  # training data and adapters made from the documents: the owner's only
    method: list[str] = []

    # 1. questions, held out by fact and by paraphrase
    qa_path, raft_path = work / "qa.jsonl", work / "raft.jsonl"
    # the model writes questions for at most 15% of the budget; later facts get template questions only
    report = synth_qa(index, qa_path, paraphraser, a.questions_per_fact, a.model_questions if paraphraser else 0,
                      a.holdout, a.holdout_facts, 0.25, 0, a.seed, max_facts=a.max_facts,
                      model_until=time.monotonic() + 0.15 * budget_minutes * 60, on_fact=progress.advance,
                      on_start=lambda n: progress.stage("facts asked", n))  # fmt: skip
    heldout = _read_jsonl(heldout_path_for(qa_path))
    if not heldout:
        raise ExpertkitError("no question was held out: the documents state too few facts to measure on")
    # accuracy: new wordings of trained facts (what a deployed adapter, trained on every fact, is asked);
    # facts never trained on are asked too and reported beside it (what no adapter can know)
    rng = random.Random(a.seed)
    split = {k: [r for r in heldout if r["meta"].get("split") == k] for k in ("paraphrase", "fact")}
    picked = rng.sample(split["paraphrase"], min(a.questions, len(split["paraphrase"])))
    picked += rng.sample(split["fact"], min(max(a.questions // 4, 1), len(split["fact"])))
    questions = [{"question": r["meta"]["question"], "expect": r["meta"]["expect"], "split": r["meta"]["split"]}
                 for r in picked]  # fmt: skip
    n_para = sum(q["split"] == "paraphrase" for q in questions)
    unanswerable = unanswerable_questions(heldout, a.unanswerable, a.seed)
    asked = questions + unanswerable
    method.append(
        f"{report.facts} facts from the documents (a sample of at most advise.max_facts = {a.max_facts}), each asked "
        f"up to {a.questions_per_fact} ways. Accuracy: {n_para} held-out paraphrases of trained facts. Also asked: "
        f"{len(questions) - n_para} questions about facts never trained on, and {len(unanswerable)} about things "
        "the documents never name. An answer is right when it states the fact's value."
    )
    method.append(f"All routes run {base} (tune.base) through the same runtime; RAG retrieves {s.rag.k} passages.")
    retriever = Retriever(index, embedder, s.search.model_copy(update={"reranker": ""}))  # RAFT distractors
    # RAFT on a CPU budget: the oracle with one distractor (each passage costs training time), two per fact
    synth_raft(index, retriever, raft_path, distractors=1, generator=None, questions=2, model_questions_=0,
               holdout=0.0, holdout_facts=a.holdout_facts, seed=a.seed, max_facts=a.max_facts)  # fmt: skip
    asked_q = {norm_question(q["question"]) for q in questions}
    write_jsonl(raft_path, [r for r in _read_jsonl(raft_path) if norm_question(r["meta"]["question"]) not in asked_q])

    g = s.generate.model_copy(update={"model": base, "max_new_tokens": min(s.generate.max_new_tokens, 64)})

    def route(key: str, adapter: Path | None, use_rag: bool) -> RouteResult:
        progress.stage(f"asking: {ROUTE_NAMES[key]}", len(asked))
        generator = make_generator(g, adapter=adapter)
        try:
            rag = RagPipeline(retriever, generator, s.rag.k, s.rag.min_relevance, s.rag.support_threshold,
                              g.max_new_tokens, 0.0)  # fmt: skip
            return run_route(rag, key, asked, use_rag, progress.advance)
        finally:
            if hasattr(generator, "close"):
                generator.close()

    results: dict[str, RouteResult] = {}
    t0 = time.perf_counter()
    results["base"] = route("base", None, False)
    base_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    results["rag"] = route("rag", None, True)
    rag_s = time.perf_counter() - t0
    results["rag"].stale_share = 0.0  # re-ingesting a changed file updates what RAG reads

    # 2. training within what is left of the budget, once the two remaining routes are paid for
    left = deadline - time.perf_counter() - 1.2 * (base_s + rag_s) - 60  # 60 s: loading each base
    if left < 120:
        raise ExpertkitError(
            f"--budget {budget_minutes:g} minutes leaves {max(left, 0) / 60:.1f} minutes to train: raise --budget, "
            "or lower advise.questions / advise.max_facts"
        )
    runs = {}
    for name, path, share in (("qa", qa_path, 0.6), ("raft", raft_path, 0.4)):
        minutes = share * left / 60
        progress.stage(f"training the {name.upper()} adapter (≤ {minutes:.1f} min)")
        settings = s.tune.model_copy(update={"max_minutes": minutes, "save_steps": 100_000,
                                             "max_length": min(s.tune.max_length, 768)})  # fmt: skip
        data = load_training_data(path)
        run = runs[name] = train(data, base, work, f"advise-{name}", settings, progress=progress)
        stopped = f", stopped by the budget at step {run.steps} of {run.planned_steps}" if run.out_of_time else ""
        method.append(f"{name.upper()} adapter: {len(data.examples)} examples, {run.steps} steps "
                      f"in {run.seconds:.0f} s{stopped}")  # fmt: skip
    for key, name, use_rag in (("fine_tuned", "qa", False), ("rag_fine_tuned", "raft", True)):
        run = runs[name]
        result = results[key] = route(key, run.adapter_dir, use_rag)
        result.train_seconds, result.train_steps, result.planned_steps = run.seconds, run.steps, run.planned_steps
        result.peak_rss_mb, result.stale_share = run.peak_rss_mb, profile.changed_per_sync
    losses = {f"{name.upper()} adapter": run.losses for name, run in runs.items()}
    index.close()
    recommendation, reasons, changes = recommend_measured(results, profile)
    advice = Advice(recommendation, reasons, profile, "measured", results, changes, losses, method)
    advice.seconds = time.perf_counter() - started
    return advice
