import json
import os
import subprocess
import sys

import pytest

from expertkit.evaluate.answers import contains_key, matches_any_key, normalise_values
from tests.conftest import ROOT, rendered_images, shared_set


def test_eval_answers_runs_a_route_and_reports_its_scores(tmp_path, browser):
    root = shared_set("emanual-tv")
    out = tmp_path / "items.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "expertkit.cli",
            "eval",
            "answers",
            "--beir",
            str(root),
            "--limit",
            "3",
            "-w",
            str(tmp_path / "ws"),
            "--json",
            "--out",
            str(out),
            "--set",
            "generate.max_new_tokens=24",
            "--report",
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    assert scores["route"] == "rag" and scores["questions"] == 3
    assert 0.0 <= scores["rouge_l"] <= 1.0 and scores["tokens_per_s"] > 0
    items = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(items) == 3 and all({"answer", "gold", "rouge_l", "citations_in_gold"} <= set(i) for i in items)
    if scores["citations_valid"] is not None:
        assert 0.0 <= scores["citations_valid"] <= 1.0
    report = tmp_path / "report" / "report.html"
    assert scores["report"] == str(report)
    title, images = rendered_images(browser, report.as_uri())
    assert title.startswith("expertkit eval answers") and len(images) == 2
    assert all(i["complete"] and i["width"] > 100 for i in images), images
    assert items[0]["question"] in report.read_text()  # every answer is listed against its gold


@pytest.mark.parametrize(
    ("written", "normalised"),
    [
        ("six years", "6 year"),
        ("a six-year retention", "a 6 year retention"),
        ("twenty-four months", "24 month"),
        ("two hundred and twelve", "212"),
        ("one thousand four hundred", "1400"),
        ("one and two", "1 and 2"),  # 'and' joins only after hundred/thousand
        ("three four", "3 4"),  # two numbers, not seven
        ("1,400", "1400"),
        ("1.400,00", "1400"),
        ("1\u2009400", "1400"),  # thin space
        ("1\u202f400,50", "1400.5"),  # narrow no-break space, decimal comma
        ("1\u2009200\u20131\u2009400", "1200-1400"),  # a thin space joins groups even right after a dash
        ("about 1 400 pallets", "about 1400 pallets"),
        ("6,5", "6.5"),
        ("9.20", "9.2"),
        ("85.00", "85"),
        ("\u221227 \u00b0C", "-27 \u00b0c"),  # Unicode minus
        ("\u201327", "-27"),  # en dash
        ("minus 27 degrees Celsius", "-27 \u00b0c"),
        ("50 minutes", "50 min"),
        ("50min", "50 min"),
        ("within six hours", "within 6 h"),
        ("1.5 seconds", "1.5 s"),
        ("15 per cent", "15%"),
        ("40 amps", "40 a"),
        ("1,100 m\u00b3/h", "1100 m3/h"),
        ("EUR 1,395.00", "1395"),
        ("\u20ac1395", "1395"),
        ("1395 euros", "1395"),
        ("3 March 2025", "2025-03-03"),
        ("3rd of March 2025", "2025-03-03"),
        ("March 3, 2025", "2025-03-03"),
        ("03.03.2025", "2025-03-03"),
        ("2025-3-3", "2025-03-03"),
        ("30/09/2025", "2025-09-30"),
        ("09/30/2025", "2025-09-30"),
        ("03/04/2025", "03/04/2025"),  # day and month could be either: left alone
        ("March 2025", "2025-03"),
        ("1 pm", "13:00"),
        ("1:30 p.m.", "13:30"),
        ("12 am", "00:00"),
        ("6:00", "06:00"),
        ("Tuesdays", "tuesday"),
        ("M\u00fcller", "muller"),
        # not numbers to merge: a code before a value, a phone number, a version, a CSV row
        ("HL-424 600 m\u00b3/h", "hl-424 600 m3/h"),
        ("+31 85 204 7730", "+31 85 204 7730"),
        ("version 3.4.0", "version 3.4.0"),
        ("HE-2209,94.10,3,current", "he-2209,94.1,3,current"),
        ("SB-2025-04", "sb-2025-04"),
        ("KW120-2311-0457", "kw120-2311-0457"),
    ],
)
def test_normalise_values_gives_one_spelling(written, normalised):
    assert normalise_values(written) == normalised


