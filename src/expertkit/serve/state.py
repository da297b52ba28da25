"""What the routes of one server read: the models it serves (the expert, its adapters, the bare model),
which one a request without a model gets, the worker slots, the limits and the workspace."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from expertkit.config import ServeSettings
from expertkit.models.generator import Generator
from expertkit.rag import RAG
from expertkit.serve.admission import Slots
from expertkit.serve.api import ApiError
from expertkit.serve.guard import Caller, KeyCheck

EXPERT_ID = "expertkit"


@dataclass
class ServedModel:
    """One id in /v1/models: the expert (RAG over ``generator``) or the bare model."""

    id: str
    generator: Generator
    rag: RAG | None = None  # None = the bare model: no documents, nothing to cite
    description: str = ""
    # an adapter learned these documents and can state them: a caller must be allowed to read each one
    # (a group set per source; None = a source no longer in the index, which only the owner may use)
    trained_on: list[frozenset[str] | None] = field(default_factory=list)

    def allowed(self, groups: tuple[str, ...] | None) -> bool:
        if groups is None:
            return True
        return all(g is not None and bool(g & set(groups)) for g in self.trained_on)

    @staticmethod
    def learned(groups_per_source: list[frozenset[str] | None]) -> list[frozenset[str] | None]:
        """An adapter whose lineage names no documents may have learned anything: the owner's only."""
        return groups_per_source or [None]


@dataclass
class Server:
    models: dict[str, ServedModel]
    default: str  # the model a request that names none gets
    rag: RAG | None
    slots: Slots
    check: KeyCheck
    settings: ServeSettings
    max_tokens: int  # a reply's budget when the request sets none
    root: Path | None  # the workspace: citation sources inside it are sent relative to it
    chat_page: str  # read once: the page served is the one its policy's hashes allow

    def pick_model(self, name: str, caller: Caller) -> ServedModel:
        model = self.models.get(name or self.default)
        if model is None:
            raise ApiError(
                404,
                f"model {name!r} does not exist here; GET /v1/models lists this server's models",
                "invalid_request_error",
                "model",
                "model_not_found",
            )
        if not model.allowed(caller.groups):
            raise ApiError(
                403,
                f"model {model.id!r} was fine-tuned on documents your key may not read; use {EXPERT_ID!r}",
                "permission_error",
                "model",
                "model_not_allowed",
            )
        return model
