"""The embedded index's tables, and the upgrades that bring an index written by an older expertkit up to them.

``set_up`` runs once on a new or older database, in one ``BEGIN IMMEDIATE`` transaction; ``needs_setup``
tells, without writing, whether a database needs it (a reader opening a busy index must not queue behind
the writer for a write it does not need).
"""

from __future__ import annotations

import sqlite3
import uuid

from expertkit.index.keywords import KEYWORDS_VERSION, has_greek, keyword_text

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    content_hash TEXT NOT NULL,
    file_type TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    mtime REAL NOT NULL DEFAULT 0,
    n_chunks INTEGER NOT NULL DEFAULT 0,
    title TEXT,
    warnings TEXT NOT NULL DEFAULT '[]',
    synced_at REAL NOT NULL,
    groups_pinned INTEGER NOT NULL DEFAULT 0,
    pipeline TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS source_tags (
    source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (source_id, tag)
);
CREATE INDEX IF NOT EXISTS source_tags_tag ON source_tags(tag);
CREATE TABLE IF NOT EXISTS source_groups (
    source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    grp TEXT NOT NULL,
    PRIMARY KEY (source_id, grp)
);
CREATE INDEX IF NOT EXISTS source_groups_grp ON source_groups(grp);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chunk_id TEXT NOT NULL UNIQUE,
    source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    page INTEGER,
    section TEXT NOT NULL DEFAULT '[]',
    record_id TEXT,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    text_hash TEXT NOT NULL,
    vector BLOB NOT NULL,
    context TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source_id);
CREATE INDEX IF NOT EXISTS chunks_text_hash ON chunks(text_hash);
CREATE TABLE IF NOT EXISTS syncs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    added INTEGER NOT NULL, updated INTEGER NOT NULL, removed INTEGER NOT NULL,
    unchanged INTEGER NOT NULL, failed INTEGER NOT NULL, sources INTEGER NOT NULL
);
-- chunks deleted by each generation's transaction, so that caches can catch up without a full re-read
CREATE TABLE IF NOT EXISTS chunk_deletes (
    gen INTEGER NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (gen, id)
) WITHOUT ROWID;
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(body, tokenize='porter unicode61 remove_diacritics 2');
"""

# columns added since the first schema, as (table, column, definition): older indexes get them on open.
# groups_pinned: pins default to off; pipeline '': every source is re-chunked on its next sync; context '':
# chunks written before document headers have none until then
_ADDED_COLUMNS = (
    ("sources", "groups_pinned", "INTEGER NOT NULL DEFAULT 0"),
    ("sources", "pipeline", "TEXT NOT NULL DEFAULT ''"),
    ("chunks", "context", "TEXT NOT NULL DEFAULT ''"),
)


def needs_setup(db: sqlite3.Connection) -> bool:
    """Whether ``set_up`` has anything to do: a new database, or one written by an older expertkit. Only
    then is the database written to here: a reader opening a busy index must not queue behind the writer
    for a write it does not need."""
    try:
        keys = {k for (k,) in db.execute("SELECT key FROM meta WHERE key IN ('uid', 'deletes_from', 'keywords')")}
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        return True
    return keys != {"uid", "deletes_from", "keywords"} or bool(upgrades(db))


def upgrades(db: sqlite3.Connection) -> str:
    """The ALTERs that bring an index written by an older expertkit up to this schema (none for a new one)."""
    out = []
    for table, column, ddl in _ADDED_COLUMNS:
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if have and column not in have:
            out.append(f"ALTER TABLE {table} ADD COLUMN {column} {ddl};")
    return "".join(out)


def set_up(db: sqlite3.Connection) -> None:
    """Create the tables and the metadata a new index lacks, and upgrade an older one, in one transaction.
    The caller holds the connection's lock."""
    uid = uuid.uuid4().hex[:12]  # caches are named by it, so a re-created database never reads a stale cache
    upgrade = upgrades(db)
    try:
        db.executescript(
            "BEGIN IMMEDIATE;"
            + upgrade
            + _SCHEMA
            + f"INSERT OR IGNORE INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');"
            "INSERT OR IGNORE INTO meta VALUES ('generation', '0');"
            f"INSERT OR IGNORE INTO meta VALUES ('uid', '{uid}');"
            # deletions before this generation were not logged: older caches are rebuilt, not patched
            "INSERT OR IGNORE INTO meta SELECT 'deletes_from', value FROM meta WHERE key = 'generation';"
        )
        _fold_keywords(db)
        db.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        if "duplicate column" not in str(exc):  # else another process upgraded it first
            raise
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _fold_keywords(db: sqlite3.Connection) -> None:
    """Inside set_up's transaction: an index written before Greek words were folded for keyword search
    (index/keywords.py) gets its Greek rows re-folded, once; English rows are what they were."""
    if db.execute("SELECT 1 FROM meta WHERE key = 'keywords'").fetchone():
        return
    for rowid, body in db.execute("SELECT rowid, body FROM chunks_fts").fetchall():
        if has_greek(body):
            db.execute("DELETE FROM chunks_fts WHERE rowid = ?", (rowid,))
            db.execute("INSERT INTO chunks_fts (rowid, body) VALUES (?, ?)", (rowid, keyword_text(body)))
    db.execute("INSERT INTO meta VALUES ('keywords', ?)", (KEYWORDS_VERSION,))
