import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.engine import (
    ANSWERED,
    CLARIFY,
    HANDOFF,
    AnsweringEngine,
    BundleError,
    EngineConfig,
    IntentInfo,
    MetadataFilter,
    add_encoder,
    encoder_name,
)
from tests.conftest import TOY, HashingEncoder


def toy_rows(extra: dict[str, list[str]] | None = None) -> tuple[list[str], list[str]]:
    data = {**TOY, **(extra or {})}
    texts = [t for label, rows in data.items() for t in rows]
    labels = [label for label, rows in data.items() for _ in rows]
    return texts, labels


def toy_engine(encoder: Any, extra: dict[str, list[str]] | None = None, **config: Any) -> AnsweringEngine:
    texts, labels = toy_rows(extra)
    knowledge = {
        "card_arrival": IntentInfo(
            answer="Cards arrive in 5 days.", title="Card arrival", follow_ups=["change_pin"]
        ),
        "change_pin": IntentInfo(answer="Change it at any ATM."),
    }
    engine = AnsweringEngine(EngineConfig(cv_folds=3, **config), encoders={"minilm": encoder})
    return engine.fit(texts, labels, knowledge=knowledge)


def test_fit_predict_statuses_and_result_shape(hashing_encoder: Any) -> None:
    engine = toy_engine(hashing_encoder, target_precision=0.9)
    assert engine.labels == sorted(TOY)
    prediction = engine.predict("when will my card arrive")
    assert prediction.status == ANSWERED
    assert prediction.intent == "card_arrival"
    assert prediction.answer == "Cards arrive in 5 days."
    assert [s.intent for s in prediction.suggestions] == ["change_pin"]
    assert 0.0 < prediction.confidence <= 1.0
    assert prediction.ranking[0].intent == "card_arrival"
    assert sum(c.probability for c in prediction.ranking) <= 1.0 + 1e-9
    assert set(prediction.member_scores) == {"logistic_head", "nearest_neighbour", "char_ngram"}
    as_dict = prediction.to_dict()
    assert as_dict["model_version"] == engine.version and as_dict["status"] == "answered"
    assert json.loads(json.dumps(as_dict)) == as_dict  # JSON-serialisable as is
    unknown = engine.predict("xylophone quantum banana")
    assert unknown.status in {HANDOFF, CLARIFY} and unknown.intent is None and unknown.answer == ""
    assert unknown.confidence < engine.gate.threshold


def test_gate_and_combiner_are_fitted_not_hand_set(hashing_encoder: Any) -> None:
    engine = toy_engine(hashing_encoder)
    assert engine.combiner is not None
    assert engine.combiner.weights.shape == (3,) and np.all(engine.combiner.weights >= 0)
    assert not np.allclose(engine.combiner.weights, 1.0)
    assert engine.gate.fitted["rows"] == 24  # every training row, scored out of fold
    assert engine.manifest["training"]["calibration_source"] == "out-of-fold"


def test_ambiguous_message_asks_did_you_mean(hashing_encoder: Any) -> None:
    engine = toy_engine(hashing_encoder)
    prediction = engine.predict("card pin")
    if prediction.status == ANSWERED:
        pytest.fail(f"an even mix of two intents was answered: {prediction.to_dict()}")
    probabilities, confidence, _ = engine.predict_proba(["card pin"])
    top_two = set(np.array(engine.labels)[np.argsort(-probabilities[0])[:2]])
    assert top_two == {"card_arrival", "change_pin"}
    if prediction.status == CLARIFY:
        assert {c.intent for c in prediction.suggestions} >= {"card_arrival", "change_pin"}
        assert all(c.title for c in prediction.suggestions)


