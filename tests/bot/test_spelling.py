"""Misspelt words read as the knowledge base's own (bot.spelling), and the engine reading them so."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.engine import ANSWERED, AnsweringEngine, EngineConfig, IntentInfo
from bot.spelling import SPELLING_FILE, SpellingCorrector, edit_distance, tokenizer_words

KB = [
    "my card has not arrived yet",
    "my card hasn't arrived",
    "how do I change my PIN",
    "change my pin number",
    "can I use Apple Pay",
    "is the card able to pay abroad",
    "card able card able",  # "able" is used more than "apple"
    "my card was blocked",
    "where is my money transfer",
    "how do I verify my identity",
    "identity verification",
    "request a refund",
    "my id",
    "cut it",
]
DICTIONARY = {"the", "dose", "brexit", "is", "my", "when"}


@pytest.fixture(scope="module")
def corrector() -> SpellingCorrector:
    return SpellingCorrector.fit(KB, DICTIONARY)


@pytest.mark.parametrize(
    ("typed", "read"),
    [
        ("my crad hasnt arived yet", "my card hasn't arrived yet"),  # swap, apostrophe, dropped letter
        ("how do i chnage my pin", "how do i change my pin"),
        ("wher is my mony transfer", "where is my money transfer"),
        ("can i use aple pay", "can i use apple pay"),  # not "able": p and b are not neighbouring keys
        ("how to verfy my idenity", "how to verify my identity"),
        ("idnetity verificaton", "identity verification"),
        ("my cardd was blockde", "my card was blocked"),
        ("teh pni", "the pin"),  # three letters: a swap of neighbouring letters
        ("my crd", "my card"),  # or a letter dropped
        ("How do I Chnage my PIN?", "How do I change my PIN?"),  # the rest of the text as typed
        ("my ’card’ hasn’t arrived", "my ’card’ hasn’t arrived"),  # curly apostrophes are known words too
    ],
)
def test_misspelt_words_are_read_as_the_knowledge_bases_own(
    corrector: SpellingCorrector, typed: str, read: str
) -> None:
    assert corrector.correct(typed) == read


@pytest.mark.parametrize(
    "typed",
    [
        "how long dose a transfer take",  # a real word the tokenizer knows, if not the one meant
        "my BIC and IBAN",  # three letters, and no swap of two of them is a knowledge-base word
        "idk cuz pun",  # three letters one letter from "id", "cut" (were they known) or "pin": slang
        "Brexit fees",  # a known word
        "order A1234 of 12/03 for 25.99",  # digits are never touched
        "I bank with Monzo",  # no knowledge-base word within reach
        "my card was unblocked",  # "blocked" with letters added in front is another word, not a typo
        "my card was reblocked",
        "it is",  # short words
    ],
)
def test_known_short_and_faraway_words_are_left(corrector: SpellingCorrector, typed: str) -> None:
    assert corrector.correct(typed) == typed


def test_one_edit_for_short_words_two_for_long_ones() -> None:
    corrector = SpellingCorrector.fit(["payment", "verification", "card"], ())
    assert corrector.correct("pymnet") == "pymnet"  # 7 letters, two edits away: too far
    assert corrector.correct("verfcation") == "verification"  # 10 letters, two letters dropped
    assert corrector.correct("verfcaton") == "verfcaton"  # three edits
    assert corrector.correct("cxrd") == "card"
    assert corrector.correct("cxrx") == "cxrx"


def test_the_most_used_word_wins_a_tie() -> None:
    corrector = SpellingCorrector.fit(["cart", "card", "card"], ())
    assert corrector.correction("carq") == "card"  # q is beside neither d nor t
    assert SpellingCorrector.fit(["cart", "cart", "card"], ()).correction("carq") == "cart"
    assert SpellingCorrector.fit(["cart", "cart", "card"], ()).correction("carx") == "card"  # x is by d


def test_edit_distance_counts_a_swap_once_and_a_far_key_a_little_more() -> None:
    assert edit_distance("crad", "card") == 1
    assert edit_distance("hasnt", "hasn't") == 1
    assert edit_distance("aple", "apple") == 1
    assert edit_distance("aple", "able") == pytest.approx(1.01)  # p for b: keys apart
    assert edit_distance("cwrd", "card") == 1  # w for a: touching keys
    assert edit_distance("cprd", "card") == pytest.approx(1.01)
    assert edit_distance("kitten", "sitting") == pytest.approx(3.02)


def test_round_trips_through_a_dict(corrector: SpellingCorrector) -> None:
    again = SpellingCorrector.from_dict(json.loads(json.dumps(corrector.to_dict())))
    assert again == corrector
    assert again.correct("my crad hasnt arived") == "my card hasn't arrived"


def _tokenizer(path: Path, model: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"model": model}))
    return path


def test_whole_words_of_each_kind_of_tokenizer(tmp_path: Path) -> None:
    wordpiece = {"type": "WordPiece", "vocab": {"[CLS]": 0, "card": 1, "##s": 2, "Pin": 3, "a": 4, "12": 5}}
    bpe = {"type": "BPE", "vocab": {"Ġcard": 0, "ard": 1, "Ġpin": 2, "<s>": 3}}
    unigram = {"type": "Unigram", "vocab": [["▁card", -1.0], ["s", -2.0], ["▁pin", -3.0]]}
    assert tokenizer_words(_tokenizer(tmp_path / "w.json", wordpiece)) == {"card", "pin"}
    assert tokenizer_words(_tokenizer(tmp_path / "b.json", bpe)) == {"card", "pin"}
    assert tokenizer_words(_tokenizer(tmp_path / "u.json", unigram)) == {"card", "pin"}
    (tmp_path / "bad.json").write_text("{not json")
    assert tokenizer_words(tmp_path / "bad.json") == set()
    assert tokenizer_words(tmp_path / "missing.json") == set()


def test_the_minilm_tokenizer_knows_english_but_not_typos(minilm_encoder: Any) -> None:
    from bot.encoders import tokenizer_file

    found = tokenizer_file(minilm_encoder)
    assert found is not None
    words = tokenizer_words(found)
    assert 20_000 < len(words) < 30_000
    assert {"mortgage", "dose", "declined", "transferred"} <= words
    assert not {"crad", "chnage", "arived", "declind"} & words


# ------------------------------------------------------------------------------------------- the engine


def _engine(hashing_encoder: Any, **config: Any) -> AnsweringEngine:
    data = {
        "card_arrival": ["my card has not arrived", "when will my card arrive", "card still not here"],
        "change_pin": ["how do I change my pin", "change pin", "new pin please"],
        "top_up": ["how do I top up", "add money to my account", "top up my balance"],
    }
    texts = [t for rows in data.values() for t in rows]
    labels = [label for label, rows in data.items() for _ in rows]
    engine = AnsweringEngine(
        EngineConfig(cv_folds=3, target_precision=0.8, **config), encoders={"minilm": hashing_encoder}
    )
    return engine.fit(texts, labels, knowledge={n: IntentInfo(answer=f"About {n}.") for n in data})


def test_the_engine_reads_misspelt_words_as_its_examples_and_keeps_the_text_as_typed(
    hashing_encoder: Any, tmp_path: Path
) -> None:
    engine = _engine(hashing_encoder)
    typed = "how do I chnage my pni"
    prediction = engine.predict(typed)
    assert prediction.text == typed
    assert prediction.read_as == "how do I change my pin"
    assert prediction.top_intent == "change_pin"
    assert prediction.to_dict()["read_as"] == "how do I change my pin"
    spelt_right = engine.predict("how do I change my pin")
    assert spelt_right.read_as is None and "read_as" not in spelt_right.to_dict()
    # Read as typed, the hashing encoder knows neither word: the corrector is what finds the intent.
    engine.spelling, corrector = None, engine.spelling
    assert engine.predict(typed).read_as is None
    assert engine.predict(typed).confidence < prediction.confidence
    engine.spelling = corrector
    # The bundle keeps it; a bundle without it (built before) reads as typed.
    bundle = engine.save(tmp_path / "bundle")
    loaded = AnsweringEngine.load(bundle)
    loaded.encoders = {"minilm": hashing_encoder}
    assert loaded.spelling == engine.spelling
    assert loaded.predict(typed).read_as == "how do I change my pin"
    (bundle / SPELLING_FILE).unlink()
    older = AnsweringEngine.load(bundle)
    older.encoders = {"minilm": hashing_encoder}
    assert older.spelling is None and older.predict(typed).read_as is None


def test_a_follow_up_and_the_question_before_it_are_both_read_corrected(hashing_encoder: Any) -> None:
    engine = _engine(hashing_encoder)
    alone, read = engine.predict_follow_up("and chnage the pni", "my crad has not arived", weight=0.6)
    assert alone.text == read.text == "and chnage the pni"
    assert alone.read_as == read.read_as == "and change the pin"


def test_spelling_correction_off_builds_no_corrector(hashing_encoder: Any) -> None:
    engine = _engine(hashing_encoder, spelling_correction=False)
    assert engine.spelling is None
    assert engine.predict("how do I chnage my pni").read_as is None


def test_a_batch_keeps_each_text_as_typed(hashing_encoder: Any) -> None:
    engine = _engine(hashing_encoder)
    texts = ["top up my balanse", "top up my balance", "my crad has not arived"]
    predictions = engine.predict_batch(texts)
    assert [p.text for p in predictions] == texts
    assert [p.read_as for p in predictions] == [
        "top up my balance",
        None,
        "my card has not arrived",
    ]
    assert predictions[0].status == ANSWERED and predictions[0].intent == "top_up"


def test_a_known_word_with_an_english_prefix_or_ending_is_a_word() -> None:
    """The tokenizer has "retrieve" and "install" whole, not "retrieving" or "reinstall": left, where they
    would otherwise be read as a knowledge-base word two edits away."""
    kb = ["receiving money", "uninstall the app", "refund", "stop the card", "remedied", "blocked"]
    corrector = SpellingCorrector.fit(kb, {"retrieve", "install", "stop", "remedy", "money", "app", "card"})
    for word in ("retrieving", "reinstall", "refunded", "refunds", "stopped", "remedies", "unblocked"):
        assert corrector.known(word) and corrector.correction(word) is None, word
    assert corrector.correction("recieving") == "receiving"  # a typo is still one
    assert not corrector.known("declind")  # "declin" + "d" is not a word


def test_the_first_letter_is_kept_unless_swapped_with_the_second() -> None:
    corrector = SpellingCorrector.fit(["end of month", "my card", "bay area"], ())
    assert corrector.correction("pend") is None  # not "end": a letter added in front
    assert corrector.correction("ebay") is None
    assert corrector.correction("acrd") == "card"
    assert corrector.correction("cadr") == "card"


def test_embed_reads_as_predict_does(hashing_encoder: Any) -> None:
    """Review items are clustered by vectors from two places, the prediction (a chat turn) and ``embed`` (a
    thumbs-down, an item without a vector): both of the corrected text, or look-alikes split by chance."""
    engine = _engine(hashing_encoder)
    typed = "how do I chnage my pni"
    vector = engine.embed([typed])[0]
    assert np.allclose(vector, engine.predict(typed).embedding)
    assert np.allclose(vector, hashing_encoder.encode(["how do I change my pin"])[0])
    assert not np.allclose(vector, hashing_encoder.encode([typed])[0])
