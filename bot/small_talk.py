"""Small talk: "hi", "thanks", "bye", "ok", "are you a bot?", "what can you do?", "that's wrong", "what?".

The most common first and last messages of a chat are not questions. Sent to the intent model they are
guesses at best ("bye" read as closing the account) and hand-offs at worst ("hi": "I'm not sure I understood,
I'm passing you to a person"). A message is small talk only when *every* part of it is (split at punctuation):
"hi, my card has not arrived" is a question, and the model reads it without the greeting
(``without_small_talk``). The kinds and their order (a message of several kinds gets the reply of the one
that ends the exchange most: "thanks, bye" is a goodbye) are below; the replies are the deployment's
settings. Not one BANKING77 question, train or test, is small talk (``tests/bot/test_message_rules.py``).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from bot.engine import SMALL_TALK, Prediction
from bot.spelling import SpellingCorrector

GREETING, THANKS, GOODBYE, ACKNOWLEDGEMENT, ABOUT_BOT, HELP, NOT_HELPFUL, UNCLEAR = (
    "greeting",
    "thanks",
    "goodbye",
    "acknowledgement",
    "about_bot",
    "help",
    "not_helpful",  # "that's wrong", "not what I asked": the customer's thumbs-down, typed
    "unclear",  # "I don't understand", "what?", "can you explain that again?"
)
# Replies chosen by what the bot said before, not by the message alone (``acknowledgement_reply``): "yes" to
# "Is there anything else I can help with?" is a question on its way, not one more acknowledgement.
GO_AHEAD = "go_ahead"
# What the latest reply was, for an acknowledgement: an answer (or anything not small talk); the bot's
# "anything else?" or goodbye (the replies to a thanks, a nod, a goodbye); or nothing yet to acknowledge (no
# reply before, or a greeting, help or unclear reply, which ask for a question).
AFTER_ANSWER, AFTER_ANYTHING_ELSE, AFTER_NOTHING = "answer", "anything_else", "nothing"
# When a message holds several kinds, the reply answers the one that ends the exchange most; a complaint
# about the last answer comes first ("no, that's wrong" is no goodbye).
PRIORITY = (NOT_HELPFUL, UNCLEAR, GO_AHEAD, GOODBYE, THANKS, ABOUT_BOT, HELP, GREETING, ACKNOWLEDGEMENT)
_IT = r"(?:that'?s|that\s+is|that\s+was|this\s+is|this\s+was|it'?s|it\s+is|it\s+was)"
_DID_NOT = r"(?:didn'?t|did\s+not|doesn'?t|does\s+not|don'?t|do\s+not)"

_WHO = r"(?:\s+(?:there|team|all|everyone|folks|guys|friend|bot|helploop))?"


def _whole(bodies: dict[str, str]) -> dict[str, re.Pattern[str]]:
    """Each kind's phrases, compiled to match a whole phrase, whatever its case."""
    return {kind: re.compile(rf"^(?:{body})$", re.IGNORECASE) for kind, body in bodies.items()}


