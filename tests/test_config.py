from pathlib import Path

import pytest

from expertkit.config import api_key_for, default_toml, load_settings, overrides_from_pairs, user_config_path
from expertkit.errors import ConfigError


def test_defaults_without_a_file(tmp_path):
    s = load_settings(tmp_path, environ={})
    assert s.search.mode == "hybrid" and s.search.k == 10 and s.embed.model == "all-minilm-l6-v2"


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
    ['"OPENAI_API_KEY"', '"OPENAI_API_KEY ftp://host"', '"HOME https://api.openai.com"', "5", '"a b c"'],
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
