"""The workspace's figures that the criteria read: size, structure, facts, change history, language distance
and the ``advise`` settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from expertkit.advise.language_distance import domain_perplexity


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


def change_rate(history) -> tuple[float | None, float]:
    """Mean share of sources added, changed or removed per re-sync (the first sync adds everything, so it
    does not count; syncs that changed nothing do), and the days the history covers."""
    later = history[1:]
    days = (history[-1].at - history[0].at) / 86400 if len(history) > 1 else 0.0
    if not later:
        return None, days
    shares = [h.changed / max(h.sources, 1) for h in later]
    return sum(shares) / len(shares), days


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
