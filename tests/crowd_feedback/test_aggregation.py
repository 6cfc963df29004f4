import math

import numpy as np
import pytest

from crowd_feedback.aggregation import Answer, get_strategy
from crowd_feedback.agreement import krippendorff_alpha, pairwise_alpha


def simulate(
    seed: int,
    *,
    items: int = 300,
    classes: int = 3,
    good: int = 5,
    spammers: int = 3,
    sparse: int = 0,
    per_item: int = 5,
):
    """Reviewers of known accuracy: good (0.85), spammers (uniform random), sparse (few answers)."""
    rng = np.random.default_rng(seed)
    truth = {f"i{n}": str(rng.integers(classes)) for n in range(items)}
    accuracy = {f"good{n}": 0.85 for n in range(good)}
    accuracy.update({f"spam{n}": 1.0 / classes for n in range(spammers)})
    accuracy.update({f"sparse{n}": 0.8 for n in range(sparse)})
    workers = list(accuracy)
    answers = []
    for item, label in truth.items():
        chosen = rng.choice(workers, size=min(per_item, len(workers)), replace=False)
        for worker in chosen:
            if rng.random() < accuracy[worker]:
                given = label
            else:
                given = str(rng.choice([c for c in map(str, range(classes)) if c != label]))
            answers.append(Answer(item, str(worker), given))
    return answers, truth, accuracy


@pytest.mark.parametrize("method", ["majority", "dawid_skene", "one_coin", "hierarchical_ds"])
def test_strategies_return_a_label_and_posterior_per_item(method: str) -> None:
    answers, truth, _ = simulate(0)
    result = get_strategy(method).aggregate(answers)
    assert set(result.labels()) == set(truth)
    assert np.allclose(result.posterior.sum(axis=1), 1.0)
    assert all(0.0 <= c <= 1.0 for c in result.confidences().values())


def test_dawid_skene_beats_majority_when_spammers_abound_and_finds_them() -> None:
    answers, truth, accuracy = simulate(1, good=3, spammers=5, per_item=6)
    majority = get_strategy("majority").aggregate(answers).accuracy(truth)
    ds = get_strategy("dawid_skene").aggregate(answers)
    assert ds.accuracy(truth) > majority + 0.05
    for worker, true_accuracy in accuracy.items():
        assert abs(ds.worker_accuracy[worker] - true_accuracy) < 0.12


def test_hierarchical_ds_helps_with_many_sparse_reviewers() -> None:
    # 200 reviewers with ~4 answers each: per-reviewer confusion matrices overfit, the pooled prior does not.
    answers, truth, _ = simulate(2, items=300, good=0, spammers=40, sparse=160, per_item=3, classes=4)
    ds = get_strategy("dawid_skene").aggregate(answers).accuracy(truth)
    hds = get_strategy("hierarchical_ds").aggregate(answers)
    assert hds.accuracy(truth) >= ds
    assert hds.details["prior_strength"] > 0


def test_gold_items_are_clamped_and_weights_change_majority() -> None:
    answers = [
        Answer("a", "w1", "x"),
        Answer("a", "w2", "y"),
        Answer("a", "w3", "y"),
        Answer("b", "w1", "x"),
        Answer("b", "w2", "y"),
    ]
    result = get_strategy("dawid_skene").aggregate(answers, gold={"b": "x"})
    assert result.labels()["b"] == "x" and result.confidences()["b"] == 1.0
    weighted = get_strategy("majority").aggregate(answers, worker_weights={"w1": 5.0, "w2": 1.0, "w3": 1.0})
    assert weighted.labels()["a"] == "x"
    assert get_strategy("majority").aggregate(answers).labels()["a"] == "y"


def test_unknown_method_and_empty_input() -> None:
    with pytest.raises(ValueError, match="unknown aggregation method 'oracle'"):
        get_strategy("oracle")
    with pytest.raises(ValueError, match="no answers"):
        get_strategy("majority").aggregate([])


