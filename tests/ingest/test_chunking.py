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
