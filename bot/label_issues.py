"""Examples the model, not trained on them, reads as another intent: likely label errors in a knowledge base.

Confident learning (Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in Dataset
Labels", JAIR 2021), on the held-out rows a fit keeps (``HeldOutRows``: each row scored by members that had
not seen it). Intent j's threshold is the mean probability the model gives j on the rows labelled j: how sure
it is of its own kind. A row labelled i lands in the confident joint at (i, j) for the intent j it gives the
highest probability among those at or above their threshold; the rows off the diagonal are the issues. As a
further condition the row's own intent must get less than j: the model prefers the other label outright.
Nothing here is tuned: the rule is the paper's, and ``bench/kb_check.py`` measures it on injected noise.

Only the top k intents of each row are kept, so the probability of an intent outside them reads as 0 (it is
below the k-th). With k = 5 on 77 intents the difference is at most that k-th probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bot.engine import HeldOutRows


@dataclass(frozen=True)
class LabelIssue:
    row: int
    text: str
    given: str  # the intent it is an example of
    suggested: str  # the intent the held-out model reads it as
    given_probability: float  # 0 when the given intent is outside the row's top k
    suggested_probability: float
    members_agreeing: int  # ensemble members whose own top intent is the suggested one
    members: int

    @property
    def margin(self) -> float:
        return self.suggested_probability - self.given_probability

    def to_dict(self) -> dict[str, object]:
        return {
            "text": self.text,
            "given": self.given,
            "suggested": self.suggested,
            "given_probability": round(self.given_probability, 4),
            "suggested_probability": round(self.suggested_probability, 4),
            "members_agreeing": self.members_agreeing,
            "members": self.members,
        }


@dataclass(frozen=True)
class Confusion:
    """Two intents the held-out model mixes up: how many of each one's examples it read as the other."""

    first: str
    second: str
    first_as_second: int
    second_as_first: int
    first_examples: int
    second_examples: int

    @property
    def count(self) -> int:
        return self.first_as_second + self.second_as_first

    @property
    def share(self) -> float:
        """The mixed-up examples as a share of both intents' examples."""
        return self.count / max(self.first_examples + self.second_examples, 1)

    def to_dict(self) -> dict[str, object]:
        return {
            "intents": [self.first, self.second],
            "first_as_second": self.first_as_second,
            "second_as_first": self.second_as_first,
            "examples": [self.first_examples, self.second_examples],
            "share": round(self.share, 4),
        }


def _label_index(rows: HeldOutRows, labels: Sequence[str]) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({label for label in rows.labels if label not in index})
    if unknown:
        raise ValueError(f"held-out rows name intents the model does not know: {unknown[:5]}")
    return np.array([index[label] for label in rows.labels], dtype=np.int64)


def own_probabilities(rows: HeldOutRows, labels: Sequence[str]) -> np.ndarray:
    """Each row's probability of its own intent (0 when outside its top k)."""
    given = _label_index(rows, labels)
    hit = rows.top == given[:, None]
    return np.where(hit, rows.probabilities, 0.0).max(axis=1) if len(rows) else np.zeros(0)


def class_thresholds(rows: HeldOutRows, labels: Sequence[str]) -> np.ndarray:
    """Per intent, the mean probability of it over the rows labelled with it; inf for an intent with no row
    (no measure of how sure the model is of it, so nothing is moved to it)."""
    given = _label_index(rows, labels)
    own = own_probabilities(rows, labels)
    counts = np.bincount(given, minlength=len(labels)).astype(np.float64)
    sums = np.bincount(given, weights=own, minlength=len(labels))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)


def find_label_issues(rows: HeldOutRows, labels: Sequence[str]) -> list[LabelIssue]:
    """The rows off the confident joint's diagonal whose own intent the model ranks below the other one,
    most lopsided first (largest ``margin``)."""
    if not len(rows):
        return []
    given = _label_index(rows, labels)
    own = own_probabilities(rows, labels)
    thresholds = class_thresholds(rows, labels)
    above = rows.probabilities >= thresholds[rows.top]
    masked = np.where(above, rows.probabilities, -1.0)
    best = masked.argmax(axis=1)
    picked = rows.top[np.arange(len(rows)), best]
    picked_probability = rows.probabilities[np.arange(len(rows)), best]
    flagged = (masked.max(axis=1) >= 0) & (picked != given) & (picked_probability > own)
    issues = [
        LabelIssue(
            row=int(r),
            text=rows.texts[r],
            given=rows.labels[r],
            suggested=labels[int(picked[r])],
            given_probability=float(own[r]),
            suggested_probability=float(picked_probability[r]),
            members_agreeing=int((rows.member_top[r] == picked[r]).sum()) if rows.member_top.size else 0,
            members=int(rows.member_top.shape[1]),
        )
        for r in np.flatnonzero(flagged)
    ]
    issues.sort(key=lambda issue: (-issue.margin, issue.given, issue.text))
    return issues


def confused_intents(rows: HeldOutRows, labels: Sequence[str], *, min_count: int = 2) -> list[Confusion]:
    """Pairs of intents whose held-out examples the model reads as the other at least ``min_count`` times
    (both directions together), most mixed up first."""
    if not len(rows):
        return []
    given = _label_index(rows, labels)
    first = rows.top[:, 0].astype(np.int64)
    counts = np.bincount(given, minlength=len(labels))
    wrong = np.flatnonzero(first != given)
    pairs: dict[tuple[int, int], list[int]] = {}
    for r in wrong:
        a, b = int(given[r]), int(first[r])
        key = (a, b) if a < b else (b, a)
        tally = pairs.setdefault(key, [0, 0])
        tally[0 if a == key[0] else 1] += 1
    confusions = [
        Confusion(labels[a], labels[b], ab, ba, int(counts[a]), int(counts[b]))
        for (a, b), (ab, ba) in pairs.items()
        if ab + ba >= min_count
    ]
    confusions.sort(key=lambda c: (-c.count, -c.share, c.first, c.second))
    return confusions
