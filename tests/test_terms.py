import pytest

from expertkit.terms import Term, key_terms, meets, nearest, quantities, unmet


def terms(question: str) -> list[tuple[str, str]]:
    return [(t.text, t.kind) for t in key_terms(question)]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Who supplies the 24 V motor unit?", [("24 V", "quantity")]),
        ("What fuse does a Hearthline HL-460 need?", [("HL-460", "code"), ("Hearthline", "name")]),
        ("Which fuse does the HL-424 need on a 230 V supply?", [("230 V", "quantity"), ("HL-424", "code")]),
        ("Who issued service bulletin SB-2025-05?", [("SB-2025-05", "code")]),
        ("When is the KW-120 at Ashgrove Quay next serviced?", [("KW-120", "code"), ("Ashgrove Quay", "name")]),
        ("Which engineer looks after the oven at The Rye Room?", [("Rye Room", "name")]),
        ("Which language did Guido van Rossum create?", [("Guido van Rossum", "name")]),
        ("What does fault E19 mean?", [("E19", "code")]),
        ("How much does an 18-tonne lift cost?", [("18-tonne", "quantity")]),
        ("How fast is it at 1,400 rpm?", [("1,400 rpm", "quantity")]),
        (
            "What was the surcharge in June 2025 at Saltmarsh Road?",
            [("June 2025", "month"), ("Saltmarsh Road", "name")],
        ),
    ],
)
def test_key_terms_are_the_codes_quantities_and_names_asked_about(question, expected):
    assert terms(question) == expected


@pytest.mark.parametrize(
    "question",
    [
        "What torque is the impeller nut tightened to?",  # lowercase words are not terms
        "What is the price in EUR of the PDF version?",  # currencies and formats are not names
        "How often, 5 a day or twice in the 1990s?",  # "a" and "s" are units only as SI writes them
        "Which is the 3rd step at speed 3?",  # ordinals and bare numbers are not terms
        "Please list the parts.",  # the first word is capitalised for being first
    ],
)
def test_questions_without_key_terms_have_none(question):
    assert key_terms(question) == []


@pytest.mark.parametrize(
    ("term", "text"),
    [
        (Term("HL-460", "code"), "the HL460 deck oven"),
        (Term("HL-460", "code"), "an hl 460"),
        (Term("NV-400", "code"), "(nv400-service-manual.pdf, page 3)"),
        (Term("E19", "code"), "Fault (E19): drain blocked"),
        (Term("ΣΠ-90", "code"), "Ο συμπιεστής ΣΠ90 κοστίζει 1.250,00 ευρώ"),
        (Term("24 V", "quantity"), "a 24-volt motor"),
        (Term("24 V", "quantity"), "rated 24V DC"),
        (Term("230 V", "quantity"), "supply: 200–240 V single phase"),
        (Term("230 V", "quantity"), "between 220 and 240 V"),
        (Term("25 km", "quantity"), "Local delivery chilled (up to 40 km)"),
        (Term("250 km", "quantity"), "long haul (over 160 km)"),
        (Term("3 bar", "quantity"), "max. 4 bar"),
        (Term("1,400 rpm", "quantity"), "the spiral turns at 1400 rpm"),
        (Term("6 months", "quantity"), "a warranty of 6 month(s)"),
        (Term("Ashgrove Quay", "name"), "installed at ashgrove quay bakery"),
        (Term("June 2025", "month"), "valid from 2025-06-01"),
        (Term("June 2025", "month"), "issued 3 June 2025"),
        (Term("June 2025", "month"), "issued 03.06.2025"),
        (Term("June 2025", "month"), "Jun. 2025 surcharge"),
    ],
)
def test_a_passage_meets_a_term_in_any_spelling(term, text):
    assert meets(term, text)


@pytest.mark.parametrize(
    ("term", "text"),
    [
        (Term("E1", "code"), "fault E19"),  # a longer code is another code
        (Term("SB-2025", "code"), "bulletin SB-2025-05"),
        (Term("HL-460", "code"), "HL-436, HL-424 and HL-412"),
        (Term("24 V", "quantity"), "a 12 V motor on a 240 V supply"),
        (Term("24 V", "quantity"), "24 mm bolts"),  # same number, another unit
        (Term("230 V", "quantity"), "400 V three-phase; 110–120 V"),
        (Term("250 km", "quantity"), "Local delivery (up to 40 km); regional (40 to 160 km)"),
        (Term("25 km", "quantity"), "long haul (over 160 km)"),
        (Term("55 mm", "quantity"), "replace the ring if wear is above 7.1 mm"),  # a threshold, not a range
        (Term("Gold", "name"), "the Silver contract, golden crust"),
        (Term("June 2025", "month"), "July 2025: 4.5%; 2025-05-30: 4%"),
    ],
)
def test_a_passage_that_names_something_else_does_not_meet_it(term, text):
    assert not meets(term, text)


def test_unmet_lists_what_a_passage_lacks():
    asked = key_terms("Which fuse does the HL-424 need on a 230 V single-phase supply?")
    assert unmet(asked, "HL-424: 400 V three-phase, 3 × 16 A") == [Term("230 V", "quantity")]
    assert unmet(asked, "HL-424 on 230 V: 40 A") == []


def test_nearest_names_what_the_documents_have_instead():
    texts = ["The HL-412, HL-424 and HL-436 ovens; the KW-120 mixer", "Motor OMW-M5520, 12 V, on a 230 V supply"]
    assert nearest(Term("HL-460", "code"), texts) == ["HL-436", "HL-424", "HL-412"]  # same family, closest first
    assert nearest(Term("24 V", "quantity"), texts) == ["12 V", "230 V"]
    assert nearest(Term("Gold", "name"), texts) == []


def test_quantities_read_units_in_their_spellings():
    found = {raw: (q.value, q.unit) for raw, q in quantities("8,000 h or 2 years; 600 m³/h at 68 Nm and 3 A")}
    assert found == {
        "8,000 h": (8000.0, "h"),
        "2 years": (2.0, "year"),
        "600 m³/h": (600.0, "m³/h"),
        "68 Nm": (68.0, "N·m"),
        "3 A": (3.0, "A"),
    }


@pytest.mark.parametrize(
    ("raw", "value"),
    [("8,000", 8000.0), ("318.00", 318.0), ("412,50", 412.5), ("1.250,00", 1250.0), ("1,250.00", 1250.0),
     ("1.250.000", 1250000.0), ("1 250,00", 1250.0), ("3.5", 3.5)],
)  # fmt: skip
def test_numbers_read_as_english_and_continental_documents_write_them(raw, value):
    from expertkit.terms import number_value

    assert number_value(raw) == value


def test_a_lone_point_group_is_thousands_in_greek_text_and_a_decimal_in_english():
    from expertkit.answer import numbers_in

    assert numbers_in("Η βιτρίνα κοστίζει 2.395 € [1].") == {2395.0, 1.0}
    assert numbers_in("The part is 2.395 mm thick [1].") == {2.395, 1.0}
    assert numbers_in("τιμή: 2.395,00; ύψος 1.5 m") == {2395.0, 1.5}
