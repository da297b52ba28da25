"""A multi-document PDF set where the questions name the company or product and the passages do not.

Like a shelf of annual reports and product manuals: every company's report has the same sections written
the same way ("Revenue for the year was …", "The Company employed …"), and every manual the same
specification sentences, so only the document's identity (its title, its file name) tells two passages
apart. The companies, products and figures are invented with a fixed seed: no model can know them.

How each document says what it is varies, as it does in practice: a third carry a PDF metadata title, a
third only a first line on page 1 that reads as a title, and a third neither (the file name is all).

``build(folder)`` writes the PDFs and returns the questions, each with its gold file and page.
Run alone to write them: .venv/bin/python benchmarks/multidoc_pdfs.py OUT_FOLDER
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

COMPANIES = [
    ("Halvorsen Marine", "halvorsen-marine", "Kestrel KX-20 compressor"),
    ("Brightwater Foods", "brightwater-foods", "Aurora AF-7 blast chiller"),
    ("Oakridge Timber", "oakridge-timber", "Timberline T-450 kiln"),
    ("Vellora Textiles", "vellora-textiles", "Loomcraft LC-9 dye press"),
    ("Castellan Mining", "castellan-mining", "Granite GX-300 crusher"),
    ("Nordfjell Energy", "nordfjell-energy", "Fjord FW-12 wind inverter"),
    ("Saltmarsh Chemicals", "saltmarsh-chemicals", "Brine BR-60 dosing pump"),
    ("Ambergate Logistics", "ambergate-logistics", "Carrier CR-8 pallet lift"),
    ("Redcliff Ceramics", "redcliff-ceramics", "Fireglaze FG-5 furnace"),
    ("Pemberton Robotics", "pemberton-robotics", "Atlas AR-3 welding arm"),
    ("Quillon Pharma", "quillon-pharma", "Sterix SX-40 autoclave"),
    ("Tidewell Water", "tidewell-water", "Clearflow CF-90 filter skid"),
]
CITIES = ["Bergen", "Leeds", "Tampere", "Porto", "Lyon", "Gdansk", "Aarhus", "Graz", "Cork", "Bilbao", "Turin", "Ghent"]


@dataclass
class Question:
    qid: str
    text: str
    file: str  # file name of the gold document
    page: int  # 1-based gold page
    kind: str  # report | manual


def _pdf(path: Path, pages: list[list[str]], title: str | None) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    if title:
        pdf.set_title(title)
    pdf.set_font("helvetica", size=11)
    for page in pages:
        pdf.add_page()
        for para in page:
            pdf.multi_cell(0, 6, para)
            pdf.ln(4)
    pdf.output(str(path))


def build(folder: Path, seed: int = 12) -> list[Question]:
    """Write 24 PDFs (a report and a manual per company) into ``folder``; return the questions."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    questions: list[Question] = []
    for i, (name, slug, product) in enumerate(COMPANIES):
        style = i % 3  # 0: metadata title, 1: a first-line title only, 2: the file name only
        revenue = rng.randrange(120, 990)
        margin = rng.randrange(4, 29)
        staff = rng.randrange(300, 9000)
        sites = rng.randrange(3, 40)
        city = CITIES[i]
        dividend = rng.randrange(5, 95)
        capex = rng.randrange(10, 90)
        report_title = f"{name} Annual Report 2025"
        first = [report_title] if style == 1 else []
        report = [
            first
            + [
                "Chair's statement",
                "The year brought steady demand across our markets. The Board thanks our people for their work.",
                f"The Company is headquartered in {city}, where the Board meets each quarter.",
            ],
            [
                "Financial review",
                f"Revenue for the year was EUR {revenue} million. The operating margin was {margin} percent.",
                f"The Board proposes a final dividend of {dividend} cents per share.",
                f"Capital expenditure amounted to EUR {capex} million, mostly on new production lines.",
            ],
            [
                "Our people and operations",
                f"At year end the Company employed {staff} people across {sites} sites.",
                "Staff turnover fell, and every site completed its safety audit.",
            ],
        ]
        report_file = f"{slug}-annual-report-2025.pdf"
        _pdf(folder / report_file, report, report_title if style == 0 else None)
        q = [
            (f"What was {name}'s revenue in 2025?", 2),
            (f"What operating margin did {name} report for 2025?", 2),
            (f"How many people did {name} employ at the end of 2025?", 3),
            (f"Where is {name} headquartered?", 1),
            (f"What final dividend per share did the {name} board propose?", 2),
            (f"How much did {name} spend on capital expenditure in 2025?", 2),
        ]
        questions += [Question(f"{slug}-r{j}", t, report_file, p, "report") for j, (t, p) in enumerate(q)]

        pressure = rng.randrange(6, 40)
        power = rng.randrange(2, 75)
        weight = rng.randrange(80, 2400)
        interval = rng.choice([500, 750, 1000, 1500, 2000, 4000])
        temp = rng.randrange(35, 95)
        manual_title = f"{product} Operating Manual"
        first = [manual_title] if style == 1 else []
        manual = [
            first
            + [
                "Specifications",
                f"Maximum operating pressure: {pressure} bar. Rated power: {power} kW. Dry weight: {weight} kg.",
            ],
            [
                "Maintenance",
                f"Replace the main filter every {interval} operating hours.",
                f"Shut the unit down if the housing temperature exceeds {temp} degrees Celsius.",
            ],
        ]
        model = product.split()[1]
        manual_file = f"{model.lower()}-manual.pdf"
        _pdf(folder / manual_file, manual, manual_title if style == 0 else None)
        q = [
            (f"What is the maximum operating pressure of the {product}?", 1),
            (f"How heavy is the {product} when dry?", 1),
            (f"How often should the main filter of the {product} be replaced?", 2),
            (f"At what housing temperature must the {model} be shut down?", 2),
        ]
        questions += [Question(f"{slug}-m{j}", t, manual_file, p, "manual") for j, (t, p) in enumerate(q)]
    return questions


if __name__ == "__main__":
    out = Path(sys.argv[1])
    qs = build(out)
    (out / "questions.jsonl").write_text("".join(json.dumps(q.__dict__) + "\n" for q in qs))
    print(f"{len(qs)} questions, {len(list(out.glob('*.pdf')))} PDFs in {out}")
