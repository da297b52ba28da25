import math

import pytest

from expertkit.evaluate.answers import rouge_l, token_f1
from expertkit.evaluate.metrics import mrr_at_k, ndcg_at_k, recall_at_k


def test_ndcg_against_hand_computed_values():
    qrels = {"a": 1, "b": 1}
    assert ndcg_at_k(["a", "b", "c"], qrels) == pytest.approx(1.0)
    dcg = 1 / math.log2(3)  # only "a", at rank 2
    idcg = 1 + 1 / math.log2(3)
    assert ndcg_at_k(["x", "a", "y"], qrels) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(["x", "y"], qrels) == 0.0
    assert ndcg_at_k(["a"], {}) == 0.0


def test_recall_and_mrr():
    qrels = {"a": 1, "b": 1, "c": 0}
    assert recall_at_k(["a", "c", "x"], qrels, 10) == 0.5
    assert recall_at_k(["x"] * 10 + ["a"], qrels, 10) == 0.0
    assert mrr_at_k(["x", "c", "b"], qrels) == pytest.approx(1 / 3)
    assert mrr_at_k(["x"], qrels) == 0.0


def test_answer_overlap_metrics():
    assert token_f1("The torque is 68 N·m.", "68 N·m") == pytest.approx(2 * 0.5 * 1 / 1.5)  # "the" dropped: P 2/4, R 1
    assert token_f1("", "x") == 0.0
    # "the" is dropped; LCS = tighten nut 68 nm (4) of 5 predicted and 4 gold tokens
    assert rouge_l("tighten the nut to 68 Nm", "tighten nut 68 Nm") == pytest.approx(2 * 0.8 * 1.0 / 1.8)
    assert rouge_l("a b c d", "a b c d") == 1.0
    assert rouge_l("z y x w", "w x y z") == pytest.approx(0.25)
    assert rouge_l("x", "y") == 0.0
