"""`expertkit advise`: which route suits this business's data: RAG, fine-tuning, or both.

The quick path reads the workspace (``profile``): corpus size and the share of structured records, how often
the sources change (the index keeps every sync's counts), how far the domain's language is from what the base
model knows (``language_distance``: its perplexity on a sample of chunks against a generic reference text),
and the ``advise`` settings (traceable answers, an automated workflow). Each figure is tied to a row of the
criteria table (``criteria``), and the rows vote; ``advice.quick_advice`` turns the vote into advice.

The measured path (``--measure``, ``run.measure``) builds a question set from the documents with ``synth``,
held out by fact and by paraphrase (``questions``), trains a QA adapter and a RAFT adapter within the budget
(``training``), and runs base, RAG, fine-tuned and RAG + fine-tuned side by side on the held-out questions and
on unanswerable ones (``routes``, graded by ``grading``). The recommendation then follows the measured
accuracy, with traceability and change rate as limits (``recommend``). ``report`` writes report.html.
"""

from expertkit.advise.advice import Advice, quick_advice, save_json
from expertkit.advise.criteria import (
    AS_GOOD,
    CHANGING_PER_SYNC,
    CRITERIA,
    MANY_FACTS,
    SMALL_WORDS,
    STRUCTURED_SHARE,
    VERTICAL_RATIO,
    Recommendation,
    Vote,
    decide,
    votes,
)
from expertkit.advise.grading import contains_value, is_correct, wilson
from expertkit.advise.language_distance import REFERENCES, corpus_language, domain_perplexity, reference_texts
from expertkit.advise.profile import Profile, change_rate, profile_workspace
from expertkit.advise.questions import QuestionSet, unanswerable_questions
from expertkit.advise.recommend import recommend_measured
from expertkit.advise.report import build_report
from expertkit.advise.routes import ROUTE_NAMES, ROUTES, RouteResult, run_route
from expertkit.advise.run import MeasureProgress, measure

__all__ = [
    "AS_GOOD",
    "CHANGING_PER_SYNC",
    "CRITERIA",
    "MANY_FACTS",
    "REFERENCES",
    "ROUTES",
    "ROUTE_NAMES",
    "SMALL_WORDS",
    "STRUCTURED_SHARE",
    "VERTICAL_RATIO",
    "Advice",
    "MeasureProgress",
    "Profile",
    "QuestionSet",
    "Recommendation",
    "RouteResult",
    "Vote",
    "build_report",
    "change_rate",
    "contains_value",
    "corpus_language",
    "decide",
    "domain_perplexity",
    "is_correct",
    "measure",
    "profile_workspace",
    "quick_advice",
    "recommend_measured",
    "reference_texts",
    "run_route",
    "save_json",
    "unanswerable_questions",
    "votes",
    "wilson",
]