def test_out_of_scope_rows_are_learned_and_handed_off(hashing_encoder: Any) -> None:
    oos = {
        "oos": [
            "what is the weather tomorrow",
            "tell me a joke",
            "who won the football game",
            "recipe for pancakes",
            "play some music",
            "what time is it in tokyo",
        ]
    }
    engine = toy_engine(hashing_encoder, extra=oos)
    prediction = engine.predict("tell me a joke about the weather")
    assert prediction.ranking[0].intent == "oos"
    assert prediction.status == HANDOFF and prediction.intent is None


def test_no_familiarity_floor_when_asked_for_none_or_without_a_nearest_neighbour_member(
    hashing_encoder: Any,
) -> None:
    assert toy_engine(hashing_encoder).familiarity_floor is not None
    assert toy_engine(hashing_encoder, familiarity_quantile=0.0).familiarity_floor is None
    heads_only = [m for m in EngineConfig().members if m["kind"] != "nearest_neighbour"]
    engine = toy_engine(hashing_encoder, members=heads_only)
    assert engine.familiarity_floor is None
    prediction = engine.predict("tell me a joke")
    assert prediction.familiarity is None and not prediction.unfamiliar


def test_validation_set_is_used_for_calibration(hashing_encoder: Any) -> None:
    texts, labels = toy_rows()
    engine = AnsweringEngine(EngineConfig(), encoders={"minilm": hashing_encoder})
    engine.fit(texts[::2], labels[::2], calibration_texts=texts[1::2], calibration_labels=labels[1::2])
    assert engine.manifest["training"] == {
        **engine.manifest["training"],
        "calibration_source": "validation set",
        "calibration_rows": 12,
        "rows": 12,
    }
    with pytest.raises(ValueError, match="calibration labels not in training data"):
        engine.fit(texts, labels, calibration_texts=["x"], calibration_labels=["unknown"])


class CountingEncoder(HashingEncoder):
    """Counts every text it is asked to encode."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def encode(self, texts: Any, *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        self.seen.extend(texts)
        return super().encode(texts, batch_size=batch_size, progress=progress)


def test_the_refit_encodes_only_rows_the_first_fit_did_not() -> None:
    """Refitting on every row reuses the embeddings of the training and calibration rows: each text is
    encoded once (on CPU, encoding is most of a fit), and the refitted members are those a fresh encoding
    gives."""
    texts, labels = toy_rows()
    new_texts = ["my card never came in the post", "how do I reset my pin"]
    new_labels = ["card_arrival", "change_pin"]
    fit_rows = {
        "calibration_texts": texts[1::2],
        "calibration_labels": labels[1::2],
        "refit_texts": texts + new_texts,
        "refit_labels": labels + new_labels,
    }
    counting = CountingEncoder()
    engine = AnsweringEngine(EngineConfig(title_examples=False), encoders={"minilm": counting})
    engine.fit(texts[::2], labels[::2], **fit_rows)
    assert sorted(counting.seen) == sorted(texts + new_texts)

    fresh = AnsweringEngine(EngineConfig(title_examples=False), encoders={"minilm": HashingEncoder()})
    fresh.fit(texts[::2], labels[::2], **fit_rows)
    features = fresh.featurise(texts + new_texts)
    for name, member in fresh.members.items():
        np.testing.assert_allclose(engine.members[name].scores(features), member.scores(features))


def test_only_the_refit_on_every_row_starts_from_an_earlier_fit(
    hashing_encoder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a calibration set, the refit on every row starts from the members fitted on most of them; a fit
    calibrated out of fold starts every fit cold (folds and refit: the figures measured on it stand)."""
    from bot.members import LogisticHeadMember

    starts: list[tuple[LogisticHeadMember, Any]] = []
    original = LogisticHeadMember.warm_start

    def recording(self: LogisticHeadMember, previous: Any) -> None:
        starts.append((self, previous))
        original(self, previous)

    monkeypatch.setattr(LogisticHeadMember, "warm_start", recording)
    texts, labels = toy_rows()
    engine = AnsweringEngine(EngineConfig(cv_folds=3), encoders={"minilm": hashing_encoder})
    engine.fit(texts, labels)  # out of fold: 3 folds, then the refit, all cold
    assert starts == [] and engine.members["logistic_head"].model is not None

    held = AnsweringEngine(EngineConfig(), encoders={"minilm": hashing_encoder})
    first_fit: dict[str, Any] = {}
    fit_members = held._fit_members

    def remember(*args: Any, **kwargs: Any) -> None:
        fit_members(*args, **kwargs)
        first_fit.setdefault("members", dict(held.members))

    monkeypatch.setattr(held, "_fit_members", remember)
    held.fit(
        texts[::2],
        labels[::2],
        calibration_texts=texts[1::2],
        calibration_labels=labels[1::2],
        refit_texts=texts,
        refit_labels=labels,
    )
    assert [(a, b) for a, b in starts] == [
        (held.members["logistic_head"], first_fit["members"]["logistic_head"])
    ]


