"""The records that flow through expertkit: Document → Block → Chunk → SearchHit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Block:
    """A structural unit of a source: a paragraph, heading, table row, page or data record."""

    text: str
    kind: str = "paragraph"  # paragraph | heading | table_row | record | code
    page: int | None = None  # 1-based, for paged formats
    section: tuple[str, ...] = ()  # heading path, outermost first
    record_id: str | None = None  # row/record id for structured data
    start: int = 0  # character offset into Document.text, set by Document.from_blocks


@dataclass
class Document:
    """One source file's text, with the structure its reader found."""

    path: str
    file_type: str
    text: str
    blocks: list[Block]
    title: str | None = None
    warnings: list[str] = field(default_factory=list)  # recoverable problems, e.g. a bad JSONL line

    @classmethod
    def from_blocks(
        cls,
        path: str,
        file_type: str,
        blocks: list[Block],
        title: str | None = None,
        warnings: list[str] | None = None,
    ) -> Document:
        """Join non-empty blocks with blank lines and record each block's offset in the joined text."""
        parts: list[str] = []
        kept: list[Block] = []
        offset = 0
        for block in blocks:
            text = block.text.strip()
            if not text:
                continue
            block.text = text
            block.start = offset
            parts.append(text)
            kept.append(block)
            offset += len(text) + 2
        return cls(path, file_type, "\n\n".join(parts), kept, title, list(warnings or []))


@dataclass
class Chunk:
    """A retrievable span of one document, bounded in embedder tokens."""

    text: str
    source: str  # the source path as ingested
    ordinal: int  # position within the source
    start: int  # character span in the source's extracted text
    end: int
    file_type: str = ""
    page: int | None = None
    section: tuple[str, ...] = ()
    record_id: str | None = None
    tags: tuple[str, ...] = ()
    chunk_id: str = ""  # "<source hash>:<ordinal>", set by the index on write
    context: str = ""  # which document this is ("title · file name"), set by the chunker; see embed_text

    @property
    def heading(self) -> str:
        return " > ".join(self.section)

    def embed_text(self, context: bool = True) -> str:
        """What the embedder and BM25 see: the document line and the heading path give a chunk its context,
        so a passage that never names its product or company still carries it. ``text`` stays exact."""
        return "\n".join(part for part in (self.context if context else "", self.heading, self.text) if part)

    def location(self) -> str:
        """Human-readable locator: path plus page, section or record."""
        where = [self.source]
        if self.page is not None:
            where.append(f"p.{self.page}")
        if self.record_id is not None:
            where.append(f"#{self.record_id}")
        if self.section:
            where.append(f"§ {self.heading}")
        return " ".join(where)


@dataclass
class SearchHit:
    chunk: Chunk
    score: float
    scores: dict[str, float] = field(default_factory=dict)  # per retriever, for inspection

    def to_json(self) -> dict[str, Any]:
        c = self.chunk
        return {
            "chunk_id": c.chunk_id,
            "score": round(self.score, 6),
            "scores": {name: round(v, 6) for name, v in self.scores.items()},  # bm25, dense, rerank
            "text": c.text,
            "source": c.source,
            "page": c.page,
            "section": c.heading or None,
            "record_id": c.record_id,
            "tags": list(c.tags),
            "file_type": c.file_type,
            "span": [c.start, c.end],
        }
