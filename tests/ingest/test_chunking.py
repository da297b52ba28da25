import pytest

from expertkit.ingest.chunking import Chunker
from expertkit.ingest.readers import read_document
from expertkit.schema import Block, Document
from tests.conftest import EXAMPLES


@pytest.fixture(scope="module")
def tokenizer(embedder):
    return embedder.tokenizer


def tokens(tokenizer, text):
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def long_doc():
    sentences = [f"Sentence number {i} talks about pump part NP-{1000 + i} and its torque." for i in range(120)]
    blocks = [Block(" ".join(sentences[i : i + 10]), section=("Manual", "Torque")) for i in range(0, 120, 10)]
    blocks.insert(6, Block("Other section text.", section=("Manual", "Other")))
    return Document.from_blocks("/x/manual.md", "md", blocks)


def test_chunks_are_bounded_and_spans_are_exact(tokenizer):
    doc = long_doc()
    chunks = Chunker(tokenizer, chunk_tokens=64, overlap=16).chunk(doc, tags=("t",))
    assert len(chunks) > 10
    for c in chunks:
        assert tokens(tokenizer, c.text) <= 64 + 4  # sums of sentence counts, within a few joint tokens
        assert doc.text[c.start : c.end] == c.text
        assert c.tags == ("t",) and c.source == "/x/manual.md"
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_chunks_never_cross_sections_and_overlap_within_one(tokenizer):
    doc = long_doc()
    chunks = Chunker(tokenizer, chunk_tokens=64, overlap=16).chunk(doc)
    other = [c for c in chunks if c.section == ("Manual", "Other")]
    assert [c.text for c in other] == ["Other section text."]
    torque = [c for c in chunks if c.section == ("Manual", "Torque")]
    assert any(a.end > b.start for a, b in zip(torque, torque[1:], strict=False) if a.end <= b.end)


def test_overlong_sentence_is_cut_into_token_windows(tokenizer):
    text = " ".join(f"word{i}" for i in range(400))  # no sentence breaks at all
    doc = Document.from_blocks("/x/a.txt", "txt", [Block(text)])
    chunks = Chunker(tokenizer, chunk_tokens=50, overlap=10).chunk(doc)
    assert len(chunks) > 5
    assert all(tokens(tokenizer, c.text) <= 50 for c in chunks)
    assert chunks[0].text.startswith("word0") and chunks[-1].text.endswith("word399")


def test_each_row_is_its_own_chunk_and_pdf_pages_are_kept(tokenizer):
    chunker = Chunker(tokenizer, chunk_tokens=200, overlap=20)
    rows = chunker.chunk(read_document(EXAMPLES / "parts.csv"))
    assert len(rows) == 11 and rows[0].record_id == "row 2" and "NP-4471" in rows[0].text
    pages = chunker.chunk(read_document(EXAMPLES / "nv400-service-manual.pdf"))
    assert {c.page for c in pages} == {1, 2, 3, 4, 5}
    assert next(c for c in pages if "68 N·m" in c.text).location().endswith("p.3 § 3 Torque values")


def test_overlap_must_be_smaller_than_chunk(tokenizer):
    with pytest.raises(ValueError):
        Chunker(tokenizer, chunk_tokens=32, overlap=32)


def test_context_headers_name_the_document_and_keep_the_text_exact(tokenizer):
    doc = read_document(EXAMPLES / "nv400-service-manual.pdf")
    plain = Chunker(tokenizer, chunk_tokens=200, overlap=20).chunk(doc)
    headed = Chunker(tokenizer, chunk_tokens=200, overlap=20, max_tokens=256, context=True).chunk(doc)
    assert [c.text for c in headed] == [c.text for c in plain]  # the header is short: same chunks
    torque = next(c for c in headed if "68 N·m" in c.text)
    assert doc.text[torque.start : torque.end] == torque.text
    assert torque.context == f"{doc.title} (nv400-service-manual.pdf)"
    assert torque.embed_text().split("\n")[:2] == [torque.context, torque.heading]
    assert all(c.context == "" for c in plain)


def test_a_title_already_in_the_heading_path_is_not_repeated(tokenizer):
    doc = read_document(EXAMPLES / "procedures" / "replace-mechanical-seal.md")
    chunks = Chunker(tokenizer, context=True).chunk(doc)
    assert doc.title == chunks[0].section[0]  # the H1
    assert {c.context for c in chunks} == {"replace-mechanical-seal.md"}


def test_a_long_header_shrinks_the_text_budget_so_nothing_is_truncated(tokenizer):
    title = " ".join(f"Quarterly filing appendix volume {i}" for i in range(12))  # ~60 tokens, cut to 100 chars
    section = tuple(f"Part {i} of the consolidated statements of the group" for i in range(6))
    sentences = " ".join(f"Line {i} of the table lists account 40{i:02d} and its balance." for i in range(80))
    doc = Document.from_blocks("/x/filing.pdf", "pdf", [Block(sentences, section=section)], title=title)
    chunker = Chunker(tokenizer, chunk_tokens=200, overlap=20, max_tokens=256, context=True)
    chunks = chunker.chunk(doc)
    assert chunks[0].context.endswith("… (filing.pdf)") and len(chunks[0].context) < 130
    for c in chunks:
        assert tokens(tokenizer, c.embed_text()) + 2 <= 256 + 4  # header + text fit the embedder
    assert max(tokens(tokenizer, c.text) for c in chunks) < 200 - 20  # the budget really shrank
    covered = "".join(doc.text[c.start : c.end] for c in chunks)
    assert "account 4000" in covered and "account 4079" in covered
