"""Truth inference: combine several reviewers' labels per item into one label with a posterior.

Strategies behind one interface, chosen by name (``get_strategy``):

* ``majority`` — (weighted) vote shares.
* ``dawid_skene`` — EM with one full confusion matrix per reviewer (Dawid & Skene 1979).
* ``hierarchical_ds`` — Dawid–Skene with a pooled prior: every reviewer's confusion matrix is shrunk toward
  the crowd's average confusion matrix, with a strength chosen without any truth, by the likelihood of
  held-out answers. Reviewers with a handful of answers behave like the crowd; prolific reviewers get
  their own matrix. This is the default.

Known labels (gold items) can be given: they are clamped during EM, which anchors reviewer quality.

The bot's own prediction can join as one more voter, two ways:

* ``model_votes`` (item -> (label, calibrated confidence)): a voter whose accuracy on that item is its own
  calibrated confidence, the same rule the live posterior of the review queue uses. Every strategy takes it.
* ``with_model_votes``: the bot as one more worker whose accuracy EM measures from how often it agrees with
  the people (when no confidence is known).

Or its whole shortlist can be each item's prior (``shortlists``: item -> [(label, calibrated probability)]),
raised to a trust exponent that EM fits like a reviewer's accuracy (``fit_trust``): the Dawid–Skene family
takes it; majority vote counts people only.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy.special import logsumexp


@dataclass(frozen=True)
class Answer:
    item: str
    worker: str
    label: str


@dataclass
class AggregationResult:
    items: list[str]
    classes: list[str]
    posterior: np.ndarray  # (items, classes)
    worker_accuracy: dict[str, float] = field(default_factory=dict)
    iterations: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def labels(self) -> dict[str, str]:
        best = self.posterior.argmax(axis=1)
        return {item: self.classes[best[i]] for i, item in enumerate(self.items)}

    def confidences(self) -> dict[str, float]:
        top = self.posterior.max(axis=1)
        return {item: float(top[i]) for i, item in enumerate(self.items)}

    def accuracy(self, truth: dict[str, str]) -> float:
        labels = self.labels()
        known = [item for item in self.items if item in truth]
        if not known:
            return math.nan
        return float(np.mean([labels[item] == truth[item] for item in known]))


class EncodedAnswers:
    """Answers as integer arrays (item, worker, label), with the name tables to map back."""

    def __init__(self, answers: Sequence[Answer], classes: Sequence[str] | None = None) -> None:
        if not answers:
            raise ValueError("no answers to aggregate")
        self.items = sorted({a.item for a in answers})
        self.workers = sorted({a.worker for a in answers})
        self.classes = sorted(set(classes or []) | {a.label for a in answers})
        item_index = {v: i for i, v in enumerate(self.items)}
        worker_index = {v: i for i, v in enumerate(self.workers)}
        class_index = {v: i for i, v in enumerate(self.classes)}
        self.item = np.array([item_index[a.item] for a in answers], dtype=np.int64)
        self.worker = np.array([worker_index[a.worker] for a in answers], dtype=np.int64)
        self.label = np.array([class_index[a.label] for a in answers], dtype=np.int64)
        self.class_index = class_index
        self.item_index = item_index

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.items), len(self.workers), len(self.classes)

    def subset(self, mask: np.ndarray) -> EncodedAnswers:
        clone = object.__new__(EncodedAnswers)
        clone.__dict__.update(self.__dict__)
        clone.item, clone.worker, clone.label = self.item[mask], self.worker[mask], self.label[mask]
        return clone


ModelVotes = dict[str, tuple[str, float]]  # item -> (the bot's label, its calibrated confidence)


def model_log_likelihood(data: EncodedAnswers, votes: ModelVotes | None) -> np.ndarray | None:
    """log p(bot's answer | true label) per item: right with its confidence, wrong uniformly otherwise.

    The bot breaks ties among the people, it never brings a label of its own: its vote counts only on items
    where at least one person gave the same answer (and the bot alone is never a label). Without that rule a
    label nobody chose could win, and Dawid–Skene could explain every person's answer as a confusion of it."""
    n_items, _, k = data.shape
    if not votes or k < 2:
        return None
    answered = set(zip(data.item.tolist(), data.label.tolist(), strict=True))
    out = np.zeros((n_items, k))
    for item, (label, confidence) in votes.items():
        row, column = data.item_index.get(item), data.class_index.get(label)
        if row is None or column is None or (row, column) not in answered:
            continue
        accuracy = min(max(float(confidence), 1.0 / k), 0.999)
        out[row] = math.log((1.0 - accuracy) / (k - 1))
        out[row, column] = math.log(accuracy)
    return out


Shortlists = dict[str, Sequence[tuple[str, float]]]  # item -> the bot's candidates [(label, probability)]
TRUST_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)  # exponents on the shortlist's probabilities (0: ignore it)


