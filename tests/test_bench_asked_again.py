"""The "asked again" benchmark's parts on a scripted engine (no encoder, milliseconds): what the customer's
next question gets against the answer just given, and how customers are counted after a wrong and a right
answer."""

from __future__ import annotations

from typing import Any

import pytest

from bot.engine import ANSWERED, CLARIFY, Candidate, Prediction
from tests.conftest import load_bench


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("asked_again.py")


def said(status: str, intent: str | None) -> Prediction:
    return Prediction(
        text="q",
        status=status,
        intent=intent,
        answer="",
        confidence=0.9,
        margin=0.5,
        ranking=[Candidate(intent or "a", 0.9, "")],
        member_scores={},
        suggestions=[],
        model_version="v",
    )


def test_a_reply_is_the_same_answer_the_right_one_another_or_none(bench: Any) -> None:
    assert bench.reply_kind(said(ANSWERED, "b"), "b", "a") == "same_answer"
    assert bench.reply_kind(said(ANSWERED, "a"), "b", "a") == "right"
    assert bench.reply_kind(said(ANSWERED, "c"), "b", "a") == "other_wrong"
    assert bench.reply_kind(said(CLARIFY, None), "b", "a") == "no_answer"


class Scripted:
    """Answers each text with the intent it names after "->" ("x1->b": intent b), or asks "did you mean"."""

    def predict(self, text: str, only: Any = None) -> Prediction:
        intent = text.split("->")[1] if "->" in text else None
        return said(ANSWERED, intent) if intent else said(CLARIFY, None)

    def predict_batch(self, texts: list[str]) -> list[Prediction]:
        return [self.predict(t) for t in texts]


def test_customers_ask_again_after_a_wrong_and_a_right_answer(bench: Any) -> None:
    # Intent a: answered b (wrong) whatever is asked, so every customer of a gets the same wrong answer
    # twice more. Intent c: answered rightly, asked again with c's other questions (c3: "did you mean").
    texts = ["a1->b", "a2->b", "a3->b", "c1->c", "c2->c", "c3"]
    labels = ["a", "a", "a", "c", "c", "c"]
    figures = bench.asked_again(Scripted(), texts, labels, seed=0)
    wrong, right = figures["wrong"], figures["right"]
    assert wrong["customers"] == 3
    assert wrong["second_reply"] == {"same_answer": 3, "right": 0, "other_wrong": 0, "no_answer": 0}
    assert wrong["third_reply_after_the_same_answer"] == {
        "same_answer": 3,
        "right": 0,
        "other_wrong": 0,
        "no_answer": 0,
    }
    assert right["customers"] == 2  # c3 was not answered: no answer to ask again for
    second = right["second_reply"]
    assert sum(second.values()) == 2 and second["right"] == 0 and second["other_wrong"] == 0
    assert second["same_answer"] + second["no_answer"] == 2
    assert sum(right["third_reply_after_the_same_answer"].values()) == second["same_answer"]


class Always:
    """Answers every message, alone or read after the one before, with intent x."""

    def predict(self, text: str, only: Any = None) -> Prediction:
        return said(ANSWERED, "x")

    def predict_follow_up(self, text: str, context: str, **_: Any) -> tuple[Prediction, Prediction]:
        return said(ANSWERED, "x"), said(ANSWERED, "x")


def test_the_same_topic_follow_ups_are_read_from_both_sets(bench: Any) -> None:
    counted = bench.same_topic_follow_ups(Always())
    assert counted == {"conversations": 24, "first_answered": 24, "same_answer_again": 24}  # 16 + 8 rows
