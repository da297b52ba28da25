"""The Postgres index's tables in its own schema, and the upgrades that bring one written by an older expertkit
up to them. ``set_up`` runs in the caller's transaction, under the advisory lock that serialises schema changes."""

from __future__ import annotations

import json

from expertkit.index.keywords import KEYWORDS_VERSION, keyword_text
from expertkit.schema import Chunk

SCHEMA_VERSION = "1"
TEXT_CONFIG = "english"  # the text search configuration every tsvector and tsquery is made with


def _schema(s: str) -> str:
    return f"""
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.sources (
    id bigserial PRIMARY KEY,
    path text NOT NULL UNIQUE,
    content_hash text NOT NULL,
    file_type text NOT NULL,
    size bigint NOT NULL DEFAULT 0,
    mtime double precision NOT NULL DEFAULT 0,
    n_chunks integer NOT NULL DEFAULT 0,
    title text,
    warnings jsonb NOT NULL DEFAULT '[]',
    synced_at double precision NOT NULL,
    tags text[] NOT NULL DEFAULT '{{}}',
    groups text[] NOT NULL DEFAULT '{{}}',
    groups_pinned boolean NOT NULL DEFAULT false,
    pipeline text NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS {s}.chunks (
    id bigserial PRIMARY KEY,
    chunk_id text NOT NULL UNIQUE,
    source_id bigint NOT NULL REFERENCES {s}.sources(id) ON DELETE CASCADE,
    ordinal integer NOT NULL,
    text text NOT NULL,
    page integer,
    section jsonb NOT NULL DEFAULT '[]',
    record_id text,
    start integer NOT NULL,
    "end" integer NOT NULL,
    text_hash text NOT NULL,
    tsv tsvector NOT NULL,
    n_terms integer NOT NULL,
    embedding vector NOT NULL,
    path text NOT NULL,
    file_type text NOT NULL,
    tags text[] NOT NULL DEFAULT '{{}}',
    groups text[] NOT NULL DEFAULT '{{}}',
    context text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS chunks_source ON {s}.chunks (source_id);
CREATE INDEX IF NOT EXISTS chunks_text_hash ON {s}.chunks (text_hash);
CREATE INDEX IF NOT EXISTS chunks_tsv ON {s}.chunks USING gin (tsv);
CREATE INDEX IF NOT EXISTS chunks_groups ON {s}.chunks USING gin (groups);
CREATE INDEX IF NOT EXISTS chunks_tags ON {s}.chunks USING gin (tags);
CREATE TABLE IF NOT EXISTS {s}.syncs (
    id bigserial PRIMARY KEY,
    at double precision NOT NULL,
    added integer NOT NULL, updated integer NOT NULL, removed integer NOT NULL,
    unchanged integer NOT NULL, failed integer NOT NULL, sources integer NOT NULL
);
"""


# columns added since the first schema, as (table, column, definition)
_ADDED_COLUMNS = (
    ("sources", "pipeline", "text NOT NULL DEFAULT ''"),
    ("chunks", "context", "text NOT NULL DEFAULT ''"),
)


def set_up(conn, s: str) -> None:
    """Create schema ``s`` and its tables where missing, and bring an older one up to date."""
    conn.execute(_schema(s))
    _upgrade(conn, s)
    conn.execute(f"INSERT INTO {s}.meta VALUES ('schema_version', %s) ON CONFLICT DO NOTHING", (SCHEMA_VERSION,))
    _fold_keywords(conn, s)


def read_meta(conn, s: str, key: str) -> str | None:
    row = conn.execute(f"SELECT value FROM {s}.meta WHERE key = %s", (key,)).fetchone()
    return row[0] if row else None


def _fold_keywords(conn, s: str) -> None:
    """Chunks written before Greek words were folded for keyword search (index/keywords.py) get their
    tsvector again, once; other rows are what they were."""
    if read_meta(conn, s, "keywords"):
        return
    greek = "[\u0370-\u03ff\u1f00-\u1fff]"
    rows = conn.execute(
        f"SELECT id, text, section, context FROM {s}.chunks WHERE text ~ %s OR context ~ %s OR section::text ~ %s",
        (greek, greek, greek),
    ).fetchall()
    for cid, text, section, context in rows:
        heads = tuple(json.loads(section) if isinstance(section, str) else section)  # jsonb: a list already
        body = Chunk(text, "", 0, 0, 0, section=heads, context=context).embed_text()
        conn.execute(
            f"UPDATE {s}.chunks c SET tsv = t.tsv, n_terms = (SELECT coalesce(sum(array_length(positions, 1)),"
            " 0) FROM unnest(t.tsv)) FROM (SELECT to_tsvector(%s, %s) AS tsv) t WHERE c.id = %s",
            (TEXT_CONFIG, keyword_text(body), cid),
        )
    conn.execute(f"INSERT INTO {s}.meta VALUES ('keywords', %s)", (KEYWORDS_VERSION,))


def _upgrade(conn, s: str) -> None:
    """Add the columns that a schema written by an older expertkit lacks (an ALTER only when one is missing:
    it locks the table)."""
    have = set(
        conn.execute(
            "SELECT table_name || '.' || column_name FROM information_schema.columns WHERE table_schema = %s", (s,)
        ).fetchall()
    )
    for table, column, ddl in _ADDED_COLUMNS:
        if (f"{table}.{column}",) not in have:
            conn.execute(f"ALTER TABLE {s}.{table} ADD COLUMN {column} {ddl}")
