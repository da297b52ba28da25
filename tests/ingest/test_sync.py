import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from expertkit.index.base import content_hash
from expertkit.index.sqlite import SQLiteIndex
from expertkit.ingest.sync import Ingestor, source_key
from tests.conftest import EXAMPLES, ROOT


@pytest.fixture
def index(tmp_path):
    idx = SQLiteIndex(tmp_path / "index.db")
    yield idx
    idx.close()


@pytest.fixture
def ingestor(index, embedder):
    return Ingestor(index, embedder, chunk_tokens=120, overlap=16)


def write_docs(folder: Path, n: int, version: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        body = "\n\n".join(
            f"Paragraph {p} of document {i}, {version}. The valve V{i}-{p} opens at {p} bar." for p in range(6)
        )
        (folder / f"doc{i:03d}.md").write_text(f"# Document {i} {version}\n\n{body}\n")


def test_sample_corpus_ingests_every_format(ingestor, index):
    report = ingestor.sync([EXAMPLES], tags=["norvale"])
    assert report.ok and report.count("added") == 6
    assert set(index.stats().file_types) == {"pdf", "docx", "csv", "md", "html"}
    assert index.stats().tags == {"norvale": 6}


def test_unchanged_files_are_skipped_without_embedding(ingestor, tmp_path):
    write_docs(tmp_path / "docs", 3, "v1")
    first = ingestor.sync([tmp_path / "docs"])
    assert first.count("added") == 3 and first.embedded > 0
    again = ingestor.sync([tmp_path / "docs"])
    assert again.count("unchanged") == 3 and again.embedded == 0
    os.utime(tmp_path / "docs" / "doc000.md")  # touched, same content: hashed, not embedded
    touched = ingestor.sync([tmp_path / "docs"])
    assert touched.count("unchanged") == 3 and touched.embedded == 0


def test_changed_file_is_replaced_and_unchanged_text_reuses_vectors(index, embedder, tmp_path):
    ingestor = Ingestor(index, embedder, chunk_tokens=32, overlap=0)  # about a paragraph a chunk
    write_docs(tmp_path / "docs", 2, "v1")
    ingestor.sync([tmp_path / "docs"])
    path = tmp_path / "docs" / "doc000.md"
    path.write_text(path.read_text() + "\n\nA new closing paragraph about seal kit NP-4471.\n")
    report = ingestor.sync([tmp_path / "docs"])
    assert report.count("updated") == 1 and report.count("unchanged") == 1
    assert report.reused > 0 and report.embedded < report.reused  # only new text was embedded
    source = index.get_source(source_key(path))
    assert source.content_hash == content_hash(path.read_bytes())
    hits = index.get_chunks([c for c, _ in index.search_bm25("NP-4471 seal kit", 5)])
    assert hits and hits[0].source == source_key(path)


def test_retagging_changes_tags_without_embedding(ingestor, index, tmp_path):
    write_docs(tmp_path / "docs", 1, "v1")
    ingestor.sync([tmp_path / "docs"], tags=["a"])
    report = ingestor.sync([tmp_path / "docs"], tags=["b"])
    assert report.count("retagged") == 1 and report.embedded == 0
    assert index.stats().tags == {"b": 1}


def test_prune_and_remove(ingestor, index, tmp_path):
    from expertkit.ingest.sync import remove

    write_docs(tmp_path / "docs", 3, "v1")
    ingestor.sync([tmp_path / "docs"])
    (tmp_path / "docs" / "doc001.md").unlink()
    assert ingestor.sync([tmp_path / "docs"]).count("removed") == 0  # without --prune nothing is dropped
    assert index.stats().documents == 3
    report = ingestor.sync([tmp_path / "docs"], prune=True)
    assert report.count("removed") == 1 and index.stats().documents == 2
    removed = remove(index, [tmp_path / "docs" / "doc000.md"])
    assert [Path(r.path).name for r in removed] == ["doc000.md"]
    assert [Path(s.path).name for s in index.sources()] == ["doc002.md"]


def test_a_bad_batch_goes_on_and_names_every_failure(ingestor, index, tmp_path):
    docs = tmp_path / "mixed"
    write_docs(docs, 2, "v1")
    ingestor.sync([docs])
    before = {s.path: s.content_hash for s in index.sources()}
    (docs / "empty.txt").write_bytes(b"")
    (docs / "corrupt.pdf").write_bytes(b"%PDF-1.4 garbage")
    (docs / "binary.md").write_bytes(bytes(range(256)))
    (docs / "latin1.txt").write_bytes("Dichtung für Pumpe, Größe 35 mm.".encode("latin-1"))
    (docs / "records.jsonl").write_text('{"id": "a", "v": 1}\nnot json\n{"id": "b", "v": 2}\n')
    (docs / "drawing.dwg").write_bytes(b"AC1032")
    (docs / "gone.md").symlink_to(docs / "missing.md")
    write_docs(docs, 3, "v1")  # doc002 is new and good
    (tmp_path / "explicit.xyz").write_text("named on the command line")
    report = ingestor.sync([docs, tmp_path / "explicit.xyz"])
    by_name = {Path(r.path).name: r for r in report.results}
    assert by_name["empty.txt"].status == "failed" and "empty file" in by_name["empty.txt"].reason
    assert by_name["corrupt.pdf"].status == "failed" and "corrupt PDF" in by_name["corrupt.pdf"].reason
    assert by_name["binary.md"].status == "failed" and "binary" in by_name["binary.md"].reason
    assert by_name["gone.md"].status == "failed" and "cannot read" in by_name["gone.md"].reason
    assert by_name["explicit.xyz"].status == "failed" and "unknown format" in by_name["explicit.xyz"].reason
    assert by_name["drawing.dwg"].status == "skipped"  # found in a folder: listed, not failed
    assert by_name["latin1.txt"].status == "added"
    assert by_name["records.jsonl"].status == "added" and by_name["records.jsonl"].warnings[0].startswith("line 2")
    assert by_name["doc002.md"].status == "added"
    assert not report.ok
    assert {r.path for r in report.failed} >= {by_name[n].path for n in ("empty.txt", "records.jsonl")}
    for path, digest in before.items():  # nothing ingested earlier was touched
        assert index.get_source(path).content_hash == digest
    latin = index.get_chunks([c for c, _ in index.search_bm25("Größe Dichtung", 3)])
    assert latin and "Größe" in latin[0].text


def _consistent(db_path: Path, folder: Path) -> dict[str, str]:
    """Every source is whole: its chunks are all of one version and match its stored hash."""
    db = sqlite3.connect(db_path)
    versions = {}
    for sid, path, digest, n in db.execute("SELECT id, path, content_hash, n_chunks FROM sources"):
        texts = [t for (t,) in db.execute("SELECT text FROM chunks WHERE source_id=?", (sid,))]
        fts = db.execute(
            "SELECT COUNT(*) FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE source_id=?)", (sid,)
        ).fetchone()[0]
        assert len(texts) == n == fts, path
        kinds = {("v2" if "v2" in t else "v1") for t in texts if "v1" in t or "v2" in t}
        assert len(kinds) == 1, f"{path} mixes versions"
        (version,) = kinds
        expected = (folder / Path(path).name).read_text().replace("v2", version).replace("v1", version)
        assert digest == content_hash(expected.encode()), path
        versions[path] = version
    db.close()
    return versions


def test_killed_ingest_leaves_every_file_old_or_new_and_the_next_run_finishes(tmp_path, ingestor):
    docs = tmp_path / "docs"
    write_docs(docs, 120, "v1")
    ingestor.sync([docs])
    ingestor.index.close()
    write_docs(docs, 120, "v2")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "expertkit.toml").write_text("[ingest]\nchunk_tokens = 120\nchunk_overlap = 16\n")
    (ws / ".expertkit").mkdir()
    os.replace(tmp_path / "index.db", ws / ".expertkit" / "index.db")
    # a slow disk: each file's commit takes 10 ms longer, so the 120 commits span more than a second and a
    # kill lands between (or inside) them however fast this machine writes; the kill itself is real SIGKILL
    slow_disk = (
        "import sys, time; from expertkit.index.sqlite import SQLiteIndex as S; w = S.write_source; "
        "S.write_source = lambda self, *a: (w(self, *a), time.sleep(0.01))[0]; "
        "from expertkit.cli import main; sys.argv[0] = 'expertkit'; main()"
    )
    cmd = [sys.executable, "-c", slow_disk, "ingest", str(docs), "-w", str(ws), "--set", "embed.batch_size=16"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    seen_partial = False
    for delay in (0.0, 0.3, 1.0):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:  # wait until some v2 files are committed
            try:
                versions = _consistent(ws / ".expertkit" / "index.db", docs)
            except sqlite3.OperationalError:
                versions = {}
            if "v2" in versions.values():
                break
            time.sleep(0.05)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        versions = _consistent(ws / ".expertkit" / "index.db", docs)
        assert len(versions) == 120
        seen_partial |= set(versions.values()) == {"v1", "v2"}
    assert seen_partial, "the kill never landed mid-batch; the test proves nothing"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(_consistent(ws / ".expertkit" / "index.db", docs).values()) == {"v2"}


def _reads(monkeypatch) -> list[str]:
    """Every file the ingestor reads whole (the work the stat fast path exists to avoid)."""
    read: list[str] = []
    original = Path.read_bytes

    def spy(self):
        read.append(self.name)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", spy)
    return read


def test_a_touched_file_is_read_once_then_skipped_by_stat(ingestor, index, tmp_path, monkeypatch):
    write_docs(tmp_path / "docs", 2, "v1")
    old = time.time() - 3600
    for f in (tmp_path / "docs").iterdir():
        os.utime(f, (old, old))
    ingestor.sync([tmp_path / "docs"])
    read = _reads(monkeypatch)
    touched = time.time() - 600  # touched ten minutes ago, the content unchanged
    os.utime(tmp_path / "docs" / "doc000.md", (touched, touched))
    first = ingestor.sync([tmp_path / "docs"])
    assert first.count("unchanged") == 2 and first.embedded == 0 and read == ["doc000.md"]
    assert index.get_source(source_key(tmp_path / "docs" / "doc000.md")).mtime == touched
    read.clear()
    second = ingestor.sync([tmp_path / "docs"])
    assert second.count("unchanged") == 2 and read == []  # the new size and mtime were recorded


def test_an_edit_in_the_same_mtime_tick_as_the_sync_is_not_missed(ingestor, index, tmp_path):
    # A coarse clock (FAT, some network file systems) gives two edits a second apart the same mtime.
    path = tmp_path / "docs" / "a.md"
    path.parent.mkdir()
    path.write_text("# A\n\nThe relief valve opens at 12 bar.\n")
    tick = float(int(time.time()))
    os.utime(path, (tick, tick))
    ingestor.sync([path])
    path.write_text("# A\n\nThe relief valve opens at 19 bar.\n")  # same size, same mtime as recorded
    os.utime(path, (tick, tick))
    report = ingestor.sync([path])
    assert report.count("updated") == 1
    assert "19 bar" in index.source_chunks(source_key(path))[0].text


def test_access_rule_globs():
    from expertkit.ingest.sync import glob_regex

    def matches(pattern, path):
        return bool(glob_regex(pattern).fullmatch(path))

    assert matches("hr/**", "/srv/docs/hr/pay/2026.md") and matches("hr/**", "/hr/a.md")
    assert not matches("hr/**", "/srv/docs/hrx/a.md") and not matches("hr/**", "/srv/docs/shr/a.md")
    assert matches("hr/", "/srv/docs/hr/a.md") and matches("hr/", "/x/hr/deep/b.pdf")  # a folder and its content
    assert matches("*.xlsx", "/any/where/salaries.xlsx") and not matches("*.xlsx", "/a/b.xlsx.md")
    assert matches("/srv/docs/hr/**", "/srv/docs/hr/a.md") and not matches("/srv/docs/hr/**", "/x/srv/docs/hr/a.md")
    assert matches("/README.md", "/README.md") and not matches("/README.md", "/ws/hr/README.md")
    assert matches("board/minutes-*.pdf", "/d/board/minutes-2026.pdf")
    assert not matches("board/minutes-*.pdf", "/d/board/2026/minutes-1.pdf")


def test_access_groups_from_flags_rules_and_the_default(index, embedder, tmp_path):
    from expertkit.config import AccessRule, AccessSettings
    from expertkit.ingest.sync import AccessPolicy

    root = tmp_path / "corpus"  # outside any workspace: rules match wherever the corpus lies
    for rel in ("hr/pay/2026.md", "hr/handbook.md", "manuals/pump.md", "notes.md", "README.md"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"# {rel}\n\nText of {rel}.\n")
    rules = [
        AccessRule(glob="*.md", groups=["staff"]),
        AccessRule(glob="hr/", groups=["hr"]),  # later rules win
        AccessRule(glob="hr/handbook.md", groups=["hr", "staff"]),
        AccessRule(glob=f"{root.as_posix()}/README.md", groups=["public"]),
    ]
    policy = AccessPolicy(AccessSettings(default_groups=["all"], rules=rules))
    ingestor = Ingestor(index, embedder, access=policy)
    ingestor.sync([root / "hr"])  # the folder ingested does not change what a rule matches
    ingestor.sync([root])

    def groups(rel):
        source = index.get_source(source_key(root / rel))
        return source.groups, source.groups_pinned

    assert groups("hr/pay/2026.md") == (("hr",), False) and groups("hr/handbook.md") == (("hr", "staff"), False)
    assert groups("manuals/pump.md") == (("staff",), False) and groups("README.md") == (("public",), False)
    only_default = Ingestor(index, embedder, access=AccessPolicy(AccessSettings(default_groups=["all"])))
    report = only_default.sync([root / "manuals"])
    assert report.count("retagged") == 1 and report.embedded == 0  # new groups, same vectors
    assert groups("manuals/pump.md") == (("all",), False)
    flagged = ingestor.sync([root / "notes.md"], groups=["board", "audit"])
    assert flagged.count("retagged") == 1 and groups("notes.md") == (("audit", "board"), True)
    # a routine re-sync without --group keeps pinned groups: it never widens who may read a file
    again = only_default.sync([root])
    assert groups("notes.md") == (("audit", "board"), True) and groups("hr/pay/2026.md") == (("all",), False)
    assert again.count("unchanged") >= 2
    repinned = only_default.sync([root / "notes.md"], groups=["board"])
    assert repinned.count("retagged") == 1 and groups("notes.md") == (("board",), True)


def test_an_access_rule_covers_a_folder_whatever_its_case(index, embedder, tmp_path):
    """Finding 8: `docs/HR/` escaped an `hr/**` rule, and a staff search found the salaries in it."""
    from expertkit.config import AccessRule, AccessSettings
    from expertkit.index.base import Filters
    from expertkit.ingest.sync import AccessPolicy

    root = tmp_path / "corpus"
    (root / "docs" / "HR").mkdir(parents=True)
    pay = root / "docs" / "HR" / "Pay.MD"
    pay.write_text("# Pay\n\nThe director's salary is 181,000 EUR.\n")
    rules = [AccessRule(glob="hr/**", groups=["hr"])]
    Ingestor(index, embedder, access=AccessPolicy(AccessSettings(default_groups=["staff"], rules=rules))).sync([root])
    assert index.get_source(source_key(pay)).groups == ("hr",)
    assert index.search_bm25("director salary", 5, Filters(groups=("staff",))) == []
    assert index.search_bm25("director salary", 5, Filters(groups=("hr",)))

    exact = AccessSettings(default_groups=["staff"], rules=rules, ignore_case=False)  # access.ignore_case = false
    report = Ingestor(index, embedder, access=AccessPolicy(exact)).sync([root])
    assert report.count("retagged") == 1 and index.get_source(source_key(pay)).groups == ("staff",)


def test_turning_context_headers_off_rechunks_unchanged_files_and_reuses_what_it_can(index, embedder, tmp_path):
    write_docs(tmp_path / "docs", 2, "v1")
    headed = Ingestor(index, embedder, chunk_tokens=120, overlap=16)
    assert headed.sync([tmp_path / "docs"]).count("added") == 2
    chunks = index.source_chunks(source_key(tmp_path / "docs" / "doc000.md"))
    assert {c.context for c in chunks} == {"doc000.md"}  # the H1 is the title and already the heading path
    assert headed.sync([tmp_path / "docs"]).count("unchanged") == 2

    plain = Ingestor(index, embedder, chunk_tokens=120, overlap=16, context_headers=False)
    report = plain.sync([tmp_path / "docs"])  # same bytes, other settings: re-chunked, not skipped
    assert report.count("updated") == 2 and report.embedded > 0
    assert {c.context for c in index.source_chunks(source_key(tmp_path / "docs" / "doc000.md"))} == {""}
    assert plain.sync([tmp_path / "docs"]).count("unchanged") == 2
    back = headed.sync([tmp_path / "docs"])  # the headed vectors are gone with their chunks: embedded again
    assert back.count("updated") == 2


def test_a_question_naming_the_company_finds_its_document_when_passages_do_not(index, embedder, tmp_path):
    from fpdf import FPDF

    from expertkit.retrieve import Retriever

    for company, revenue in (("Halvorsen Marine", 412), ("Brightwater Foods", 733), ("Oakridge Timber", 268)):
        pdf = FPDF()
        pdf.set_title(f"{company} Annual Report 2025")
        pdf.set_font("helvetica", size=11)
        pdf.add_page()
        pdf.multi_cell(0, 6, f"Revenue for the year was EUR {revenue} million. The margin was 12 percent.")
        pdf.output(str(tmp_path / f"report-{revenue}.pdf"))  # the file name does not name the company either
    Ingestor(index, embedder).sync([tmp_path])
    retriever = Retriever(index, embedder)
    for mode in ("hybrid", "bm25", "dense"):
        top = retriever.search("What was Brightwater Foods' revenue in 2025?", k=1, mode=mode)[0].chunk
        assert "733" in top.text and top.context.startswith("Brightwater Foods Annual Report 2025"), mode
