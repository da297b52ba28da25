"""Readers: one function per format, each turning a file into a Document with its structure kept.

A reader raises IngestError for a file it cannot read; the batch goes on without it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from expertkit.errors import IngestError
from expertkit.schema import Block, Document

Reader = Callable[[Path, bytes], Document]

_HEADING_STYLE = re.compile(r"^(?:Heading|Überschrift|Titre)\s*(\d)", re.IGNORECASE)
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


# -- text decoding ------------------------------------------------------------------------------------


def decode_text(path: Path, data: bytes) -> str:
    """Decode a text file: UTF-8 (with or without BOM), UTF-16 by BOM, else the detected legacy encoding.

    Binary content with a text extension is refused rather than turned into garbage.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if b"\x00" in data[:8192]:
        raise IngestError(str(path), "binary content in a text file", "check the file type or its extension")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # Western legacy files are mostly cp1252/Latin-1, where accented letters are a minority of letters.
    # Text in another legacy code page read as cp1252 turns almost every letter into an accented one.
    try:
        western = data.decode("cp1252")
    except UnicodeDecodeError:
        western = None
    if western is not None:
        letters = [c for c in western if c.isalpha()]
        if letters and sum(not c.isascii() for c in letters) / len(letters) < 0.5:
            return western
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is not None and best.encoding:
        return str(best)
    return western if western is not None else data.decode("latin-1")


def _lines_to_blocks(text: str, **fields: Any) -> list[Block]:
    """Split plain text into paragraphs at blank lines."""
    return [Block(p, **fields) for p in re.split(r"\n\s*\n", text) if p.strip()]


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x0c", "\n")
    return re.sub(r"[ \t]+\n", "\n", text)


# -- formats ------------------------------------------------------------------------------------------


def read_text(path: Path, data: bytes) -> Document:
    text = _normalise(decode_text(path, data))
    return Document.from_blocks(str(path), "txt", _lines_to_blocks(text))


def read_markdown(path: Path, data: bytes) -> Document:
    text = _normalise(decode_text(path, data))
    blocks: list[Block] = []
    headings: list[tuple[int, str]] = []
    para: list[str] = []
    in_fence = False
    title = None

    def flush() -> None:
        if para:
            kind = "code" if para[0].lstrip().startswith(("```", "~~~")) else "paragraph"
            blocks.append(Block("\n".join(para), kind=kind, section=tuple(h for _, h in headings)))
            para.clear()

    for line in text.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            if not in_fence:
                flush()
            para.append(line)
            in_fence = not in_fence
            if not in_fence:
                flush()
            continue
        if in_fence:
            para.append(line)
            continue
        match = _MD_HEADING.match(line)
        if match:
            flush()
            level, heading = len(match.group(1)), match.group(2)
            headings = [h for h in headings if h[0] < level] + [(level, heading)]
            title = title or heading
            blocks.append(Block(heading, kind="heading", section=tuple(h for _, h in headings)))
        elif not line.strip():
            flush()
        else:
            para.append(line)
    flush()
    return Document.from_blocks(str(path), "md", blocks, title=title)


def read_pdf(path: Path, data: bytes) -> Document:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        reason = str(exc)
        if "password" in reason.lower():
            raise IngestError(str(path), "encrypted PDF", "decrypt it (e.g. qpdf --decrypt) and ingest again") from None
        raise IngestError(str(path), f"corrupt PDF ({reason})", "re-export or repair the file") from None
    try:
        toc = []
        for item in pdf.get_toc():  # bookmarks give the section path of each page
            dest = item.get_dest()
            if dest is not None and dest.get_index() is not None:
                toc.append((dest.get_index(), item.level, item.get_title()))
        toc.sort(key=lambda t: t[0])
        blocks: list[Block] = []
        headings: list[tuple[int, str]] = []
        first_line = ""
        for index in range(len(pdf)):
            for page_index, level, heading in toc:
                if page_index == index:
                    headings = [h for h in headings if h[0] < level] + [(level, heading)]
            page = pdf[index]
            text = _normalise(page.get_textpage().get_text_range())
            if index == 0:
                first_line = next((line.strip() for line in text.split("\n") if line.strip()), "")
            section = tuple(h for _, h in headings)
            blocks += _lines_to_blocks(_join_wrapped_lines(text), page=index + 1, section=section)
        # no metadata title: page 1's first line if it reads as a title (a first bookmark is often a
        # chapter, "1 Safety", not the document)
        title = _clean_title(pdf.get_metadata_dict().get("Title"))
        title = title or (first_line if _reads_as_title(first_line) else None)
    finally:
        pdf.close()
    if not blocks:
        raise IngestError(str(path), "no extractable text (a scanned PDF?)", "run OCR on it first")
    return Document.from_blocks(str(path), "pdf", blocks, title=title)