PATTERNS = _whole(
    {
        GREETING: (
            rf"(?:hi+|hel+o+|hey+|hiya|howdy|hal+o+|yo|greetings|(?:good|gud)\s+(?:morning|afternoon|evening|day)"
            rf"|morning){_WHO}"
            r"|how\s+are\s+you(?:\s+doing)?(?:\s+today)?|how'?s\s+it\s+going"
            r"|are\s+you\s+(?:still\s+)?there|(?:is\s+)?any(?:one|body)\s+(?:there|here|around)"
        ),
        THANKS: (
            r"(?:many\s+)?(?:thanks|thank\s*(?:you|u|ya|yu)|thanx|thnx|thx|tnx|thks|tysm|ty|cheers|ta)"
            r"(?:\s+(?:so|very)\s+much|\s+a\s*lot|\s+a\s+bunch|\s+again|\s+for\s+(?:the|your)\s+help"
            r"|\s+for\s+helping(?:\s+me)?)?(?:\s+(?:mate|man|buddy|sir|madam|guys|all))?"
            r"|(?:that|this|it)\s+(?:helped|helps|(?:was|is)(?:\s+(?:really|very|so|super))?\s+(?:helpful|great|useful)"
            r"|worked)"
            r"|(?:very\s+)?(?:helpful|useful)|much\s+appreciated|appreciate\s+it"
            # the problem solved: "that fixed it", "all sorted", "it works now", "that's what I needed"
            r"|(?:that|this|it|you)\s+(?:(?:have|'ve)\s+)?(?:fixed|solved|sorted|resolved|answered)"
            r"(?:\s+(?:it|that|this|the\s+problem|the\s+issue|my\s+(?:problem|question|issue)))?"
            r"|(?:that|this)\s+did\s+(?:it|the\s+trick)"
            rf"|(?:{_IT}|all|problem|issue)\s+(?:now\s+)?(?:sorted|solved|fixed|resolved)(?:\s+(?:now|then))?"
            r"|(?:it'?s|it\s+is|it)\s+(?:working|works)(?:\s+(?:now|again))*"
            rf"|{_IT}\s+(?:exactly\s+)?what\s+i\s+(?:needed|wanted|was\s+looking\s+for)|found\s+it|i\s+found\s+it"
            r"|(?:you(?:'?ve|\s+have)\s+been|you\s+were)\s+(?:(?:really|very|so|super|a)\s+)?(?:helpful|great|a\s+great\s+help"
            r"|(?:a\s+)?(?:big\s+)?help)"
        ),
        GOODBYE: (
            r"(?:good\s*)?bye+(?:\s*bye+)?(?:\s+for\s+now)?|see\s+(?:you|ya)(?:\s+later)?|cya|later"
            r"|that'?s\s+all(?:\s+for\s+now)?|that\s+is\s+all|nothing\s+else|no\s+thanks|no\s+thank\s+you"
            rf"|{_IT}\s+all\s+i\s+(?:needed|wanted|need|want)(?:\s+to\s+know)?"
            r"|i'?m\s+done|all\s+good|have\s+a\s+(?:good|nice|great)\s+(?:day|one|evening)|no|nope|nah"
            r"|not\s+(?:right\s+)?now|not\s+at\s+the\s+moment|not\s+today"
        ),
        ACKNOWLEDGEMENT: (
            r"ok+(?:ay+|ey)?|okie|oki|k|kk|alright|all\s+right|great|cool|perfect|awesome|nice|got\s+it|understood"
            r"|sure|fine|never\s*mind|nvm|forget\s+it|no\s+worries|no\s+problem|np|sorry|my\s+bad"
            r"|good|yes|yeah|yep|yup|sounds\s+good|makes\s+sense|i\s+see|noted|excellent|lovely|lol|ha(?:ha)+"
            r"|brilliant|fantastic|wonderful|amazing|superb|fab|spot\s+on|(?:great|good)\s+stuff|right(?:o|io)?"
            r"|(?:that'?s\s+)?good\s+to\s+know"
            r"|(?:oh|ah+|aha)\s+(?:ok+(?:ay)?|i\s+see|right|alright|got\s+it)|fair\s+enough|i\s+understand|will\s+do"
            r"|(?:all\s+)?done|(?:i'?ve|i\s+have)\s+done\s+(?:it|that)|i\s+did\s+(?:it|that)"
            # what the customer will do next: "I'll try that", "ok I'll wait then", "let me check"
            r"|(?:i'?ll|i\s+will|will|let\s+me|i'?m\s+going\s+to|i'?m\s+gonna)\s+(?:try|do|wait|check|look"
            r"|have\s+a\s+look|take\s+a\s+look|give\s+(?:it|that)\s+a\s+(?:go|try|shot))"
            r"(?:\s+(?:it|that|this|again|then|now|later|tomorrow|and\s+see|it\s+out|(?:in\s+)?(?:the|my)\s+app"
            r"|a\s+(?:bit|while|little)(?:\s+(?:longer|more))?|(?:a\s+)?few\s+(?:more\s+)?(?:days|hours|minutes)"
            r"|(?:some\s+)?more|longer))*"
        ),
        # another question on its way: "one more thing", "I have another question" (it went to the model)
        GO_AHEAD: (
            r"one\s+more\s+(?:thing|question|query|q)|(?:i\s+(?:have|got)\s+|i'?ve\s+got\s+)?(?:another|one\s+more"
            r"|a\s+(?:second|different|further))\s+(?:question|query|thing)(?:\s+(?:for\s+you|to\s+ask))?"
        ),
        ABOUT_BOT: (
            r"(?:are\s+you|am\s+i\s+(?:talking|chatting|speaking)\s+(?:to|with))\s+(?:a\s+|an\s+)?(?:real\s+)?"
            r"(?:bot|robot|human|person|ai|machine|computer|chatbot|real)"
            r"|(?:is\s+this|is\s+that)\s+(?:a\s+)?(?:bot|robot|human|real\s+person|chatbot|automated)"
            r"|who\s+are\s+you|what\s+are\s+you|what(?:'?s|\s+is)\s+(?:your|ur)\s+name|(?:your|ur)\s+name"
        ),
        HELP: (
            r"help|help\s+me|what\s+can\s+you\s+do|what\s+can\s+(?:i|you)\s+ask(?:\s+you)?|how\s+can\s+you\s+help"
            r"(?:\s+me)?|what\s+do\s+you\s+know|what\s+can\s+you\s+help\s+(?:me\s+)?with|menu|options|start"
            r"|i\s+(?:have|got|'ve\s+got)\s+a\s+(?:quick\s+)?(?:question|problem|query|issue)|quick\s+question"
            r"|i\s+need\s+(?:some\s+)?help|(?:can|could)\s+(?:you|u)\s+(?:please\s+)?help(?:\s+me)?"
            r"|can\s+i\s+ask\s+(?:you\s+)?(?:a\s+question|something)"
        ),
        NOT_HELPFUL: (
            rf"(?:{_IT}\s+)?(?:wrong|incorrect|not\s+(?:right|correct|it|helpful|my\s+question)|useless|unhelpful"
            r"|no\s+help|the\s+wrong\s+answer|not\s+(?:what|the\s+answer)\s+i\s+(?:asked(?:\s+for)?|meant|wanted"
            r"|was\s+looking\s+for|need(?:ed)?))"
            r"|(?:wrong|bad)\s+answer|not\s+very\s+helpful"
            rf"|(?:that|this|it)\s+{_DID_NOT}\s+(?:help(?:\s+(?:me|at\s+all))?|answer\s+(?:my|the)\s+question|make\s+sense)"
            r"|that\s+(?:didn'?t|did\s+not)\s+work"
            rf"|you\s+{_DID_NOT}\s+(?:help|answer\s+my\s+question|understand(?:\s+me)?|get\s+it)"
            r"|(?:you'?re|you\s+are)\s+(?:useless|not\s+helpful|no\s+help|not\s+helping|wrong)"
            r"|(?:you\s+)?(?:stupid|dumb|useless)\s+(?:bot|robot|machine|thing)"
        ),
    }
)
# Small talk only as a whole message: around a question these words are part of it ("There is a pending
# payment, what does this mean?", "I tried using my card, but it doesn't work."), so they are not left out of
# what the model reads, and say nothing of the last answer there.
WHOLE_ONLY = _whole(
    {
        # The answer's advice, already followed: "I already tried that", "did that already". Not "it didn't
        # work" or "still not working": a problem reported after the answer is a follow-up question the model
        # reads with the question before it ("it didn't work" after "can I top up with my card?": top-up
        # failed; bench/data/follow_ups.csv), not a judgement of the answer.
        NOT_HELPFUL: (
            r"(?:i'?ve\s+|i\s+have\s+|i\s+)?tried\s+(?:that|it|this)(?:\s+(?:twice|again|(?:a\s+few|several|many)\s+times))?"
            r"(?:\s+already)?"
            r"|(?:i'?ve\s+|i\s+have\s+|i\s+)?already\s+(?:tried|done|did)\s+(?:that|this|it|those|all\s+(?:of\s+)?that)"
            r"|(?:i'?ve\s+|i\s+have\s+|i\s+)?(?:tried|done|did)\s+(?:that|this|it|all\s+(?:of\s+)?that)\s+already"
        ),
        UNCLEAR: (
            rf"i\s+(?:still\s+)?{_DID_NOT}\s+(?:understand|get)(?:\s+(?:it|that|this|you|the\s+answer|what\s+you\s+mean"
            r"|what\s+that\s+means))?|i'?m\s+(?:confused|lost|not\s+sure\s+i\s+understand)|what|huh|eh|pardon"
            r"|(?:i'?m\s+)?not\s+sure\s+what\s+you\s+mean"
            r"|come\s+again|what\s+do\s+you\s+mean|what\s+does\s+(?:that|this|it)\s+mean"
            rf"|(?:{_IT}\s+)?(?:confusing|unclear|not\s+clear)"
            r"|(?:can|could|would)\s+you\s+(?:please\s+)?(?:explain|repeat|rephrase|clarify|say)(?:\s+(?:that|this|it))?"
            r"(?:\s+(?:again|better|more\s+simply|in\s+plain\s+english|differently|another\s+way))?"
            r"|(?:please\s+)?(?:explain|repeat|rephrase)(?:\s+(?:that|this|it))?(?:\s+(?:again|please))?"
            r"|say\s+(?:that|it)\s+again"
        ),
    }
)
# Introducing oneself: "I'm John", "my name is Sarah" (a capital letter tells a name from "I'm stuck").
NAMED = re.compile(
    r"^(?:(?:I'?m|I\s+am|i'?m|i\s+am|[Tt]his\s+is)\s+[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?"
    r"|(?:[Mm]y|MY)\s+(?:name\s+is|name'?s|NAME\s+IS)\s+[^\W\d_]+(?:\s+[^\W\d_]+)?)$"
)
STRIPPABLE = list(PATTERNS.items())
EVERY_PATTERN = [*STRIPPABLE, *WHOLE_ONLY.items(), (GREETING, NAMED)]
# Words that join small-talk phrases without being one: "thanks but that didn't help", "ok and bye", "yes
# please".
CONNECTORS = frozenset(
    {"but", "and", "so", "though", "please", "pls", "plz", "hmm", "hm", "um", "erm", "uh", "wait", "actually"}
)
# Small talk's own longer words, read back from one typo ("thnaks", "goodbey") where the words as typed are no
# small talk; shorter and common words ("good", "nice", "hello": "hell") are not, since too many other words
# are one edit from them.
TYPO_TOLERANT = SpellingCorrector.fit(
    "thanks thank goodbye morning afternoon evening cheers alright awesome perfect understood "
    "appreciated appreciate helpful".split(),
    min_length=5,
)
_PART_SPANS = re.compile(r"[^,.!?;:\n]+")  # the parts of a message: the runs between punctuation
_EMOJI_AND_SYMBOLS = re.compile(r"[^\w\s']+", re.UNICODE)
# What an emoji says, in a message of small talk only: a thumbs-down or an angry face after an answer is the
# thumbs-down typed ("😡" was read as a nod: "Is there anything else I can help with?"), a puzzled face is
# "what?", hands together or a heart a thanks, a wave a greeting. Any other emoji is a nod ("👍", "👌").
# Around a question an emoji says nothing of the last answer ("My card still hasn't come! 😡" is angry about
# the card), so these count only when the whole message is small talk.
EMOJI_KINDS = {
    **dict.fromkeys("👎😡😠🤬😤😒🙄🙁☹😞😣😩😫💩", NOT_HELPFUL),
    **dict.fromkeys("🤔😕🤨😐😶❓❔⁉🤷😵🧐", UNCLEAR),
    **dict.fromkeys("🙏❤♥💙💚💛💜🧡🖤🤍💕💖😊☺🥰😍🤗😘", THANKS),
    "👋": GREETING,
}
_UNCLEAR_MARKS = re.compile(r"^\s*\?+\s*$")  # "?" or "???" alone: the customer did not follow


