"""API keys: shown once, stored as hashes, mapped to access groups, revocable while a server runs."""

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from expertkit.cli import app
from expertkit.errors import ExpertkitError
from expertkit.serve.keys import KeyStore, key_hash
from tests.test_cli import run

runner = CliRunner()


def test_a_key_is_stored_only_as_its_hash(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    key, record = store.add("alice", ["staff", "everyone", "staff"])
    raw = (tmp_path / "keys.json").read_text()
    assert key.startswith("ek-") and len(key) > 40
    assert key not in raw and key[10:] not in raw  # only the first characters, as a hint
    assert json.loads(raw)["keys"][0]["hash"] == key_hash(key)
    assert record.groups == ["everyone", "staff"]
    assert stat.S_IMODE(os.stat(tmp_path / "keys.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "keys.json.lock").st_mode) == 0o600
    assert store.verify(key).name == "alice"
    assert store.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.verify("not-a-key") is None


def test_a_revoked_key_stops_working_in_a_running_reader(tmp_path):
    """A server's store rereads the file when it changes: `keys revoke` elsewhere takes effect at once."""
    server_side, cli_side = KeyStore(tmp_path / "keys.json"), KeyStore(tmp_path / "keys.json")
    key, _ = cli_side.add("bob", ["everyone"])
    other, _ = cli_side.add("carol", ["hr"])
    assert server_side.verify(key) is not None
    cli_side.revoke("bob")
    assert server_side.verify(key) is None
    assert server_side.verify(other).groups == ["hr"]  # the other key is untouched
    assert [r.name for r in server_side.records() if not r.active] == ["bob"]


@pytest.mark.parametrize(
    ("name", "groups", "needle"),
    [("bad name!", ["x"], "key name"), ("dave", [], "at least one access group"), ("dave", [" "], "at least one")],
)
def test_bad_keys_are_refused_and_the_store_is_kept(tmp_path, name, groups, needle):
    store = KeyStore(tmp_path / "keys.json")
    key, _ = store.add("erin", ["everyone"])
    before = (tmp_path / "keys.json").read_bytes()
    with pytest.raises(ExpertkitError, match=needle):
        store.add(name, groups)
    assert (tmp_path / "keys.json").read_bytes() == before and store.verify(key) is not None


def test_a_name_is_one_active_key(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    store.add("frank", ["everyone"])
    with pytest.raises(ExpertkitError, match="already named 'frank'"):
        store.add("frank", ["hr"])
    store.revoke("frank")
    store.add("frank", ["hr"])  # a revoked name can be reused
    assert [r.groups for r in store.records() if r.active] == [["hr"]]


def test_keys_commands(tmp_path):
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    added = runner.invoke(app, ["keys", "add", "helpdesk", "-g", "support", "-g", "everyone", "-w", str(ws)])
    assert added.exit_code == 0, added.output
    key = [line for line in added.stdout.splitlines() if line.startswith("ek-")][0]
    assert KeyStore(ws / ".expertkit" / "keys.json").verify(key).groups == ["everyone", "support"]
    listed = runner.invoke(app, ["keys", "list", "-w", str(ws), "--json"])
    rows = json.loads(listed.stdout)["keys"]
    assert [(r["name"], r["groups"], r["revoked"]) for r in rows] == [("helpdesk", ["everyone", "support"], None)]
    assert key not in listed.stdout and "hash" not in rows[0]
    assert "helpdesk" in runner.invoke(app, ["keys", "list", "-w", str(ws)]).stdout
    revoked = runner.invoke(app, ["keys", "revoke", "helpdesk", "-w", str(ws)])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert KeyStore(ws / ".expertkit" / "keys.json").verify(key) is None
    again = run("keys", "revoke", "helpdesk", "-w", str(ws))
    assert again.returncode == 2 and "no active key named 'helpdesk'" in again.stderr
    assert "Traceback" not in again.stderr


def test_serve_refuses_a_public_interface_without_keys(tmp_path):
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    result = run("serve", "--host", "0.0.0.0", "-w", str(ws))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no API keys yet" in result.stderr and "expertkit keys add" in result.stderr


def _add_keys(path: str, prefix: str, n: int) -> None:
    store = KeyStore(Path(path))
    for i in range(n):
        store.add(f"{prefix}-{i}", ["staff"])


def test_processes_adding_keys_at_once_lose_none(tmp_path):
    """Each add reads, changes and rewrites the whole file under the store's lock: without it, writers that
    read the same file would each drop the others' keys."""
    import multiprocessing

    path = tmp_path / "keys.json"
    KeyStore(path).add("owner", ["staff"])
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_add_keys, args=(str(path), f"w{j}", 15)) for j in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert len(KeyStore(path).records()) == 1 + 3 * 15