def shortlist_distribution(
    candidates: Iterable[tuple[str, float]], index: dict[str, int], chosen: Iterable[str] | None = None
) -> np.ndarray:
    """One item's shortlist as log q over the labels of ``index``: the candidates' probabilities, the rest of
    the mass spread evenly over the other labels. With ``chosen`` (the labels people gave), every other label
    is held at that rest level: the shortlist then weighs between the people's answers and never brings a
    label of its own."""
    known = {label: float(p) for label, p in candidates if label in index}
    k = len(index)
    rest = max(1.0 - sum(known.values()), 1e-3) / max(k - len(known), 1)
    q = np.full(k, rest)
    held = None if chosen is None else set(chosen)
    for label, probability in known.items():
        q[index[label]] = rest if held is not None and label not in held else max(probability, rest)
    return np.log(q / q.sum())


def shortlist_log_prior(
    data: EncodedAnswers, shortlists: Shortlists | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """``shortlist_distribution`` per item, twice: as given (what its trust is fitted on) and with the labels
    nobody chose on the item held down (the prior used). Items without a shortlist get flat rows."""
    n_items, _, k = data.shape
    if not shortlists or k < 2:
        return None
    chosen: dict[int, set[str]] = {}
    for row, label in zip(data.item.tolist(), data.label.tolist(), strict=True):
        chosen.setdefault(row, set()).add(data.classes[label])
    given, held = np.zeros((n_items, k)), np.zeros((n_items, k))
    for item, candidates in shortlists.items():
        row = data.item_index.get(item)
        if row is None or not any(label in data.class_index for label, _ in candidates):
            continue
        given[row] = shortlist_distribution(candidates, data.class_index)
        held[row] = shortlist_distribution(candidates, data.class_index, chosen.get(row, set()))
    return given, held


def tempered(log_q: np.ndarray, trust: float) -> np.ndarray:
    """The shortlist prior raised to ``trust`` (0: flat, 1: as calibrated), normalised per item."""
    scaled = trust * log_q
    return scaled - logsumexp(scaled, axis=1, keepdims=True)


def fit_trust(log_q: np.ndarray, people: np.ndarray) -> float:
    """The exponent under which the shortlist best predicts ``people``, the posterior from the people's
    answers alone (never one the shortlist already moved, which would confirm itself on split items): trust
    is earned from how often the bot's candidates match what people conclude, as a reviewer's accuracy is."""
    return max(TRUST_GRID, key=lambda trust: float((people * tempered(log_q, trust)).sum()))


def with_shortlists(
    data: EncodedAnswers, people: np.ndarray, shortlists: Shortlists | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """The people's posterior (reviewer quality estimated from their answers alone) times each item's
    shortlist prior at the trust it earns against that posterior (``fit_trust``). Two stages on purpose:
    fitted jointly, the prior moves the posterior on split items, the reviewers who side with it look more
    accurate, and a wrong shortlist confirms itself."""
    shortlist = shortlist_log_prior(data, shortlists)
    if shortlist is None:
        return people, {}
    trust = fit_trust(shortlist[0], people)
    log_joint = np.log(np.maximum(people, 1e-300)) + tempered(shortlist[1], trust)
    return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True)), {"shortlist_trust": trust}


