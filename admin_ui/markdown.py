"""Markdown for the admin pages (the reviewing guidelines, the bot's answers as customers see them),
customers' redacted questions with their placeholders marked, and search hits with their words marked.

CommonMark with raw HTML turned off: every ``<`` the author wrote is escaped, and markdown-it refuses
``javascript:``, ``vbscript:``, ``file:`` and ``data:`` link targets, so the output is safe to insert.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from core.kb_files import OUT_OF_SCOPE
from core.redaction import PLACEHOLDER, PLACEHOLDERS

_RENDERER = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable("table")


def render_markdown(text: str | None) -> Markup:
    return Markup(_RENDERER.render(text or ""))  # noqa: S704 (markdown-it escapes the source: html is off)


def render_breakable(name: str | None) -> Markup:
    """An identifier (an intent's name: ``wrong_exchange_rate_for_cash_withdrawal``), escaped, that may wrap
    after its underscores: a table column of long names stays narrow enough for the page."""
    return Markup(str(escape(name or "")).replace("_", "_<wbr>"))  # noqa: S704 (escaped first)


def render_pair_label(intent: str | None) -> Markup:
    """A training pair's intent, escaped; the out-of-scope label (reviewers found no intent: the bot learns
    to hand such questions to a person) said in words."""
    if intent == OUT_OF_SCOPE:
        return Markup(
            '<span class="tag" title="reviewers found no intent for it: the bot learns to hand such '
            'questions to a person">out of scope (none fits)</span>'
        )
    return Markup(escape(intent or ""))


def render_redacted(text: str | None) -> Markup:
    """A redacted question, escaped, with each placeholder (``[NAME]``, ``[EMAIL]`` …) marked as what it is:
    a grey label saying what was taken out, so a reviewer reads "[NAME]" as redaction and not as the
    customer's typing."""
    escaped = str(escape(text or ""))
    return Markup(  # noqa: S704 (the text is escaped; the labels come from a fixed list)
        PLACEHOLDER.sub(
            lambda m: (
                f'<span class="pii" title="{escape(PLACEHOLDERS[m.group(1)])}, removed before review">'
                f"{m.group(0)}</span>"
            ),
            escaped,
        )
    )


def render_match(text: str | None, search: str, width: int = 90) -> Markup:
    """A search hit in a list: the stretch of ``text`` around the first place it holds ``search`` (case
    ignored), at most about ``width`` characters, with the words marked. Escaped; ``<mark>`` is the only
    markup."""
    text, needle = text or "", search.strip()
    hit = re.search(re.escape(needle), text, re.IGNORECASE) if needle else None
    if hit is None:
        return Markup(escape(text if len(text) <= width else text[: width - 1] + "…"))  # noqa: S704
    room = max(width - len(hit.group()), 0)
    start = max(0, min(hit.start() - room // 3, len(text) - width))
    end = min(len(text), start + max(width, len(hit.group())))
    # Cut between words where one is near: "…on my payment", not "…xtra on my payment".
    if start > 0 and 0 <= (space := text.find(" ", start, hit.start())) - start <= 15:
        start = space + 1
    if end < len(text) and 0 <= end - (space := text.rfind(" ", hit.end(), end)) <= 15:
        end = space
    before, after = text[start : hit.start()], text[hit.end() : end]
    return Markup(  # noqa: S704 (every piece of the text is escaped)
        ("…" if start > 0 else "")
        + str(escape(before))
        + f"<mark>{escape(hit.group())}</mark>"
        + str(escape(after))
        + ("…" if end < len(text) else "")
    )


def render_marked(text: str | None, search: str = "") -> Markup:
    """The whole text, escaped, with every place it holds ``search`` (case ignored) marked."""
    text, needle = text or "", search.strip()
    if not needle:
        return Markup(escape(text))  # noqa: S704
    pieces = re.split(f"({re.escape(needle)})", text, flags=re.IGNORECASE)
    return Markup(  # noqa: S704 (every piece of the text is escaped)
        "".join(f"<mark>{escape(p)}</mark>" if i % 2 else str(escape(p)) for i, p in enumerate(pieces))
    )


def has_placeholder(text: str | None) -> bool:
    return bool(PLACEHOLDER.search(text or ""))
