"""Where a secret may go and what may run: an API key is sent, PGPASSWORD given, or a llama-server binary run
only where the user's own file allows it when a workspace's file chose the server (its ``[secrets]``
section: ``allow`` and ``allow_binaries``)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from expertkit.config.settings import API_KEY_VARIABLE, GenerateSettings, IndexSettings
from expertkit.errors import ConfigError

SECRETS = "secrets"  # the user file's allow-list section; never a workspace's
# the fields that send a secret somewhere or name a program to run: a workspace's file may not choose them alone
GUARDED = {"generate": ("base_url", "api_key_env", "server_binary"), "index": ("dsn",)}
# those that send an API key (base_url, api_key_env): a workspace's file may choose them only as the user allows
KEY_FIELDS = ("base_url", "api_key_env")
PG_PASSWORD = "PGPASSWORD"  # libpq sends it to whatever server a connection string names
_HTTP_SCHEMES = {"http": 80, "https": 443}  # scheme -> its default port
_PG_SCHEMES = {"postgresql": 5432, "postgres": 5432}


def _origin(url: str, schemes: Mapping[str, int] = _HTTP_SCHEMES) -> str | None:
    """``scheme://host[:port]`` of a URL in one of ``schemes`` (http(s) by default), lower-cased, the default
    port left out (postgres:// spelt postgresql://); None if not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in schemes or not host:
        return None
    scheme = "postgresql" if scheme == "postgres" else scheme
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + (f":{port}" if port and port != schemes[scheme] else "")


def is_loopback_host(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (a name other than localhost is not resolved)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def api_key_for(settings: GenerateSettings, environ: Mapping[str, str] | None = None) -> str:
    """The API key to send to ``settings.base_url``: the variable ``api_key_env`` names, or "" when it is unset.

    Refused (ConfigError) when the key would travel over plain http to another machine, or when the workspace's
    expertkit.toml chose the server or the variable and the user's own file does not allow that pair: running
    expertkit in someone else's folder must not send one's key to a server that folder names.
    """
    env = os.environ if environ is None else environ
    name, url = settings.api_key_env, settings.base_url
    key = env.get(name, "")
    if not key or not url:
        return ""
    origin = _origin(url)
    if origin is None:
        raise ConfigError(
            f"generate.base_url = {url!r}: expected an http:// or https:// URL, e.g. https://api.openai.com/v1"
        )
    if not origin.startswith("https://") and not is_loopback_host(urlsplit(url.strip()).hostname or ""):
        raise ConfigError(
            f"generate.base_url = {url}: expertkit sends {name} only over https or to this machine (localhost, "
            f"127.0.0.1, ::1), not over plain http to {origin}: use https://{url.strip().split('://', 1)[1]}"
        )
    policy = settings._secrets
    chosen = [
        f"generate.{f}"
        for f, v in (policy.chosen if policy else {}).items()
        if f in KEY_FIELDS and getattr(settings, f) == v
    ]
    if chosen and (name, origin) not in policy.allow:
        raise ConfigError(
            f"{policy.workspace_file} sets {' and '.join(chosen)}, so it would send {name} to {origin}; a workspace "
            f"cannot choose where your keys go: if you trust it, add to {policy.user_file}: "
            f'[{SECRETS}] allow = ["{name} {origin}"]'
        )
    return key


def server_binary_for(settings: GenerateSettings) -> str:
    """``generate.server_binary`` as it may run: as set where the user chose it (their own file, the
    environment, --set). Where the workspace's expertkit.toml chose it, only a program the user's own file
    lists in ``[secrets] allow_binaries``, and then by its resolved path (a link in the workspace cannot be
    re-pointed, nor its folder supply the libraries); otherwise ConfigError: running expertkit in someone
    else's folder must not run a program that folder names."""
    binary, policy = settings.server_binary, settings._secrets
    if not binary or policy is None or policy.chosen.get("server_binary") != binary:
        return binary
    path = str(Path(binary).expanduser().resolve())
    if path not in policy.allow_binaries:
        raise ConfigError(
            f"{policy.workspace_file} sets generate.server_binary = {binary}, a program expertkit would run; a "
            f"workspace cannot choose what runs on your machine: if you trust it, add to {policy.user_file}: "
            f"[{SECRETS}] allow_binaries = [{json.dumps(path)}]"
        )
    return path


def dsn_for(settings: IndexSettings, environ: Mapping[str, str] | None = None) -> str:
    """``index.dsn`` as it may be connected to. Refused (ConfigError) where the workspace's expertkit.toml
    chose it, it holds no password of its own and PGPASSWORD is set (libpq sends PGPASSWORD to whatever server
    the string names), unless each server it names is this machine (a unix socket, loopback) or one the user's
    own file allows: ``[secrets] allow = ["PGPASSWORD postgresql://host:port"]``. ~/.pgpass needs no rule:
    libpq matches each of its lines to its own host, port, database and user."""
    env = os.environ if environ is None else environ
    dsn, policy = settings.dsn, settings._secrets
    if not dsn or policy is None or policy.chosen.get("dsn") != dsn or not env.get(PG_PASSWORD):
        return dsn
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return dsn  # no driver, no connection: opening the index says what to install
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return dsn  # libpq cannot read it either, so it connects nowhere; its own error says why
    if params.get("password"):
        return dsn  # its own password goes, not PGPASSWORD
    away = [o for o in _pg_servers(params, env) if (PG_PASSWORD, o) not in policy.allow]
    if away:
        lines = ", ".join(json.dumps(f"{PG_PASSWORD} {o}") for o in away)
        raise ConfigError(
            f"{policy.workspace_file} sets index.dsn, so libpq would send your {PG_PASSWORD} to {', '.join(away)}; "
            f"a workspace cannot choose where your password goes: if you trust it, add to {policy.user_file}: "
            f"[{SECRETS}] allow = [{lines}] (or give that server its own line in ~/.pgpass)"
        )
    return dsn


def _pg_servers(params: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """The postgresql:// origins of the servers a parsed connection string names that are not this machine
    (a unix socket, loopback): for each host in its list, the hostaddr libpq connects to where one is given.
    A host left out is the user's own PGHOST, or the local socket."""
    hosts = str(params.get("host") or "").split(",")
    addrs = str(params.get("hostaddr") or "").split(",")
    ports = str(params.get("port") or env.get("PGPORT") or "").split(",")
    out = []
    for i in range(max(len(hosts), len(addrs))):
        addr = (addrs[i] if i < len(addrs) else "") or (hosts[i] if i < len(hosts) else "")
        if not addr or addr.startswith(("/", "@")) or is_loopback_host(addr):
            continue
        port = (ports[i] if len(ports) > 1 and i < len(ports) else ports[0]) or "5432"
        host = f"[{addr}]" if ":" in addr else addr
        out.append(_origin(f"postgresql://{host}:{port}", _PG_SCHEMES) or f"postgresql://{host}:{port}")
    return out


def parse_secrets(section: Any, path: Path) -> tuple[frozenset[tuple[str, str]], frozenset[str]]:
    """``[secrets] allow = ["VARIABLE scheme://host[:port]", ...]`` as (variable, origin) pairs (an API key
    variable and an http(s) server, or PGPASSWORD and a postgresql:// one), and ``allow_binaries =
    ["/absolute/path", ...]`` as resolved paths."""
    example = '[secrets] allow = ["OPENAI_API_KEY https://api.openai.com"]'
    binaries_example = '[secrets] allow_binaries = ["/opt/llama/bin/llama-server"]'
    entries = section.get("allow", []) if isinstance(section, dict) else None
    binaries = section.get("allow_binaries", []) if isinstance(section, dict) else None
    if not isinstance(entries, list) or not isinstance(binaries, list) or set(section) - {"allow", "allow_binaries"}:
        raise ConfigError(
            f"{path}: [{SECRETS}] holds two lists, of variable and server, and of programs: {example}, "
            f"{binaries_example}"
        )
    pairs = set()
    for entry in entries:
        parts = entry.split() if isinstance(entry, str) else []
        pg = len(parts) == 2 and parts[0] == PG_PASSWORD
        origin = _origin(parts[1], _PG_SCHEMES if pg else _HTTP_SCHEMES) if len(parts) == 2 else None
        if origin is None or not (pg or re.fullmatch(API_KEY_VARIABLE, parts[0])):
            raise ConfigError(
                f"{path}: secrets.allow entry {entry!r}: expected a variable and a server, {example} "
                f'(or "{PG_PASSWORD} postgresql://host:port")'
            )
        pairs.add((parts[0], origin))
    allowed = set()
    for binary in binaries:
        if not isinstance(binary, str) or not Path(binary).expanduser().is_absolute():
            raise ConfigError(f"{path}: secrets.allow_binaries entry {binary!r}: expected an absolute path, "
                              f"{binaries_example}")  # fmt: skip
        allowed.add(str(Path(binary).expanduser().resolve()))
    return frozenset(pairs), frozenset(allowed)
