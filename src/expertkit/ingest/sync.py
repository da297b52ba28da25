"""Incremental sync: files → Documents → Chunks → vectors → the index, one transaction per file.

A file whose size and mtime, or else whose content hash, is unchanged is skipped without reading or
embedding; a touched-but-unchanged file gets its new size and mtime recorded, and a file modified within
``RACY_SECONDS`` of its last sync is hashed again rather than trusted (git's "racy" check). Each source
carries access groups: ``--group`` flags, else the last matching ``access.rules`` glob, else
``access.default_groups``. Chunk texts whose vectors the index already holds are not embedded again. Embedding is
batched across files; writing is per file, so a kill at any moment leaves every file fully old or
fully new, and the next run finishes the job.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from expertkit.config import AccessSettings
from expertkit.errors import IngestError
from expertkit.index.base import Index, SourceRecord, SyncRecord, content_hash, text_hash
from expertkit.ingest.chunking import Chunker
from expertkit.ingest.readers import read_document, supported
from expertkit.language import is_english
from expertkit.models.embedder import Embedder
from expertkit.schema import Chunk, Document

EMBED_FLUSH_CHUNKS = 1024  # chunks gathered across files before one embedding pass
RACY_SECONDS = 2.0  # a file modified this close to its last sync may change again within the same mtime tick


@dataclass
class FileResult:
    path: str
    status: str  # added | updated | unchanged | retagged | failed | skipped | removed
    chunks: int = 0
    reason: str = ""
    warnings: list[str] = field(default_factory=list)


_WRITES = ("added", "updated", "retagged", "removed")


@dataclass
class SyncReport:
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    load_seconds: float = 0.0  # loading the embedder, which only happens when something changed
    index_seconds: float = 0.0  # bringing the search caches (the HNSW graph above ann_threshold) up to date
    embedded: int = 0  # chunk texts sent to the embedder
    reused: int = 0  # chunk vectors taken from the index instead
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed" or r.warnings]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted


class SyncProgress(Protocol):
    """What sync reports while it works; the CLI draws it as a Rich progress bar."""

    def start(self, files: int) -> None: ...
    def advance(self, files: int = 0, chunks: int = 0) -> None: ...


class _Silent:
    def start(self, files: int) -> None:
        pass

    def advance(self, files: int = 0, chunks: int = 0) -> None:
        pass


@dataclass
class _Pending:
    source: SourceRecord
    chunks: list[Chunk]
    result: FileResult


def source_key(path: Path) -> str:
    """How a file is named in the index: its absolute path (links not followed), so any working
    directory finds it."""
    return Path(os.path.abspath(path.expanduser())).as_posix()


def collect_files(paths: Iterable[Path]) -> tuple[list[Path], list[FileResult]]:
    """Expand folders (recursively, skipping hidden entries). A file named explicitly is always taken,
    so an unknown format is reported; inside folders, files of unknown formats are listed as skipped."""
    files: list[Path] = []
    skipped: list[FileResult] = []
    for path in paths:
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    child = Path(root) / name
                    if name.startswith("."):
                        continue
                    if supported(child):
                        files.append(child)
                    else:
                        skipped.append(FileResult(source_key(child), "skipped", reason="unknown format"))
        else:
            files.append(path)  # missing or unreadable files fail with a reason in read_document
    return list(dict.fromkeys(files)), skipped


def first_foreign_document(paths: Iterable[Path], files: int = 24, chars: int = 4000) -> str | None:
    """The first of up to ``files`` documents under ``paths`` (spread evenly over them) whose opening
    ``chars`` characters are not English, or None: what ``embed.model = "auto"`` chooses an embedder by
    before the first ingest into an empty index. Files that cannot be read are passed over."""
    found, _ = collect_files(paths)
    step = max(1, len(found) // files)
    for path in found[::step][:files]:
        try:
            text = read_document(path).text[:chars]
        except IngestError:
            continue
        if not is_english(text):
            return source_key(path)
    return None


def glob_regex(pattern: str, ignore_case: bool = True) -> re.Pattern:
    """An access-rule glob as a regex over absolute paths. ``**`` is any depth, ``*`` and ``?`` stay
    within one name, a trailing ``/`` means the folder and everything in it. A pattern that starts with
    ``/`` is an absolute path; any other matches at any depth (``hr/**`` is every ``hr`` folder's
    content, ``*.xlsx`` every spreadsheet), so a rule never depends on which folder was ingested.
    With ``ignore_case`` (``access.ignore_case``, the default) case does not matter: ``hr/**`` also
    covers ``docs/HR/`` and ``*.xlsx`` a ``PAY.XLSX``, so a folder's spelling cannot take it past a rule."""
    anchored = pattern.startswith("/")
    folder = pattern.endswith("/")
    body = pattern.strip("/")
    out, i = [], 0
    while i < len(body):
        if body.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif body.startswith("**", i):
            out.append(".*")
            i += 2
        elif body[i] == "*":
            out.append("[^/]*")
            i += 1
        elif body[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(body[i]))
            i += 1
    regex = ("/" if anchored else "(?:.*/)?") + "".join(out) + ("/.*" if folder else "")
    return re.compile(regex, re.IGNORECASE if ignore_case else 0)


