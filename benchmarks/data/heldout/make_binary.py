"""Regenerate the binary files of the held-out planted-fact set (one PDF manual, one DOCX terms document).

The company, Tessendry Bakery Systems B.V., and every fact in its documents are invented, so no general model can
know them. The text lives here so that questions can be checked against it without a PDF or DOCX reader.
Run: .venv/bin/python benchmarks/data/heldout/make_binary.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/data: the shared writers
from binary_docs import BinaryDocs  # noqa: E402

HERE = Path(__file__).parent / "corpus"
PDF_NAME = "kneadwell-mixer-manual.pdf"
DOCX_NAME = "warranty-and-service-terms.docx"

# -- PDF: spiral mixer operating manual (one page and one bookmark per section; latin-1 text only) ---------------

MANUAL_TITLE = "OM-KW-03 Kneadwell Spiral Mixer Operating Manual"
MANUAL = [
    (
        "1 Models and capacities",
        [
            "This manual covers the Kneadwell spiral mixers KW-40, KW-80 and KW-120 made by Tessendry Bakery "
            "Systems B.V. from 2022 onwards. It is edition 3, issued in January 2024. Read it together with any "
            "service bulletin for your serial number.",
            "KW-40: bowl volume 48 litres, largest dough batch 40 kg, largest flour load 25 kg, spiral motor "
            "1.5 kW at speed 1 and 2.4 kW at speed 2, weight 235 kg.",
            "KW-80: bowl volume 105 litres, largest dough batch 80 kg, largest flour load 50 kg, spiral motor "
            "3.0 kW at speed 1 and 4.8 kW at speed 2, weight 410 kg.",
            "KW-120: bowl volume 160 litres, largest dough batch 120 kg, largest flour load 75 kg, spiral motor "
            "4.5 kW at speed 1 and 7.0 kW at speed 2, weight 585 kg.",
            "The smallest batch that mixes evenly is one tenth of the largest dough batch. For stiff doughs with "
            "a hydration below 55 %, reduce the largest dough batch by a quarter.",
            "All models need a 400 V three-phase supply. The KW-40 is also sold with a 230 V single-phase motor "
            "as the KW-40M; its capacities are the same.",
        ],
    ),
    (
        "2 Speeds and timers",
        [
            "Each mixer has two speeds. At speed 1 the spiral turns at 110 rpm and the bowl at 11 rpm; at speed 2 "
            "the spiral turns at 220 rpm and the bowl at 22 rpm. Always start a dough at speed 1.",
            "The bowl can be turned in reverse at speed 1 only, to help scrape down the dough. Reverse is not "
            "possible while a timer is running.",
            "The control panel has two timers, one for each speed, each settable from 0 to 20 minutes. The mixer "
            "changes from speed 1 to speed 2 automatically when the first timer ends.",
            "Do not run a mixer for more than 25 minutes without a pause. After that, let the motor rest for at "
            "least 10 minutes; the motor's thermal protection otherwise stops the mixer and shows code M04.",
        ],
    ),
    (
        "3 Safety",
        [
            "The bowl guard is interlocked: lifting it stops the bowl and the spiral. Test the guard once a week: "
            "start the mixer empty at speed 1 and lift the guard; the bowl must stop within 3 seconds. A mixer "
            "that fails the test must not be used.",
            "The red emergency stop on the front panel stops everything. Turn it clockwise to release it.",
            "Never reach into the bowl while the spiral is turning, and do not wear loose gloves or rings when "
            "scraping down. Long hair must be tied back or covered.",
            "The noise level at the operator's position stays below 72 dB(A) at both speeds.",
            "Only staff who have completed the Kneadwell mixer safety course, or equivalent training by the "
            "bakery, may operate the KW-80 and KW-120.",
        ],
    ),
    (
        "4 Cleaning and lubrication",
        [
            "Clean the bowl, spiral and breaker bar after every shift with water no hotter than 40 °C and a "
            "food-safe detergent. Never use a high-pressure cleaner: water gets into the motor bearings. On "
            "Fridays also take off the bowl guard grille and wash it.",
            "The gearbox is filled with food-grade gear oil GL-220. Change the oil every 2,000 operating hours. "
            "Quantity: KW-40 1.2 litres, KW-80 2.5 litres, KW-120 3.8 litres.",
            "Check the tension of the drive belts every 500 operating hours. A belt that deflects more than "
            "8 mm under thumb pressure is tensioned or replaced.",
            "Grease the bowl bearing with food-grade grease every 6 months. Do not grease the spiral shaft seal.",
        ],
    ),
    (
        "5 Display codes",
        [
            "M01: bowl guard open. Close the guard; the mixer restarts only after the start button is pressed again.",
            "M02: emergency stop pressed. Release the button and press start.",
            "M04: motor too hot. Let the mixer rest for at least 10 minutes, then reduce the batch size.",
            "M07: phase sequence wrong. The bowl would turn backwards. An electrician must swap two phases at the "
            "plug; do not run the mixer.",
            "M09: bowl motor overload. Usually a dough that is too stiff for the batch size. Remove part of the "
            "dough and restart at speed 1.",
            "Any other code: switch off, note the code and call the Tessendry service line.",
        ],
    ),
]

# -- DOCX: warranty and service terms ---------------------------------------------------------------------------

TERMS_TITLE = "Warranty and Service Terms"
TERMS_INTRO = (
    "Terms TS-2025, effective 1 January 2025, for customers of Tessendry Bakery Systems B.V. in the mainland service "
    "zone. They replace terms TS-2022. Where a customer contract says otherwise, the contract prevails."
)
TERMS = [
    (
        "Warranty periods",
        [
            "The warranty starts on the commissioning date recorded on form IC-3, or 30 days after delivery if the "
            "equipment has not been commissioned by then. Parts replaced under warranty are covered for the rest of "
            "the original period only.",
        ],
        (
            ["Product", "Parts", "Labour"],
            [
                ["Hearthline deck ovens", "24 months", "24 months"],
                ["Deck stones (cracks not caused by impact)", "12 months", "12 months"],
                ["Kneadwell spiral mixers", "36 months", "24 months"],
                ["Riselock proofers RP-16 and RP-32", "18 months", "12 months"],
                ["OvenSense 3 controller board as a spare part", "24 months", "not included"],
            ],
        ),
    ),
    (
        "What the warranty does not cover",
        [
            "Scale damage to a steam generator when the water filter cartridge was not replaced at the interval in "
            "the installation guide. Broken door glass. Consumables: filter cartridges, door seals, drive belts and "
            "lamps. Damage from a supply outside 400 V plus or minus 10 %.",
        ],
        None,
    ),
    (
        "Service contracts",
        [
            "Contracts run for 12 months and renew automatically. Either party may end a contract with 3 months' "
            "notice before the renewal date. The annual fee covers one preventive service visit and the call-out "
            "fees of the contract; parts are charged at list price less the contract discount.",
        ],
        (
            ["Contract", "Annual fee per oven", "Call-out fee", "Hourly rate", "Parts discount"],
            [
                ["Standard", "EUR 690", "EUR 95", "EUR 78", "5 %"],
                ["Priority", "EUR 1,240", "included", "EUR 78", "10 %"],
                ["No contract", "none", "EUR 145", "EUR 92", "none"],
            ],
        ),
    ),
    (
        "Travel and surcharges",
        [
            "Travel within 60 km of the nearest service hub (Pellingford or Varrow Heath) is free. Beyond that, "
            "travel is charged at EUR 0.92 per km, counting the journey there and back.",
            "Work outside service hours is charged at the hourly rate plus 50 %. Work on Sundays and public holidays "
            "is charged at the hourly rate plus 100 %.",
        ],
        None,
    ),
    (
        "Payment",
        [
            "Invoices are payable within 30 days of the invoice date. Overdue amounts carry interest of 1 % per "
            "month. Service may be suspended when an invoice is more than 60 days overdue.",
        ],
        None,
    ),
]


DOCS = BinaryDocs(
    HERE,
    PDF_NAME,
    MANUAL_TITLE,
    "Tessendry Bakery Systems B.V.",
    MANUAL,
    DOCX_NAME,
    TERMS_TITLE,
    TERMS_INTRO,
    TERMS,
)


def all_text() -> dict[str, str]:
    return DOCS.all_text()


if __name__ == "__main__":
    DOCS.write()
