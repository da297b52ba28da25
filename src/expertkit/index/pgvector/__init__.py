"""The scale-out index: PostgreSQL with pgvector, behind the same Index protocol as SQLite.

Everything lives in one schema (``index.schema_name``), so several workspaces can share a database:
``sources`` (one row per file), ``chunks`` (text, spans, a ``tsvector`` for full text and a ``vector`` for
dense search, with the source's path, type, tags and access groups copied onto each chunk so that every
filter is a WHERE on the one table the HNSW index serves) and ``meta``/``syncs``.

- Full text: Postgres's own text search (the ``english`` configuration: Snowball stemming, stop words)
  finds the matches through a GIN index, and they are ranked by Okapi BM25 (k1 = 1.2, b = 0.75, FTS5's
  idf), computed in SQL from each chunk's ``tsvector`` (term frequencies are its position counts) and
  its stored length. Postgres's own ``ts_rank_cd`` has no idf: on SciFact it scored nDCG@10 0.43
  against BM25's 0.68. Document frequencies, the chunk count and the mean length are read from the
  table per query term and cached for ``STATS_TTL_S`` (dropped at once after this process writes).
- Dense: inner product on unit vectors through an HNSW index (``vector_ip_ops``). Filtered queries use
  pgvector's iterative index scan, so a filter does not starve the top k; when the allowed set is so
  small that the scan still comes back short, the query is repeated as an exact scan.
- Each file is one transaction; readers never wait for writers (MVCC). The embedder binding takes an
  advisory lock, so two first ingests cannot bind different embedders.

The package, by job:

- ``index``: ``PostgresIndex`` itself: the connection's transactions, the embedder binding, the bulk load
  (HNSW built once after it), sources and chunks, stats and the sync history;
- ``search``: how a query is answered: BM25 in SQL, dense search through HNSW (exact when a filter starves
  it), filters;
- ``schema``: the tables, and the upgrades that bring an index written by an older expertkit up to them;
- ``connect``: the connection (psycopg with pgvector's types), and ``redact_dsn`` for messages.
"""

from expertkit.index.pgvector.connect import redact_dsn
from expertkit.index.pgvector.index import PostgresIndex, _array
from expertkit.index.pgvector.schema import SCHEMA_VERSION, TEXT_CONFIG
from expertkit.index.pgvector.search import BM25_B, BM25_K1, STATS_TTL_S

__all__ = ["BM25_B", "BM25_K1", "SCHEMA_VERSION", "STATS_TTL_S", "TEXT_CONFIG", "PostgresIndex", "_array", "redact_dsn"]
