import pytest

from expertkit.index.base import keyword_terms
from expertkit.index.keywords import fold_greek, keyword_text


@pytest.mark.parametrize(
    "forms",
    [
        "αντλία αντλίες αντλιών αντλίας αντλια ΑΝΤΛΙΕΣ",
        "τιμή τιμές τιμών τιμη",
        "θερμοστάτης θερμοστάτη θερμοστάτες θερμοστατης",
        "ψυγείο ψυγεία ψυγείων",
        "εργοστάσιο εργοστασίου",
        "εγγύηση εγγυήσεις εγγύησης εγγυηση",
    ],
)
def test_the_inflections_of_a_greek_word_fold_to_one_key(forms):
    assert len({fold_greek(w) for w in forms.split()}) == 1, {w: fold_greek(w) for w in forms.split()}


def test_different_greek_words_stay_apart():
    assert len({fold_greek(w) for w in ["αντλία", "βαλβίδα", "φίλτρο", "τιμή", "μήνας"]}) == 5


def test_only_greek_words_change():
    english = "The seal kit NP-4472 costs 318.00 EUR (SiC/SiC/FKM)."
    assert keyword_text(english) == english
    assert (
        keyword_text("Η αντλία ΑΨ-220 κοστίζει 412,50 ευρώ (pump NP-1).")
        == "η αντλ αψ-220 κοστ 412,50 ευρ (pump NP-1)."
    )


def test_greek_queries_lose_their_function_words():
    assert keyword_terms("Πόσο κοστίζει η αντλία;") == ["κοστ", "αντλ"]
    assert keyword_terms("What is the price?") == ["price"]  # English as before