def test_bundle_round_trip_rebuilds_the_same_engine(hashing_encoder: Any, tmp_path: Path) -> None:
    engine = toy_engine(hashing_encoder)
    bundle = engine.save(tmp_path / "bundle", metrics={"accuracy": 1.0})
    manifest = json.loads((bundle / "manifest.json").read_text())
    for key in ("version", "created_at", "data_hash", "members", "combiner", "gate", "labels", "metrics"):
        assert key in manifest
    assert manifest["gate"]["threshold"] == engine.gate.threshold
    assert [m["kind"] for m in manifest["members"]] == ["logistic_head", "nearest_neighbour", "char_ngram"]
    loaded = AnsweringEngine.load(bundle, runtime="torch")
    loaded.encoders["minilm"] = hashing_encoder  # the toy encoder stands in for MiniLM
    assert loaded.version == engine.version and loaded.knowledge == engine.knowledge
    queries = ["where is my card", "exchange rate euro", "close account", "hmm"]
    before, after = engine.predict_batch(queries), loaded.predict_batch(queries)
    for a, b in zip(before, after, strict=True):
        assert (a.status, a.intent) == (b.status, b.intent)
        assert a.confidence == pytest.approx(b.confidence)


def test_data_hash_changes_with_the_data(hashing_encoder: Any) -> None:
    first = toy_engine(hashing_encoder)
    second = toy_engine(hashing_encoder, extra={"card_arrival": TOY["card_arrival"] + ["card lost in post"]})
    assert first.manifest["data_hash"] != second.manifest["data_hash"]
    assert first.version.endswith(first.manifest["data_hash"][:8])


