"""The embedded index: one SQLite database holds sources, chunks, FTS5 text and vectors.

SQLite is ACID, so a process killed mid-ingest leaves each source fully old or fully new. BM25 comes
from FTS5. Dense search is an exact inner product over a float32 matrix cached in memory and on disk;
above ``ann_threshold`` chunks an HNSW graph (usearch) serves queries, kept up to date by every ingest
(``prepare_search``: vectors added and removed, not rebuilt). A filtered query goes through the graph when
the filter allows at least ``ANN_FILTER_SHARE`` of the chunks, asking it for enough neighbours that k
allowed ones are expected; a more selective filter, or a graph answer short of k, is scored exactly over
the allowed rows. The caches are never the source of truth.

Concurrency. One process writes, any number read (WAL):

- Writers hold the workspace write lock, an ``flock`` on ``index.db.lock`` taken at the first write (or
  by ``hold_write_lock``) and held until ``close``; the lock file names the holder's pid and command line.
  A second writer waits up to ``lock_timeout`` seconds, then gets a one-line WorkspaceError naming it.
  Every write, ``bind_embedder``'s check-then-write included, is one ``BEGIN IMMEDIATE`` transaction.
- A dense search runs in one read transaction: the generation, the cached matrix's catch-up, the allowed
  set of a filtered search and the final chunk-id lookup all see the same committed state, so a result
  never points at a row that a concurrent write removed or that the matrix does not hold. (Scoring still
  checks every allowed row against the matrix and reads any missing one directly.)
- The caches follow the generation counter incrementally. ``chunks.id`` is AUTOINCREMENT, so rows newer
  than a cache are exactly those with a larger id; deletions are logged in ``chunk_deletes`` (generation,
  id) by the transaction that makes them. A cache at generation g catches up by appending the newer rows
  and masking the ids deleted after g; the HNSW graph adds and removes the same keys. The log keeps the
  last ``_DELETE_LOG_GENERATIONS`` generations (``meta.deletes_from`` says from where); a cache older than
  that is rebuilt from the database.
- On disk the caches are named by the database's uid and their generation (a re-created database never
  reads a stale cache). They are written to a temporary file and renamed into place, so a reader never sees
  a partial file; a file that does not load or does not match is ignored, and the cache rebuilt. A process
  starting up loads the newest file not newer than the database and applies the delta since.

The package, by job:

- ``index``: ``SQLiteIndex`` itself: the connection, transactions and the generation counter, the embedder
  binding, sources and chunks, stats and the sync history;
- ``search``: how a query is answered: BM25 from FTS5, dense search exactly or through the HNSW graph, filters;
- ``caches``: how the dense matrix and the HNSW graph follow the database, and are loaded and saved;
- ``vectors``: those two caches themselves, and their files on disk;
- ``schema``: the tables, and the upgrades that bring an index written by an older expertkit up to them;
- ``lock``: the workspace write lock.
"""

from expertkit.index.base import text_hash
from expertkit.index.sqlite.caches import ANN_EXPANSION
from expertkit.index.sqlite.index import SQLiteIndex
from expertkit.index.sqlite.schema import SCHEMA_VERSION
from expertkit.index.sqlite.search import ANN_FILTER_SHARE

__all__ = ["ANN_EXPANSION", "ANN_FILTER_SHARE", "SCHEMA_VERSION", "SQLiteIndex", "text_hash"]
