"""The layers, read in order and validated once: the user's own config file, the workspace's expertkit.toml,
EXPERTKIT_* environment variables, then the command line's ``--set``. Which layer chose each guarded field
is kept for :mod:`expertkit.config.secrets`."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_origin

from pydantic import ValidationError

from expertkit.config.secrets import GUARDED, SECRETS, parse_secrets
from expertkit.config.settings import SecretPolicy, Settings
from expertkit.errors import ConfigError

CONFIG_FILE = "expertkit.toml"
ENV_PREFIX = "EXPERTKIT_"
USER_CONFIG_ENV = "EXPERTKIT_CONFIG"  # the user's own config file; not a setting (no "__")


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue  # EXPERTKIT_WORKSPACE and friends are not settings
        section, _, field = name[len(ENV_PREFIX) :].lower().partition("__")
        out.setdefault(section, {})[field] = typed(section, field, value, name)
    return out


def overrides_from_pairs(pairs: list[str]) -> dict[str, Any]:
    """Turn ``section.key=value`` strings (the CLI's --set) into a nested dict."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set {pair!r}: expected section.key=value, e.g. search.k=20")
        section, _, field = key.strip().partition(".")
        out.setdefault(section, {})[field] = typed(section, field, value.strip(), f"--set {key.strip()}")
    return out


def typed(section: str, field: str, value: str, origin: str) -> Any:
    """A value from the environment or ``--set`` as its field takes it. A list or a table is read as JSON, as
    pydantic-settings reads complex values; a list of plain values may also be comma-separated ("staff,hr").
    Anything else stays a string, which validation converts ("20" -> 20) or refuses with its reason."""
    model = Settings.model_fields.get(section)
    fields = model.annotation.model_fields if model is not None else {}
    kind = get_origin(fields[field].annotation) if field in fields else None
    if kind not in (list, dict):
        return value
    text = value.strip()
    if text.startswith(("[", "{")):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigError(f'{origin}: {section}.{field} is not valid JSON ({exc}): e.g. ["a", "b"]') from None
    if kind is dict:
        raise ConfigError(f'{origin}: {section}.{field} is a table: give it as JSON, e.g. {{"key": "value"}}')
    return [part.strip() for part in text.split(",") if part.strip()]


def _format_error(err: ValidationError, origin: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(root)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown setting"
    return f"{key}: {msg} (from {origin})"


def load_settings(
    workspace: Path | None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Read the user's config file, then the workspace's expertkit.toml, then the environment, then
    ``overrides``; validate once. Which layer chose the guarded fields (generate.base_url, api_key_env,
    server_binary; index.dsn) is kept (each section's ``_secrets``) for :func:`api_key_for`,
    :func:`server_binary_for` and :func:`dsn_for`."""
    env = dict(os.environ if environ is None else environ)
    user_file = user_config_path(env)
    user = _read_toml(user_file) if user_file.is_file() else {}
    allow, binaries = parse_secrets(user.pop(SECRETS, {}), user_file)
    layers: list[tuple[str, str, dict[str, Any]]] = [("user", str(user_file), user)]
    ws_file = workspace / CONFIG_FILE if workspace is not None else None
    if ws_file is not None and ws_file.exists() and not (user_file.is_file() and ws_file.samefile(user_file)):
        data = _read_toml(ws_file)
        if SECRETS in data:
            raise ConfigError(f"{ws_file}: [{SECRETS}] belongs in your own {user_file}, never in a workspace's file")
        layers.append(("workspace", str(ws_file), data))
    layers.append(("environment", "environment", _env_overrides(env)))
    layers.append(("command line", "command line", overrides or {}))
    merged: dict[str, Any] = {}
    chooser: dict[tuple[str, str], str] = {}  # (section, guarded field) -> the kind of layer that chose its value
    for kind, origin, layer in layers:
        for section, names in GUARDED.items():
            values = layer.get(section)
            for name in names if isinstance(values, dict) else ():
                # a workspace's file chooses only what it changes (expertkit init writes the defaults out)
                below = _value_below(merged, section, name)
                if name in values and (kind != "workspace" or str(values[name]) != below):
                    chooser[section, name] = kind
        merged = _deep_merge(merged, layer)
        try:  # validate layer by layer so the error names where the bad value came from
            Settings.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(_format_error(exc, origin)) from None
    settings = Settings.model_validate(merged)
    for section in GUARDED:
        values = getattr(settings, section)
        chosen = {
            name: getattr(values, name)
            for (sec, name), kind in chooser.items()
            if sec == section and kind == "workspace"
        }
        if chosen:
            values._secrets = SecretPolicy(str(ws_file), chosen, allow, str(user_file), binaries)
    return settings


def _value_below(merged: dict[str, Any], section: str, name: str) -> str:
    values = merged.get(section)
    if isinstance(values, dict) and name in values:
        return str(values[name])
    return str(getattr(Settings.model_fields[section].default, name))


def user_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The user's own config file: ``$EXPERTKIT_CONFIG``, else ``$XDG_CONFIG_HOME/expertkit/config.toml``,
    else ``~/.config/expertkit/config.toml`` (it need not exist)."""
    env = os.environ if environ is None else environ
    if env.get(USER_CONFIG_ENV):
        return Path(env[USER_CONFIG_ENV]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "expertkit" / "config.toml"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def default_toml() -> str:
    """The commented expertkit.toml that ``expertkit init`` writes."""
    lines = [
        "# expertkit workspace settings. Every key is optional; the values shown are the defaults.",
        "# Environment variables override this file (EXPERTKIT_SECTION__KEY=value), flags override both.",
    ]
    for name, field in Settings.model_fields.items():
        section = field.default
        lines += ["", f"[{name}]"]
        for key, sub in type(section).model_fields.items():
            value = getattr(section, key)
            if sub.description:
                lines.append(f"# {sub.description}")
            # an empty list is written commented out, so that [[section.key]] tables can replace it; an unset
            # value (None: decided at run time, as the description says) has no TOML spelling
            if value is None:
                lines.append(f"# {key} =")
            else:
                lines.append(f"# {key} = []" if value == [] else f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)