def test_krippendorff_alpha_known_values() -> None:
    perfect = [Answer(i, w, lab) for i, lab in [("1", "a"), ("2", "b"), ("3", "a")] for w in ("p", "q")]
    assert krippendorff_alpha(perfect) == pytest.approx(1.0)
    # Krippendorff (2011) nominal example: 4 coders, 12 units, missing values; alpha = 0.743.
    data = {
        "1": "1 1 . 1",
        "2": "2 2 3 2",
        "3": "3 3 3 3",
        "4": "3 3 3 3",
        "5": "2 2 2 2",
        "6": "1 2 3 4",
        "7": "4 4 4 4",
        "8": "1 1 2 1",
        "9": "2 2 2 2",
        "10": ". 5 5 5",
        "11": ". . 1 1",
        "12": ". . 3 .",
    }
    answers = [
        Answer(unit, f"c{c}", value)
        for unit, row in data.items()
        for c, value in enumerate(row.split())
        if value != "."
    ]
    assert krippendorff_alpha(answers) == pytest.approx(0.743, abs=0.001)
    assert math.isnan(krippendorff_alpha([Answer("1", "a", "x")]))
    pairs = pairwise_alpha(answers, min_shared=3)
    assert ("c0", "c1") in pairs and -1.0 <= pairs[("c0", "c1")] <= 1.0


def test_one_coin_handles_many_labels_with_few_items() -> None:
    # 60 labels, 3 answers per item, a third of the crowd spamming: one-coin keeps spammers in check.
    answers, truth, accuracy = simulate(3, items=150, classes=60, good=8, spammers=4, per_item=3)
    majority = get_strategy("majority").aggregate(answers).accuracy(truth)
    one_coin = get_strategy("one_coin").aggregate(answers)
    assert one_coin.accuracy(truth) >= majority
    spam = [one_coin.worker_accuracy[w] for w in accuracy if w.startswith("spam")]
    good = [one_coin.worker_accuracy[w] for w in accuracy if w.startswith("good")]
    assert max(spam) < min(good)


def test_model_votes_join_as_one_worker_whose_trust_em_measures() -> None:
    from crowd_feedback.aggregation import MODEL_WORKER, with_model_votes

    rng = np.random.default_rng(3)
    classes = ["a", "b", "c", "d"]
    truth = {f"q{i}": classes[i % 4] for i in range(60)}
    answers = []
    for item, label in truth.items():
        # two fair reviewers who often disagree: alone they leave many items split one-to-one
        for worker in ("w1", "w2"):
            guess = label if rng.random() < 0.7 else str(rng.choice([c for c in classes if c != label]))
            answers.append(Answer(item, worker, guess))
    model = {item: label if rng.random() < 0.85 else "a" for item, label in truth.items()}
    model["unjudged"] = "b"  # the model alone is never a label
    combined = with_model_votes(answers, model)
    assert len(combined) == len(answers) + 60 and all(a.item != "unjudged" for a in combined)
    alone = get_strategy("one_coin").aggregate(answers).accuracy(truth)
    together = get_strategy("one_coin").aggregate(combined)
    assert together.accuracy(truth) >= alone + 0.05
    assert together.worker_accuracy[MODEL_WORKER] > together.worker_accuracy["w1"] - 0.05
    with pytest.raises(ValueError, match="already called"):
        with_model_votes([Answer("q", MODEL_WORKER, "a")], {"q": "a"})


