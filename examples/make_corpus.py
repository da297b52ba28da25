"""Regenerate the binary files of the sample corpus (the PDF manual and the DOCX policy).

The sample company, Norvale Pumps, and every fact in its documents are invented, so no general
model can know them: an answer that contains them came from retrieval or from fine-tuning.
Run: .venv/bin/python examples/make_corpus.py
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent / "corpus"

MANUAL = [
    (
        "1 Safety",
        [
            "Isolate the NV-400 from the mains and lock out the motor starter before opening the pump casing. "
            "The casing can hold residual pressure of up to 6 bar after shutdown; open the bleed valve BV-2 and "
            "wait until the gauge reads zero.",
            "Wear nitrile gloves when handling the mechanical seal faces. Silicon carbide faces chip if dropped.",
        ],
    ),
    (
        "2 Specifications",
        [
            "The NV-400 series are end-suction centrifugal pumps for process water and light chemicals.",
            "Model NV-410: rated flow 42 m3/h at 31 m head, motor 5.5 kW, maximum speed 2,950 rpm.",
            "Model NV-420: rated flow 65 m3/h at 38 m head, motor 11 kW, maximum speed 2,950 rpm.",
            "Model NV-440: rated flow 120 m3/h at 44 m head, motor 22 kW, maximum speed 1,480 rpm.",
            "Permitted fluid temperature is -10 °C to 110 °C. Above 90 °C the flushing plan API 11 is mandatory.",
        ],
    ),
    (
        "3 Torque values",
        [
            "Tighten the impeller nut on all NV-400 models to 68 N·m using the impeller locking tool NT-11.",
            "Casing bolts M16 are tightened crosswise in three passes to a final torque of 145 N·m.",
            "Seal gland nuts are tightened to 22 N·m; over-tightening distorts the stationary seal ring.",
            "Motor foot bolts M12 are tightened to 80 N·m after the coupling has been aligned.",
        ],
    ),
    (
        "4 Maintenance intervals",
        [
            "Grease the motor-side bearing every 2,000 operating hours with 12 g of Kluber Isoflex NBU 15.",
            "Replace the mechanical seal every 8,000 operating hours or when leakage exceeds 10 drops per minute.",
            "Check coupling alignment every 4,000 operating hours; the permitted offset is 0.05 mm.",
            "Replace the wear ring when the radial clearance exceeds 0.6 mm; the new clearance is 0.3 mm.",
        ],
    ),
    (
        "5 Fault codes",
        [
            "E-17 Dry-run protection tripped: the suction pressure stayed below 0.2 bar for 20 seconds. "
            "Prime the pump and check the suction strainer before resetting.",
            "E-22 Motor over-temperature: the PTC sensor reached 140 °C. Let the motor cool for 30 minutes and check "
            "the fan cover for blockage.",
            "E-31 Vibration alarm: velocity above 7.1 mm/s RMS at the bearing housing. Check alignment and the "
            "impeller for damage.",
        ],
    ),
]


def make_pdf(path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title("NV-400 Service Manual")
    pdf.set_author("Norvale Pumps GmbH")
    for title, paragraphs in MANUAL:
        pdf.add_page()
        pdf.set_font("helvetica", "B", 15)
        pdf.start_section(title, level=0)
        pdf.cell(0, 10, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("helvetica", size=11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(4)
    pdf.output(str(path))


def make_docx(path: Path) -> None:
    import docx

    d = docx.Document()
    d.core_properties.title = "Warranty and Returns Policy"
    d.add_heading("Warranty and Returns Policy", 0)
    d.add_paragraph("This policy applies to all Norvale Pumps products sold after 1 March 2024.")
    d.add_heading("Warranty periods", 1)
    d.add_paragraph(
        "The warranty period starts on the date of commissioning, but no later than six months "
        "after delivery. Wear parts (seals, wear rings, bearings) are covered for 12 months."
    )
    table = d.add_table(rows=1, cols=3)
    for cell, text in zip(table.rows[0].cells, ["Product line", "Warranty", "Extended warranty"], strict=True):
        cell.text = text
    for row in [
        ("NV-400 series", "36 months", "60 months with a Norvale service contract"),
        ("NV-200 series", "24 months", "36 months with a Norvale service contract"),
        ("Control panels CP-9", "18 months", "not available"),
    ]:
        cells = table.add_row().cells
        for cell, text in zip(cells, row, strict=True):
            cell.text = text
    d.add_heading("Returns", 1)
    d.add_paragraph(
        "Request a return merchandise authorisation (RMA) within 14 days of delivery through the "
        "service portal. Unused parts in their original packaging are credited minus a restocking fee "
        "of 15 percent."
    )
    d.add_paragraph(
        "Pumps that have been in contact with hazardous fluids are accepted only with a signed "
        "decontamination declaration, form QF-08."
    )
    d.add_heading("Exclusions", 1)
    d.add_paragraph(
        "The warranty does not cover damage from dry running, cavitation caused by operating outside "
        "the published curve, or seals installed without the NT-11 tool."
    )
    d.save(str(path))


if __name__ == "__main__":
    make_pdf(HERE / "nv400-service-manual.pdf")
    make_docx(HERE / "warranty-policy.docx")
    print("wrote", HERE / "nv400-service-manual.pdf", HERE / "warranty-policy.docx")
