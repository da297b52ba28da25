import pytest

from expertkit.language import is_english, language_of, say


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Πόσους μήνες εγγύηση έχει ο θερμοστάτης;", "el"),
        ("ποσο κοστιζει η αντλια ψυξης ΑΨ-220;", "el"),
        ("Πόσο κοστίζει το seal kit NP-4472;", "el"),  # Greek with Latin codes and a borrowed word
        ("What is the price of the seal kit NP-4472?", "en"),
        ("Is the ΑΨ-220 pump in stock?", "en"),  # English with a Greek code
        ("1234 ?", "en"),
    ],
)
def test_a_question_is_in_the_language_most_of_its_letters_are(text, language):
    assert language_of(text) == language


def test_expertkits_own_words_come_in_the_askers_language():
    assert say("el", "missing", what="ΣΠ-90") == "κανένα απόσπασμα δεν αναφέρει ΣΠ-90"
    assert say("en", "missing", what="SP-90") == "no passage mentions SP-90"
    assert say("de", "missing", what="SP-90") == "no passage mentions SP-90"  # any other language: English


@pytest.mark.parametrize(
    ("text", "english"),
    [
        ("The pump must be replaced every 3,000 hours and the seal is checked by the operator.", True),
        ("part,price,stock\nNP-4472,412.50,12\nAX-220,19.00,3", True),  # a table of codes: Latin, no function words
        ("Η αντλία νερού ψύξης ΑΨ-220 κοστίζει 412,50 ευρώ.", False),
        ("Die Pumpe ist nicht mit dem Filter verbunden und wird ersetzt.", False),
        ("La pompe est remplacée dans les ateliers pour des raisons de sécurité.", False),
        ("El producto se entrega con una garantía para los clientes.", False),
        ("Πόσο κοστίζει το seal kit NP-4472 με τη μεταφορά;", False),  # Greek prose with Latin codes
    ],
)
def test_a_document_is_english_by_its_script_and_function_words(text, english):
    assert is_english(text) is english
