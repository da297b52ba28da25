import pytest

from expertkit.errors import WorkspaceError
from expertkit.workspace import find_workspace, init_workspace, open_workspace


def test_init_writes_commented_config_once(tmp_path):
    config = init_workspace(tmp_path / "ws")
    text = config.read_text()
    assert text.startswith("# expertkit workspace settings")
    config.write_text(text + "\n# mine\n")
    init_workspace(tmp_path / "ws")
    assert config.read_text().endswith("# mine\n")


def test_found_from_a_subfolder_and_from_env(tmp_path, monkeypatch):
    init_workspace(tmp_path / "ws")
    (tmp_path / "ws" / "docs").mkdir()
    monkeypatch.chdir(tmp_path / "ws" / "docs")
    assert find_workspace() == (tmp_path / "ws").resolve()
    monkeypatch.setenv("EXPERTKIT_WORKSPACE", str(tmp_path / "elsewhere"))
    assert find_workspace() == tmp_path / "elsewhere"


def test_missing_workspace_and_missing_index_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkspaceError, match="expertkit init"):
        open_workspace()
    ws = open_workspace(tmp_path / "ws", create=True)
    with pytest.raises(WorkspaceError, match="expertkit ingest"):
        ws.open_index()
