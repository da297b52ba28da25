"""Regenerate the binary files of the held-out planted-fact corpus (one PDF manual, one DOCX policy).

The company, Kestrel Reach Cold Logistics Ltd, and every fact in its documents are invented, so no general model
can know them. The text lives here so that questions can be checked against it without a PDF or DOCX reader.
Run: .venv/bin/python benchmarks/data/planted/make_binary.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/data: the shared writers
from binary_docs import BinaryDocs  # noqa: E402

HERE = Path(__file__).parent / "corpus"
PDF_NAME = "cold-store-operations-manual.pdf"
DOCX_NAME = "travel-and-expenses-policy.docx"

# -- PDF: cold-store operations manual (one page and one bookmark per section; latin-1 text only) ---------------

MANUAL_TITLE = "CSM-01 Cold Store Operations Manual - Harrowgate Point"
MANUAL = [
    (
        "1 Scope and chamber overview",
        [
            "This manual applies to the Harrowgate Point depot of Kestrel Reach Cold Logistics Ltd. It is issue 5, "
            "approved on 12 May 2025 by the depot manager. Millbeck and Saltmarsh Road have their own manuals "
            "(CSM-02 and CSM-03).",
            "Chamber H1: frozen class F1, setpoint -21 °C, 3,100 pallet positions in narrow-aisle racking.",
            "Chamber H2: frozen class F1, setpoint -21 °C, 2,900 pallet positions. The rear bay of H2 is used "
            "overnight to freeze the eutectic plates of the courier vans.",
            "Chamber H3: deep-frozen class F2, setpoint -27 °C, 1,600 pallet positions. Entry only through the "
            "H3 airlock; both airlock doors must never be open together.",
            "Chamber H4: chilled class C1, setpoint +3 °C, 2,200 pallet positions.",
            "Chamber H5: pharmaceutical controlled ambient class P1, setpoint +19 °C, 900 pallet positions.",
            "Chamber H6: pharmaceutical cold class P2, setpoint +5 °C, 1,100 pallet positions. H6 is the "
            "GDP-qualified chamber; its mapping study is repeated every 3 years and after any change to the "
            "racking or the evaporators.",
            "Blast cell B1 holds 12 pallets and runs at -35 °C air temperature.",
        ],
    ),
    (
        "2 Working in the cold",
        [
            "Everyone entering a chamber at or below -18 °C wears the full cold-store suit of protection class "
            "CS-3, insulated boots, a balaclava and thermal gloves. Suits are issued personally and are "
            "laundered every two weeks.",
            "In chambers at or below -18 °C a continuous work period may last no longer than 55 minutes, "
            "followed by a warm break of at least 20 minutes in the mess room. In the deep-frozen chamber H3 and "
            "in the blast cell the continuous work period is shortened to 40 minutes.",
            "New starters are acclimatised over their first 5 shifts: during that time they spend no more than "
            "3 hours per shift in frozen chambers, and never alone.",
            "Lone working in frozen chambers between 22:00 and 06:00 is only allowed when the worker carries a "
            "lone-worker alarm unit LW-2 that raises an alarm automatically after 90 seconds without movement.",
            "Hot drinks are available free of charge from the mess room machine at all times.",
        ],
    ),
    (
        "3 Refrigeration plant and defrost",
        [
            "Harrowgate Point is cooled by an ammonia and CO2 cascade plant. The ammonia charge of the plant is "
            "1,850 kg and is kept in the plant room; only CO2 is piped into the chambers.",
            "Frozen chambers use hot-gas defrost four times a day, starting at 02:00, 08:00, 14:00 and 20:00. "
            "Each defrost may last up to 25 minutes. Avoid opening chamber doors during a defrost, because warm "
            "moist air then freezes on the evaporator fins.",
            "Chilled chambers use off-cycle defrost controlled by the plant computer; no fixed times apply.",
            "Ammonia detectors in the plant room alarm in two stages. Stage 1 at 25 ppm starts the extraction "
            "fans and alerts the engineer on call. Stage 2 at 150 ppm sounds the site evacuation alarm and "
            "shuts down the plant.",
            "The plant is maintained by Polarline Services. A plant inspection by their engineer takes place "
            "every 4 weeks; the logbook is kept in the plant room.",
        ],
    ),
    (
        "4 Forklift trucks and racking",
        [
            "Only cold-store specification reach trucks rated to -30 °C may work in frozen chambers. Counterbalance "
            "trucks are restricted to the dock and to chamber H5.",
            "The maximum racking height in H1 and H2 is 10.5 m; in H3 it is 8.2 m. Never lift a pallet above the "
            "top beam marked with yellow and black tape.",
            "The speed limit for all trucks inside chambers is 6 km/h, and 10 km/h on the dock.",
            "Trucks have lithium-ion batteries, charged in charge bay CB-2, which is kept at +5 °C. A truck may "
            "not be left unattended inside a frozen chamber for longer than 30 minutes, because the battery "
            "heater cannot keep up.",
            "Each driver completes pre-use check sheet FL-7 at the start of each shift. A truck with a fault is "
            "tagged out with a red DO NOT USE tag and reported to the shift leader.",
        ],
    ),
    (
        "5 Emergencies",
        [
            "Every frozen chamber door has an internal red push button and a mechanical door release lever, both "
            "lit by an emergency light. Pressing the button sounds the person-trapped alarm in the gatehouse and "
            "at the shift leader's desk.",
            "On the evacuation alarm, leave by the nearest marked exit and go to assembly point A3 in the north "
            "car park. For an ammonia alarm, go to assembly point A1 by the gatehouse unless told otherwise, as "
            "it is upwind of the plant room in the prevailing wind.",
            "The sprinkler system in the frozen chambers is a dry-pipe system. Do not store pallets within 1 m of "
            "a sprinkler head.",
            "Ice on chamber floors thicker than 3 mm must be removed before trucks work in that aisle. Door heater "
            "strips are checked weekly by engineering.",
        ],
    ),
]

# -- DOCX: travel and expenses policy ------------------------------------------------------------------------

POLICY_TITLE = "Travel and Expenses Policy"
POLICY_INTRO = (
    "Policy HR-POL-12, version 4, effective 1 April 2025. This policy applies to all employees of Kestrel Reach "
    "Cold Logistics Ltd who travel on company business, including drivers on trunking routes. It replaces version 3 "
    "of 1 June 2023."
)
POLICY = [
    (
        "Booking travel",
        [
            "All rail, air and hotel bookings are made through the company travel desk, staffed by Marisol Eke on "
            "extension 4255. Flights must be requested at least 10 working days before departure.",
            "Rail travel is in standard class. First class may be booked only when the journey is longer than "
            "3 hours one way and the line manager has approved it in writing.",
            "Taxis are reimbursed only when no public transport is available, when carrying heavy equipment, or "
            "between 23:00 and 06:00.",
        ],
        None,
    ),
    (
        "Use of a private car",
        [
            "Business journeys in a private car are reimbursed per mile. The commute between home and the usual "
            "depot is not a business journey.",
            "An employee who carries a colleague on the same business journey may claim a passenger supplement "
            "of GBP 0.07 per passenger per mile.",
        ],
        (
            ["Business miles in the tax year", "Rate per mile"],
            [
                ["First 9,500 miles", "GBP 0.47"],
                ["Above 9,500 miles", "GBP 0.25"],
                ["Motorcycle, any mileage", "GBP 0.21"],
            ],
        ),
    ),
    (
        "Hotels",
        [
            "Hotels are booked room only where possible. The nightly caps below include VAT but exclude breakfast, "
            "which is reimbursed separately up to GBP 14.50.",
        ],
        (
            ["Location", "Nightly cap (room only)", "Notes"],
            [
                ["London", "GBP 165", "Travel desk to book; no self-booking"],
                ["Other cities with over 250,000 inhabitants", "GBP 118", ""],
                ["All other locations", "GBP 96", ""],
            ],
        ),
    ),
    (
        "Meals and allowances",
        [
            "Day subsistence is paid when an employee is away from the usual depot on business for more than "
            "5 hours (GBP 11.50) or more than 10 hours (GBP 23.00). An evening meal during an overnight stay is "
            "reimbursed up to GBP 31.00. Alcohol is never reimbursed.",
            "Drivers who spend the night in the cab of a company vehicle receive a night-out allowance of "
            "GBP 34.25 per night. The allowance is paid through payroll, not through an expense claim.",
        ],
        None,
    ),
    (
        "Approvals",
        [
            "A trip with more than 2 nights away needs the approval of the line manager and the head of "
            "department before booking. Any travel outside the United Kingdom needs the approval of a director.",
            "Conference and training fees above GBP 750 are approved by the HR manager, Oluwaseun Brandt.",
        ],
        None,
    ),
    (
        "Claims and company cards",
        [
            "Expense claims are submitted in the Tallyway app within 40 days of the expense. Claims older than "
            "90 days are rejected without exception. A receipt is required for every item above GBP 12.",
            "Company credit cards carry a monthly limit of GBP 2,500. Personal spending on a company card is a "
            "disciplinary matter, even if it is repaid.",
            "Approved claims are paid with the next monthly salary if they are approved by the 18th of the month.",
        ],
        None,
    ),
]


DOCS = BinaryDocs(
    HERE,
    PDF_NAME,
    MANUAL_TITLE,
    "Kestrel Reach Cold Logistics Ltd",
    MANUAL,
    DOCX_NAME,
    POLICY_TITLE,
    POLICY_INTRO,
    POLICY,
)


def all_text() -> dict[str, str]:
    return DOCS.all_text()


if __name__ == "__main__":
    DOCS.write()
