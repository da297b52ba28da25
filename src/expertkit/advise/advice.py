"""The advice: the recommendation with its reasons and figures, the quick path's, and its JSON files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from expertkit.advise.criteria import Recommendation, decide, votes
from expertkit.advise.profile import Profile
from expertkit.advise.routes import ROUTES, RouteResult


@dataclass
class Advice:
    recommendation: Recommendation
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
    """The rows of the criteria table that the workspace's figures meet, and the route they vote for."""
    ballot = votes(profile)
    route = decide(ballot, profile.traceable)
    reasons = [v.reason() for v in ballot]
    if profile.changed_per_sync is None:
        reasons.append(
            "how often the sources change is not known yet: one sync so far (run `expertkit ingest` "
            "again as they change; the index keeps the history)"
        )
    changes = [
        "`expertkit advise --measure` trains adapters and measures every route on held-out questions "
        "from these documents; its numbers replace these rules of thumb"
    ]
    return Advice(route, reasons, profile, "quick", changes=changes)


def save_json(advice: Advice, folder: Path) -> None:
    """advice.json, and with measured routes answers.jsonl: every question, answer and verdict per route."""
    (folder / "advice.json").write_text(json.dumps(advice.to_json(), indent=2), encoding="utf-8")
    if advice.routes:
        rows = [{"route": k, **item} for k, r in advice.routes.items() for item in r.items]
        (folder / "answers.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