def _join_wrapped_lines(text: str) -> str:
    # PDF text breaks every visual line; keep blank lines (paragraphs) and lines that look like list items.
    return re.sub(r"(?<=[^\n])\n(?=[^\n•\-–*0-9])", " ", text)


def read_docx(path: Path, data: bytes) -> Document:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises several types for a broken package
        raise IngestError(str(path), f"not a readable DOCX ({type(exc).__name__})", "re-save it from Word") from None
    blocks: list[Block] = []
    headings: list[tuple[int, str]] = []
    for element in document.element.body.iterchildren():
        tag = element.tag.rsplit("}", 1)[-1]
        if tag == "p":
            paragraph = Paragraph(element, document)
            text = paragraph.text.strip()
            style = paragraph.style.name if paragraph.style is not None else ""
            match = _HEADING_STYLE.match(style or "")
            if match or style == "Title":
                level = int(match.group(1)) if match else 0
                headings = [h for h in headings if h[0] < level] + [(level, text)]
                blocks.append(Block(text, kind="heading", section=tuple(h for _, h in headings)))
            elif text:
                blocks.append(Block(text, section=tuple(h for _, h in headings)))
        elif tag == "tbl":
            rows = [[cell.text.strip() for cell in row.cells] for row in Table(element, document).rows]
            blocks += _table_blocks(rows, tuple(h for _, h in headings))
    title = document.core_properties.title or (headings[0][1] if headings else None)
    return Document.from_blocks(str(path), "docx", blocks, title=title)


def _table_blocks(rows: list[list[str]], section: tuple[str, ...]) -> list[Block]:
    """A table with a header row becomes one block per row that names each field."""
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    if not body:
        return [Block(" | ".join(header), kind="table_row", section=section)]
    out = []
    for row in body:
        fields = [f"{h}: {v}" if h else v for h, v in zip(header, row, strict=False) if v]
        out.append(Block("; ".join(fields), kind="table_row", section=section))
    return out


_DROP_TAGS = ["script", "style", "noscript", "template", "svg", "nav", "footer", "header", "aside", "form", "iframe"]


def read_html(path: Path, data: bytes) -> Document:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(path, data), "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    for tag in soup(_DROP_TAGS):
        tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup
    blocks: list[Block] = []
    headings: list[tuple[int, str]] = []
    for el in root.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "table", "dd", "dt", "blockquote"]):
        if el.find_parent(["table", "li", "p"]) is not None and el.name != "table":
            continue  # text inside a list item or table is taken with its container
        if el.name == "table":
            rows = [[c.get_text(" ", strip=True) for c in tr.find_all(["th", "td"])] for tr in el.find_all("tr")]
            blocks += _table_blocks([r for r in rows if any(r)], tuple(h for _, h in headings))
            continue
        text = el.get_text(" ", strip=True)
        if not text:
            continue
        if el.name[0] == "h" and el.name[1:].isdigit():
            level = int(el.name[1:])
            headings = [h for h in headings if h[0] < level] + [(level, text)]
            blocks.append(Block(text, kind="heading", section=tuple(h for _, h in headings)))
        else:
            blocks.append(
                Block(text, kind="code" if el.name == "pre" else "paragraph", section=tuple(h for _, h in headings))
            )
    return Document.from_blocks(str(path), "html", blocks, title=title)


# -- structured data ------------------------------------------------------------------------------------

_BEIR_KEYS = {"_id", "title", "text", "metadata"}


def record_text(record: dict[str, Any]) -> str:
    """Render a record so that its field names are searchable: ``field: value; field: value``.

    A BEIR corpus line (``_id``, ``title``, ``text``) renders as its title and text.
    """
    if "text" in record and set(record) <= _BEIR_KEYS:
        title = str(record.get("title") or "").strip()
        return f"{title}\n{record['text']}" if title else str(record["text"])
    parts = []
    for key, value in _flatten(record):
        if key in ("_id", "id") or value in (None, ""):
            continue
        parts.append(f"{key}: {value}")
    return "; ".join(parts)


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        out: list[tuple[str, Any]] = []
        for k, v in value.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = []
        for i, v in enumerate(value):
            out += _flatten(v, f"{prefix}[{i}]")
        return out
    if isinstance(value, list):
        return [(prefix, ", ".join(str(v) for v in value))]
    return [(prefix, value)]


def _record_block(record: Any, fallback_id: str) -> Block:
    if not isinstance(record, dict):
        record = {"value": record}
    rid = record.get("_id", record.get("id"))
    return Block(record_text(record), kind="record", record_id=str(rid) if rid is not None else fallback_id)