@pytest.mark.parametrize(
    ("answer", "key"),
    [
        ("Records are kept for six years [1].", "6 years"),
        ("The depot holds 1,400 pallets.", "1400"),
        ("Total: 1.400,00 EUR", "1400"),
        ("Total: 1\u2009400 EUR", "1,400"),
        ("It is held at \u221227 \u00b0C [2].", "-27"),
        ("Pre-cool for 50 minutes.", "50 min"),
        ("Pre-cool for fifty minutes.", "50 min"),
        ("Next inspection: 3 March 2025.", "2025-03-03"),
        ("It is due on August 28, 2025, [1].", "2025-08-28"),
        ("Order by 1 pm for same-day dispatch.", "13:00"),
        ("A fee of 15 per cent applies.", "15%"),
        ("The price is \u20ac94.10.", "94.1"),
        ("Fit a 40 amp fuse.", "40 A"),
        ("2-4 bar", "4 bar"),
        ("**85.00 GBP**", "85"),
        ("the Calvex Frostline 660 MT", "Frostline 660"),
        ("Contact Ms Brannagh.", "brannagh"),
        # Greek: the thousands point, units, months and number words as Greek answers write them
        ("Κοστίζει 2.395 ευρώ [1].", "2395"),
        ("Κοστίζει 412,50 € [2].", "412.50"),
        ("Διαρκεί 45 λεπτά.", "45 min"),
        ("Μέσα σε έξι ώρες.", "6 hours"),
        ("Καλύπτονται για 5 χρόνια.", "5 years"),
        ("Εγγύηση 36 μηνών.", "36 μήνες"),
        ("Έως τις 30 Ιουνίου 2025 [1].", "2025-06-30"),
        ("Στους −18 βαθμούς.", "-18 °C"),
        ("ΜΕΧΡΙ 120 ΚΙΛΑ", "120 kg"),
    ],
)
def test_contains_key_matches_other_spellings(answer, key):
    assert contains_key(answer, key)


@pytest.mark.parametrize(
    ("answer", "key"),
    [
        ("It weighs 1850 kg.", "85"),  # inside a longer number
        ("It costs 85.5.", "85"),  # the start of a decimal
        ("It costs 0.85.", "85"),  # the end of a decimal
        ("It reads 6.55.", "6.5"),
        ("It reads 16.5.", "6.5"),
        ("The alarm goes off at -17 \u00b0C.", "17"),  # the sign is part of the value
        ("The alarm goes off at 17 \u00b0C.", "-17"),
        ("Fault E270 was logged.", "E27"),
        ("Fit a 32 A fuse.", "40 A"),
        ("Pre-cool for 50 seconds.", "50 min"),
        ("Next inspection: 3 March 2024.", "2025-03-03"),
        ("", "1400"),
        ("It costs 2.395.", "2395"),  # an English decimal point is not a thousands point
        ("Διαρκεί 45 ώρες.", "45 min"),
        ("Έως τις 30 Ιουλίου 2025.", "2025-06-30"),
    ],
)
def test_contains_key_refuses_a_different_value(answer, key):
    assert not contains_key(answer, key)


def test_matches_any_key_needs_one_key_and_a_key_to_match():
    assert matches_any_key("held at \u221228 \u00b0C", ["-28", "\u221228"])
    assert not matches_any_key("held at -27 \u00b0C", ["-28", "\u221228"])
    assert not matches_any_key("anything", [])
    assert not contains_key("anything", "  ")


@pytest.mark.parametrize(
    ("name", "least_answerable", "least_unanswerable"),
    [("planted", 30, 12), ("heldout", 30, 12), ("planted-el", 40, 8), ("dev-el", 15, 6)],
)
def test_every_first_key_of_the_planted_sets_is_in_its_source_document(name, least_answerable, least_unanswerable):
    """The scorer on real documents: a key it cannot find in its own source would score every answer wrong."""
    import importlib.util

    root = ROOT / "benchmarks" / "data" / name
    binary: dict[str, str] = {}
    if (root / "make_binary.py").exists():
        spec = importlib.util.spec_from_file_location(f"make_binary_{name}", root / "make_binary.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        binary = module.all_text()  # the PDF and DOCX text, from the script that writes them
    questions = [json.loads(line) for line in (root / "questions.jsonl").read_text().splitlines() if line.strip()]
    answerable = [q for q in questions if q["answerable"]]
    assert len(answerable) >= least_answerable and len(questions) - len(answerable) >= least_unanswerable
    missing = []
    for q in answerable:
        name_in_corpus = q["source"].removeprefix("corpus/")
        text = binary.get(name_in_corpus) or (root / q["source"]).read_text()
        if not contains_key(text, q["keys"][0]):
            missing.append((q["id"], q["keys"][0]))
    assert not missing
