import pytest

from expertkit.config import default_toml, load_settings, overrides_from_pairs
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
