import json
from pathlib import Path

import pytest

from expertkit.config import (
    api_key_for,
    default_toml,
    dsn_for,
    load_settings,
    overrides_from_pairs,
    server_binary_for,
    user_config_path,
)
from expertkit.errors import ConfigError


def test_defaults_without_a_file(tmp_path):
    s = load_settings(tmp_path, environ={})
    assert s.search.mode == "hybrid" and s.search.k == 10 and s.embed.model == "auto"


def test_file_then_env_then_flags(tmp_path):
    (tmp_path / "expertkit.toml").write_text("[search]\nk = 5\nmode = 'bm25'\n")
    s = load_settings(tmp_path, environ={})
    assert (s.search.k, s.search.mode) == (5, "bm25")
    s = load_settings(tmp_path, environ={"EXPERTKIT_SEARCH__K": "7"})
    assert (s.search.k, s.search.mode) == (7, "bm25")
    s = load_settings(tmp_path, {"search": {"k": 9}}, environ={"EXPERTKIT_SEARCH__K": "7"})
    assert s.search.k == 9


@pytest.mark.parametrize(
    ("toml", "env", "needle"),
    [
        ("[search]\nk = 0\n", {}, "search.k"),
        ("[search]\nmode = 'fuzzy'\n", {}, "search.mode"),
        ("[ingest]\nchunk_tokens = 'big'\n", {}, "ingest.chunk_tokens"),
        ("[ingest]\nchunk_tokens = 50\nchunk_overlap = 60\n", {}, "chunk_overlap"),
        ("[serach]\nk = 3\n", {}, "serach"),
        ("", {"EXPERTKIT_EMBED__BATCH_SIZE": "-1"}, "embed.batch_size"),
    ],
)
def test_bad_value_names_the_key_and_origin(tmp_path, toml, env, needle):
    (tmp_path / "expertkit.toml").write_text(toml)
    with pytest.raises(ConfigError) as exc:
        load_settings(tmp_path, environ=env)
    message = str(exc.value)
    assert needle in message and "\n" not in message
    assert ("environment" if env else "expertkit.toml") in message


