"""Structure-aware chunking bounded in the embedder's tokens.

Blocks that share a page, heading path and record form a unit; a chunk never crosses units, so a
chunk's page, section and record id are exact. Within a unit, sentences are packed greedily up to
``chunk_tokens``, and each next chunk repeats up to ``overlap`` tokens of trailing sentences.
A sentence longer than a chunk is cut into token windows.

With ``context`` on, every chunk carries a document line (``Chunk.context``: the document's title, and its
file name when the title is not just the name) that the embedder and BM25 see with the heading path. Each
chunk's text budget shrinks by that header where text plus header would overrun the embedder's
``max_tokens``, so the embedder never truncates a chunk's own text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Protocol

from expertkit.schema import Block, Chunk, Document

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")


class Tokenizer(Protocol):
    """The part of a Hugging Face fast tokenizer that chunking uses."""

    def __call__(self, text: Sequence[str], **kwargs): ...  # noqa: D102


@dataclass
class _Piece:
    start: int
    end: int
    tokens: int


class Chunker:
    """Configuration in __init__ (sizes, tokenizer); documents flow through ``chunk``."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        chunk_tokens: int = 200,
        overlap: int = 32,
        max_tokens: int | None = None,
        context: bool = False,
    ) -> None:
        if overlap >= chunk_tokens:
            raise ValueError("overlap must be smaller than chunk_tokens")
        self.tokenizer = tokenizer
        self.chunk_tokens = chunk_tokens
        self.overlap = overlap
        self.max_tokens = max_tokens  # the embedder's limit; None: headers are not budgeted
        self.context = context

    def chunk(self, document: Document, tags: Sequence[str] = ()) -> list[Chunk]:
        chunks: list[Chunk] = []
        line = document_line(document) if self.context else ""
        name = PurePath(document.path).name if self.context else ""
        units = _units(document.blocks)
        # where the heading path already starts with the title (a Markdown H1), the file name alone says the rest
        contexts = {
            u[0].section: name if u[0].section and _plain(u[0].section[0]) == _plain(document.title or "") else line
            for u in units
        }
        budgets = self._budgets(contexts)
        for unit in units:
            first = unit[0]
            size = budgets[first.section]
            context = contexts[first.section]
            overlap = self.overlap if size == self.chunk_tokens else min(self.overlap, size // 2)
            for start, end in self._spans(document.text, unit, size, overlap):
                chunks.append(
                    Chunk(
                        text=document.text[start:end],
                        source=document.path,
                        ordinal=len(chunks),
                        start=start,
                        end=end,
                        file_type=document.file_type,
                        page=first.page,
                        section=first.section,
                        record_id=first.record_id,
                        tags=tuple(tags),
                        context=context,
                    )
                )
        return chunks

    def _budgets(self, contexts: dict[tuple[str, ...], str]) -> dict[tuple[str, ...], int]:
        """Text tokens per chunk for each heading path: chunk_tokens, less what the header (document line and
        heading, one line each) takes beyond the embedder's spare room; never under a quarter of chunk_tokens."""
        distinct = list(contexts)
        if self.max_tokens is None:
            return dict.fromkeys(distinct, self.chunk_tokens)
        headers = ["\n".join(p for p in (contexts[s], " > ".join(s)) if p) for s in distinct]
        counts = self._count([h + "\n" if h else "" for h in headers])
        floor = max(8, self.chunk_tokens // 4)
        room = self.max_tokens - 2  # [CLS] and [SEP]
        return {s: max(floor, min(self.chunk_tokens, room - n)) for s, n in zip(distinct, counts, strict=True)}

    def _spans(self, text: str, unit: list[Block], size: int, overlap: int) -> list[tuple[int, int]]:
        spans = [s for b in unit for s in _sentence_spans(text, b.start, b.start + len(b.text))]
        counts = self._count([text[s:e] for s, e in spans])
        pieces: list[_Piece] = []
        for (s, e), n in zip(spans, counts, strict=True):
            if n <= size:
                pieces.append(_Piece(s, e, n))
            else:
                pieces += self._windows(text, s, e, size, overlap)
        out: list[tuple[int, int]] = []
        i = 0
        while i < len(pieces):
            j, total = i, 0
            while j < len(pieces) and (j == i or total + pieces[j].tokens <= size):
                total += pieces[j].tokens
                j += 1
            out.append((pieces[i].start, pieces[j - 1].end))
            if j >= len(pieces):
                break
            # step back over trailing pieces that fit in the overlap, but always move forward
            back, carried = j, 0
            while back - 1 > i and carried + pieces[back - 1].tokens <= overlap:
                back -= 1
                carried += pieces[back].tokens
            i = back
        return out

    def _count(self, texts: list[str]) -> list[int]:
        if not any(texts):
            return [0] * len(texts)
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(x) for x in ids]

    def _windows(self, text: str, start: int, end: int, size: int, overlap: int) -> list[_Piece]:
        """Cut one over-long sentence into windows of ``size`` tokens with overlap, on token boundaries."""
        enc = self.tokenizer([text[start:end]], add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"][0]
        step = size - overlap
        out = []
        for first in range(0, len(offsets), step):
            window = offsets[first : first + size]
            out.append(_Piece(start + window[0][0], start + window[-1][1], len(window)))
            if first + size >= len(offsets):
                break
        # neighbouring windows already overlap; mark them so the packer does not add more
        return out


_MAX_LINE = 100  # characters of the document line; a longer title is cut at a word


def document_line(document: Document) -> str:
    """The header that tells a chunk which document it is in: the title, and the file name where the title
    does not already say it ("NV-400 Service Manual (nv400-service-manual.pdf)")."""
    name = PurePath(document.path).name
    title = (document.title or "").strip()
    if len(title) > _MAX_LINE:
        title = title[:_MAX_LINE].rsplit(" ", 1)[0] + "…"
    if not title or _plain(title) == _plain(PurePath(name).stem):
        return name
    return f"{title} ({name})"


def _plain(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text).strip().lower()


def _units(blocks: list[Block]) -> list[list[Block]]:
    units: list[list[Block]] = []
    key = None
    for block in blocks:
        this = (block.page, block.section, block.record_id)
        # every row and record is its own unit, so a question about one product finds its own row
        if units and this == key and block.kind not in ("table_row", "record"):
            units[-1].append(block)
        else:
            units.append([block])
        key = this
    return units


def _sentence_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans = []
    pos = start
    for match in _SENTENCE_END.finditer(text, start, end):
        if match.start() > pos:
            spans.append((pos, match.start()))
        pos = match.end()
    if pos < end:
        spans.append((pos, end))
    return spans
