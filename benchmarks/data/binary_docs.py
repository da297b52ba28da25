"""The PDF and DOCX writers the planted-fact sets share (planted, heldout, planted-el): each set's make_binary.py
holds its documents' text and calls these.

A PDF is a titled manual, one page and one bookmark per section; a DOCX is a titled document with an intro and
sections of paragraphs, each with an optional table. ``all_text`` gives the text both hold, so that question keys
can be checked without a PDF or DOCX reader (tests/evaluate/test_answers.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

PdfSection = tuple[str, Sequence[str]]  # title, paragraphs
Table = tuple[Sequence[str], Sequence[Sequence[str]]]  # header, rows
DocxSection = tuple[str, Sequence[str], Table | None]  # heading, paragraphs, table

_FONT_DIRS = [
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/dejavu",
    "/usr/share/fonts/TTF",
    "/Library/Fonts",
    "C:/Windows/Fonts",
]


def unicode_font(env: str, name: str) -> str:
    """A TrueType font file for text beyond latin-1 (the PDF core fonts): ``env`` if set, else ``name`` found in
    the usual font folders."""
    path = os.environ.get(env)
    if path:
        return path
    for folder in _FONT_DIRS:
        candidate = Path(folder) / name
        if candidate.is_file():
            return str(candidate)
    raise SystemExit(f"no {name} found; install fonts-dejavu-core or set {env}=/path/to/a/font.ttf")


def write_pdf(
    path: Path,
    title: str,
    author: str,
    sections: Sequence[PdfSection],
    fonts: tuple[str, str] | None = None,
    created: datetime | None = None,
) -> None:
    """``fonts``: (regular, bold) TrueType files for text the core fonts lack; ``created``: a fixed date, so that
    every run writes the same bytes."""
    from fpdf import FPDF

    pdf = FPDF()
    family = "helvetica"
    if fonts is not None:
        family = "unicode"
        pdf.add_font(family, "", fonts[0])
        pdf.add_font(family, "B", fonts[1])
    pdf.set_title(title)
    pdf.set_author(author)
    if created is not None:
        pdf.set_creation_date(created)
    for heading, paragraphs in sections:
        pdf.add_page()
        pdf.set_font(family, "B", 15)
        pdf.start_section(heading, level=0)
        pdf.cell(0, 10, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(family, size=11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(4)
    pdf.output(str(path))


def write_docx(path: Path, title: str, intro: str, sections: Sequence[DocxSection]) -> None:
    import docx

    d = docx.Document()
    d.core_properties.title = title
    d.add_heading(title, 0)
    d.add_paragraph(intro)
    for heading, paragraphs, table in sections:
        d.add_heading(heading, 1)
        for paragraph in paragraphs:
            d.add_paragraph(paragraph)
        if table is not None:
            header, rows = table
            t = d.add_table(rows=1, cols=len(header))
            for cell, text in zip(t.rows[0].cells, header, strict=True):
                cell.text = text
            for row in rows:
                for cell, text in zip(t.add_row().cells, row, strict=True):
                    cell.text = text
    d.save(str(path))


def pdf_text(title: str, sections: Sequence[PdfSection]) -> str:
    return "\n".join([title] + [t for heading, paras in sections for t in [heading, *paras]])


def docx_text(title: str, intro: str, sections: Sequence[DocxSection]) -> str:
    lines = [title, intro]
    for heading, paragraphs, table in sections:
        lines += [heading, *paragraphs]
        if table is not None:
            lines += [" ".join(table[0])] + [" ".join(r) for r in table[1]]
    return "\n".join(lines)


@dataclass
class BinaryDocs:
    """One set's PDF and DOCX: what they say, and where they go."""

    folder: Path
    pdf_name: str
    pdf_title: str
    author: str
    pdf_sections: Sequence[PdfSection]
    docx_name: str
    docx_title: str
    docx_intro: str
    docx_sections: Sequence[DocxSection]
    # (environment variable, file name) of the regular and the bold TrueType font, looked up when writing
    fonts: tuple[tuple[str, str], tuple[str, str]] | None = None
    created: datetime | None = None

    def write(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        pdf, docx = self.folder / self.pdf_name, self.folder / self.docx_name
        fonts = None if self.fonts is None else (unicode_font(*self.fonts[0]), unicode_font(*self.fonts[1]))
        write_pdf(pdf, self.pdf_title, self.author, self.pdf_sections, fonts, self.created)
        write_docx(docx, self.docx_title, self.docx_intro, self.docx_sections)
        print("wrote", pdf, docx)

    def all_text(self) -> dict[str, str]:
        """The text of each binary document, for checking question keys without a PDF or DOCX reader."""
        return {
            self.pdf_name: pdf_text(self.pdf_title, self.pdf_sections),
            self.docx_name: docx_text(self.docx_title, self.docx_intro, self.docx_sections),
        }