def test_broken_toml_is_a_config_error(tmp_path):
    (tmp_path / "expertkit.toml").write_text("[search\nk=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(tmp_path, environ={})


def test_default_toml_round_trips(tmp_path):
    (tmp_path / "expertkit.toml").write_text(default_toml())
    assert load_settings(tmp_path, environ={}) == load_settings(None, environ={})
    assert "# max chunk size in embedder tokens" in default_toml()


def test_set_pairs():
    assert overrides_from_pairs(["search.k=3", "embed.dtype=fp32"]) == {
        "search": {"k": "3"},
        "embed": {"dtype": "fp32"},
    }
    with pytest.raises(ConfigError):
        overrides_from_pairs(["k=3"])


def test_lists_from_the_environment_and_the_command_line(tmp_path):
    """A list setting is JSON or comma-separated; a list of tables is JSON, as pydantic-settings reads them."""
    rules = '[{"glob": "hr/*", "groups": ["hr"]}]'
    s = load_settings(
        tmp_path,
        overrides_from_pairs(["access.default_groups=staff, hr", 'tune.targets=["q_proj", "v_proj"]']),
        environ={"EXPERTKIT_ACCESS__RULES": rules},
    )
    assert s.access.default_groups == ["staff", "hr"]
    assert s.tune.targets == ["q_proj", "v_proj"]
    assert [(r.glob, r.groups) for r in s.access.rules] == [("hr/*", ["hr"])]
    s = load_settings(tmp_path, environ={"EXPERTKIT_TUNE__TARGETS": "q_proj,k_proj"})
    assert s.tune.targets == ["q_proj", "k_proj"]


@pytest.mark.parametrize("pair", ["tune.targets=[q_proj", "access.rules=hr/*"])
def test_a_bad_list_is_one_line_that_says_how(tmp_path, pair):
    with pytest.raises(ConfigError) as exc:
        load_settings(tmp_path, overrides_from_pairs([pair]), environ={})
    message = str(exc.value)
    assert pair.split("=")[0] in message and "\n" not in message


@pytest.mark.parametrize("name", ["AWS_SECRET_ACCESS_KEY", "HOME", "GITHUB_TOKEN", "openai_api_key", "X_API_KEY_2"])
def test_api_key_env_must_name_an_api_key_variable(tmp_path, name):
    """A hostile expertkit.toml found by walking up from the current folder must not be able to send any
    environment variable as a bearer token to a server it names."""
    (tmp_path / "expertkit.toml").write_text(f'[generate]\napi_key_env = "{name}"\n')
    with pytest.raises(ConfigError, match="api_key_env"):
        load_settings(tmp_path, environ={})


def test_api_key_env_accepts_the_usual_names(tmp_path):
    for name in ("OPENAI_API_KEY", "TOGETHER_API_KEY", "MY_VLLM_API_KEY"):
        assert load_settings(None, {"generate": {"api_key_env": name}}, environ={}).generate.api_key_env == name


def test_the_users_file_sits_below_the_workspaces(tmp_path, monkeypatch):
    user_file = tmp_path / "xdg" / "expertkit" / "config.toml"
    user_file.parent.mkdir(parents=True)
    user_file.write_text("[search]\nk = 4\nmode = 'bm25'\n")
    (tmp_path / "expertkit.toml").write_text("[search]\nk = 5\n")
    s = load_settings(tmp_path, environ={"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert (s.search.k, s.search.mode) == (5, "bm25")
    assert user_config_path({"XDG_CONFIG_HOME": str(tmp_path / "xdg")}) == user_file
    assert user_config_path({"EXPERTKIT_CONFIG": "/etc/mine.toml", "XDG_CONFIG_HOME": "/x"}) == Path("/etc/mine.toml")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_config_path({}) == tmp_path / "home" / ".config" / "expertkit" / "config.toml"


def test_a_workspaces_file_cannot_hold_the_allow_list(tmp_path):
    (tmp_path / "expertkit.toml").write_text('[secrets]\nallow = ["OPENAI_API_KEY http://127.0.0.1:9"]\n')
    with pytest.raises(ConfigError, match=r"\[secrets\] belongs in your own .*mine\.toml"):
        load_settings(tmp_path, environ={"EXPERTKIT_CONFIG": str(tmp_path / "mine.toml")})


@pytest.mark.parametrize(
    "allow",
    [
        '"OPENAI_API_KEY"',
        '"OPENAI_API_KEY ftp://host"',
        '"HOME https://api.openai.com"',
        "5",
        '"a b c"',
        '"PGPASSWORD https://db.example.com"',  # PGPASSWORD goes to PostgreSQL servers only
        '"OPENAI_API_KEY postgresql://db.example.com"',
    ],
)
def test_a_bad_allow_entry_names_the_file_and_the_form(tmp_path, allow):
    user_file = tmp_path / "mine.toml"
    user_file.write_text(f"[secrets]\nallow = [{allow}]\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(None, environ={"EXPERTKIT_CONFIG": str(user_file)})
    assert str(user_file) in str(exc.value) and "OPENAI_API_KEY https://api.openai.com" in str(exc.value)


def test_allow_entries_compare_by_origin(tmp_path):
    user_file = tmp_path / "mine.toml"
    user_file.write_text('[secrets]\nallow = ["MY_API_KEY HTTPS://LLM.Example.com:443/v1"]\n')
    (tmp_path / "expertkit.toml").write_text(
        '[generate]\nbase_url = "https://llm.example.com/v1"\napi_key_env = "MY_API_KEY"\n'
    )
    settings = load_settings(tmp_path, environ={"EXPERTKIT_CONFIG": str(user_file)}).generate
    assert api_key_for(settings, {"MY_API_KEY": "k"}) == "k"
    with pytest.raises(ConfigError, match='allow = \\["MY_API_KEY https://llm.example.com:8443"\\]'):
        api_key_for(settings.model_copy(update={"base_url": "https://llm.example.com:8443/v1"}), {"MY_API_KEY": "k"})


@pytest.mark.parametrize("entry", ['"llama-server"', '"./bin/llama-server"', "5"])
def test_allowed_binaries_are_absolute_paths(tmp_path, entry):
    user_file = tmp_path / "mine.toml"
    user_file.write_text(f"[secrets]\nallow_binaries = [{entry}]\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(None, environ={"EXPERTKIT_CONFIG": str(user_file)})
    assert str(user_file) in str(exc.value) and 'allow_binaries = ["/opt/llama/bin/llama-server"]' in str(exc.value)


def test_a_workspace_binary_is_allowed_by_its_resolved_path(tmp_path):
    """An entry and the workspace's setting are compared as the files they resolve to; what runs is that file."""
    real = tmp_path / "opt" / "llama-server"
    real.parent.mkdir()
    real.write_text("#!/bin/sh\n")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "llama-server").symlink_to(real)
    user_file = tmp_path / "mine.toml"
    user_file.write_text(f'[secrets]\nallow_binaries = ["{tmp_path}/bin/../bin/llama-server"]\n')
    (tmp_path / "expertkit.toml").write_text(f'[generate]\nserver_binary = "{tmp_path}/bin/llama-server"\n')
    settings = load_settings(tmp_path, environ={"EXPERTKIT_CONFIG": str(user_file)}).generate
    assert server_binary_for(settings) == str(real)
    other = settings.model_copy(update={"server_binary": str(tmp_path / "other")})  # not what the file chose
    assert server_binary_for(other) == str(tmp_path / "other")


# -- index.dsn: where PGPASSWORD may go ----------------------------------------------------------------------

PG_ENV = {"PGPASSWORD": "hunter2-" + "9" * 16}


def _their_dsn(tmp_path: Path, dsn: str, allow: str = "", environ: dict | None = None):
    """A workspace's expertkit.toml naming ``dsn``; the user's own file allowing ``allow``; PGPASSWORD set."""
    user_file = tmp_path / "mine.toml"
    user_file.write_text(f"[secrets]\nallow = [{allow}]\n")
    (tmp_path / "expertkit.toml").write_text(f'[index]\nbackend = "postgres"\ndsn = {json.dumps(dsn)}\n')
    env = {"EXPERTKIT_CONFIG": str(user_file), **(PG_ENV if environ is None else environ)}
    return load_settings(tmp_path, environ=env).index, env


@pytest.mark.parametrize(
    ("dsn", "servers"),
    [
        ("postgresql://me@db.evil.example/theirs", ["postgresql://db.evil.example"]),
        ("host=203.0.113.9 port=6543 dbname=theirs", ["postgresql://203.0.113.9:6543"]),
        ("host=localhost hostaddr=203.0.113.9 dbname=theirs", ["postgresql://203.0.113.9"]),  # hostaddr is dialled
        ("postgresql://me@%2Ftmp,db.evil.example:5433/theirs", ["postgresql://db.evil.example:5433"]),
        ("host=a.evil.example,b.evil.example", ["postgresql://a.evil.example", "postgresql://b.evil.example"]),
        ("postgresql://me@[2001:db8::7]/theirs", ["postgresql://[2001:db8::7]"]),
    ],
)
def test_a_workspace_dsn_cannot_send_pgpassword_to_another_server(tmp_path, dsn, servers):
    """libpq answers a server's password request with PGPASSWORD, whatever server the string names. Where the
    workspace's file named it, that needs the user's word: the refusal names the file and the line to add."""
    settings, env = _their_dsn(tmp_path, dsn)
    with pytest.raises(ConfigError) as exc:
        dsn_for(settings, env)
    message = str(exc.value)
    assert "\n" not in message and PG_ENV["PGPASSWORD"] not in message
    assert f"{tmp_path / 'expertkit.toml'} sets index.dsn" in message
    lines = ", ".join(f'"PGPASSWORD {server}"' for server in servers)
    assert f"add to {tmp_path / 'mine.toml'}: [secrets] allow = [{lines}]" in message


@pytest.mark.parametrize(
    ("dsn", "allow", "environ"),
    [
        ("postgresql://me:theirs@db.evil.example/theirs", "", None),  # its own password goes, not yours
        ("postgresql://me@127.0.0.1:5432/theirs", "", None),
        ("host=localhost dbname=theirs", "", None),
        ("postgresql://me@[::1]/theirs", "", None),
        ("host=/var/run/postgresql dbname=theirs", "", None),  # a unix socket
        ("dbname=theirs", "", None),  # your PGHOST, or the local socket
        ("postgresql://me@db.evil.example/theirs", "", {}),  # no PGPASSWORD: nothing to send
        ("postgresql://me@DB.example.com:5432/kb", '"PGPASSWORD postgres://db.example.com"', None),
        (
            "host=a.example.com,b.example.com port=5432,6432",
            '"PGPASSWORD postgresql://a.example.com", "PGPASSWORD postgresql://b.example.com:6432"',
            None,
        ),
    ],
)
def test_where_a_workspace_dsn_may_take_pgpassword(tmp_path, dsn, allow, environ):
    settings, env = _their_dsn(tmp_path, dsn, allow, environ)
    assert dsn_for(settings, env) == dsn


def test_a_dsn_you_choose_needs_no_entry(tmp_path):
    """The environment and --set choose for the user; the workspace's file from `expertkit init` chooses nothing."""
    (tmp_path / "expertkit.toml").write_text(default_toml())
    env = {"EXPERTKIT_CONFIG": str(tmp_path / "mine.toml"), **PG_ENV}
    mine = "postgresql://me@db.example.com/kb"
    assert dsn_for(load_settings(tmp_path, environ={**env, "EXPERTKIT_INDEX__DSN": mine}).index, env) == mine
    assert dsn_for(load_settings(tmp_path, {"index": {"dsn": mine}}, environ=env).index, env) == mine
