"""bot.choice.read_choice: a "did you mean" answered by typing, and the messages that are no such answer."""

from __future__ import annotations

import pytest

from bot.choice import NONE_OF_THESE, WHICH_ONE, read_choice

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
        # a bare no to "did you mean one of these?" (it was read as a goodbye: "All right. … Goodbye!")
        ("no", NONE_OF_THESE),
        ("No.", NONE_OF_THESE),
        ("nope", NONE_OF_THESE),
        ("no it's not", NONE_OF_THESE),
        ("not really", NONE_OF_THESE),
        ("hmm no", NONE_OF_THESE),
        # a yes to several: which one is not said, so the bot asks again
        ("yes", WHICH_ONE),
        ("Yes please", WHICH_ONE),
        ("yeah", WHICH_ONE),
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
        "no, my card hasn't arrived",  # a new question after the no
        "my card hasn't arrived",  # a new question
        "how long does a transfer to Spain take",  # words beyond the choice's
        "how long does it take to cancel a transfer abroad please",  # too long to be a choice
        "yes I want to cancel my transfer abroad",  # a question of its own
        "ok",  # a nod, not a pick
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


def test_a_yes_to_one_choice_picks_it() -> None:
    """ "Did you mean *Pending transfer*?" "yes": the one choice there is; to several, which one?"""
    for text in ("yes", "Yes!", "yep that's it", "yes please", "sure", "ok yes"):
        assert read_choice(text, SHOWN[1:2]) == "pending_transfer", text
        assert read_choice(text, SHOWN) == WHICH_ONE, text
    assert read_choice("no", SHOWN[1:2]) == NONE_OF_THESE
    assert read_choice("ok", SHOWN[1:2]) is None  # a nod: no pick
