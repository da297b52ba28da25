import json

import pytest

from expertkit.errors import IngestError
from expertkit.ingest.readers import decode_text, read_document, record_text
from tests.conftest import EXAMPLES


def test_pdf_pages_and_bookmark_sections():
    doc = read_document(EXAMPLES / "nv400-service-manual.pdf")
    assert doc.file_type == "pdf" and doc.title == "NV-400 Service Manual"
    torque = [b for b in doc.blocks if "68 N·m" in b.text]
    assert torque and torque[0].page == 3 and torque[0].section == ("3 Torque values",)
    assert {b.page for b in doc.blocks} == {1, 2, 3, 4, 5}


def test_docx_headings_paragraphs_and_table_rows():
    doc = read_document(EXAMPLES / "warranty-policy.docx")
    rows = [b for b in doc.blocks if b.kind == "table_row"]
    assert any("Product line: NV-400 series" in r.text and "Warranty: 36 months" in r.text for r in rows)
    assert rows[0].section == ("Warranty and Returns Policy", "Warranty periods")
    rma = next(b for b in doc.blocks if "restocking fee" in b.text)
    assert rma.section[-1] == "Returns"


def test_html_main_text_without_scripts_styles_or_navigation():
    doc = read_document(EXAMPLES / "service-bulletin-2025-03.html")
    assert "tracking code" not in doc.text and "font-family" not in doc.text and "Home | Bulletins" not in doc.text
    action = next(b for b in doc.blocks if "Drill the vent" in b.text)
    assert action.section == ("Service bulletin SB-2025-03", "Action")
    assert doc.title.startswith("Service bulletin SB-2025-03")


def test_markdown_heading_paths_and_code_fences(tmp_path):
    path = tmp_path / "guide.md"
    path.write_text(
        "# Guide\n\nIntro.\n\n## Setup\n\nStep one.\n\n```\n# not a heading\n```\n\n### Deep\n\nDeep text.\n"
    )
    doc = read_document(path)
    by_text = {b.text: b for b in doc.blocks}
    assert by_text["Step one."].section == ("Guide", "Setup")
    assert by_text["Deep text."].section == ("Guide", "Setup", "Deep")
    assert by_text["```\n# not a heading\n```"].kind == "code"
    assert all(doc.text[b.start : b.start + len(b.text)] == b.text for b in doc.blocks)


def test_csv_rows_name_their_fields_and_keep_ids(tmp_path):
    doc = read_document(EXAMPLES / "parts.csv")
    row = next(b for b in doc.blocks if "NP-4471" in b.text)
    assert row.kind == "record" and row.record_id == "row 2"
    assert "price_eur: 212.50" in row.text and "description: Mechanical seal kit" in row.text
    tsv = tmp_path / "t.tsv"
    tsv.write_text("id\tname\tvalue\nA7\tvalve\t3\n")
    (block,) = read_document(tsv).blocks
    assert block.record_id == "A7" and block.text == "name: valve; value: 3"


def test_json_records_and_nested_fields(tmp_path):
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"items": [{"_id": "x1", "spec": {"rpm": 2950}, "tags": ["a", "b"]}, {"name": "n"}]}))
    blocks = read_document(path).blocks
    assert blocks[0].record_id == "x1" and blocks[0].text == "spec.rpm: 2950; tags: a, b"
    assert blocks[1].record_id == "record 2"