def read_jsonl(path: Path, data: bytes) -> Document:
    text = decode_text(path, data)
    blocks: list[Block] = []
    warnings: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            warnings.append(f"line {lineno}: malformed JSON ({exc.msg}); line skipped, fix it and ingest again")
            continue
        blocks.append(_record_block(record, f"line {lineno}"))
    if not blocks and warnings:
        raise IngestError(str(path), "no valid JSON line; " + warnings[0])
    return Document.from_blocks(str(path), "jsonl", blocks, warnings=warnings)


def read_json(path: Path, data: bytes) -> Document:
    try:
        value = json.loads(decode_text(path, data))
    except json.JSONDecodeError as exc:
        raise IngestError(str(path), f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
        records = lists[0] if len(lists) == 1 and len(value) <= 3 else [value]
    elif isinstance(value, list):
        records = value
    else:
        records = [value]
    blocks = [_record_block(r, f"record {i + 1}") for i, r in enumerate(records)]
    return Document.from_blocks(str(path), "json", blocks)


def read_csv(path: Path, data: bytes) -> Document:
    text = decode_text(path, data)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else None
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    if not reader.fieldnames:
        raise IngestError(str(path), "no header row", "the first line must name the columns")
    blocks = []
    for rowno, row in enumerate(reader, start=2):
        row.pop(None, None)  # cells beyond the header
        blocks.append(_record_block({k: v for k, v in row.items() if k}, f"row {rowno}"))
    return Document.from_blocks(str(path), "csv" if delimiter != "\t" else "tsv", blocks)


READERS: dict[str, Reader] = {
    ".txt": read_text,
    ".text": read_text,
    ".log": read_text,
    ".rst": read_text,
    ".md": read_markdown,
    ".markdown": read_markdown,
    ".pdf": read_pdf,
    ".docx": read_docx,
    ".html": read_html,
    ".htm": read_html,
    ".csv": read_csv,
    ".tsv": read_csv,
    ".json": read_json,
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
}


def supported(path: Path) -> bool:
    return path.suffix.lower() in READERS


def read_document(path: Path, data: bytes | None = None) -> Document:
    """Read one file with the reader for its extension; every failure is an IngestError naming the file."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        known = ", ".join(sorted({k.lstrip(".") for k in READERS}))
        raise IngestError(str(path), f"unknown format '{path.suffix or '(no extension)'}'", f"supported: {known}")
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise IngestError(
                str(path), f"cannot read file ({exc.strerror or exc})", "check it exists and its permissions"
            ) from None
    if not data.strip():
        raise IngestError(str(path), "empty file", "add content or remove it from the batch")
    document = reader(path, data)
    if not document.blocks:
        raise IngestError(str(path), "no text found", "the file has structure but no content")
    document.title = document_title(document)
    return document


# titles that authoring tools write by default: they name no document
_PLACEHOLDER_TITLE = re.compile(
    r"(untitled|document|title|presentation|powerpoint presentation|slide \d+|doc\d*|document\d+|"
    r"microsoft word|new document|\(anonymous\)|none|unknown)",
    re.IGNORECASE,
)
_TOOL_PREFIX = re.compile(r"^(microsoft (word|powerpoint|excel)|libreoffice|google docs)\s*-\s*", re.IGNORECASE)
_TITLE_LINE = 12  # at most this many words for a first line to pass as a title


def _clean_title(title: str | None) -> str | None:
    """A metadata title without an authoring tool's prefix or a file extension; None for a placeholder."""
    title = _TOOL_PREFIX.sub("", " ".join((title or "").split()))
    title = re.sub(r"\.(docx?|pdf|pptx?|xlsx?|odt|txt|md|html?)$", "", title, flags=re.IGNORECASE).strip()
    if title and len(title.split()) <= 30 and not _PLACEHOLDER_TITLE.fullmatch(title):
        return title
    return None


def _reads_as_title(line: str) -> bool:
    return bool(line) and len(line.split()) <= _TITLE_LINE and not line.endswith((".", ",", ";", ":"))


def document_title(document: Document) -> str:
    """The document's title: its metadata title (PDF, DOCX, HTML) unless an authoring tool's placeholder, else
    its first heading, else a short first line of a paged or plain document, else the file name without
    extension and separators ("nv400_service-manual.pdf" → "nv400 service manual")."""
    title = _clean_title(document.title)
    if title:
        return title
    if document.blocks and document.file_type not in ("csv", "tsv", "json", "jsonl", "xlsx"):
        first = next((b for b in document.blocks if b.kind == "heading"), None)
        if first is None and document.file_type in ("txt", "docx"):
            first = document.blocks[0]
        line = first.text.split("\n", 1)[0].strip() if first else ""
        if _reads_as_title(line):
            return line
    return re.sub(r"[_\-.\s]+", " ", Path(document.path).stem).strip() or Path(document.path).name
