import numpy as np
import pytest

from bot.calibration import (
    ConfidenceCalibrator,
    LogLinearCombiner,
    coverage_at_precision,
    expected_calibration_error,
    fit_gate,
    wilson_lower_bound,
)


def test_combiner_trusts_the_informative_member() -> None:
    rng = np.random.default_rng(0)
    n, classes = 2000, 5
    labels = rng.integers(0, classes, n)
    informative = rng.normal(size=(n, classes))
    informative[np.arange(n), labels] += 2.0
    noise = rng.normal(size=(n, classes)) * 3
    combiner = LogLinearCombiner(["good", "noise"]).fit({"good": informative, "noise": noise}, labels)
    good, bad = combiner.weights
    assert good > 0.5 and bad < 0.05 * good
    probabilities = combiner.predict_proba({"good": informative, "noise": noise})
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    # The fitted weight is also a temperature: confidence matches accuracy on these data.
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    assert expected_calibration_error(confidence, correct) < 0.03
    round_trip = LogLinearCombiner.from_config(combiner.get_config())
    assert np.allclose(round_trip.predict_proba({"good": informative, "noise": noise}), probabilities)


def test_expected_calibration_error_known_values() -> None:
    assert expected_calibration_error(np.array([0.9] * 10), np.array([1] * 9 + [0])) == pytest.approx(0.0)
    assert expected_calibration_error(np.array([0.9] * 10), np.array([1] * 5 + [0] * 5)) == pytest.approx(0.4)
    mixed = expected_calibration_error(np.array([0.2, 0.2, 0.8, 0.8]), np.array([0, 0, 1, 1]))
    assert mixed == pytest.approx(0.2)


def test_coverage_at_precision() -> None:
    confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 1, 1, 0, 1, 0])
    assert coverage_at_precision(confidence, correct, 0.99) == pytest.approx(3 / 6)
    assert coverage_at_precision(confidence, correct, 0.8) == pytest.approx(5 / 6)
    assert coverage_at_precision(confidence, np.zeros(6), 0.5) == 0.0


def calibrated_sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    confidence = rng.beta(5, 1.2, n)
    correct = rng.random(n) < confidence
    margin = confidence - rng.random(n) * (1 - confidence)
    return confidence, margin, correct


@pytest.mark.parametrize("target", [0.9, 0.95, 0.99])
def test_gate_reaches_target_precision_on_held_out_data(target: float) -> None:
    confidence, margin, correct = calibrated_sample(20000, seed=1)
    gate = fit_gate(confidence, margin, correct, target_precision=target)
    assert gate.fitted["precision"] >= target
    held_confidence, held_margin, held_correct = calibrated_sample(20000, seed=2)
    answered = gate.answers(held_confidence, held_margin)
    assert held_correct[answered].mean() >= target - 0.005
    # It answers nearly as much as an oracle that picks the threshold on the held-out rows themselves.
    oracle = coverage_at_precision(held_confidence, held_correct, target)
    assert answered.mean() >= 0.8 * oracle
    assert gate.fitted["coverage"] == pytest.approx(gate.answers(confidence, margin).mean(), abs=1e-9)


def test_gate_never_answers_when_target_is_unreachable_and_respects_answerable() -> None:
    confidence = np.linspace(0.5, 1.0, 100)
    gate = fit_gate(confidence, confidence, np.zeros(100, dtype=bool), target_precision=0.95)
    assert gate.fitted["coverage"] == 0.0 and not gate.answers(confidence, confidence).any()
    correct = np.ones(100, dtype=bool)
    answerable = np.arange(100) < 50
    gate = fit_gate(confidence, confidence, correct, target_precision=0.95, answerable=answerable)
    assert gate.fitted["coverage"] <= 0.5


def test_wilson_lower_bound_and_isotonic_calibrator() -> None:
    bound = wilson_lower_bound(np.array([95, 950]), np.array([100, 1000]), z=1.0)
    assert bound[0] < bound[1] < 0.95
    rng = np.random.default_rng(0)
    raw = rng.random(5000)
    correct = rng.random(5000) < raw**2  # overconfident raw scores
    calibrator = ConfidenceCalibrator("isotonic").fit(raw, correct)
    assert expected_calibration_error(calibrator(raw), correct) < expected_calibration_error(raw, correct) / 3
    again = ConfidenceCalibrator.from_config(calibrator.get_config())
    assert np.allclose(again(raw), calibrator(raw))
