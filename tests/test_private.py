"""The workspace's files are its owner's only: another local user cannot read the index around the access
groups (security review, finding 2: `su nobody -c "grep -a HR-SECRET index.db"` printed a guarded salary)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from expertkit.cli import app

runner = CliRunner()
NOBODY = 65534  # uid and gid of `nobody`: a second local user, with no claim on the workspace
SECRET = "HR-SECRET-7731"

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="acting as a second Unix user (nobody) needs root; CI and `make test` run as root"
)


def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    def drop() -> None:  # in the child, before exec: nobody's groups, gid and uid
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    return subprocess.run(argv, capture_output=True, text=True, errors="replace", preexec_fn=drop, cwd="/", timeout=60)


@pytest.fixture
def open_folder():
    """A folder that every local user may enter (as a home folder or /srv often is), made with umask 022:
    only the workspace's own modes can keep another user out of what is in it."""
    base = Path(tempfile.mkdtemp(prefix="expertkit-private-"))
    base.chmod(0o755)
    old = os.umask(0o022)
    try:
        yield base
    finally:
        os.umask(old)
        shutil.rmtree(base, ignore_errors=True)


@needs_root
def test_another_local_user_cannot_read_the_index(open_folder, tmp_path):
    docs = tmp_path / "hr"  # the documents themselves: pytest's own folder, which nobody cannot enter
    docs.mkdir()
    (docs / "salaries.md").write_text(f"# Salaries\n\nThe director's salary is {SECRET} per year.\n")
    ws = open_folder / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    with (ws / "expertkit.toml").open("a") as fh:
        fh.write('\n[[access.rules]]\nglob = "hr/**"\ngroups = ["hr"]\n')
    ingested = runner.invoke(app, ["ingest", str(docs), "-w", str(ws)])
    assert ingested.exit_code == 0, ingested.output
    found = runner.invoke(app, ["search", "director salary", "-w", str(ws), "--json"])  # writes the caches
    assert found.exit_code == 0 and SECRET in found.output, found.output

    from expertkit.workspace import open_workspace

    index = open_workspace(ws).open_index()  # open: the -wal and -shm files exist now
    try:
        data = ws / ".expertkit"
        wal, shm = data / "index.db-wal", data / "index.db-shm"
        assert wal.exists() and shm.exists()
        everything = sorted(data.rglob("*"))
        files = [p for p in everything if p.is_file()]
        assert {data / "index.db", wal, shm} <= set(files)
        assert any(p.parent == data / "cache" for p in files)  # the dense vectors, the documents nearly

        # the control: nobody is a real second user, and may enter the folder the workspace is in
        config = as_nobody("cat", str(ws / "expertkit.toml"))
        assert config.returncode == 0 and "[[access.rules]]" in config.stdout, config.stderr
        # the attack: read the guarded text straight out of the index files
        for path in (data / "index.db", wal, shm):
            stolen = as_nobody("grep", "-a", "-c", SECRET, str(path))
            assert stolen.returncode == 2 and "Permission denied" in stolen.stderr, (path, stolen)
        listing = as_nobody("ls", str(data))
        assert listing.returncode != 0 and "Permission denied" in listing.stderr
        # and each file is the owner's too, should the folder be opened (0700 folders, 0600 files)
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in everything if p.is_dir()} == {"cache": "0o700"}
        assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: "0o600" for p in files}
    finally:
        index.close()


def _widen(ws: Path) -> None:
    """A workspace as an earlier expertkit left it (umask 022): .expertkit 0755, its files 0644."""
    data = ws / ".expertkit"
    for path in [data, *data.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def test_doctor_and_status_flag_a_workspace_others_can_read(tmp_path):
    from expertkit.index.sqlite import SQLiteIndex

    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    SQLiteIndex(ws / ".expertkit" / "index.db").close()
    data = ws / ".expertkit"

    def workspace_check() -> tuple[int, dict]:
        result = runner.invoke(app, ["doctor", "-w", str(ws), "--no-speed", "--json"])
        return result.exit_code, {c["name"]: c for c in json.loads(result.output)["checks"]}["workspace files"]

    code, check = workspace_check()
    assert check["ok"] and "owner only" in check["detail"], check
    _widen(ws)
    code, check = workspace_check()
    assert code == 1 and not check["ok"], check
    assert ".expertkit/index.db" in check["detail"] and "other local users can read" in check["detail"]
    assert check["fix"] == f"chmod -R go-rwx {data}"
    status = runner.invoke(app, ["status", "-w", str(ws)], env={"COLUMNS": "400"})
    assert status.exit_code == 0 and "warning: other local users can read or write .expertkit" in status.output
    assert f"fix: chmod -R go-rwx {data}" in status.output

    subprocess.run(["chmod", "-R", "go-rwx", str(data)], check=True)  # the fix, as doctor words it
    code, check = workspace_check()
    assert check["ok"], check
    assert "warning" not in runner.invoke(app, ["status", "-w", str(ws)]).output


@needs_root
def test_a_workspace_made_before_is_open_to_others_until_the_fix(open_folder):
    """What doctor warns about is real: in the old layout nobody reads the index; after the fix, not."""
    from expertkit.index.sqlite import SQLiteIndex

    ws = open_folder / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    SQLiteIndex(ws / ".expertkit" / "index.db").close()
    _widen(ws)
    index = ws / ".expertkit" / "index.db"
    assert as_nobody("cat", str(index)).returncode == 0  # the old layout: readable by every local user
    subprocess.run(["chmod", "-R", "go-rwx", str(ws / ".expertkit")], check=True)
    denied = as_nobody("cat", str(index))
    assert denied.returncode != 0 and "Permission denied" in denied.stderr


def test_chat_history_is_the_owners_only(tmp_path):
    """`expertkit chat` saves every answer (quotes of the documents) under .expertkit/chats."""
    from expertkit.chat import ChatSession

    old = os.umask(0o022)
    try:
        session = ChatSession(None, tmp_path / "ws" / ".expertkit" / "chats")  # type: ignore[arg-type]
        session.reset()  # the first line of the history file
    finally:
        os.umask(old)
    assert oct(stat.S_IMODE(session.path.parent.stat().st_mode)) == "0o700"
    assert oct(stat.S_IMODE(session.path.stat().st_mode)) == "0o600"


def test_the_runtime_record_and_log_are_the_owners_only(tmp_path):
    """`expertkit runtime start` writes .expertkit/runtime.json (pid, port) and the server's log there."""
    from expertkit.models.llamacpp import start_runtime, stop_runtime
    from expertkit.models.registry import resolve
    from tests.conftest import TEST_MODEL

    data = tmp_path / "ws" / ".expertkit"
    old = os.umask(0o022)
    try:
        start_runtime(data, TEST_MODEL, resolve(TEST_MODEL, "generator"), 1024, 1)
        modes = {name: oct(stat.S_IMODE((data / name).stat().st_mode)) for name in ("runtime.json", "runtime.log")}
    finally:
        os.umask(old)
        stop_runtime(data)
    assert modes == {"runtime.json": "0o600", "runtime.log": "0o600"}
