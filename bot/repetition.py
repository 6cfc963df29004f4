"""The same answer asked for again.

A customer who has just been answered and asks again in other words ("my card still hasn't arrived" → the
delivery answer → "it's been three weeks, where is it?", or "why did I get charged a fee on my transfer?"
after the transfer-fee answer) wants more than the answer gave, or was answered wrongly. Sending the same
text again as if it were new is the loop customers hate in chatbots, and the third time round nothing but a
person helps. Some repeats are answered rightly by the same text ("and Google Pay too?" after the Apple Pay
answer), so the answer is still given the second time, with the offer of a person; asked for once more than
``limit`` times in a row, the conversation goes to a person instead.

The serving layer reads the conversation's last answer from the turn log (``core.registry.last_answer``) and
asks ``repetition`` what a new answer of the model's is; the engine's prediction is unchanged by it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bot.engine import HANDOFF, Prediction

ASKED_AGAIN = "asked_again"  # the review reason of a turn that asked again (crowd_feedback.review)


@dataclass(frozen=True)
class Repetition:
    """An answer given again: ``times`` in a row, counting this reply (2: the customer asked again once), of
    at most ``limit`` in a row."""

    times: int
    limit: int

    @property
    def passed_on(self) -> bool:
        """Asked for once more than the limit: a person takes the conversation instead."""
        return self.times > self.limit


def repetition(
    intent: str | None, last_intent: str | None, last_times: int, *, limit: int
) -> Repetition | None:
    """What an answer with ``intent`` is, after a conversation whose last answer was ``last_intent``, given
    ``last_times`` times in a row: a repetition, or None (a first answer, no answer, or ``limit`` 0: every
    answer given as if new). ``limit``: how many times in a row one answer is given at most."""
    if limit < 0:
        raise ValueError(f"limit must be 0 or more, not {limit}")
    if limit == 0 or intent is None or intent != last_intent:
        return None
    return Repetition(times=max(last_times, 1) + 1, limit=limit)


def passed_on(prediction: Prediction) -> Prediction:
    """``prediction`` (an answer asked for once more than the limit) as a handoff: no answer, no chips; the
    model's candidates stay for the log."""
    return dataclasses.replace(
        prediction, status=HANDOFF, intent=None, answer="", suggestions=[], unfamiliar=False, vague=False
    )


def again_text(answer: str, offer: str) -> str:
    """The answer given again, with ``offer`` (a person, if it does not help) under it."""
    return f"{answer}\n\n{offer}" if offer.strip() else answer
