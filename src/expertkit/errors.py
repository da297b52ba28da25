"""Errors a user can cause. The CLI prints them in one line, without a traceback; bugs still raise."""

from __future__ import annotations

import importlib.util


class ExpertkitError(Exception):
    """Base for every error a user can cause and fix. The message says what to do."""


class ConfigError(ExpertkitError):
    """A configuration value is missing or invalid; the message names the key."""


class WorkspaceError(ExpertkitError):
    """No workspace, or a workspace without what the command needs."""


class ModelNotInstalledError(ExpertkitError):
    """A named model is neither installed nor reachable; the message says how to install it."""


class IngestError(ExpertkitError):
    """One file could not be ingested. Other files in the batch go on."""

    def __init__(self, path: str, reason: str, hint: str = "") -> None:
        self.path = path
        self.reason = reason
        self.hint = hint
        super().__init__(f"{path}: {reason}" + (f" ({hint})" if hint else ""))


class MissingPartError(ExpertkitError):
    """An optional part of expertkit (an extra: tune, postgres, report) is not installed."""


def require(extra: str, *modules: str) -> None:
    """Refuse, in one line naming the pip extra, when an optional part's packages are not installed."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingPartError(f"{', '.join(missing)} not installed: pip install 'expertkit[{extra}]'")


class GeneratorError(ExpertkitError):
    """A generator failed: a remote endpoint down, erroring or sending a malformed stream."""


class QuestionError(ExpertkitError):
    """A question that cannot be asked: empty, or longer than the model's context window."""


class DataError(ExpertkitError):
    """Training data that cannot be used as it is; the message names the file and line."""


class TrainingError(ExpertkitError):
    """A training run that cannot start or had to stop (hardware, NaN loss, a wrong adapter)."""
