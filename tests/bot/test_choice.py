"""bot.choice.read_choice: a "did you mean" answered by typing, and the messages that are no such answer."""

from __future__ import annotations

import pytest

from bot.choice import NONE_OF_THESE, read_choice

SHOWN = [
    ("transfer_timing", "How long transfers take"),
    ("pending_transfer", "Pending transfer"),
    ("cancel_transfer", "Cancel a transfer"),
]


@pytest.mark.parametrize(
    ("text", "picked"),
    [
        ("the first one", "transfer_timing"),
        ("1", "transfer_timing"),
        ("#2", "pending_transfer"),
        ("2.", "pending_transfer"),
        ("option 3", "cancel_transfer"),
        ("number two please", "pending_transfer"),
        ("I meant the second one", "pending_transfer"),
        ("yes, the first", "transfer_timing"),
        ("the last one", "cancel_transfer"),
        ("3rd", "cancel_transfer"),
        ("Second!", "pending_transfer"),
        ("the middle one", "pending_transfer"),
        # by the words of one choice only: its title or its intent's name
        ("pending transfer", "pending_transfer"),
        ("the pending one", "pending_transfer"),
        ("transfer timing", "transfer_timing"),
        ("how long transfers take", "transfer_timing"),
        ("cancel", "cancel_transfer"),
        ("I want to cancel it", "cancel_transfer"),
        ("Cancel a transfer.", "cancel_transfer"),
        # none of them
        ("none of these", NONE_OF_THESE),
        ("neither", NONE_OF_THESE),
        ("no, none of them", NONE_OF_THESE),
        ("something else", NONE_OF_THESE),
        ("not these", NONE_OF_THESE),
        ("none fits", NONE_OF_THESE),
    ],
)
def test_typed_answers_to_did_you_mean(text: str, picked: str) -> None:
    assert read_choice(text, SHOWN) == picked


@pytest.mark.parametrize(
    "text",
    [
        "transfer",  # in every choice: which one is not said
        "the 4th one",  # only three were shown
        "5",
        "no",
        "my card hasn't arrived",  # a new question
        "how long does a transfer to Spain take",  # words beyond the choice's
        "how long does it take to cancel a transfer abroad please",  # too long to be a choice
        "yes",  # which one?
        "ok",
        "thanks",
        "",
        "?!",
        "none of my transfers arrived",  # a question that starts like "none"
        "the second transfer I made is pending",
    ],
)
def test_messages_that_answer_no_choice(text: str) -> None:
    assert read_choice(text, SHOWN) is None


def test_nothing_is_a_choice_when_nothing_was_shown() -> None:
    assert read_choice("the first one", []) is None
    assert read_choice("none of these", []) is None


def test_two_choices_the_last_is_the_second() -> None:
    assert read_choice("the last one", SHOWN[:2]) == "pending_transfer"
    assert read_choice("the third", SHOWN[:2]) is None
    assert read_choice("the middle one", SHOWN[:2]) is None  # of two, neither is
