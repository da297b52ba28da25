"""Structure-aware chunking bounded in the embedder's tokens.

Blocks that share a page, heading path and record form a unit; a chunk never crosses units, so a
chunk's page, section and record id are exact. Within a unit, sentences are packed greedily up to
``chunk_tokens``, and each next chunk repeats up to ``overlap`` tokens of trailing sentences.
A sentence longer than a chunk is cut into token windows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
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

    def __init__(self, tokenizer: Tokenizer, chunk_tokens: int = 200, overlap: int = 32) -> None:
        if overlap >= chunk_tokens:
            raise ValueError("overlap must be smaller than chunk_tokens")
        self.tokenizer = tokenizer
        self.chunk_tokens = chunk_tokens
        self.overlap = overlap

    def chunk(self, document: Document, tags: Sequence[str] = ()) -> list[Chunk]:
        chunks: list[Chunk] = []
        for unit in _units(document.blocks):
            first = unit[0]
            for start, end in self._spans(document.text, unit):
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
                    )
                )
        return chunks

    def _spans(self, text: str, unit: list[Block]) -> list[tuple[int, int]]:
        spans = [s for b in unit for s in _sentence_spans(text, b.start, b.start + len(b.text))]
        counts = self._count([text[s:e] for s, e in spans])
        pieces: list[_Piece] = []
        for (s, e), n in zip(spans, counts, strict=True):
            if n <= self.chunk_tokens:
                pieces.append(_Piece(s, e, n))
            else:
                pieces += self._windows(text, s, e)
        out: list[tuple[int, int]] = []
        i = 0
        while i < len(pieces):
            j, total = i, 0
            while j < len(pieces) and (j == i or total + pieces[j].tokens <= self.chunk_tokens):
                total += pieces[j].tokens
                j += 1
            out.append((pieces[i].start, pieces[j - 1].end))
            if j >= len(pieces):
                break
            # step back over trailing pieces that fit in the overlap, but always move forward
            back, carried = j, 0
            while back - 1 > i and carried + pieces[back - 1].tokens <= self.overlap:
                back -= 1
                carried += pieces[back].tokens
            i = back
        return out

    def _count(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(x) for x in ids]

    def _windows(self, text: str, start: int, end: int) -> list[_Piece]:
        """Cut one over-long sentence into windows of chunk_tokens with overlap, on token boundaries."""
        enc = self.tokenizer([text[start:end]], add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"][0]
        step = self.chunk_tokens - self.overlap
        out = []
        for first in range(0, len(offsets), step):
            window = offsets[first : first + self.chunk_tokens]
            out.append(_Piece(start + window[0][0], start + window[-1][1], len(window)))
            if first + self.chunk_tokens >= len(offsets):
                break
        # neighbouring windows already overlap; mark them so the packer does not add more
        return out


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