def vote_shares(
    data: EncodedAnswers, weights: np.ndarray | None = None, extra: np.ndarray | None = None
) -> np.ndarray:
    """Each item's (weighted) votes per label, normalised; ``extra`` adds vote mass (e.g. the bot's)."""
    n_items, _, n_classes = data.shape
    votes = np.zeros((n_items, n_classes)) if extra is None else extra.astype(float)
    w = np.ones(len(data.item)) if weights is None else weights[data.worker]
    np.add.at(votes, (data.item, data.label), w)
    totals = votes.sum(axis=1, keepdims=True)
    # Items whose every vote has zero weight fall back to a uniform posterior.
    return np.where(totals > 0, votes / np.maximum(totals, 1e-12), 1.0 / n_classes)


def _clamp(posterior: np.ndarray, gold: dict[int, int]) -> np.ndarray:
    for item, label in gold.items():
        posterior[item] = 0.0
        posterior[item, label] = 1.0
    return posterior


def _people_then_shortlists(
    data: EncodedAnswers,
    people: np.ndarray,
    worker_accuracy: dict[str, float],
    iterations: int,
    gold: dict[int, int],
    shortlists: Shortlists | None,
    details: dict[str, Any] | None = None,
) -> AggregationResult:
    """The Dawid–Skene family's result: the people's posterior, then the shortlists (``with_shortlists``),
    with gold items clamped again."""
    posterior, shortlist_details = with_shortlists(data, people, shortlists)
    return AggregationResult(
        data.items,
        data.classes,
        _clamp(posterior, gold),
        worker_accuracy,
        iterations,
        (details or {}) | shortlist_details,
    )


def _diagonal_accuracy(data: EncodedAnswers, confusion: np.ndarray) -> dict[str, float]:
    """Each reviewer's mean chance of giving the true label (the confusion matrix's diagonal)."""
    return {w: float(np.mean(np.diag(confusion[i]))) for i, w in enumerate(data.workers)}


def _confusion_counts(data: EncodedAnswers, posterior: np.ndarray) -> np.ndarray:
    _, n_workers, n_classes = data.shape
    cell = data.worker * n_classes + data.label  # (worker, observed label) as one index
    counts = np.empty((n_workers, n_classes, n_classes))
    for k in range(n_classes):  # bincount is an order of magnitude faster than np.add.at
        counts[:, k, :] = np.bincount(
            cell, weights=posterior[data.item, k], minlength=n_workers * n_classes
        ).reshape(n_workers, n_classes)
    return counts


