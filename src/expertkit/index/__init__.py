"""Index backends behind one protocol: SQLite (embedded default); Postgres + pgvector (scale-out)."""

from expertkit.index.base import Filters, Index, IndexStats, SourceRecord

__all__ = ["Filters", "Index", "IndexStats", "SourceRecord"]