@pytest.mark.parametrize("method", ["majority", "dawid_skene", "one_coin", "hierarchical_ds"])
def test_every_strategy_takes_the_bots_vote_weighted_by_its_confidence(method: str) -> None:
    answers = [Answer("split", "w1", "a"), Answer("split", "w2", "b")]
    answers += [Answer(f"q{i}", w, "abc"[i % 3]) for i in range(12) for w in ("w1", "w2")]
    strategy = get_strategy(method)
    sure = strategy.aggregate(answers, model_votes={"split": ("b", 0.9), "nobody": ("a", 0.99)})
    assert "nobody" not in sure.items  # the bot alone is never a label
    assert sure.labels()["split"] == "b"
    # a vote at chance level (1 in 3 here) carries no information: the people's 2-to-1 stands
    leaning = answers + [
        Answer("leaning", "w1", "a"),
        Answer("leaning", "w2", "a"),
        Answer("leaning", "w3", "b"),
    ]
    unsure = strategy.aggregate(leaning, model_votes={"leaning": ("b", 1 / 3)})
    people = strategy.aggregate(leaning)
    assert unsure.labels()["leaning"] == people.labels()["leaning"] == "a"
    assert unsure.confidences()["leaning"] == pytest.approx(people.confidences()["leaning"], abs=0.02)
    # the bot breaks ties among the people's answers, it never brings a label nobody chose
    novel = strategy.aggregate(answers, model_votes={"q0": ("d", 0.99), "split": ("c", 0.99)})
    alone = strategy.aggregate(answers)
    assert "d" not in novel.classes and novel.labels()["q0"] == "a"
    assert novel.posterior[novel.items.index("split")] == pytest.approx(
        alone.posterior[alone.items.index("split")]
    )


def test_the_shortlist_prior_is_trusted_as_far_as_it_predicts_the_people() -> None:
    """Two reviewers split on half the items; the bot's shortlist leans to one side. When its top candidate is
    what the people agree on elsewhere, it earns full trust and settles the splits; when it is always the
    other side, it earns little and the splits stay unsure instead of flipping to it."""
    answers, right, wrong = [], {}, {}
    for i in range(60):
        truth, other = ("a", "b") if i % 2 else ("b", "a")
        answers.append(Answer(f"q{i}", "w1", truth))
        answers.append(Answer(f"q{i}", "w2", other if i < 30 else truth))  # split on the first 30
        right[f"q{i}"] = [(truth, 0.8), (other, 0.15)]
        wrong[f"q{i}"] = [(other, 0.8), (truth, 0.15)]
    strategy = get_strategy("one_coin")
    trusted = strategy.aggregate(answers, shortlists=right, classes=["a", "b", "c"])
    assert trusted.details["shortlist_trust"] == 1.0
    assert all(trusted.labels()[item] == shortlist[0][0] for item, shortlist in right.items())
    distrusted = strategy.aggregate(answers, shortlists=wrong, classes=["a", "b", "c"])
    # it still rules out "c", which is worth a little trust, not enough to flip a split
    assert distrusted.details["shortlist_trust"] == 0.25
    assert all(distrusted.confidences()[f"q{i}"] < 0.7 for i in range(30))
    people = strategy.aggregate(answers, classes=["a", "b", "c"])
    assert "shortlist_trust" not in people.details


@pytest.mark.parametrize("method", ["dawid_skene", "one_coin", "hierarchical_ds"])
def test_the_shortlist_never_brings_a_label_nobody_chose(method: str) -> None:
    answers = [Answer(f"q{i}", w, "abc"[i % 3]) for i in range(12) for w in ("w1", "w2")]
    answers += [Answer("split", "w1", "a"), Answer("split", "w2", "b")]
    strategy = get_strategy(method)
    alone = strategy.aggregate(answers)
    novel = strategy.aggregate(answers, shortlists={"q0": [("c", 0.99)], "split": [("c", 0.99)]})
    assert "shortlist_trust" in novel.details
    assert novel.labels()["q0"] == "a"
    # "c" is nobody's answer on "split": the shortlist is held flat there and changes nothing
    assert novel.posterior[novel.items.index("split")] == pytest.approx(
        alone.posterior[alone.items.index("split")]
    )


def test_shortlist_distribution_spreads_the_rest_and_holds_unchosen_labels() -> None:
    from crowd_feedback.aggregation import shortlist_distribution

    index = {"a": 0, "b": 1, "c": 2, "d": 3}
    q = np.exp(shortlist_distribution([("a", 0.6), ("b", 0.3), ("zzz", 0.05)], index))
    assert q == pytest.approx([0.6, 0.3, 0.05, 0.05])  # unknown labels ignored, 0.1 spread over c and d
    held = np.exp(shortlist_distribution([("a", 0.6), ("b", 0.3)], index, chosen=["b", "c"]))
    assert held == pytest.approx(np.array([0.05, 0.3, 0.05, 0.05]) / 0.45)  # "a" nobody chose: held down
