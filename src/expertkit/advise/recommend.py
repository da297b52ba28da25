"""The measured path's decision: the route the held-out accuracy favours, with traceability and the change
rate as limits, the reasons for it, and what would change it."""

from __future__ import annotations

from dataclasses import dataclass, field

from expertkit.advise.criteria import AS_GOOD, CHANGING_PER_SYNC, CRITERIA, Recommendation
from expertkit.advise.profile import Profile
from expertkit.advise.routes import ROUTE_NAMES, ROUTES, RouteResult

# the measured routes that can be recommended, simplest first: no training beats training, one route beats two
CANDIDATES = {
    "rag": Recommendation.RAG,
    "fine_tuned": Recommendation.FINE_TUNING,
    "rag_fine_tuned": Recommendation.BOTH,
}


@dataclass
class _Decision:
    acc: dict[str, float]  # held-out accuracy per route
    candidates: dict[str, Recommendation]  # the routes the limits allow
    changing: bool  # the sources change often
    margin: float  # how far below the best a simpler route may be
    chosen: str = ""
    best: str = ""
    reasons: list[str] = field(default_factory=list)


def recommend_measured(
    results: dict[str, RouteResult], profile: Profile
) -> tuple[Recommendation, list[str], list[str]]:
    """(recommendation, reasons, what would change it) from the measured accuracies and the limits."""
    acc = {k: r.accuracy for k, r in results.items()}
    changing = profile.changed_per_sync is not None and profile.changed_per_sync >= CHANGING_PER_SYNC
    # when the sources change, an adapter must be retrained at every change, so training has to win by more
    d = _Decision(acc, dict(CANDIDATES), changing, 2 * AS_GOOD if changing else AS_GOOD)
    pct = lambda k: f"{acc[k]:.0%} ({results[k].correct}/{results[k].n})"  # noqa: E731
    d.reasons.append("held-out accuracy: " + ", ".join(f"{ROUTE_NAMES[k]} {pct(k)}" for k in ROUTES if k in acc))
    _apply_limits(d, profile)
    d.best = max(d.candidates, key=lambda k: acc[k])
    # the simplest route that is as good as the best
    d.chosen = next(k for k in CANDIDATES if k in d.candidates and acc[k] >= acc[d.best] - d.margin)
    _explain_choice(d, profile)
    route = d.candidates[d.chosen]
    if route != Recommendation.FINE_TUNING and results["rag"].not_found_asked:
        chosen = results[d.chosen]
        nf = chosen.not_found_right / chosen.not_found_asked
        d.reasons.append(
            f"{ROUTE_NAMES[d.chosen]} says “not found” on {nf:.0%} of questions the documents cannot answer"
        )
    return route, d.reasons, _what_would_change(d, profile)


def _apply_limits(d: _Decision, profile: Profile) -> None:
    """Traceable answers, or sources that change often, rule out a fine-tuned model alone."""
    if profile.traceable:
        d.candidates.pop("fine_tuned")
        d.reasons.append(f"{CRITERIA['traceable'][0]} (advise.traceable = true): only routes with retrieval qualify")
    if d.changing and "fine_tuned" in d.candidates:
        d.candidates.pop("fine_tuned")
        d.reasons.append(
            f"{profile.changed_per_sync:.0%} of sources change per sync: a fine-tuned model alone goes "
            "stale between trainings"
        )


def _explain_choice(d: _Decision, profile: Profile) -> None:
    """Why the chosen route: simpler than the best and close enough, or ahead of the next route allowed."""
    acc, chosen = d.acc, d.chosen
    if d.changing and "rag" in d.candidates:
        d.reasons.append(
            f"{profile.changed_per_sync:.0%} of sources change per sync: an adapter is retrained at every "
            f"change, so a route with one must answer {d.margin:.0%} more than RAG"
        )
    if chosen != d.best:
        d.reasons.append(
            f"{ROUTE_NAMES[chosen]} is within {d.margin:.0%} of the best ({ROUTE_NAMES[d.best]}) and simpler to run"
        )
        return
    others = [k for k in d.candidates if k != chosen]
    if others:
        runner = max(others, key=lambda k: acc[k])
        d.reasons.append(
            f"{ROUTE_NAMES[chosen]} answers {100 * (acc[chosen] - acc[runner]):.0f} points more "
            f"than {ROUTE_NAMES[runner]}, the next route allowed"
        )


def _what_would_change(d: _Decision, profile: Profile) -> list[str]:
    acc, chosen, margin = d.acc, d.chosen, d.margin
    changes = []
    if chosen == "rag":
        top = max(("fine_tuned", "rag_fine_tuned"), key=lambda k: acc[k])
        changes.append(
            f"{ROUTE_NAMES[top]} would be recommended if it answered more than {margin:.0%} more "
            f"held-out questions than RAG (now {acc[top]:.0%} against {acc['rag']:.0%})"
        )
    if chosen == "rag_fine_tuned":
        changes.append(
            f"RAG alone would be recommended if it came within {margin:.0%} of RAG + fine-tuned "
            f"(now {acc['rag']:.0%} against {acc['rag_fine_tuned']:.0%}), saving the training"
        )
    if chosen == "fine_tuned":
        changes.append("RAG would be recommended if answers had to be traceable (advise.traceable = true)")
        changes.append(f"… or if more than {CHANGING_PER_SYNC:.0%} of sources changed per sync")
    if profile.traceable and acc["fine_tuned"] > max(acc[k] for k in d.candidates) + AS_GOOD:
        changes.append(
            f"fine-tuning alone answers more ({acc['fine_tuned']:.0%}) and would be recommended if "
            "answers did not have to be traceable (advise.traceable = false)"
        )
    if not d.changing and chosen != "fine_tuned" and profile.changed_per_sync is None:
        changes.append("how often the sources change is not measured yet (one sync): frequent changes favour RAG")
    return changes
