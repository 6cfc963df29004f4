"""Markdown for the admin pages (the reviewing guidelines, the bot's answers as customers see them).

CommonMark with raw HTML turned off: every ``<`` the author wrote is escaped, and markdown-it refuses
``javascript:``, ``vbscript:``, ``file:`` and ``data:`` link targets, so the output is safe to insert.
"""

from __future__ import annotations

from markdown_it import MarkdownIt
from markupsafe import Markup

_RENDERER = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable("table")


def render_markdown(text: str | None) -> Markup:
    return Markup(_RENDERER.render(text or ""))  # noqa: S704 (markdown-it escapes the source: html is off)