def test_beir_corpus_line_is_one_document_per_line(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(
        '{"_id": "d1", "title": "T", "text": "Body one."}\n{"_id": "d2", "title": "", "text": "Body two."}\n'
    )
    blocks = read_document(path).blocks
    assert [(b.record_id, b.text) for b in blocks] == [("d1", "T\nBody one."), ("d2", "Body two.")]
    assert record_text({"_id": "1", "title": "A", "text": "B", "metadata": {}}) == "A\nB"


def test_malformed_jsonl_line_keeps_good_lines_and_names_the_bad_one(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"id": 1, "a": "good"}\n{"id": 2, "a": broken\n{"id": 3, "a": "also good"}\n')
    doc = read_document(path)
    assert [b.record_id for b in doc.blocks] == ["1", "3"]
    assert len(doc.warnings) == 1 and doc.warnings[0].startswith("line 2:")


def test_latin1_text_is_decoded_not_garbled(tmp_path):
    path = tmp_path / "notes.txt"
    text = "Prüfdruck für Dichtungen: 6 bar. Café, crème brûlée, Straße, señor, Ærøskøbing.\n" * 3
    path.write_bytes(text.encode("latin-1"))
    assert read_document(path).text == text.strip()
    assert decode_text(path, "Größe".encode("cp1252")) == "Größe"
    assert decode_text(path, "\ufeffBOM text".encode()) == "BOM text"
    assert decode_text(path, "utf16 text".encode("utf-16")) == "utf16 text"


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.md", b"", "empty file"),
        ("blank.txt", b"  \n\n \t", "empty file"),
        ("image.txt", bytes(range(256)) * 4, "binary content"),
        ("broken.pdf", b"%PDF-1.7\n this is not really a pdf", "corrupt PDF"),
        ("broken.docx", b"PK\x03\x04 not a zip", "not a readable DOCX"),
        ("broken.json", b'{"a": ', "malformed JSON at line 1"),
        ("all-bad.jsonl", b"{bad\n{worse\n", "no valid JSON line"),
        ("drawing.dwg", b"AC1032", "unknown format"),
        ("noheader.csv", b"\n\n", "empty file"),
    ],
)
def test_bad_files_raise_an_error_naming_the_file(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(IngestError) as exc:
        read_document(path)
    assert reason in exc.value.reason and str(path) in str(exc.value)


def test_encrypted_pdf(tmp_path):
    import pypdfium2  # noqa: F401  - the reader's own dependency
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(0, 10, "secret")
    pdf.set_encryption(owner_password="owner", user_password="user")
    path = tmp_path / "locked.pdf"
    pdf.output(str(path))
    with pytest.raises(IngestError, match="encrypted PDF"):
        read_document(path)


def test_unreadable_file(tmp_path):
    link = tmp_path / "gone.md"
    link.symlink_to(tmp_path / "nowhere.md")  # root can read chmod 000 files; a dangling link is unreadable
    with pytest.raises(IngestError, match="cannot read file"):
        read_document(link)


def test_other_legacy_code_pages_are_detected(tmp_path):
    text = "Насос NV-400: момент затяжки гайки рабочего колеса 68 Н·м. Проверяйте уплотнение каждые 8000 часов."
    assert decode_text(tmp_path / "ru.txt", text.encode("cp1251")) == text


def _titled_pdf(path, title, lines):
    from fpdf import FPDF

    pdf = FPDF()
    if title is not None:
        pdf.set_title(title)
    pdf.set_font("helvetica", size=11)
    pdf.add_page()
    for line in lines:
        pdf.multi_cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return read_document(path)


@pytest.mark.parametrize(
    ("name", "title", "lines", "expected"),
    [
        ("a.pdf", "Halvorsen Marine Annual Report 2025", ["Chair's statement"], "Halvorsen Marine Annual Report 2025"),
        # an authoring tool's placeholder is no title: page 1's first line is
        ("b.pdf", "Microsoft Word - Document1", ["Kestrel KX-20 Manual", "Specifications"], "Kestrel KX-20 Manual"),
        ("c.pdf", None, ["Kestrel KX-20 Manual", "Specifications"], "Kestrel KX-20 Manual"),
        # a sentence is no title either: the file name is
        ("kx-20_manual.pdf", "untitled", ["Pressure is 32 bar at 3000 rpm."], "kx 20 manual"),
    ],
)
def test_document_title_from_metadata_first_line_or_file_name(tmp_path, name, title, lines, expected):
    assert _titled_pdf(tmp_path / name, title, lines).title == expected


def test_titles_of_other_formats():
    assert read_document(EXAMPLES / "procedures" / "replace-mechanical-seal.md").title.startswith("Replacing")
    assert read_document(EXAMPLES / "parts.csv").title == "parts"  # a table is named by its file