# "Yes" and its kin: a yes to "is there anything else?" (the question follows) or to a "did you mean" of one
# choice (bot.choice). Not "ok", "great" or "👍", which close an exchange as often as they go on with it.
AFFIRMATIVE = re.compile(
    r"^\W*(?:(?:oh|ah|um+|well|actually|ok(?:ay)?)\W+)?(?:yes|yeah|yea|yep|yup|ya|yas|aye|sure|of\s+course"
    r"|definitely|absolutely|i\s+do|(?:yes|yeah|yep)\W+(?:please|i\s+do|there\s+is|actually|one\s+more(?:\s+thing)?"
    r"|that'?s\s+(?:it|right|the\s+one)|that\s+one))(?:\W+(?:actually|please|pls|thanks|thank\s+you))?\W*$",
    re.IGNORECASE,
)


class SmallTalk(NamedTuple):
    kind: str | None  # the message's kind of small talk; None: it holds a question
    question: str  # what the model reads: the message without the small talk around the question
    left_out: tuple[str, ...] = ()  # around a question: the kinds of the small talk left out


def read_small_talk(text: str) -> SmallTalk:
    """One pass over ``text``'s parts (split at punctuation, each read as a run of small-talk phrases: "ok
    thanks bye"). All small talk: its kind (the one of PRIORITY that comes first). Otherwise the question,
    without the whole parts of small talk at either end ("Hi! My card hasn't arrived. Thanks!" -> "My card
    hasn't arrived."): a greeting or a thanks is no evidence of any intent."""
    spans = [m.span() for m in _PART_SPANS.finditer(text)]
    runs = [_run(text[a:b], EVERY_PATTERN) for a, b in spans]
    keep = [i for i, run in enumerate(runs) if run is None]
    if not keep:
        kinds = [kind for run in runs if run for kind in run]
        kinds += [EMOJI_KINDS[c] for c in text if c in EMOJI_KINDS]
        if kinds:  # "ok 👎" is a thumbs-down: the kind that ends the exchange most answers
            return SmallTalk(min(kinds, key=PRIORITY.index), text)
        if _UNCLEAR_MARKS.match(text):
            return SmallTalk(UNCLEAR, text)
        # Nothing but symbols: any other emoji alone ("👍", "👌") is a nod; "..." says nothing.
        nod = any(ord(c) > 0x2000 and not c.isspace() for c in text)
        return SmallTalk(ACKNOWLEDGEMENT if nod else None, text)
    # Around a question, a part is left out only when it is small talk without the WHOLE_ONLY phrases.
    runs = [
        run if run is None else _run(text[a:b], STRIPPABLE) for run, (a, b) in zip(runs, spans, strict=True)
    ]
    keep = [i for i, run in enumerate(runs) if run is None]
    if len(keep) == len(spans):
        return SmallTalk(None, text)
    start, end = spans[keep[0]][0], spans[keep[-1]][1]
    while end < len(text) and text[end] in ".?!":  # the question's own closing punctuation stays
        end += 1
    around = [*runs[: keep[0]], *runs[keep[-1] + 1 :]]
    return SmallTalk(None, text[start:end].strip(), tuple(kind for run in around if run for kind in run))


