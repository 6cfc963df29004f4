"""bot.synonyms: a customer's phrase of a synonym group is read as the group's phrase the examples use."""

from __future__ import annotations

from bot.synonyms import Synonyms

USES = {"atm": 40, "cash machine": 2, "card": 90, "plastic": 0, "top up": 30, "top-up": 5}


def test_each_group_is_read_as_its_most_used_phrase() -> None:
    synonyms = Synonyms.fit(
        [["cashpoint", "cash machine", "ATM"], ["plastic", "card"], ["load", "top up", "top-up"]],
        lambda phrase: USES.get(phrase.lower(), 0),
    )
    assert synonyms.reading == {
        "cashpoint": "ATM",
        "cash machine": "ATM",
        "plastic": "card",
        "load": "top up",
        "top-up": "top up",
    }
    assert synonyms.read("Where is the nearest Cashpoint?") == "Where is the nearest ATM?"
    assert synonyms.read("the cash   machine ate my plastic") == "the ATM ate my card"  # any spacing, longest
    assert synonyms.read("can I top-up by card") == "can I top up by card"
    # whole words only: not inside another word, nor a plural that was not written
    assert synonyms.read("plastics and cashpoints, preload") == "plastics and cashpoints, preload"
    assert synonyms.read("my card is here") == "my card is here"  # the group's own phrase stays
    # the sentence's punctuation around a phrase, not inside it
    assert synonyms.read("(plastic)? 'cashpoint'.") == "(card)? 'ATM'."
    assert synonyms.read("cash, machine") == "cash, machine"
    assert synonyms.read("the cashpoint's screen") == "the cashpoint's screen"


def test_without_counts_the_first_phrase_written_is_the_reading() -> None:
    synonyms = Synonyms.fit([["Vault", "savings pot", "vault", "pot"], ["solo"], ["x", " x ", "X"]])
    assert synonyms.groups == (("Vault", "savings pot", "pot"),)  # each phrase once; one phrase is no group
    assert synonyms.read("move money to my savings pot") == "move money to my Vault"
    assert synonyms.read("move money to my pot") == "move money to my Vault"
    assert not Synonyms.fit([]) and Synonyms.fit([]).read("pot") == "pot"
