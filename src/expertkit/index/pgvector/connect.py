"""Connecting to PostgreSQL (psycopg, with pgvector's types registered), and DSNs without their passwords for
messages."""

from __future__ import annotations

import re

from expertkit.errors import WorkspaceError


def connect(dsn: str):
    try:
        import psycopg
        from pgvector.psycopg import register_vector
    except ImportError:
        raise WorkspaceError(
            "index.backend = 'postgres' needs psycopg and pgvector: pip install 'expertkit[postgres]'"
        ) from None
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WorkspaceError(
            f"cannot connect to PostgreSQL at {redact_dsn(dsn)} ({first}); start it (`expertkit db start` for a "
            "local one) or fix index.dsn"
        ) from None
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector") if not _has_vector(conn) else None
    register_vector(conn)
    return conn


def _has_vector(conn) -> bool:
    return conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() is not None


# user:password@ in a URL, up to the last @ (a password written unescaped may hold one)
_URL_PASSWORD = re.compile(r"(://[^:/?#@\s]*:)\S*@")
_URL_PARAM = re.compile(r"([?&](?:ssl)?password=)[^&#\s]*", re.IGNORECASE)
# key = value: spaces around '=', a value in quotes with spaces and \' escapes (an unclosed one runs to the end)
_KV_PASSWORD = re.compile(r"""(?<![\w.])((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*(?:'|$)|"[^"]*(?:"|$)|\S+)""",
                          re.IGNORECASE)  # fmt: skip


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for messages: URL (``postgresql://user:pw@host/db?password=pw``) and
    key/value (``host=h password = 'a b'``) forms."""
    if re.match(r"\s*postgres(?:ql)?://", dsn, re.IGNORECASE):
        return _URL_PARAM.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", dsn))
    return _KV_PASSWORD.sub(r"\1***", dsn)