def small_talk_kind(text: str) -> str | None:
    """The kind of small talk ``text`` is, or None when any part of it is something else (a question)."""
    return read_small_talk(text).kind


def acknowledgement_reply(text: str, after: str) -> str:
    """The kind of reply to an acknowledgement (``text``: "ok", "yes", "👍") after a reply of kind ``after``
    (AFTER_*): after an answer, "Is there anything else I can help with?"; after the bot asked that (or said
    goodbye), a yes is a question on its way (GO_AHEAD: "Sure, what would you like to ask?") and anything
    else ends the chat (GOODBYE); with nothing before it to acknowledge, GO_AHEAD. The demo answered "yes"
    to "Is there anything else I can help with?" and "ok" to "Hello! What can I help you with?" with "Is
    there anything else I can help with?"."""
    if after == AFTER_ANSWER:
        return ACKNOWLEDGEMENT
    if after == AFTER_ANYTHING_ELSE and not AFFIRMATIVE.match(text):
        return GOODBYE
    return GO_AHEAD


def _run(part: str, patterns: list[tuple[str, re.Pattern[str]]]) -> list[str] | None:
    """A part's small-talk phrases (``_phrases``): as typed, else with small talk's own words' typos read
    back ("thnaks")."""
    run = _phrases(_EMOJI_AND_SYMBOLS.sub(" ", part).split(), patterns)
    if run is None:
        run = _phrases(_EMOJI_AND_SYMBOLS.sub(" ", TYPO_TOLERANT.correct(part)).split(), patterns)
    return run


