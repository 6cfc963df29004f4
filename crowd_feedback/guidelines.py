"""The reviewing guidelines: Markdown that operators write for their crowd, kept as versions (who, when), and
which version each reviewer has read, so that a reviewer is told when they changed.

Domain functions: session first, keyword-only arguments; the caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.events import emit
from core.models import ReviewGuidelines, User, as_utc
from core.text import unstorable_text

MAX_GUIDELINES_LENGTH = 20_000
BUILT_IN = 0  # the version number of the text below, in use until an operator saves one

DEFAULT_GUIDELINES = """\
1. **Answer the question the customer asked**, not the one the bot answered. If the bot was wrong, pick the
   right intent and mark its answer as not acceptable. Where *Earlier in this conversation* is shown, read the
   question in its light: "and how long does that take?" after "I ordered a new card" asks when the card
   arrives. If it is clear only with them, also tick *Clear only with the earlier turns* (**C**).
2. Pick the **most specific** intent: "my card payment was declined" is *declined card payment*, not *card not
   working*. Some intents carry a note from the operators under their examples: it says when they apply.
3. If two intents both fit, pick the one whose answer would help the customer most.
4. If nothing fits, choose *None fits* and describe in a few words what the customer wants ("ask for a metal
   card"). Operators turn repeated suggestions into new intents.
5. Under *Also asked* are other customers' questions grouped with this one; your label is copied to
   them. Untick any that asks something different (e.g. "card declined" next to "card not arrived"); they
   then get no label from this item.
6. Greetings, spam, abuse and gibberish are *Not a real question*. So is a message of one or two words that
   fits several intents ("pin", "account"): the bot asks the customer which one they mean. Pick an intent
   only when the words clearly mean one ("apple pay").
7. Placeholders like `[EMAIL]` or `[CARD_NUMBER]` replace personal data; they are normal. Personal data
   still in view (a name, an address)? Press **P**: an operator takes it out before anyone sees it again.
8. Some items are check questions with a known answer; they keep the crowd's labels trustworthy.
   Reviewers whose accuracy on them stays low are paused.
9. Your first few items are practice questions: after each you see the expected answer. Real questions follow
   once you are done, if most of your answers matched.
10. Unsure? Skip (the **S** key). A skipped item goes back to the queue for someone else.
11. Pressed a wrong key? The next page shows your last answer: *Change it* (the **U** key) shows that
   question again, for a few minutes and while it still waits for other reviewers.
12. A question in **another language** ("Wo ist meine Karte?") asks what it would ask in English: pick that
   intent (*card arrival*), not *None fits* for the language alone. Cannot read it? Skip it.
"""


class GuidelinesError(ValueError):
    pass


@dataclass(frozen=True)
class Guidelines:
    version: int  # BUILT_IN for the text that ships with HelpLoop
    text: str
    author: str | None
    created_at: datetime | None


def _view(row: ReviewGuidelines) -> Guidelines:
    return Guidelines(row.id, row.text, row.author, as_utc(row.created_at))


def current_guidelines(session: Session) -> Guidelines:
    row = session.scalars(select(ReviewGuidelines).order_by(ReviewGuidelines.id.desc()).limit(1)).first()
    return _view(row) if row is not None else Guidelines(BUILT_IN, DEFAULT_GUIDELINES, None, None)


def guidelines_version(session: Session, *, version: int) -> Guidelines:
    if version == BUILT_IN:
        return Guidelines(BUILT_IN, DEFAULT_GUIDELINES, None, None)
    row = session.get(ReviewGuidelines, version)
    if row is None:
        raise GuidelinesError(f"guidelines version {version} does not exist")
    return _view(row)


def guidelines_history(session: Session, *, limit: int = 50) -> list[Guidelines]:
    """The newest ``limit`` saved versions, newest first (the built-in text is not listed)."""
    rows = session.scalars(select(ReviewGuidelines).order_by(ReviewGuidelines.id.desc()).limit(limit))
    return [_view(row) for row in rows]


def save_guidelines(session: Session, *, text: str, author: str) -> Guidelines | None:
    """Store ``text`` as the new version, and tell the operators (a ``guidelines.changed`` ops event, in the
    same transaction); None (nothing stored) when it is the text in use already."""
    cleaned = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).strip()
    if not cleaned:
        raise GuidelinesError("the guidelines are empty")
    if len(cleaned) > MAX_GUIDELINES_LENGTH:
        raise GuidelinesError(f"the guidelines are {len(cleaned)} characters, limit {MAX_GUIDELINES_LENGTH}")
    for number, line in enumerate(cleaned.split("\n"), start=1):
        if why := unstorable_text(line):
            raise GuidelinesError(f"line {number} {why}")
    before = current_guidelines(session)
    if cleaned == before.text.strip():
        return None
    row = ReviewGuidelines(text=cleaned, author=author[:80])
    session.add(row)
    session.flush()
    saved = _view(row)
    changes = guidelines_diff(before, saved)
    added = sum(kind == "+" for kind, _ in changes)
    removed = sum(kind == "-" for kind, _ in changes)
    emit(
        session,
        "guidelines.changed",
        f"Reviewing guidelines version {saved.version} saved by {saved.author} ({added} line"
        f"{'' if added == 1 else 's'} added, {removed} removed): each reviewer is asked to read them before "
        "their next item.",
        path="/review/guidelines",
        data={
            "version": saved.version,
            "previous": before.version,
            "author": saved.author,
            "added": added,
            "removed": removed,
        },
    )
    return saved


def guidelines_diff(before: Guidelines, after: Guidelines) -> list[tuple[str, str]]:
    """Line by line, what changes from ``before`` to ``after``: ("+" | "-" | " " | "@", line); "@" starts
    each hunk (three lines of context). Empty when the texts are the same."""
    import difflib

    lines = difflib.unified_diff(before.text.splitlines(), after.text.splitlines(), lineterm="", n=3)
    changes: list[tuple[str, str]] = []
    for line in lines:
        if line.startswith(("---", "+++")):
            continue
        changes.append(("@", line) if line.startswith("@@") else (line[:1] or " ", line[1:]))
    return changes


def mark_guidelines_read(session: Session, *, user_id: int, version: int) -> None:
    user = session.get(User, user_id)
    if user is not None and (user.guidelines_read is None or user.guidelines_read < version):
        user.guidelines_read = version


def guidelines_unread(session: Session, *, user: User) -> Guidelines | None:
    """The guidelines, when ``user`` has not read this version of them (never read any, or they changed
    since); otherwise None."""
    current = current_guidelines(session)
    if user.guidelines_read is not None and user.guidelines_read >= current.version:
        return None
    return current
