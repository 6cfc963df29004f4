import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from bot.members import (
    UNSEEN_SCORE,
    CharNgramMember,
    FeatureBatch,
    LogisticHeadMember,
    Member,
    NearestNeighbourMember,
    build_member,
    fit_members,
)


def clusters(seed: int = 0, per_class: int = 20, classes: int = 4, dim: int = 16, noise: float = 0.3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    labels = np.repeat(np.arange(classes), per_class)
    points = centres[labels] + noise * rng.normal(size=(len(labels), dim))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    texts = [f"text {i}" for i in range(len(labels))]
    return FeatureBatch(texts=texts, embeddings={"minilm": points.astype(np.float32)}), labels


def test_logistic_head_separates_clusters_and_marks_unseen_intents() -> None:
    train, labels = clusters(seed=0)
    test, test_labels = clusters(seed=0, per_class=5)
    member = LogisticHeadMember(C=10.0)
    keep = labels != 3  # intent 3 never seen in training
    member.fit(train.subset(np.flatnonzero(keep)), labels[keep], n_classes=4)
    scores = member.scores(test)
    assert scores.shape == (20, 4)
    assert np.all(scores[:, 3] == UNSEEN_SCORE)
    seen = test_labels != 3
    assert (scores[seen].argmax(axis=1) == test_labels[seen]).mean() == 1.0
    assert np.allclose(np.exp(scores[:, :3]).sum(axis=1), 1.0)


@pytest.mark.parametrize("classes", [2, 5])
def test_logistic_head_scores_match_sklearn_predict_proba(classes: int) -> None:
    # The member computes the probabilities itself (fast path); they must be sklearn's, binary case included.
    train, labels = clusters(seed=1, classes=classes, noise=0.8)
    test, _ = clusters(seed=2, classes=classes, per_class=7, noise=0.8)
    member = LogisticHeadMember(C=1.0)
    member.fit(train, labels, n_classes=classes + 1)
    expected = member.model.predict_proba(test.embeddings["minilm"])
    scores = member.scores(test)
    assert np.allclose(np.exp(scores[:, :classes]), expected, atol=1e-9)
    assert np.all(scores[:, classes] == UNSEEN_SCORE)


def test_logistic_head_refit_from_a_warm_start_reaches_the_same_model_in_fewer_iterations() -> None:
    """The engine refits on every row starting from the fit on most of them: fewer L-BFGS iterations, the
    same optimum; a start over other intents is ignored, and nothing of the start stays in the member."""
    every, labels = clusters(seed=3, per_class=120, classes=12, dim=48, noise=0.9)
    most = np.flatnonzero(np.arange(len(labels)) % 7 != 0)
    first = LogisticHeadMember(C=10.0)
    first.fit(every.subset(most), labels[most], 12)
    cold, warm = LogisticHeadMember(C=10.0), LogisticHeadMember(C=10.0)
    cold.fit(every, labels, 12)
    warm.warm_start(first)
    warm.fit(every, labels, 12)
    assert warm.model.n_iter_[0] < 0.8 * cold.model.n_iter_[0]
    np.testing.assert_allclose(np.exp(warm.scores(every)), np.exp(cold.scores(every)), atol=0.03)
    assert (warm.scores(every).argmax(1) == cold.scores(every).argmax(1)).mean() >= 0.99
    assert warm.model.get_params()["warm_start"] is False and warm._start is None

    fewer = np.flatnonzero(labels < 11)  # the start knows 11 intents, the refit 12: a cold start
    other = LogisticHeadMember(C=10.0)
    other.fit(every.subset(fewer), labels[fewer], 12)
    mismatched = LogisticHeadMember(C=10.0)
    mismatched.warm_start(other)
    mismatched.fit(every, labels, 12)
    assert mismatched.model.n_iter_[0] == cold.model.n_iter_[0]
    np.testing.assert_allclose(mismatched.scores(every), cold.scores(every))

    stranger = LogisticHeadMember(C=1.0)  # another C: another objective, so no start from it
    stranger.warm_start(first)
    assert stranger._start is None


class _ProbeMember(Member):
    """Records, at fit, which thread fitted it and how many threads BLAS had (tests of fit_members)."""

    kind = "_probe"
    seen: ClassVar[list[tuple[str, int]]] = []

    def fit(self, features: FeatureBatch, labels: np.ndarray, n_classes: int) -> None:
        from threadpoolctl import threadpool_info

        if self.params.get("fail"):
            raise ValueError("probe told to fail")
        blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
        _ProbeMember.seen.append((threading.current_thread().name, max(blas)))
        self.n_classes = n_classes

    def scores(self, features: FeatureBatch) -> np.ndarray:
        return np.zeros((len(features), self.n_classes))

    def _state(self) -> dict[str, Any]:
        return {}

    def _restore(self, state: dict[str, Any]) -> None:
        return None


Member.registry.pop("_probe")  # registered only while a test uses it


@pytest.fixture
def probe() -> Iterator[type[_ProbeMember]]:
    _ProbeMember.seen = []
    Member.registry["_probe"] = _ProbeMember
    yield _ProbeMember
    Member.registry.pop("_probe")


def test_fit_members_on_threads_fits_each_member_as_it_would_be_fitted_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    train, labels = clusters(seed=5, per_class=40, classes=6, dim=24, noise=0.8)
    train.texts = [f"question {i % 9} about topic {label}" for i, label in enumerate(labels)]
    configs = [
        {"kind": "logistic_head", "name": "head", "C": 10.0},
        {"kind": "nearest_neighbour", "name": "neighbour", "k": 1},
        {"kind": "char_ngram", "name": "ngrams", "C": 0.5},
    ]
    names = [f"intent_{i}" for i in range(6)]
    fitted = fit_members(configs, names, train, labels)
    assert list(fitted) == ["head", "neighbour", "ngrams"]
    for config in configs:
        alone = build_member(config)
        alone.fit(train, labels, 6)
        member = fitted[config["name"]]
        assert member.class_names == names
        np.testing.assert_allclose(member.scores(train), alone.scores(train), atol=1e-6)


def test_fit_members_gives_blas_one_thread_per_member_and_passes_a_failure_on(
    monkeypatch: pytest.MonkeyPatch, probe: type[_ProbeMember]
) -> None:
    """On threads each member's BLAS runs on one thread: OpenBLAS's threads for every member at once
    oversubscribe the cores (the logistic head on full BANKING77, 2 cores: 1.6 s alone on one thread, 4.1 s on
    two). Alone (one core), nothing is limited."""
    train, labels = clusters(seed=1)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    with threadpool_limits(limits=3, user_api="blas"):  # what BLAS would use, here, without the limit
        configs = [{"kind": "_probe", "name": f"p{i}"} for i in range(3)]
        fit_members(configs, ["a", "b", "c", "d"], train, labels)
        assert len(probe.seen) == 3
        assert all(thread.startswith("fit-member") and blas == 1 for thread, blas in probe.seen)

        probe.seen.clear()
        monkeypatch.setattr("os.cpu_count", lambda: 1)
        fit_members([{"kind": "_probe", "name": "p"}], ["a", "b", "c", "d"], train, labels)
        assert probe.seen == [(threading.current_thread().name, 3)]

    monkeypatch.setattr("os.cpu_count", lambda: 4)
    configs = [{"kind": "_probe", "name": "ok"}, {"kind": "_probe", "name": "bad", "fail": True}]
    with pytest.raises(ValueError, match="probe told to fail"):
        fit_members(configs, ["a", "b", "c", "d"], train, labels)


def test_overlapping_fits_share_one_blas_limit_and_the_last_one_out_restores_it() -> None:
    """Two fits at once in one process (threads), leaving in the order they came: the first to leave must
    not lift the limit under the second, and the second must not leave BLAS at one thread for good (each
    holding its own threadpoolctl limit did both)."""
    from threadpoolctl import threadpool_info

    from bot.members import one_blas_thread

    def blas_threads() -> int:
        return max(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")

    with threadpool_limits(limits=3, user_api="blas"):
        first, second = one_blas_thread(), one_blas_thread()
        first.__enter__()
        assert blas_threads() == 1
        second.__enter__()
        first.__exit__(None, None, None)
        assert blas_threads() == 1  # the second fit is still inside
        second.__exit__(None, None, None)
        assert blas_threads() == 3
        with pytest.raises(RuntimeError, match="inside"), one_blas_thread():
            raise RuntimeError("a fit failed inside")
        assert blas_threads() == 3


def test_nearest_neighbour_returns_best_cosine_per_intent() -> None:
    examples = np.eye(3, dtype=np.float32)[[0, 0, 1, 2]]
    examples[1] = np.array([0.6, 0.8, 0.0])
    member = NearestNeighbourMember(k=1)
    member.fit(FeatureBatch(["a", "b", "c", "d"], {"minilm": examples}), np.array([0, 0, 1, 2]), n_classes=4)
    query = np.array([[0.0, 1.0, 0.0]], dtype=np.float32)
    scores = member.scores(FeatureBatch(["q"], {"minilm": query}))
    assert scores[0, :3] == pytest.approx([0.8, 1.0, 0.0])
    assert scores[0, 3] == UNSEEN_SCORE
    top2 = NearestNeighbourMember(k=2)
    top2.fit(FeatureBatch(["a", "b", "c", "d"], {"minilm": examples}), np.array([0, 0, 1, 2]), n_classes=4)
    assert top2.scores(FeatureBatch(["q"], {"minilm": query}))[0, 0] == pytest.approx(0.4)


def test_char_ngram_fast_path_matches_batch_path_and_handles_typos() -> None:
    texts = [
        "where is my card",
        "card has not arrived",
        "card still not here",
        "change my pin",
        "how do i change the pin number",
        "new pin please",
        "exchange rate for euros",
        "what rate do you use for dollars",
        "currency exchange rates",
    ]
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    member = CharNgramMember()
    member.fit(FeatureBatch(texts), labels, n_classes=3)
    queries = ["wher is my crad", "chnage pin", "excange rates", "zzz"]
    batch = member.scores(FeatureBatch(queries * 2))  # > 4 texts: sparse matrix path
    for i, query in enumerate(queries):
        single = member.scores(FeatureBatch([query]))
        assert np.allclose(single[0], batch[i], atol=1e-9)
    assert list(batch[:3].argmax(axis=1)) == [0, 1, 2]


@pytest.mark.parametrize("kind", ["logistic_head", "nearest_neighbour", "char_ngram"])
def test_members_save_and_load_identically(kind: str, tmp_path: Path) -> None:
    train, labels = clusters(seed=1)
    member = build_member({"kind": kind, "name": f"my_{kind}"})
    member.fit(train, labels, n_classes=4)
    member.save(tmp_path / "m")
    loaded = Member.load(tmp_path / "m")
    assert loaded.name == f"my_{kind}" and loaded.get_config() == member.get_config()
    assert np.allclose(loaded.scores(train), member.scores(train))


def test_unknown_member_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown member kind 'crystal_ball'"):
        build_member({"kind": "crystal_ball"})


def write_head(path: Path, labels: list[str], weight: np.ndarray, bias: np.ndarray) -> str:
    np.savez(path, weight=weight, bias=bias, labels=np.array(labels))
    return str(path)


def test_tuned_head_maps_its_intents_by_name_and_marks_the_ones_it_never_saw(tmp_path: Path) -> None:
    features, labels = clusters(seed=1, per_class=5, classes=3)
    centres = np.vstack([features.embeddings["minilm"][labels == k].mean(axis=0) for k in range(3)])
    # The head was trained on intents b, a, z (another order, one intent the engine no longer has) and never
    # saw intent c; scaled centroids make a linear head that classifies the clusters.
    weights = write_head(
        tmp_path / "head.npz",
        ["b", "a", "z"],
        np.vstack([centres[1], centres[0], -centres[0]]) * 10,
        np.zeros(3),
    )
    member = build_member({"kind": "tuned_head", "encoder": "minilm", "weights": weights})
    assert member.pretrained
    member.class_names = ["a", "b", "c"]
    member.fit(features, labels, n_classes=3)
    scores = member.scores(features)
    assert scores.shape == (15, 3)
    assert np.all(scores[:, 2] == UNSEEN_SCORE)
    seen = labels != 2
    assert (scores[seen].argmax(axis=1) == labels[seen]).mean() == 1.0
    # log-softmax over the head's own intents (z included), so the two kept columns sum to less than one
    total = np.exp(scores[:, :2]).sum(axis=1)
    assert np.all(total <= 1.0 + 1e-9) and np.all(total > 0.5)
    member.save(tmp_path / "saved")
    (tmp_path / "head.npz").unlink()  # the bundle keeps the weights: the training output may go
    loaded = Member.load(tmp_path / "saved")
    assert np.allclose(loaded.scores(features), scores)


def test_tuned_head_refuses_to_fit_without_weights_or_class_names(tmp_path: Path) -> None:
    features, labels = clusters(seed=1, per_class=2, classes=2)
    with pytest.raises(ValueError, match="weights file"):
        build_member({"kind": "tuned_head"}).fit(features, labels, n_classes=2)
    weights = write_head(tmp_path / "h.npz", ["a", "b"], np.eye(2, 16), np.zeros(2))
    with pytest.raises(ValueError, match="class names"):
        build_member({"kind": "tuned_head", "weights": weights}).fit(features, labels, n_classes=2)


FRESH_FIT = """
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import bot.members as members

seen = []


class Recording(ThreadPoolExecutor):
    def submit(self, fn, /, *args, **kwargs):
        seen.append({m for m in ("sklearn.linear_model", "sklearn.svm", "sklearn.feature_extraction.text")
                     if m in sys.modules})
        return super().submit(fn, *args, **kwargs)


members.ThreadPoolExecutor = Recording
members.os.cpu_count = lambda: 2
assert "sklearn.svm" not in sys.modules  # a fresh process: nothing of sklearn's imported yet
rng = np.random.default_rng(0)
vectors = rng.normal(size=(24, 8)).astype(np.float32)
texts = [f"text {i} word{i % 3}" for i in range(24)]
features = members.FeatureBatch(texts=texts, embeddings={"minilm": vectors})
fitted = members.fit_members(members.DEFAULT_MEMBERS, ["a", "b", "c"], features, np.arange(24) % 3)
assert sorted(fitted) == ["char_ngram", "logistic_head", "nearest_neighbour"]
print(len(seen), all(len(s) == 3 for s in seen))
"""


def test_the_members_libraries_are_imported_before_their_threads_start(tmp_path: Path) -> None:
    """Two threads importing sklearn for the first time at once can meet a module half-initialised (an
    ImportError that failed a fresh process's first fit now and then): a fresh interpreter's first
    ``fit_members`` has every module the members import loaded before it starts a thread."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    script = tmp_path / "fresh_fit.py"
    script.write_text(FRESH_FIT)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=root, env={"PYTHONPATH": str(root)}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "True"]