def without_small_talk(text: str) -> str:
    """``text`` without the small talk around the question, for the model to read (``read_small_talk``);
    as it is when nothing would be left or nothing is small talk."""
    return read_small_talk(text).question


def _phrases(
    words: list[str], patterns: list[tuple[str, re.Pattern[str]]], longest: int = 7
) -> list[str] | None:
    """Cover ``words`` with small-talk phrases, fewest first (dynamic programming), ``CONNECTORS`` between
    them; None when they cannot be (a word that is in no phrase: a question; connectors alone). No words: an
    empty run."""
    if len(words) > 4 * longest:
        return None
    best: list[list[str] | None] = [[]] + [None] * len(words)
    for end in range(1, len(words) + 1):
        joined = best[end - 1]
        if words[end - 1].lower() in CONNECTORS and joined is not None:
            best[end] = joined  # a connector adds no phrase
        for start in range(max(0, end - longest), end):
            before = best[start]
            if before is None:
                continue
            phrase = " ".join(words[start:end])
            kind = next((k for k, pattern in patterns if pattern.match(phrase)), None)
            if kind is not None and (best[end] is None or len(before) + 1 < len(best[end] or [])):
                best[end] = [*before, kind]
    if words and not best[-1]:  # connectors and nothing else ("but"): not small talk
        return None
    return best[-1]


def small_talk_prediction(text: str, reply: str, model_version: str) -> Prediction:
    """The turn of a small-talk message: the reply, no intent and no candidates (the model is not asked)."""
    return Prediction(
        text=text,
        status=SMALL_TALK,
        intent=None,
        answer=reply,
        confidence=1.0,
        margin=1.0,
        ranking=[],
        member_scores={},
        suggestions=[],
        model_version=model_version,
    )
