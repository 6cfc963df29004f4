"""The bot's Markdown answers as a messaging app shows them: Telegram's HTML (bold, italics, links, code; the
rest escaped) and WhatsApp's own markup (``*bold*``, ``_italic_``, a link as its text and address). Lists
become bulleted or numbered lines, tables one line per row; raw HTML in an answer is shown as typed, and a
link to anything but a web, mail or phone address as its text alone (markdown-it refuses ``javascript:``)."""

from __future__ import annotations

from html import escape

from markdown_it import MarkdownIt
from markdown_it.token import Token

_PARSER = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable("table")
SAFE_LINKS = ("https://", "http://", "mailto:", "tel:")
STYLES = ("telegram", "whatsapp")  # Messenger reads WhatsApp's markup


def _inline(children: list[Token], style: str) -> str:
    out: list[str] = []
    links: list[str | None] = []  # the open links' addresses (None: shown as text alone)
    link_text: list[int] = []  # where each open link's text begins in ``out``
    for token in children:
        kind = token.type
        if kind == "text":
            out.append(escape(token.content, quote=False) if style == "telegram" else token.content)
        elif kind in ("softbreak", "hardbreak"):
            out.append("\n")
        elif kind == "code_inline":
            out.append(
                f"<code>{escape(token.content, quote=False)}</code>"
                if style == "telegram"
                else f"`{token.content}`"
            )
        elif kind in ("strong_open", "strong_close"):
            out.append(("<b>" if kind == "strong_open" else "</b>") if style == "telegram" else "*")
        elif kind in ("em_open", "em_close"):
            out.append(("<i>" if kind == "em_open" else "</i>") if style == "telegram" else "_")
        elif kind == "link_open":
            href = str(token.attrs.get("href", ""))
            safe = href if href.lower().startswith(SAFE_LINKS) else None
            links.append(safe)
            link_text.append(len(out))
            if style == "telegram" and safe is not None:
                out.append(f'<a href="{escape(safe)}">')
        elif kind == "link_close" and links:
            target, start = links.pop(), link_text.pop()
            if target is None:
                continue
            if style == "telegram":
                out.append("</a>")
            elif "".join(out[start:]).strip() not in (target, target.removeprefix("mailto:")):
                out.append(f" ({target})")
        elif kind == "image":
            out.append(escape(token.content, quote=False) if style == "telegram" else token.content)
        elif kind == "html_inline":  # not produced (html off), but never passed through
            out.append(escape(token.content, quote=False))
    return "".join(out)


def render(markdown: str, style: str) -> str:
    """``markdown`` for ``style`` (one of ``STYLES``): paragraphs, lists and tables apart by a blank line, a
    list's items and a table's rows on lines of their own."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}")
    groups: list[list[str]] = []  # each paragraph, list, table or code block: its lines
    lists: list[list[int]] = []  # per open list: [next number] for ordered, [] for bulleted
    row: list[str] | None = None  # the cells of the table row being read
    item_prefix: str | None = None
    for token in _PARSER.parse(markdown or ""):
        kind = token.type
        if kind in ("bullet_list_open", "ordered_list_open"):
            if not lists:
                groups.append([])
            lists.append([int(token.attrs.get("start", 1) or 1)] if kind == "ordered_list_open" else [])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif kind == "list_item_open":
            current = lists[-1] if lists else []
            indent = "  " * (len(lists) - 1)
            item_prefix = f"{indent}{current[0]}. " if current else f"{indent}• "
            if current:
                current[0] += 1
        elif kind == "table_open":
            groups.append([])
        elif kind == "inline" and token.children is not None:
            text = _inline(token.children, style)
            if row is not None:
                row.append(text)
            elif item_prefix is not None:
                groups[-1].append(item_prefix + text)
                item_prefix = None
            elif lists:  # a list item's second paragraph
                groups[-1].append("  " * len(lists) + text)
            else:
                groups.append([text])
        elif kind in ("fence", "code_block"):
            code = token.content.rstrip("\n")
            groups.append(
                [f"<pre>{escape(code, quote=False)}</pre>" if style == "telegram" else f"```{code}```"]
            )
        elif kind == "tr_open":
            row = []
        elif kind == "tr_close" and row is not None:
            groups[-1].append(" | ".join(row))
            row = None
        elif kind == "hr":
            groups.append(["—"])
    return "\n\n".join("\n".join(lines) for lines in groups if lines).strip()


def split(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut between paragraphs, else lines, else words
    (a messaging app refuses a longer message: Telegram and WhatsApp take 4,096 characters)."""
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = max(
            rest.rfind("\n\n", 0, limit), rest.rfind("\n", 0, limit) if "\n\n" not in rest[:limit] else -1
        )
        if cut <= 0:
            cut = rest.rfind(" ", 0, limit)
        if cut <= 0:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    pieces.append(rest)
    return [p for p in pieces if p]
