"""Regenerate the binary files of the Greek held-out planted-fact set (one PDF guide, one DOCX terms document).

The company, Ναυτιλιακή Ασπρονησίου Α.Ε. (an island ferry operator), and every fact in its documents are invented,
so no general model can know them. The text lives here so that questions can be checked against it without a PDF or
DOCX reader.

The PDF needs a TrueType font with Greek letters (the PDF core fonts are latin-1 only); DejaVu Sans is looked for
in the usual places, or give one with EXPERTKIT_GREEK_TTF=/path/to/font.ttf (and EXPERTKIT_GREEK_TTF_BOLD).
Run: .venv/bin/python benchmarks/data/planted-el/make_binary.py
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).parent / "corpus"
PDF_NAME = "odigos-asfaleias-garaz.pdf"
DOCX_NAME = "oroi-synergasias-metaforikon.docx"

_FONT_DIRS = [
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/dejavu",
    "/usr/share/fonts/TTF",
    "/Library/Fonts",
    "C:/Windows/Fonts",
]

# -- PDF: garage safety guide for lorry drivers (one page and one bookmark per section) -------------------------

GUIDE_TITLE = "ΟΓΟ-2 Οδηγός ασφάλειας γκαράζ για οδηγούς φορτηγών"
GUIDE = [
    (
        "1 Επιβίβαση",
        [
            "Ο οδηγός αυτός ισχύει σε όλα τα πλοία της Ναυτιλιακής Ασπρονησίου Α.Ε. και σε όσα ναυλώνει. Είναι η "
            "δεύτερη έκδοση, του Οκτωβρίου 2025, και συμπληρώνει τον κανονισμό μεταφοράς οχημάτων ΚΜΟ-3.",
            "Ανεβαίνετε τον καταπέλτη με ταχύτητα το πολύ 5 km/h και ακολουθείτε μόνο τα σήματα του ναύτη που "
            "κατευθύνει τη φόρτωση. Μην προσπερνάτε άλλο όχημα πάνω στον καταπέλτη.",
            "Οι νταλίκες Φ6 μπαίνουν με την όπισθεν, ώστε να βγουν με την πλώρη προς την έξοδο. Αν δεν έχετε "
            "εμπειρία στην όπισθεν σε καταπέλτη, ζητήστε να οδηγήσει το όχημα μέλος του πληρώματος.",
            "Φορτηγά με επικίνδυνο φορτίο σταθμεύουν στο ανοιχτό κατάστρωμα οχημάτων, τουλάχιστον 3 m μακριά από "
            "κάθε άλλο όχημα.",
        ],
    ),
    (
        "2 Στάθμευση και πρόσδεση",
        [
            "Σβήστε τη μηχανή, τραβήξτε το χειρόφρενο και βάλτε πρώτη ταχύτητα. Αφήστε τα κλειδιά στη μίζα μόνο αν "
            "σας το ζητήσει το πλήρωμα.",
            "Κάθε φορτηγό πάνω από 3,5 t δένεται από το πλήρωμα με 4 αλυσίδες. Οι νταλίκες Φ6 δένονται με 6 "
            "αλυσίδες, και κάτω από το ρυμουλκούμενο μπαίνει τρίποδο στήριξης.",
            "Καμία αλυσίδα δεν λύνεται πριν δέσει το πλοίο και δώσει άδεια ο ύπαρχος.",
        ],
    ),
    (
        "3 Ψυκτικές μονάδες",
        [
            "Η ψυκτική μονάδα συνδέεται στην πρίζα του πλοίου το αργότερο 15 λεπτά αφού σταθμεύσει το φορτηγό. "
            "Ως τότε μπορεί να δουλεύει με πετρέλαιο· μετά απαγορεύεται, λόγω καυσαερίων.",
            "Το καλώδιο του φορτηγού πρέπει να έχει φις CEE πέντε πόλων, 32 A. Το πλοίο δεν δίνει αντάπτορες.",
            "Αποσυνδέστε τη μονάδα μόλις ακουστεί η ανακοίνωση αποβίβασης και τυλίξτε το καλώδιο στη θέση του.",
        ],
    ),
    (
        "4 Κατά τη διάρκεια του ταξιδιού",
        [
            "Απαγορεύεται η παραμονή στο γκαράζ. Οι οδηγοί περιμένουν στο σαλόνι οδηγών του καταστρώματος Δ.",
            "Ο οδηγός φορτηγού με ζωντανά ζώα μπορεί να κατεβαίνει στο γκαράζ κάθε 2 ώρες, πάντα με συνοδεία μέλους "
            "του πληρώματος, για να ελέγξει και να ποτίσει τα ζώα.",
            "Το κάπνισμα απαγορεύεται σε όλους τους χώρους οχημάτων, και στο ανοιχτό κατάστρωμα οχημάτων.",
        ],
    ),
    (
        "5 Αποβίβαση",
        [
            "Οι οδηγοί κατεβαίνουν στο γκαράζ μόνο όταν τους καλέσει η ανακοίνωση, περίπου 20 λεπτά πριν από την "
            "άφιξη.",
            "Μη βάζετε μπροστά τη μηχανή πριν ανοίξει ο καταπέλτης και σας κάνει σήμα ο ναύτης.",
            "Τα φορτηγά με επικίνδυνο φορτίο βγαίνουν πρώτα, πριν από κάθε άλλο όχημα.",
        ],
    ),
    (
        "6 Έκτακτη ανάγκη",
        [
            "Αν ακουστεί ο συναγερμός ενώ βρίσκεστε στο γκαράζ, αφήστε το όχημα ξεκλείδωτο και ανεβείτε από την "
            "πλησιέστερη σκάλα. Οι οδηγοί φορτηγών συγκεντρώνονται στον σταθμό συγκέντρωσης Σ-4, στο κατάστρωμα "
            "Δ, πρύμα δεξιά.",
            "Αν πιάσει φωτιά στο γκαράζ, το πλήρωμα ενεργοποιεί το σύστημα καταιονισμού νερού. Μην προσπαθήσετε "
            "να βγάλετε το φορτηγό σας.",
        ],
    ),
]

# -- DOCX: terms for haulage companies ---------------------------------------------------------------------------

TERMS_TITLE = "Όροι συνεργασίας για μεταφορικές επιχειρήσεις"
TERMS_INTRO = (
    "Όροι ΟΣΜ-2025, σε ισχύ από 1 Νοεμβρίου 2025, για μεταφορικές επιχειρήσεις που ταξιδεύουν με φορτηγά Φ5 και Φ6 "
    "στα πλοία της Ναυτιλιακής Ασπρονησίου Α.Ε. Αντικαθιστούν τους όρους ΟΣΜ-2023. Όπου μια γραπτή σύμβαση ορίζει "
    "κάτι διαφορετικό, υπερισχύει η σύμβαση."
)
TERMS = [
    (
        "Πιστωτικός λογαριασμός",
        [
            "Πιστωτικό λογαριασμό μπορούν να ανοίξουν επιχειρήσεις με τουλάχιστον 8 ταξίδια φορτηγών τον μήνα, κατά "
            "μέσο όρο στους τελευταίους 3 μήνες. Απαιτείται εγγυητική επιστολή τράπεζας ύψους 3.500 €.",
            "Τα τιμολόγια εξοφλούνται μέσα σε 30 ημέρες από την έκδοσή τους. Ο λογαριασμός αναστέλλεται όταν ένα "
            "τιμολόγιο μείνει ανεξόφλητο πάνω από 45 ημέρες.",
        ],
        None,
    ),
    (
        "Εκπτώσεις όγκου",
        [
            "Η έκπτωση υπολογίζεται κάθε μήνα με βάση τα ταξίδια του προηγούμενου μήνα. Δεν ισχύει για τις "
            "επιβαρύνσεις (ψυγείο, ADR, ρυμουλκούμενο) ούτε για τη ναύλωση δρομολογίου ADR.",
        ],
        (
            ["Ταξίδια φορτηγών τον μήνα", "Έκπτωση στον ναύλο", "Ισχύει για"],
            [
                ["8 έως 19", "6 %", "Φ5 και Φ6"],
                ["20 έως 39", "11 %", "Φ5 και Φ6"],
                ["40 και άνω", "15 %", "Φ5 και Φ6"],
            ],
        ),
    ),
    (
        "Κρατήσεις και μη εμφάνιση",
        [
            "Κράτηση που δεν εμφανίζεται και δεν ακυρώθηκε εγκαίρως χρεώνεται με το 30 % του ναύλου.",
        ],
        (
            ["Ενέργεια", "Προθεσμία"],
            [
                ["Κράτηση θέσης για νταλίκα Φ6", "έως 18:00 της προηγούμενης ημέρας"],
                ["Ακύρωση χωρίς χρέωση", "έως 12 ώρες πριν από την αναχώρηση"],
                ["Αλλαγή αριθμού κυκλοφορίας", "έως 2 ώρες πριν από την αναχώρηση"],
            ],
        ),
    ),
    (
        "Οδηγοί",
        [
            "Με κάθε φορτηγό Φ5 ή Φ6 ταξιδεύει δωρεάν ένας οδηγός. Ο δεύτερος οδηγός πληρώνει κανονικό εισιτήριο "
            "επιβάτη. Στη γραμμή Νέα Κερασιά – Μελισσονήσι ο οδηγός μπορεί να κλείσει μονόκλινη καμπίνα με 22 € "
            "ανά ταξίδι.",
        ],
        None,
    ),
    (
        "Ευθύνη για το φορτίο",
        [
            "Η ευθύνη της εταιρείας για ζημιά σε φορτίο περιορίζεται στα 10 € ανά κιλό μεικτού βάρους και δεν "
            "ξεπερνά τις 15.000 € ανά όχημα. Οι ζημιές δηλώνονται γραπτώς πριν το όχημα φύγει από το λιμάνι "
            "άφιξης.",
        ],
        None,
    ),
    (
        "Επικοινωνία",
        [
            "Για συμφωνίες συνεργασίας και πιστωτικούς λογαριασμούς υπεύθυνος είναι ο Παντελής Ζαχαρίου, Τμήμα "
            "Εμπορευματικών Μεταφορών, εσωτ. 2152.",
        ],
        None,
    ),
]


def _font(env: str, name: str) -> str:
    path = os.environ.get(env)
    if path:
        return path
    for folder in _FONT_DIRS:
        candidate = Path(folder) / name
        if candidate.is_file():
            return str(candidate)
    raise SystemExit(f"no {name} found; install fonts-dejavu-core or set {env}=/path/to/a/greek/font.ttf")


def make_pdf(path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_font("greek", "", _font("EXPERTKIT_GREEK_TTF", "DejaVuSans.ttf"))
    pdf.add_font("greek", "B", _font("EXPERTKIT_GREEK_TTF_BOLD", "DejaVuSans-Bold.ttf"))
    pdf.set_title(GUIDE_TITLE)
    pdf.set_author("Ναυτιλιακή Ασπρονησίου Α.Ε.")
    pdf.set_creation_date(datetime(2025, 10, 1, tzinfo=UTC))  # the same bytes on every run
    for title, paragraphs in GUIDE:
        pdf.add_page()
        pdf.set_font("greek", "B", 15)
        pdf.start_section(title, level=0)
        pdf.cell(0, 10, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("greek", size=11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(4)
    pdf.output(str(path))


def make_docx(path: Path) -> None:
    import docx

    d = docx.Document()
    d.core_properties.title = TERMS_TITLE
    d.add_heading(TERMS_TITLE, 0)
    d.add_paragraph(TERMS_INTRO)
    for heading, paragraphs, table in TERMS:
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


def all_text() -> dict[str, str]:
    """The text of each binary document, for checking question keys without a PDF or DOCX reader."""
    pdf = [GUIDE_TITLE] + [t for title, paras in GUIDE for t in [title, *paras]]
    docx = [TERMS_TITLE, TERMS_INTRO]
    for heading, paragraphs, table in TERMS:
        docx += [heading, *paragraphs]
        if table is not None:
            docx += [" ".join(table[0])] + [" ".join(r) for r in table[1]]
    return {PDF_NAME: "\n".join(pdf), DOCX_NAME: "\n".join(docx)}


if __name__ == "__main__":
    HERE.mkdir(parents=True, exist_ok=True)
    make_pdf(HERE / PDF_NAME)
    make_docx(HERE / DOCX_NAME)
    print("wrote", HERE / PDF_NAME, HERE / DOCX_NAME)