class AccessPolicy:
    """Which access groups a source gets: ``--group`` flags (pinned: later syncs keep them), else the
    last matching ``[[access.rules]]`` glob (like CODEOWNERS), else ``access.default_groups``."""

    def __init__(self, settings: AccessSettings | None = None) -> None:
        settings = settings or AccessSettings()
        self.default = tuple(sorted(set(settings.default_groups)))
        self.rules = [(glob_regex(r.glob, settings.ignore_case), tuple(sorted(set(r.groups)))) for r in settings.rules]

    def groups_for(self, key: str) -> tuple[str, ...]:
        names = {key, Path(os.path.realpath(key)).as_posix()}  # a link to a restricted folder is matched too
        chosen = self.default
        for regex, groups in self.rules:
            if any(regex.fullmatch(name) for name in names):
                chosen = groups
        return chosen


def chunk_id(path: str, digest: str, ordinal: int) -> str:
    """Stable while the file is unchanged; new when its content changes, so old citations never mislead."""
    return f"{hashlib.blake2b(f'{path}|{digest}'.encode(), digest_size=6).hexdigest()}:{ordinal}"


class Ingestor:
    """Configuration in __init__ (index, embedder, chunk sizes); files flow through ``sync``."""

    def __init__(
        self,
        index: Index,
        embedder: Embedder,
        chunk_tokens: int = 200,
        overlap: int = 32,
        max_file_mb: float = 200.0,
        access: AccessPolicy | None = None,
        context_headers: bool = True,
    ) -> None:
        self.index = index
        self.context_headers = context_headers
        # what decides a file's chunks besides its bytes: a source written under other settings is re-chunked
        self.pipeline = f"chunks={chunk_tokens}/{overlap};context={int(context_headers)}"
        self.access = access or AccessPolicy()
        self.embedder = embedder
        self.chunk_tokens = chunk_tokens
        self.overlap = overlap
        self.max_bytes = int(max_file_mb * 1024 * 1024)
        self._chunker: Chunker | None = None

    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:  # loads the embedder; only needed when something changed
            self._chunker = Chunker(
                self.embedder.tokenizer, self.chunk_tokens, self.overlap, self.embedder.max_tokens, self.context_headers
            )
        return self._chunker

    def sync(
        self,
        paths: Sequence[Path],
        tags: Sequence[str] = (),
        prune: bool = False,
        progress: SyncProgress | None = None,
        groups: Sequence[str] = (),
    ) -> SyncReport:
        """Bring the index up to date with ``paths``; with ``prune``, drop sources under them that are gone.
        ``groups`` (access groups) apply to every file; without them the workspace's access rules decide."""
        progress = progress or _Silent()
        started = time.perf_counter()
        report = SyncReport()
        files, skipped = collect_files(paths)
        report.results += skipped
        tags = tuple(sorted(set(tags)))
        todo = []
        for path in files:
            key = source_key(path)
            old = self.index.get_source(key)  # read once: for the groups, the stat check and _prepare
            access = self._groups(old, key, groups)
            unchanged = self._unchanged_by_stat(path, old, tags, access)
            if unchanged:
                report.results.append(unchanged)
            else:
                todo.append((path, old, access))
        if todo:
            self.index.hold_write_lock()  # a second ingest into the same SQLite index stops now, not after embedding
            t0 = time.perf_counter()
            self.chunker  # noqa: B018 - load the embedder now, so progress and rates describe the work
            report.load_seconds = time.perf_counter() - t0
        progress.start(len(todo))
        pending: list[_Pending] = []
        try:
            for path, old, access in todo:
                result, item = self._prepare(path, old, tags, access)
                report.results.append(result)
                if item is None:
                    progress.advance(files=1)
                    continue
                pending.append(item)
                if sum(len(p.chunks) for p in pending) >= EMBED_FLUSH_CHUNKS:
                    self._flush(pending, report, progress)
            self._flush(pending, report, progress)
            if prune:
                report.results += self.prune(paths)
        except KeyboardInterrupt:
            report.interrupted = True  # every committed file is whole; the rest is done on the next run
        if not report.interrupted and any(r.status in _WRITES for r in report.results):
            t0 = time.perf_counter()
            try:
                self.index.prepare_search()  # SQLite: the vector caches and HNSW graph follow the ingest
            except KeyboardInterrupt:
                report.interrupted = True  # the files are committed; the first search catches the caches up
            report.index_seconds = time.perf_counter() - t0
        report.seconds = time.perf_counter() - started
        record_sync(self.index, report.results)
        return report

    def _groups(self, old: SourceRecord | None, key: str, explicit: Sequence[str]) -> tuple[tuple[str, ...], bool]:
        """(groups, pinned). Explicit groups pin; a pinned source keeps its groups until given new ones, so
        a routine re-sync without --group never widens who may read it."""
        if explicit:
            return tuple(sorted(set(explicit))), True
        if old is not None and old.groups_pinned:
            return old.groups, True
        return self.access.groups_for(key), False

    def prune(self, roots: Sequence[Path]) -> list[FileResult]:
        """Remove indexed sources under ``roots`` whose files no longer exist."""
        keys = [source_key(r) for r in roots]
        out = []
        for source in self.index.sources():
            inside = any(source.path == k or source.path.startswith(k.rstrip("/") + "/") for k in keys)
            if inside and not Path(source.path).exists():
                out.append(FileResult(source.path, "removed", self.index.remove_source(source.path)))
        return out

    def _unchanged_by_stat(
        self, path: Path, old: SourceRecord | None, tags: tuple[str, ...], groups: tuple[tuple[str, ...], bool]
    ) -> FileResult | None:
        """Like git: same size and mtime means unchanged, without reading the file, unless the file was
        modified so close to its last sync that a later edit in the same mtime tick would look the same."""
        key = source_key(path)
        try:
            stat = path.stat()
        except OSError:
            return None
        if (
            old
            and old.pipeline == self.pipeline
            and old.size == stat.st_size
            and old.mtime == stat.st_mtime
            and old.tags == tags
            and (old.groups, old.groups_pinned) == groups
            and old.synced_at - stat.st_mtime > RACY_SECONDS
        ):
            return FileResult(key, "unchanged", old.n_chunks)
        return None

    def _prepare(
        self, path: Path, old: SourceRecord | None, tags: tuple[str, ...], access: tuple[tuple[str, ...], bool]
    ) -> tuple[FileResult, _Pending | None]:
        key = source_key(path)
        read_at = time.time()  # before reading: an edit after this moment is caught by the racy check
        try:
            stat = path.stat()
            if stat.st_size > self.max_bytes:
                raise IngestError(
                    key,
                    f"file is {stat.st_size / 2**20:.0f} MB, over ingest.max_file_mb",
                    "raise ingest.max_file_mb or split the file",
                )
            data = path.read_bytes() if path.is_file() else None
            if data is None:
                raise IngestError(key, "not a regular file")
        except OSError as exc:
            return FileResult(key, "failed", reason=f"cannot read file ({exc.strerror or exc})"), None
        except IngestError as exc:
            return FileResult(key, "failed", reason=exc.reason + (f"; {exc.hint}" if exc.hint else "")), None
        digest = content_hash(data)
        groups, pinned = access
        source = SourceRecord(
            key,
            digest,
            path.suffix.lower().lstrip("."),
            stat.st_size,
            stat.st_mtime,
            tags,
            groups=groups,
            groups_pinned=pinned,
            pipeline=self.pipeline,
        )
        if (
            old
            and old.content_hash == digest
            and old.pipeline == self.pipeline
            and old.tags == tags
            and (old.groups, old.groups_pinned) == access
        ):
            # touched, not changed: remember the new size and mtime so the next sync need not read it
            self.index.update_stat(key, stat.st_size, stat.st_mtime, read_at)
            return FileResult(key, "unchanged", old.n_chunks), None
        try:
            document = read_document(path, data)
        except IngestError as exc:
            return FileResult(key, "failed", reason=exc.reason + (f"; {exc.hint}" if exc.hint else "")), None
        except Exception as exc:  # a reader bug must not stop the batch; name it so it can be reported
            return FileResult(key, "failed", reason=f"reader error: {type(exc).__name__}: {exc}"), None
        document.path = key
        chunks = self._chunk(document, tags, digest)
        source.file_type, source.title, source.warnings = document.file_type, document.title, tuple(document.warnings)
        source.synced_at = read_at
        status = "added" if old is None else "updated"
        if old is not None and old.content_hash == digest and old.pipeline == self.pipeline:
            status = "retagged"  # same chunks, new tags or groups: nothing is re-embedded
        result = FileResult(key, status, len(chunks), warnings=list(document.warnings))
        return result, _Pending(source, chunks, result)

    def _chunk(self, document: Document, tags: tuple[str, ...], digest: str) -> list[Chunk]:
        chunks = self.chunker.chunk(document, tags)
        for c in chunks:
            c.chunk_id = chunk_id(document.path, digest, c.ordinal)
        return chunks

    def _flush(self, pending: list[_Pending], report: SyncReport, progress: SyncProgress) -> None:
        if not pending:
            return
        texts = [c.embed_text() for p in pending for c in p.chunks]
        hashes = [text_hash(t) for t in texts]
        known = self.index.cached_vectors(hashes)
        missing = list(dict.fromkeys(h for h in hashes if h not in known))
        if missing:
            by_hash = dict(zip(hashes, texts, strict=True))
            # slices, so a single large file (a BEIR corpus, a big CSV) still shows progress
            step = max(self.embedder.batch_size * 32, 2048)  # large slices: encode sorts by length within one
            for i in range(0, len(missing), step):
                part = missing[i : i + step]
                known.update(zip(part, self.embedder.encode([by_hash[h] for h in part]), strict=True))
                progress.advance(chunks=len(part))
        report.embedded += len(missing)
        report.reused += len(hashes) - len(missing)
        if texts:
            self.index.bind_embedder(self.embedder.name, self.embedder.dim)
        offset = 0
        for item in pending:
            n = len(item.chunks)
            vectors = np.stack([known[h] for h in hashes[offset : offset + n]]) if n else np.zeros((0, 1), np.float32)
            self.index.write_source(item.source, item.chunks, vectors)
            offset += n
            progress.advance(files=1)
        progress.advance(chunks=len(hashes) - len(missing))
        pending.clear()


def record_sync(index: Index, results: Sequence[FileResult]) -> None:
    """Append this sync's counts to the index's history (how often the sources change, for ``advise``)."""
    count = Counter(r.status for r in results)
    index.record_sync(
        SyncRecord(
            at=time.time(),
            added=count["added"],
            updated=count["updated"] + count["retagged"],
            removed=count["removed"],
            unchanged=count["unchanged"],
            failed=count["failed"],
            sources=index.stats().documents,
        )
    )


def remove(index: Index, paths: Sequence[Path]) -> list[FileResult]:
    """Drop the chunks of the given files, or of every file under the given folders."""
    out = []
    for path in paths:
        key = source_key(path)
        for source in index.sources():
            if source.path == key or source.path.startswith(key.rstrip("/") + "/"):
                out.append(FileResult(source.path, "removed", index.remove_source(source.path)))
    if out:
        record_sync(index, out)
    return out