def test_broken_bundles_are_refused(hashing_encoder: Any, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no manifest.json"):
        AnsweringEngine.load(tmp_path)
    bundle = toy_engine(hashing_encoder).save(tmp_path / "b")
    shutil.rmtree(bundle / "members" / "char_ngram")
    with pytest.raises(BundleError, match="incomplete bundle"):
        AnsweringEngine.load(bundle)
    (bundle / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="unreadable manifest"):
        AnsweringEngine.load(bundle)
    with pytest.raises(BundleError, match="no ONNX export"):
        good = toy_engine(hashing_encoder).save(tmp_path / "c")
        AnsweringEngine.load(good, runtime="onnx")


def test_fit_rejects_bad_input(hashing_encoder: Any) -> None:
    engine = AnsweringEngine(encoders={"minilm": hashing_encoder})
    with pytest.raises(ValueError, match="at least two intents"):
        engine.fit(["a", "b"], ["x", "x"])
    with pytest.raises(ValueError, match="differ in length"):
        engine.fit(["a"], ["x", "y"])
    with pytest.raises(RuntimeError, match="not fitted"):
        engine.predict("hello")


def test_intents_with_a_single_example_still_train(hashing_encoder: Any) -> None:
    texts, labels = toy_rows({"rare_intent": ["how do I order a gold card"]})
    engine = AnsweringEngine(EngineConfig(cv_folds=5), encoders={"minilm": hashing_encoder}).fit(
        texts, labels
    )
    assert "rare_intent" in engine.labels
    assert engine.predict("order a gold card").ranking[0].intent == "rare_intent"


def test_a_pretrained_member_is_never_scored_out_of_fold(hashing_encoder: Any, tmp_path: Path) -> None:
    texts, labels = toy_rows()
    names = sorted(set(labels))
    np.savez(
        tmp_path / "head.npz", weight=np.zeros((len(names), 256)), bias=np.zeros(len(names)), labels=names
    )
    members = [
        {"kind": "logistic_head", "name": "logistic_head", "encoder": "minilm"},
        {
            "kind": "tuned_head",
            "name": "tuned_head",
            "encoder": "minilm",
            "weights": str(tmp_path / "head.npz"),
        },
    ]
    engine = AnsweringEngine(EngineConfig(cv_folds=3, members=members), encoders={"minilm": hashing_encoder})
    with pytest.raises(ValueError, match="cannot be scored out of fold"):
        engine.fit(texts, labels)
    # with a held-out calibration set it fits, and the head's intents line up with the engine's
    engine.fit(texts[::2], labels[::2], calibration_texts=texts[1::2], calibration_labels=labels[1::2])
    assert set(engine.members) == {"logistic_head", "tuned_head"}


def test_operators_can_ask_for_another_precision_without_refitting(
    hashing_encoder: Any, tmp_path: Path
) -> None:
    from bot.calibration import PRECISION_OPTIONS, precision_key

    engine = toy_engine(hashing_encoder, target_precision=0.9)
    assert set(engine.gate_options) == {precision_key(p) for p in PRECISION_OPTIONS}
    built = engine.gate
    assert engine.gate_options["0.90"]["threshold"] == built.threshold  # the built gate is one of them
    # Fitted on the same held-out rows: asking for more precision never answers more of them.
    coverage = [engine.gate_options[precision_key(p)]["fitted"]["coverage"] for p in PRECISION_OPTIONS]
    assert coverage == sorted(coverage, reverse=True) and coverage[0] > coverage[-1]
    queries = [t for rows in TOY.values() for t in rows] + ["card pin", "exchange my card", "hmm"]

    def answered() -> int:
        return sum(p.status == ANSWERED for p in engine.predict_batch(queries))

    at_built = answered()
    assert engine.use_target_precision(0.8) and engine.gate.target_precision == 0.8
    lenient = answered()
    assert engine.use_target_precision(0.99)
    strict = answered()
    assert lenient >= at_built >= strict and lenient > strict
    assert not engine.use_target_precision(0.93)  # not offered: nothing changes
    assert engine.gate.target_precision == 0.99
    assert engine.use_target_precision(None) and engine.gate is built

    bundle = engine.save(tmp_path / "bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["gate"]["target_precision"] == 0.9 and set(manifest["gate_options"]) == set(
        engine.gate_options
    )
    engine.use_target_precision(0.99)
    engine.save(tmp_path / "again")  # saving while an operator's choice is in force keeps the built gate
    assert (
        json.loads((tmp_path / "again" / "manifest.json").read_text())["gate"]["threshold"] == built.threshold
    )
    loaded = AnsweringEngine.load(bundle, runtime="torch")
    loaded.encoders["minilm"] = hashing_encoder
    assert (
        loaded.use_target_precision(0.8) and loaded.gate.threshold == engine.gate_options["0.80"]["threshold"]
    )
    legacy = json.loads((bundle / "manifest.json").read_text())
    del legacy["gate_options"]  # a bundle built before options existed
    (bundle / "manifest.json").write_text(json.dumps(legacy))
    old = AnsweringEngine.load(bundle, runtime="torch")
    assert not old.use_target_precision(0.8) and old.gate.target_precision == 0.9


def test_held_out_rows_say_what_a_model_that_never_saw_a_question_made_of_it(
    hashing_encoder: Any, tmp_path: Path
) -> None:
    engine = toy_engine(hashing_encoder)
    texts, labels = toy_rows()
    rows = engine.held_out
    assert rows is not None and len(rows) == len(texts) == engine.manifest["training"]["held_out_rows"]
    assert rows.labels == labels and rows.top.shape == (len(texts), min(5, len(engine.labels)))
    # Each row's probabilities are the combiner's out of fold, best first.
    assert np.all(np.diff(rows.probabilities, axis=1) <= 1e-12)
    held = [engine.held_out_prediction(text) for text in texts]
    seen = engine.predict_batch(texts)
    assert all(p is not None for p in held)
    # Trained on every row, the model is surer of them than the members that had not seen them were.
    # (the toy intents are easy, so both are near 1: compare the doubt, 1 - confidence).
    assert np.mean([1 - p.confidence for p in held]) > 100 * np.mean([1 - p.confidence for p in seen])
    first = held[0]
    assert first.text == texts[0] and first.model_version == engine.version
    # Of the members' scores, each member's own best intent: enough to tell whether they disagree.
    assert set(first.member_scores) == set(engine.members) == set(rows.members)
    assert all(len(best) == 1 and best[0]["intent"] in engine.labels for best in first.member_scores.values())
    tops = [first.member_scores[name][0]["intent"] for name in rows.members]
    assert tops == [engine.labels[j] for j in rows.member_top[0]]
    assert first.confidence == pytest.approx(float(rows.confidence[0]))
    assert [c.intent for c in first.ranking] == [engine.labels[i] for i in rows.top[0]]
    assert first.ranking[0].probability == pytest.approx(float(rows.probabilities[0, 0]))
    # Decided like any prediction: answered ones carry the answer, and today's gate decides.
    assert {p.status for p in held} <= {ANSWERED, CLARIFY, HANDOFF}
    for p in held:
        if p.status == ANSWERED:
            assert p.answer == engine.knowledge[p.intent].answer
    assert engine.held_out_prediction("  where   is my card ") is not None  # spacing does not matter
    assert engine.held_out_prediction("a question it never had") is None
    # Kept with the bundle; a bundle without the files loads with none.
    bundle = engine.save(tmp_path / "bundle")
    loaded = AnsweringEngine.load(bundle, runtime="torch")
    again = loaded.held_out_prediction(texts[3])
    assert again is not None and again.to_dict() | {"latency_ms": 0} == held[3].to_dict() | {"latency_ms": 0}
    # A bundle whose held-out rows predate the members' columns still loads, without them.
    arrays = dict(np.load(bundle / "held_out.npz"))
    np.savez_compressed(
        bundle / "held_out.npz", **{k: v for k, v in arrays.items() if not k.startswith("member")}
    )
    named = json.loads((bundle / "held_out.json").read_text())
    (bundle / "held_out.json").write_text(json.dumps({"texts": named["texts"], "labels": named["labels"]}))
    older = AnsweringEngine.load(bundle, runtime="torch").held_out_prediction(texts[3])
    assert older is not None and older.member_scores == {} and older.confidence == again.confidence
    # Read on first use, not at load: a damaged file fails then, naming the bundle.
    (bundle / "held_out.json").write_text("{")
    damaged = AnsweringEngine.load(bundle, runtime="torch")
    with pytest.raises(BundleError, match="unreadable held-out rows"):
        damaged.held_out_prediction(texts[3])
    (bundle / "held_out.npz").unlink()
    assert AnsweringEngine.load(bundle, runtime="torch").held_out_prediction(texts[3]) is None
    # With a calibration set, the held-out rows are that set's.
    calibrated = AnsweringEngine(EngineConfig(), encoders={"minilm": hashing_encoder})
    calibrated.fit(texts[::2], labels[::2], calibration_texts=texts[1::2], calibration_labels=labels[1::2])
    assert calibrated.held_out is not None and calibrated.held_out.texts == texts[1::2]
    assert calibrated.held_out_prediction(texts[0]) is None


def test_example_typicality_is_the_out_of_fold_probability_of_its_own_intent(hashing_encoder: Any) -> None:
    engine = toy_engine(hashing_encoder)
    texts, labels = toy_rows()
    rows = engine.held_out
    assert rows is not None
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        top = engine.labels[int(rows.top[i, 0])]
        expected = float(rows.probabilities[i, 0]) if top == label else 0.0
        assert engine.example_typicality(label, text) == pytest.approx(expected)
        # Read as another intent's example, the same row says 0 unless that intent was its top.
        other = next(name for name in engine.labels if name != label and name != top)
        assert engine.example_typicality(other, text) == 0.0
    assert 0.5 < engine.example_typicality(labels[0], f"  {texts[0]} ") <= 1.0  # spacing does not matter
    assert engine.example_typicality(labels[0], "an example added after the build") is None


def test_the_reply_is_the_answer_or_the_deployments_line(hashing_encoder: Any) -> None:
    engine = toy_engine(hashing_encoder)
    lines = {"clarify_message": "Which one?", "handoff_message": "A person will help."}
    answered = engine.predict("where is my card")
    assert answered.status == ANSWERED and answered.reply(**lines) == "Cards arrive in 5 days."
    answered.status = CLARIFY
    assert answered.reply(**lines) == "Which one?"
    answered.status = HANDOFF
    assert answered.reply(**lines) == "A person will help."


class NoiseEncoder:
    """An encoder that knows nothing: a random unit vector per text (the same one each time it is asked)."""

    def __init__(self, name: str, dimension: int = 32) -> None:
        self.name, self.dimension = name, dimension

    def encode(self, texts: Any, *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        seeds = [
            int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little") for text in texts
        ]
        rows = [np.random.default_rng(seed).normal(size=self.dimension) for seed in seeds]
        matrix = np.array(rows, dtype=np.float32).reshape(len(rows), self.dimension)
        return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)

    def get_config(self) -> dict[str, Any]:
        return {"type": "noise", "name": self.name}


def test_add_encoder_gives_the_new_encoder_its_own_members() -> None:
    base = EngineConfig()
    config = add_encoder(base, "all-mpnet-base-v2")
    assert base.extra_encoders == [] and len(base.members) == 3  # the original is left as it was
    assert config.extra_encoders == [
        {
            "type": "sentence-transformers",
            "name": "all_mpnet_base_v2",
            "source": "all-mpnet-base-v2",
            "max_length": 64,
        }
    ]
    assert [e["name"] for e in config.encoder_configs()] == ["minilm", "all_mpnet_base_v2"]
    added = {m["name"]: m for m in config.members[3:]}
    assert added == {
        "logistic_head_all_mpnet_base_v2": {
            "kind": "logistic_head",
            "name": "logistic_head_all_mpnet_base_v2",
            "encoder": "all_mpnet_base_v2",
            "C": 10.0,
        },
        "nearest_neighbour_all_mpnet_base_v2": {
            "kind": "nearest_neighbour",
            "name": "nearest_neighbour_all_mpnet_base_v2",
            "encoder": "all_mpnet_base_v2",
            "k": 1,
        },
    }
    third = add_encoder(config, "/models/My Encoder.v2/", name="mine", max_length=128)
    assert third.extra_encoders[-1]["name"] == "mine" and third.extra_encoders[-1]["max_length"] == 128
    assert len(third.members) == 7
    assert encoder_name("/models/My Encoder.v2/") == "my_encoder_v2"
    # Another folder of the same name is numbered; a name given that is taken is refused.
    fourth = add_encoder(third, "/elsewhere/all-mpnet-base-v2")
    assert fourth.extra_encoders[-1] == {
        "type": "sentence-transformers",
        "name": "all_mpnet_base_v2_2",
        "source": "/elsewhere/all-mpnet-base-v2",
        "max_length": 64,
    }
    assert add_encoder(fourth, "/third/all-mpnet-base-v2").extra_encoders[-1]["name"] == "all_mpnet_base_v2_3"
    assert {m["name"] for m in fourth.members} - {m["name"] for m in third.members} == {
        "logistic_head_all_mpnet_base_v2_2",
        "nearest_neighbour_all_mpnet_base_v2_2",
    }
    with pytest.raises(ValueError, match="already has an encoder named 'all_mpnet_base_v2'"):
        add_encoder(config, "/elsewhere/other", name="all_mpnet_base_v2")
    with pytest.raises(ValueError, match="cannot name an encoder"):
        encoder_name("///")


def test_an_ensemble_across_encoders_learns_which_encoder_to_trust(tmp_path: Path) -> None:
    """The engine's own encoder knows nothing here and the extra one reads words: the combiner, fitted on
    held-out rows, leans on the extra encoder's members, and the ensemble answers as that encoder does.
    (No character n-gram member here: it alone would answer these toy questions.)"""
    texts, labels = toy_rows()
    noise, words = NoiseEncoder("minilm"), HashingEncoder(name="words")
    base = EngineConfig(cv_folds=3, members=[m for m in EngineConfig().members if m.get("encoder")])
    alone = AnsweringEngine(base, encoders={"minilm": noise}).fit(texts, labels)
    config = add_encoder(base, "/models/words", name="words")
    engine = AnsweringEngine(config, encoders={"minilm": noise, "words": words}).fit(texts, labels)
    assert set(engine.members) == {
        "logistic_head",
        "nearest_neighbour",
        "logistic_head_words",
        "nearest_neighbour_words",
    }
    weights = dict(zip(engine.combiner.members, engine.combiner.weights, strict=True))
    assert weights["nearest_neighbour_words"] > 2 * weights["nearest_neighbour"]
    assert weights["logistic_head_words"] > weights["logistic_head"]
    queries = {"where is my card": "card_arrival", "reset my pin": "change_pin", "euro rate": "exchange_rate"}
    ensemble_right = [p.top_intent == queries[p.text] for p in engine.predict_batch(list(queries))]
    assert all(ensemble_right)
    held_out = engine.manifest["calibration_metrics"]["accuracy"]
    assert held_out >= 0.7 and alone.manifest["calibration_metrics"]["accuracy"] < 0.4
    prediction = engine.predict("where is my card")
    assert "nearest_neighbour_words" in prediction.member_scores
    assert engine.all_encoders() == [noise, words]

    bundle = engine.save(tmp_path / "bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert list(manifest["encoders"]) == ["minilm", "words"]
    assert manifest["config"]["extra_encoders"][0]["source"] == "/models/words"  # not a folder: not copied
    loaded = AnsweringEngine.load(bundle, runtime="torch")
    loaded.encoders.update({"minilm": noise, "words": words})
    for a, b in zip(engine.predict_batch(list(queries)), loaded.predict_batch(list(queries)), strict=True):
        assert (a.status, a.intent) == (b.status, b.intent) and a.confidence == pytest.approx(b.confidence)
    with pytest.raises(BundleError, match="no ONNX export in .*onnx-words"):
        (bundle / "onnx").mkdir()
        (bundle / "onnx" / "model_int8.onnx").write_bytes(b"")
        AnsweringEngine.load(bundle, runtime="auto")
    with pytest.raises(KeyError, match="no encoder named 'missing'"):
        engine._encoder("missing")


def test_a_metadata_filter_answers_only_from_matching_intents(hashing_encoder: Any, tmp_path: Path) -> None:
    """Azure's metadata filter: "product: fx" on a page about currency answers from fx intents only, and a
    card question asked there is not forced onto one of them (the other intents' share is not handed over)."""
    texts, labels = toy_rows()
    products = {
        "card_arrival": "cards",
        "change_pin": "cards",
        "exchange_rate": "fx",
        "terminate_account": "acc",
    }
    knowledge = {
        name: IntentInfo(answer=f"About {name}.", metadata={"product": p}) for name, p in products.items()
    }
    engine = AnsweringEngine(EngineConfig(cv_folds=3), encoders={"minilm": hashing_encoder})
    engine.fit(texts, labels, knowledge=knowledge)
    bare = {name: IntentInfo(answer=info.answer) for name, info in knowledge.items()}
    plain = AnsweringEngine(EngineConfig(cv_folds=3), encoders={"minilm": hashing_encoder})
    plain.fit(texts, labels, knowledge=bare)
    # Metadata is content, not training data: it leaves the model's identity alone.
    assert engine.manifest["data_hash"] == plain.manifest["data_hash"]
    question = "when will my card arrive"
    unfiltered = engine.predict(question)
    assert (unfiltered.status, unfiltered.intent) == (ANSWERED, "card_arrival")
    cards = engine.predict(question, only=MetadataFilter.of([("Product", " CARDS ")]))  # any case and spacing
    assert (cards.status, cards.intent) == (ANSWERED, "card_arrival")
    assert cards.confidence == pytest.approx(unfiltered.confidence)
    assert {c.intent for c in cards.ranking} == {"card_arrival", "change_pin"}
    fx = engine.predict(question, only=MetadataFilter.of([("product", "fx")]))
    assert fx.status == HANDOFF and fx.intent is None
    assert [c.intent for c in fx.ranking] == ["exchange_rate"]
    assert fx.unfiltered == unfiltered.ranking and cards.unfiltered == unfiltered.ranking  # for reviewers
    assert unfiltered.unfiltered == [] and "unfiltered" not in unfiltered.to_dict()
    assert (fx.kept_from, cards.kept_from, unfiltered.kept_from) == ("card_arrival", None, None)
    assert (
        fx.unfiltered_confidence == pytest.approx(unfiltered.confidence)
        and unfiltered.unfiltered_confidence is None
    )
    assert fx.to_dict()["kept_from"] == "card_arrival"
    assert fx.confidence < engine.gate.threshold
    assert fx.ranking[0].probability == pytest.approx(
        next(c.probability for c in unfiltered.ranking if c.intent == "exchange_rate")
    )
    either = MetadataFilter.of([("product", "fx"), ("product", "cards")], any_of=True)
    assert engine.predict(question, only=either).intent == "card_arrival"
    both = MetadataFilter.of([("product", "fx"), ("product", "cards")])  # AND: no intent has both
    nothing = engine.predict(question, only=both)
    assert (nothing.status, nothing.ranking, nothing.top_intent) == (HANDOFF, [], "oos")
    assert (
        engine.predict(question, only=MetadataFilter.of([])).intent == "card_arrival"
    )  # no pairs: no filter
    # Metadata edited in the knowledge base reaches the served model without retraining; a book without
    # metadata leaves it as it is.
    book = {name: (name, f"About {name}.", ()) for name in products}
    assert engine.update_answers(
        book, {"exchange_rate": {"product": "fx"}, "card_arrival": {"product": "fx"}}
    )
    moved = engine.predict(question, only=MetadataFilter.of([("product", "fx")]))
    assert (moved.status, moved.intent) == (ANSWERED, "card_arrival")
    assert engine.knowledge["change_pin"].metadata == {}
    engine.update_answers(book)
    assert engine.knowledge["card_arrival"].metadata == {"product": "fx"}
    loaded = AnsweringEngine.load(engine.save(tmp_path / "bundle"), runtime="torch")
    loaded.encoders["minilm"] = hashing_encoder
    assert loaded.knowledge == engine.knowledge
    assert loaded.predict(question, only=MetadataFilter.of([("product", "fx")])).intent == "card_arrival"
