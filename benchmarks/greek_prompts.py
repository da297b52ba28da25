"""Which prompt a small model answers Greek questions best under: the Greek set's questions, the same passages,
each prompt variant side by side in one run.

- ``en``: what expertkit sends (rag.SYSTEM_PROMPT_EL): the English instructions and worked example, told to answer
  in the question's language, and "Answer in Greek" at the end;
- ``el``: the same prompt translated into Greek, with a Greek worked example (expertkit's prompt until b4b23b4);
- ``en_el_example``: the English instructions with the worked example in Greek.

Per variant: how many answers hold the question's key once checked (rag.verify: citations, support, the quote
fallback), and how many of those are the quote fallback. Run on dev-el, the Greek set that choices are made on:
.venv/bin/python benchmarks/greek_prompts.py [--set dev-el] [--variants en,el,en_el_example]
Measured 2026-12-04 (Qwen2.5-Coder-1.5B): en 26/38 (two runs), el 10/19, en_el_example 10/19 (that run told it the
not-found sentence in Greek).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from answer_quality import KEYED_SETS, build_index, load_questions  # noqa: E402

from expertkit import rag as R  # noqa: E402
from expertkit.config import GenerateSettings, SearchSettings  # noqa: E402
from expertkit.evaluate.answers import matches_any_key  # noqa: E402
from expertkit.language import NOT_FOUND  # noqa: E402
from expertkit.models.embedder import Embedder  # noqa: E402
from expertkit.models.generator import make_generator  # noqa: E402
from expertkit.retrieve import Retriever  # noqa: E402
from expertkit.workspace import embedder_for  # noqa: E402

NOT_FOUND_EL = NOT_FOUND["el"]
GREEK_PROMPT = f"""Απαντάς σε ερωτήσεις χρησιμοποιώντας μόνο τα αριθμημένα αποσπάσματα που σου δίνονται.
Γράψε πρώτα την απάντηση στα ελληνικά, σε μία ή δύο σύντομες προτάσεις, με τις ακριβείς τιμές των αποσπασμάτων. \
Βάλε μετά τον αριθμό του αποσπάσματος από το οποίο προέρχεται, σε αγκύλες, όπως [2].
Τα αποσπάσματα μπορεί να χρησιμοποιούν άλλες λέξεις από την ερώτηση: διάβασέ τα προσεκτικά, και τους πίνακες και \
τις λίστες.
Μόνο αν κανένα απόσπασμα δεν περιέχει την απάντηση, απάντησε ακριβώς: {NOT_FOUND_EL}

Παράδειγμα.
Αποσπάσματα:
[1] (τιμοκατάλογος.csv, row 4)
είδος: Φίλτρο νερού ΦΝ-20; τιμή_ευρώ: 14,90
[2] (εγχειρίδιο.pdf, page 3, Συντήρηση)
Αντικαταστήστε το φίλτρο ΦΝ-20 κάθε 500 ώρες λειτουργίας.
Ερώτηση: Κάθε πότε πρέπει να αλλάζεται το φίλτρο ΦΝ-20;
Απάντηση: Κάθε 500 ώρες λειτουργίας [2]."""

GREEK_INSTRUCTION = (
    "Απάντησε στα ελληνικά σε μία ή δύο προτάσεις με τις ακριβείς τιμές και γράψε τον αριθμό του αποσπάσματος, "
    "όπως [2]."
)
GREEK_EXAMPLE = GREEK_PROMPT[GREEK_PROMPT.index("Αποσπάσματα:") :].replace("Αποσπάσματα:", "Passages:")
GREEK_EXAMPLE = GREEK_EXAMPLE.replace("Ερώτηση:", "Question:").replace("Απάντηση:", "Answer:")
VARIANTS = {
    "en": (R.SYSTEM_PROMPT_EL, "Passages:", "Question:", R.ANSWER_INSTRUCTION_EL),
    "el": (GREEK_PROMPT, "Αποσπάσματα:", "Ερώτηση:", GREEK_INSTRUCTION),
    "en_el_example": (
        R.SYSTEM_PROMPT_EL.split("\n\nExample.")[0] + "\n\nExample.\n" + GREEK_EXAMPLE,
        "Passages:",
        "Question:",
        R.ANSWER_INSTRUCTION_EL,
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", default="dev-el")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    args = ap.parse_args()
    questions = [q for q in load_questions(args.set) if q["answerable"]]
    embedder = Embedder(embedder_for([KEYED_SETS[args.set] / "corpus"]))
    retriever = Retriever(build_index(KEYED_SETS[args.set], embedder), embedder, SearchSettings())
    generator = make_generator(GenerateSettings(model=args.model))
    rag = R.RAG(retriever, generator, k=3)
    right = {v: 0 for v in args.variants.split(",")}
    quoted = dict.fromkeys(right, 0)
    saved = R._PROMPTS["el"]
    try:
        for q in questions:
            hits = retriever.search(q["question"], k=3)
            for variant in right:
                R._PROMPTS["el"] = VARIANTS[variant]
                text = generator.generate(R.build_messages(q["question"], hits), 160, 0.0, None).text
                answer = rag.verify(q["question"], text, hits)
                ok = answer.found and matches_any_key(answer.answer, q["keys"])
                right[variant] += ok
                quoted[variant] += ok and answer.extractive
                print(f"{q['id']} {variant:14s} {'right' if ok else 'wrong'} | {text[:100]!r}", flush=True)
    finally:
        R._PROMPTS["el"] = saved
    for variant in right:
        print(f"{variant:14s} {right[variant]}/{len(questions)} right ({quoted[variant]} of them quoted)")


if __name__ == "__main__":
    main()
