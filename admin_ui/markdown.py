"""Markdown for the admin pages (the reviewing guidelines, the bot's answers as customers see them), and
customers' redacted questions with their placeholders marked.

CommonMark with raw HTML turned off: every ``<`` the author wrote is escaped, and markdown-it refuses
``javascript:``, ``vbscript:``, ``file:`` and ``data:`` link targets, so the output is safe to insert.
"""

from __future__ import annotations

from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from core.redaction import PLACEHOLDER, PLACEHOLDERS

_RENDERER = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable("table")


def render_markdown(text: str | None) -> Markup:
    return Markup(_RENDERER.render(text or ""))  # noqa: S704 (markdown-it escapes the source: html is off)


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


def has_placeholder(text: str | None) -> bool:
    return bool(PLACEHOLDER.search(text or ""))