def _e_step(
    data: EncodedAnswers,
    log_prior: np.ndarray,
    log_confusion: np.ndarray,
    item_log_prior: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    n_items, _, n_classes = data.shape
    log_joint = np.tile(log_prior, (n_items, 1))
    if item_log_prior is not None:
        log_joint += item_log_prior
    per_answer = log_confusion[data.worker, :, data.label]
    for k in range(n_classes):
        log_joint[:, k] += np.bincount(data.item, weights=per_answer[:, k], minlength=n_items)
    normaliser = logsumexp(log_joint, axis=1, keepdims=True)
    return np.exp(log_joint - normaliser), float(normaliser.sum())


def run_em(
    data: EncodedAnswers,
    *,
    prior_strength: float | None,
    smoothing: float = 0.01,
    gold: dict[int, int] | None = None,
    max_iterations: int = 100,
    tolerance: float = 1e-6,
    item_log_prior: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Dawid–Skene EM. ``prior_strength`` None: classic (additive ``smoothing``); a number: MAP with each
    reviewer's confusion rows shrunk toward the crowd's pooled confusion matrix with that many pseudo-answers.
    Returns (posterior, confusion, class prior, iterations)."""
    n_items, n_workers, n_classes = data.shape
    gold = gold or {}
    posterior = _clamp(vote_shares(data), gold)
    confusion = np.full((n_workers, n_classes, n_classes), 1.0 / n_classes)
    class_prior = np.full(n_classes, 1.0 / n_classes)
    iterations = 0
    previous = -np.inf
    for iteration in range(1, max_iterations + 1):
        iterations = iteration
        counts = _confusion_counts(data, posterior)
        class_prior = (posterior.sum(axis=0) + 1.0) / (n_items + n_classes)
        if prior_strength is None:
            confusion = counts + smoothing
        elif prior_strength == 0:
            confusion = np.maximum(counts, 1e-10)  # no prior at all (as crowd-kit's DawidSkene)
        else:
            pooled = counts.sum(axis=0) + 1.0
            pooled /= pooled.sum(axis=1, keepdims=True)
            confusion = counts + prior_strength * pooled[None, :, :]
        confusion /= confusion.sum(axis=2, keepdims=True)
        posterior, log_likelihood = _e_step(data, np.log(class_prior), np.log(confusion), item_log_prior)
        posterior = _clamp(posterior, gold)
        if abs(log_likelihood - previous) < tolerance * max(1.0, abs(log_likelihood)):
            break
        previous = log_likelihood
    return posterior, confusion, class_prior, iterations


def held_out_log_likelihood(
    data: EncodedAnswers, prior_strength: float, *, folds: int = 3, seed: int = 0, max_iterations: int = 20
) -> np.ndarray:
    """Log-probability of each answer when it is held out: p(label | the item's other answers) under the model
    fitted without it (k-fold over answers). Needs no truth, so it can choose the prior strength anywhere."""
    rng = np.random.default_rng(seed)
    fold_of = rng.integers(0, folds, size=len(data.item))
    scores = np.zeros(len(data.item))
    for fold in range(folds):
        train = data.subset(fold_of != fold)
        held = fold_of == fold
        posterior, confusion, _, _ = run_em(
            train, prior_strength=prior_strength, max_iterations=max_iterations
        )
        # p(l | item) = sum_k T[i, k] * C[w, k, l]
        probabilities = np.einsum(
            "nk,nk->n", posterior[data.item[held]], confusion[data.worker[held], :, data.label[held]]
        )
        scores[held] = np.log(np.maximum(probabilities, 1e-12))
    return scores


class AggregationStrategy(ABC):
    name: ClassVar[str]
    registry: ClassVar[dict[str, type[AggregationStrategy]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        AggregationStrategy.registry[cls.name] = cls

    @abstractmethod
    def aggregate(
        self,
        answers: Sequence[Answer],
        *,
        gold: dict[str, str] | None = None,
        worker_weights: dict[str, float] | None = None,
        classes: Sequence[str] | None = None,
        model_votes: ModelVotes | None = None,
        shortlists: Shortlists | None = None,
    ) -> AggregationResult: ...

    @staticmethod
    def _gold_index(data: EncodedAnswers, gold: dict[str, str] | None) -> dict[int, int]:
        if not gold:
            return {}
        return {
            data.item_index[item]: data.class_index[label]
            for item, label in gold.items()
            if item in data.item_index and label in data.class_index
        }

    @staticmethod
    def _worker_accuracy(data: EncodedAnswers, posterior: np.ndarray) -> dict[str, float]:
        agree = posterior[data.item, data.label]
        totals = np.bincount(data.worker, minlength=len(data.workers))
        hits = np.bincount(data.worker, weights=agree, minlength=len(data.workers))
        return {w: float(hits[i] / totals[i]) for i, w in enumerate(data.workers) if totals[i]}


class MajorityVote(AggregationStrategy):
    name = "majority"

    def aggregate(
        self,
        answers: Sequence[Answer],
        *,
        gold: dict[str, str] | None = None,
        worker_weights: dict[str, float] | None = None,
        classes: Sequence[str] | None = None,
        model_votes: ModelVotes | None = None,
        shortlists: Shortlists | None = None,
    ) -> AggregationResult:
        data = EncodedAnswers(answers, classes)
        weights = None
        if worker_weights:
            weights = np.array([worker_weights.get(w, 1.0) for w in data.workers])
        bot = model_log_likelihood(data, model_votes)
        extra = None
        if bot is not None:
            # The bot's vote counts as a fraction of a person's: its confidence above chance (1/k: nothing,
            # 1: a whole vote).
            k = bot.shape[1]
            extra = np.zeros_like(bot)
            voted = np.flatnonzero(bot.max(axis=1) > bot.min(axis=1))
            above_chance = (np.exp(bot[voted].max(axis=1)) - 1.0 / k) / (1.0 - 1.0 / k)
            extra[voted, bot[voted].argmax(axis=1)] = np.clip(above_chance, 0.0, 1.0)
        posterior = _clamp(vote_shares(data, weights, extra), self._gold_index(data, gold))
        return AggregationResult(data.items, data.classes, posterior, self._worker_accuracy(data, posterior))


class DawidSkene(AggregationStrategy):
    name = "dawid_skene"

    def __init__(self, smoothing: float = 0.01, max_iterations: int = 100) -> None:
        self.smoothing = smoothing
        self.max_iterations = max_iterations

    def aggregate(
        self,
        answers: Sequence[Answer],
        *,
        gold: dict[str, str] | None = None,
        worker_weights: dict[str, float] | None = None,
        classes: Sequence[str] | None = None,
        model_votes: ModelVotes | None = None,
        shortlists: Shortlists | None = None,
    ) -> AggregationResult:
        data = EncodedAnswers(answers, classes)
        gold_index = self._gold_index(data, gold)
        posterior, confusion, _, iterations = run_em(
            data,
            prior_strength=None,
            smoothing=self.smoothing,
            gold=gold_index,
            max_iterations=self.max_iterations,
            item_log_prior=model_log_likelihood(data, model_votes),
        )
        accuracy = _diagonal_accuracy(data, confusion)
        return _people_then_shortlists(data, posterior, accuracy, iterations, gold_index, shortlists)


class OneCoinDawidSkene(AggregationStrategy):
    """Dawid–Skene with one accuracy per reviewer (errors spread evenly over the other labels). Far fewer
    parameters than full confusion matrices: the right model for many labels (dozens of intents) and few
    items per reviewer, which is the review queue's everyday case."""

    name = "one_coin"

    def __init__(self, max_iterations: int = 100, prior_hits: float = 2.0, prior_misses: float = 1.0) -> None:
        self.max_iterations = max_iterations
        self.prior_hits = prior_hits  # Beta prior on each reviewer's accuracy
        self.prior_misses = prior_misses

    def aggregate(
        self,
        answers: Sequence[Answer],
        *,
        gold: dict[str, str] | None = None,
        worker_weights: dict[str, float] | None = None,
        classes: Sequence[str] | None = None,
        model_votes: ModelVotes | None = None,
        shortlists: Shortlists | None = None,
    ) -> AggregationResult:
        data = EncodedAnswers(answers, classes)
        n_items, n_workers, k = data.shape
        gold_index = self._gold_index(data, gold)
        posterior = _clamp(vote_shares(data), gold_index)
        bot = model_log_likelihood(data, model_votes)
        accuracy = np.full(n_workers, 0.7)
        previous = -np.inf
        iterations = 0
        for iteration in range(1, self.max_iterations + 1):
            iterations = iteration
            hits = np.bincount(data.worker, weights=posterior[data.item, data.label], minlength=n_workers)
            totals = np.bincount(data.worker, minlength=n_workers)
            accuracy = (hits + self.prior_hits) / (totals + self.prior_hits + self.prior_misses)
            accuracy = np.clip(accuracy, 1e-6, 1 - 1e-6)
            class_prior = (posterior.sum(axis=0) + 1.0) / (n_items + k)
            wrong = np.log((1.0 - accuracy) / max(k - 1, 1))
            log_joint = np.tile(np.log(class_prior), (n_items, 1))
            if bot is not None:
                log_joint += bot
            np.add.at(log_joint, data.item, wrong[data.worker][:, None])
            np.add.at(log_joint, (data.item, data.label), np.log(accuracy[data.worker]) - wrong[data.worker])
            normaliser = logsumexp(log_joint, axis=1, keepdims=True)
            posterior = _clamp(np.exp(log_joint - normaliser), gold_index)
            log_likelihood = float(normaliser.sum())
            if abs(log_likelihood - previous) < 1e-6 * max(1.0, abs(log_likelihood)):
                break
            previous = log_likelihood
        worker_accuracy = {w: float(accuracy[i]) for i, w in enumerate(data.workers)}
        return _people_then_shortlists(data, posterior, worker_accuracy, iterations, gold_index, shortlists)


class HierarchicalDawidSkene(AggregationStrategy):
    name = "hierarchical_ds"
    STRENGTHS = (0.0, 0.25, 1.0, 4.0, 16.0)  # pseudo-answers per confusion row, weakest first

    def __init__(self, prior_strength: float | None = None, max_iterations: int = 100) -> None:
        self.prior_strength = prior_strength  # None: choose by held-out answer likelihood
        self.max_iterations = max_iterations

    def choose_strength(self, data: EncodedAnswers) -> tuple[float, dict[float, float]]:
        """The weakest prior whose held-out answer likelihood is within one standard error of the best
        (the one-standard-error rule): shrink only as much as the data clearly ask for."""
        per_answer = {s: held_out_log_likelihood(data, s) for s in self.STRENGTHS}
        means = {s: float(v.mean()) for s, v in per_answer.items()}
        best = max(means, key=lambda s: means[s])
        standard_error = float(
            np.std(per_answer[best] - per_answer[self.STRENGTHS[0]]) / np.sqrt(len(data.item))
        )
        chosen = min(s for s in self.STRENGTHS if means[s] >= means[best] - standard_error)
        return chosen, means

    def aggregate(
        self,
        answers: Sequence[Answer],
        *,
        gold: dict[str, str] | None = None,
        worker_weights: dict[str, float] | None = None,
        classes: Sequence[str] | None = None,
        model_votes: ModelVotes | None = None,
        shortlists: Shortlists | None = None,
    ) -> AggregationResult:
        data = EncodedAnswers(answers, classes)
        gold_index = self._gold_index(data, gold)
        scores: dict[float, float] = {}
        strength = self.prior_strength
        if strength is None:
            strength, scores = self.choose_strength(data)
        posterior, confusion, _, iterations = run_em(
            data,
            prior_strength=strength,
            gold=gold_index,
            max_iterations=self.max_iterations,
            item_log_prior=model_log_likelihood(data, model_votes),
        )
        return _people_then_shortlists(
            data,
            posterior,
            _diagonal_accuracy(data, confusion),
            iterations,
            gold_index,
            shortlists,
            {"prior_strength": strength, "held_out_log_likelihood": scores},
        )


DEFAULT_STRATEGY = "hierarchical_ds"


def get_strategy(name: str, **options: Any) -> AggregationStrategy:
    if name not in AggregationStrategy.registry:
        raise ValueError(
            f"unknown aggregation method {name!r}; choose from {sorted(AggregationStrategy.registry)}"
        )
    return AggregationStrategy.registry[name](**options)


MODEL_WORKER = "model"


def with_model_votes(
    answers: Sequence[Answer], votes: dict[str, str], *, worker: str = MODEL_WORKER
) -> list[Answer]:
    """The answers plus the model's predicted label as one more voter on each item people judged (votes on
    items nobody judged are ignored: the model alone is not a label)."""
    if any(a.worker == worker for a in answers):
        raise ValueError(f"a reviewer is already called {worker!r}; name the model voter differently")
    judged = {a.item for a in answers}
    return list(answers) + [Answer(item, worker, label) for item, label in votes.items() if item in judged]


def answers_from_rows(rows: Iterable[tuple[str, str, str]]) -> list[Answer]:
    return [Answer(item, worker, label) for item, worker, label in rows]
