"""bot.repetition: an answer asked for again is counted in a row, given again up to the limit, then passed
on."""

from __future__ import annotations

import pytest

from bot.repetition import Repetition, again_text, repetition


@pytest.mark.parametrize(
    ("intent", "last_intent", "last_times", "limit", "expected"),
    [
        ("card_arrival", None, 1, 2, None),  # nothing answered before: a first answer
        ("card_arrival", "change_pin", 3, 2, None),  # another intent: a first answer
        (None, "card_arrival", 1, 2, None),  # no answer
        ("card_arrival", "card_arrival", 1, 0, None),  # limit 0: every answer as if new
        ("card_arrival", "card_arrival", 1, 2, Repetition(times=2, limit=2)),
        ("card_arrival", "card_arrival", 2, 2, Repetition(times=3, limit=2)),
        ("card_arrival", "card_arrival", 0, 2, Repetition(times=2, limit=2)),  # an unknown count: once
        ("card_arrival", "card_arrival", 1, 1, Repetition(times=2, limit=1)),
    ],
)
def test_repetition_counts_the_same_answer_in_a_row(
    intent: str | None, last_intent: str | None, last_times: int, limit: int, expected: Repetition | None
) -> None:
    assert repetition(intent, last_intent, last_times, limit=limit) == expected


def test_an_answer_is_given_up_to_the_limit_then_passed_on() -> None:
    assert [Repetition(times=t, limit=2).passed_on for t in (2, 3, 4)] == [False, True, True]
    assert Repetition(times=2, limit=1).passed_on is True
    with pytest.raises(ValueError, match="limit must be 0 or more, not -1"):
        repetition("card_arrival", "card_arrival", 1, limit=-1)


def test_the_offer_goes_under_the_answer_and_a_blank_one_adds_nothing() -> None:
    assert (
        again_text("Cards arrive in 5 days.", "A person can help.")
        == "Cards arrive in 5 days.\n\nA person can help."
    )
    assert again_text("Cards arrive in 5 days.", "  ") == "Cards arrive in 5 days."
