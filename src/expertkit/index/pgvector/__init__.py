"""The scale-out index: PostgreSQL with pgvector (``index.py`` holds it; the split by job comes next)."""

from expertkit.index.pgvector.index import PostgresIndex, _array, redact_dsn

__all__ = ["PostgresIndex", "_array", "redact_dsn"]
