"""The embedded index on SQLite; index.py holds it and explains its design."""

from expertkit.index.sqlite.index import ANN_EXPANSION, ANN_FILTER_SHARE, SCHEMA_VERSION, SQLiteIndex, text_hash

__all__ = ["ANN_EXPANSION", "ANN_FILTER_SHARE", "SCHEMA_VERSION", "SQLiteIndex", "text_hash"]
