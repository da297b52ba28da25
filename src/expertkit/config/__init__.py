"""One validated Settings object: the user's own config file, then expertkit.toml, overridden by
EXPERTKIT_* env, overridden by flags.

Environment variables name a key with ``__`` between section and field, e.g.
``EXPERTKIT_SEARCH__K=20`` or ``EXPERTKIT_EMBED__BATCH_SIZE=32``. A list or a table is given as JSON
(``EXPERTKIT_TUNE__TARGETS='["q_proj","v_proj"]'``, as pydantic-settings reads it); a list of plain values
may also be comma-separated (``--set access.default_groups=staff,hr``).

The user's file (``$EXPERTKIT_CONFIG``, else ``$XDG_CONFIG_HOME/expertkit/config.toml``, else
``~/.config/expertkit/config.toml``) holds the same sections, below the workspace's, and ``[secrets]``:
``allow``, the (variable, server) pairs a workspace's file may send an API key or PGPASSWORD to (see
:func:`api_key_for`, :func:`dsn_for`), and ``allow_binaries``, the llama-servers it may run
(:func:`server_binary_for`).

- ``settings``: the sections and their fields;
- ``load``: the layers and their validation;
- ``secrets``: where a key or a password may be sent, and which binaries may run.
"""

from expertkit.config.load import (
    CONFIG_FILE,
    ENV_PREFIX,
    USER_CONFIG_ENV,
    default_toml,
    load_settings,
    overrides_from_pairs,
    user_config_path,
)
from expertkit.config.secrets import (
    PG_PASSWORD,
    SECRETS,
    api_key_for,
    dsn_for,
    is_loopback_host,
    server_binary_for,
)
from expertkit.config.settings import (
    API_KEY_VARIABLE,
    AccessRule,
    AccessSettings,
    AdviseSettings,
    EmbedSettings,
    GenerateSettings,
    IndexSettings,
    IngestSettings,
    RagSettings,
    SearchSettings,
    SecretPolicy,
    Section,
    ServeSettings,
    Settings,
    TuneSettings,
)

__all__ = [
    "API_KEY_VARIABLE",
    "CONFIG_FILE",
    "ENV_PREFIX",
    "PG_PASSWORD",
    "SECRETS",
    "USER_CONFIG_ENV",
    "AccessRule",
    "AccessSettings",
    "AdviseSettings",
    "EmbedSettings",
    "GenerateSettings",
    "IndexSettings",
    "IngestSettings",
    "RagSettings",
    "SearchSettings",
    "SecretPolicy",
    "Section",
    "ServeSettings",
    "Settings",
    "TuneSettings",
    "api_key_for",
    "default_toml",
    "dsn_for",
    "is_loopback_host",
    "load_settings",
    "overrides_from_pairs",
    "server_binary_for",
    "user_config_path",
]
