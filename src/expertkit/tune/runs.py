"""A training run's folder (``runs/NAME``): its checkpoints, what a resumed run must match, whether it finished.

A checkpoint counts once it is completely on disk (``COMPLETE`` is written into it last: a disk-full save
leaves no marker). ``run-identity.json`` records what the run trains (data, base, method, adapter shape), so
``--resume`` continues the same job or refuses; ``run.json``, the run log, says whether it finished.
"""

from __future__ import annotations

import json
from pathlib import Path

from expertkit.errors import TrainingError
from expertkit.private import private_dir

COMPLETE = "expertkit-complete"  # written into a checkpoint once it is fully on disk
RUN_IDENTITY = "run-identity.json"  # what a resumed run must match


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint that was completely written (a disk-full save leaves no marker)."""
    done = [p for p in run_dir.glob("checkpoint-*") if (p / COMPLETE).exists()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def checkpoint_to_resume(run_dir: Path, adapter_dir: Path, name: str, resume: bool) -> Path | None:
    """The checkpoint ``--resume`` continues from (None for a fresh run); refuses a finished run, a resume
    with nothing to resume, and a fresh run over another run's checkpoints."""
    checkpoint = latest_checkpoint(run_dir) if run_dir.exists() else None
    finished = _finished(run_dir)
    if finished:
        raise TrainingError(
            f"run {name!r} already finished ({finished}; adapter {adapter_dir}): "
            + ("nothing to resume. " if resume else "")
            + f"Train under another --name, or delete {run_dir} and {adapter_dir} to train it again"
        )
    if resume and checkpoint is None:
        raise TrainingError(f"nothing to resume: no complete checkpoint in {run_dir}")
    if not resume and checkpoint is not None:
        raise TrainingError(
            f"run {name!r} already has checkpoints in {run_dir}: add --resume to continue it, or choose another --name"
        )
    return checkpoint


def record_identity(run_dir: Path, adapter_dir: Path, name: str, identity: dict, resume: bool) -> None:
    """Check a resumed run is the same job, then make the folders (0700: what was learnt from the documents
    is the owner's only) and record what this run trains."""
    if resume:
        _check_resume(run_dir, name, identity)
    private_dir(run_dir)
    private_dir(adapter_dir.parent)
    (run_dir / RUN_IDENTITY).write_text(json.dumps(identity, indent=2))


def _finished(run_dir: Path) -> str:
    """'N steps on DATE' when the run's last attempt completed (its run log says so), else ''."""
    try:
        log = json.loads((run_dir / "run.json").read_text())
    except (OSError, json.JSONDecodeError):
        return ""
    if log.get("interrupted") or log.get("adapter_mb") is None:
        return ""
    return f"{log.get('steps')} steps on {log.get('created', '?')}"


def _check_resume(run_dir: Path, name: str, identity: dict) -> None:
    """A resumed run continues the same job: same data, base, method and adapter shape."""
    try:
        before = json.loads((run_dir / RUN_IDENTITY).read_text())
    except (OSError, json.JSONDecodeError):
        raise TrainingError(
            f"cannot resume run {name!r}: {run_dir / RUN_IDENTITY} is missing, so it is unknown what the checkpoint "
            "was trained on; start a new run under another --name"
        ) from None
    changed = [
        f"{key} {before.get(key)!r} → {value!r}"
        for key, value in identity.items()
        if key != "base_path" and before.get(key) != value  # a moved cache is the same base
    ]
    if changed:
        raise TrainingError(
            f"cannot resume run {name!r}: the checkpoint was trained with different "
            + "; ".join(changed)
            + ". Resume with the same data and settings, or start a new run under another --name"
        )
