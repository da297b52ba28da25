"""The criteria table, the thresholds, and the quick path's vote: each criterion the workspace's figures meet
votes for the route that its row favours."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from expertkit.advise.profile import Profile


class Recommendation(StrEnum):
    """What advise recommends. The values are the plain strings the JSON output and the messages carry
    ("rag", "fine-tuning", "rag+fine-tuning"); not to be confused with ``expertkit.rag.RAG``, the pipeline."""

    RAG = "rag"
    FINE_TUNING = "fine-tuning"
    BOTH = "rag+fine-tuning"

    @property
    def label(self) -> str:
        """The name a person reads (the report's title)."""
        return _LABELS[self]


_LABELS = {
    Recommendation.RAG: "RAG",
    Recommendation.FINE_TUNING: "fine-tuning",
    Recommendation.BOTH: "RAG + fine-tuning",
}

# the criteria we start from: row → (situation, recommendation it favours)
CRITERIA: dict[str, tuple[str, Recommendation]] = {
    "changing": (
        "the answer needs facts from outside the model, or data that changes often",
        Recommendation.RAG,
    ),
    "stable": ("stable, precise knowledge; the domain's own vocabulary and phrasing", Recommendation.FINE_TUNING),
    "small": ("small or narrow training data", Recommendation.RAG),
    "traceable": ("answers must be traceable, so that hallucinations can be found and fixed", Recommendation.RAG),
    "many_facts": ("QA that combines many separate pieces of knowledge", Recommendation.RAG),
    "vertical": ("a vertical industry with specialised terms", Recommendation.FINE_TUNING),
    "workflow": ("an automated business workflow", Recommendation.BOTH),
}

# thresholds, named so that the report can say what would change the advice
CHANGING_PER_SYNC = 0.05  # share of sources added, changed or removed per re-sync
SMALL_WORDS = 20_000  # a corpus under this gives fine-tuning little to learn from
MANY_FACTS = 150  # separate facts (rows, fields, stated values)
STRUCTURED_SHARE = 0.5  # share of chunks that are records (rows of tables, CSV, JSON)
VERTICAL_RATIO = 2.0  # the base model's perplexity on the corpus ÷ on generic text
AS_GOOD = 0.05  # a route within this accuracy of the best counts as good as the best


@dataclass
class Vote:
    row: str  # a key of CRITERIA
    route: Recommendation
    figure: str  # the measured figure behind it

    def reason(self) -> str:
        situation, _ = CRITERIA[self.row]
        return f"{self.figure} → “{situation}” favours {self.route}"


def votes(profile: Profile) -> list[Vote]:
    """Each criterion the workspace's figures meet, with the figure."""
    out = []
    if profile.changed_per_sync is None:
        pass  # one sync: how often the sources change is not known yet (said in the report)
    elif profile.changed_per_sync >= CHANGING_PER_SYNC:
        out.append(Vote("changing", Recommendation.RAG, _change_figure(profile)))
    elif profile.syncs >= 3:
        out.append(Vote("stable", Recommendation.FINE_TUNING, _change_figure(profile)))
    if profile.words < SMALL_WORDS:
        figure = f"the corpus has {profile.words:,} words (under {SMALL_WORDS:,})"
        out.append(Vote("small", Recommendation.RAG, figure))
    if profile.traceable:
        figure = "advise.traceable = true (only RAG cites the passage behind an answer)"
        out.append(Vote("traceable", Recommendation.RAG, figure))
    if profile.facts >= MANY_FACTS or profile.structured_share >= STRUCTURED_SHARE:
        figure = f"{profile.facts} separate facts, {profile.structured_share:.0%} of chunks records"
        out.append(Vote("many_facts", Recommendation.RAG, figure))
    ratio = profile.perplexity_ratio
    if ratio is not None and ratio >= VERTICAL_RATIO:
        figure = f"the base model's perplexity is {ratio:.1f}× higher on these documents than on generic text"
        out.append(Vote("vertical", Recommendation.FINE_TUNING, figure))
    if profile.workflow:
        figure = "advise.workflow = true (answers feed an automated workflow)"
        out.append(Vote("workflow", Recommendation.BOTH, figure))
    return out


def _change_figure(profile: Profile) -> str:
    return f"{profile.changed_per_sync:.0%} of sources changed per sync over {profile.syncs - 1} re-syncs"


def decide(ballot: list[Vote], traceable: bool) -> Recommendation:
    """The route the rows favour: the workflow row asks for both; otherwise the majority, both on a tie;
    traceability keeps retrieval in whatever is chosen."""
    if any(v.route == Recommendation.BOTH for v in ballot):
        return Recommendation.BOTH
    rag = sum(v.route == Recommendation.RAG for v in ballot)
    ft = sum(v.route == Recommendation.FINE_TUNING for v in ballot)
    if ft > rag:
        return Recommendation.BOTH if traceable else Recommendation.FINE_TUNING
    if rag > ft:
        return Recommendation.RAG
    return Recommendation.BOTH if ft else Recommendation.RAG
