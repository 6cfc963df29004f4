"""Likely label errors and confused intents, read off the held-out rows (confident learning)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from bot.engine import AnsweringEngine, HeldOutRows, IntentInfo
from bot.label_issues import class_thresholds, confused_intents, find_label_issues, own_probabilities

LABELS = ["a", "b", "c"]


def rows(spec: list[tuple[str, list[tuple[str, float]], list[str]]]) -> HeldOutRows:
    """(label, [(intent, probability) best first], each member's top intent) per row."""
    index = {label: i for i, label in enumerate(LABELS)}
    return HeldOutRows(
        texts=[f"question {i}" for i in range(len(spec))],
        labels=[label for label, _, _ in spec],
        top=np.array([[index[name] for name, _ in top] for _, top, _ in spec]),
        probabilities=np.array([[p for _, p in top] for _, top, _ in spec]),
        confidence=np.array([top[0][1] for _, top, _ in spec]),
        margin=np.zeros(len(spec)),
        members=["m1", "m2", "m3"],
        member_top=np.array([[index[m] for m in members] for _, _, members in spec]),
        member_score=np.ones((len(spec), 3)),
    )


SPEC = [
    # "a": the model is 0.9 sure of its own on average ((0.95 + 0.95 + 0.8 + 0.9) / 4)
    ("a", [("a", 0.95), ("b", 0.05)], ["a", "a", "a"]),
    ("a", [("a", 0.95), ("c", 0.05)], ["a", "a", "a"]),
    ("a", [("a", 0.8), ("b", 0.2)], ["a", "a", "b"]),
    ("a", [("a", 0.9), ("b", 0.1)], ["a", "a", "a"]),
    # "b": 0.7 on average over its three rows
    ("b", [("b", 0.8), ("a", 0.2)], ["b", "b", "b"]),
    ("b", [("b", 0.75), ("c", 0.25)], ["b", "b", "c"]),
    ("b", [("c", 0.45), ("b", 0.55)], ["c", "b", "b"]),  # the top is not sorted: 0.55 is b's
    # "c": 0.6 on average over its two rows; row 9 is filed under it but reads as "a" beyond a's 0.9
    ("c", [("c", 0.7), ("a", 0.3)], ["c", "c", "c"]),
    ("c", [("c", 0.5), ("b", 0.5)], ["c", "b", "c"]),
    ("c", [("a", 0.93), ("b", 0.07)], ["a", "a", "c"]),
    # filed under "a", reads as "b" (0.72 ≥ b's 0.7) more than as itself (0.28)
    ("a", [("b", 0.72), ("a", 0.28)], ["b", "b", "a"]),
    # filed under "a", reads as "b" at 0.6: below b's threshold, and c's 0.35 below c's 0.4: not flagged,
    # although the model prefers both to "a"
    ("a", [("b", 0.6), ("c", 0.35)], ["b", "c", "b"]),
]


def test_thresholds_are_each_intents_mean_probability_on_its_own_rows() -> None:
    held = rows(SPEC)
    own = own_probabilities(held, LABELS)
    assert own[9] == 0.0 and own[11] == 0.0  # its own intent is outside the top k
    assert own[6] == pytest.approx(0.55)
    thresholds = class_thresholds(held, LABELS)
    assert thresholds[0] == pytest.approx((0.95 + 0.95 + 0.8 + 0.9 + 0.28 + 0.0) / 6)
    assert thresholds[1] == pytest.approx((0.8 + 0.75 + 0.55) / 3)
    assert thresholds[2] == pytest.approx((0.7 + 0.5 + 0.0) / 3)
    no_rows = class_thresholds(rows(SPEC[:4]), LABELS)
    assert np.isinf(no_rows[1]) and np.isinf(no_rows[2])  # no row of b or c: nothing is moved to them


def test_label_issues_are_off_the_confident_joints_diagonal_most_lopsided_first() -> None:
    issues = find_label_issues(rows(SPEC), LABELS)
    assert [(i.row, i.given, i.suggested) for i in issues] == [(9, "c", "a"), (10, "a", "b")]
    first, second = issues
    assert first.given_probability == 0.0 and first.suggested_probability == pytest.approx(0.93)
    assert (first.members_agreeing, first.members) == (2, 3)
    assert second.margin == pytest.approx(0.72 - 0.28) and second.members_agreeing == 2
    assert first.to_dict() == {
        "text": "question 9",
        "given": "c",
        "suggested": "a",
        "given_probability": 0.0,
        "suggested_probability": 0.93,
        "members_agreeing": 2,
        "members": 3,
    }
    # Row 8 ties b with its own c at 0.5: b is above its threshold only if 0.5 >= 0.7, so nothing.
    # Row 6, filed under b, is read as c (0.45 ≥ c's 0.4) but gives b more: not flagged.
    assert {6, 8, 11}.isdisjoint(i.row for i in issues)


def test_confused_intents_count_both_directions() -> None:
    confusions = confused_intents(rows(SPEC), LABELS, min_count=1)
    pairs = {(c.first, c.second): c for c in confusions}
    assert set(pairs) == {("a", "b"), ("a", "c"), ("b", "c")}
    ab = pairs[("a", "b")]
    assert (ab.first_as_second, ab.second_as_first, ab.first_examples, ab.second_examples) == (2, 0, 6, 3)
    assert ab.share == pytest.approx(2 / 9) and confusions[0] == ab  # the most mixed up first
    assert pairs[("a", "c")].second_as_first == 1 and pairs[("b", "c")].first_as_second == 1
    assert [(c.first, c.second) for c in confused_intents(rows(SPEC), LABELS)] == [("a", "b")]


def test_rows_naming_an_unknown_intent_or_none_at_all() -> None:
    with pytest.raises(ValueError, match="does not know"):
        find_label_issues(rows(SPEC), ["a", "b"])
    empty = HeldOutRows(
        [],
        [],
        np.zeros((0, 2)),
        np.zeros((0, 2)),
        np.zeros(0),
        np.zeros(0),
        [],
        np.zeros((0, 0)),
        np.zeros((0, 0)),
    )
    assert find_label_issues(empty, LABELS) == [] and confused_intents(empty, LABELS) == []


def test_minilm_finds_the_examples_filed_under_the_wrong_intent(
    minilm_encoder: Any, small_banking: dict[str, Any]
) -> None:
    """5 % of the 12-intent BANKING77 fixture moved to a random other intent: the check finds them."""
    texts, labels = small_banking["train"]
    rng = random.Random(0)
    names = sorted(set(labels))
    noisy = list(labels)
    moved = set(rng.sample(range(len(labels)), len(labels) // 20))
    for i in moved:
        noisy[i] = rng.choice([n for n in names if n != labels[i]])
    engine = AnsweringEngine(encoders={"minilm": minilm_encoder}).fit(
        texts, noisy, knowledge={n: IntentInfo(answer=n) for n in names}
    )
    assert engine.held_out is not None
    issues = find_label_issues(engine.held_out, engine.labels)
    found = [i for i in issues if i.row in moved]
    assert len(moved) == 9 and len(found) >= 8  # measured: 9 of 9
    assert len(found) / len(issues) >= 0.5  # measured: 9 of 13 (some others are ambiguous questions)
    assert sum(i.suggested == labels[i.row] for i in found) >= 7  # and it names the right intent (8)
    assert issues[0].row in moved and issues[0].members_agreeing == 3
