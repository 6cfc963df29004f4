"""The widget's install page (operators): the tag to paste into the company's site, built from the choices on
the page (colour, side, texts, the page's metadata), a preview of the real widget with those choices, whether
``HELPLOOP_WIDGET_ORIGINS`` lets a given site use it, and the sites the widget has answered on (core.pages).
Nothing here writes: every form is a GET."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request
from markupsafe import escape
from sqlalchemy import select

from admin_ui.setup import require_role
from bot.engine import MetadataFilter
from core.kb_files import KnowledgeBaseFormatError, check_metadata
from core.models import Intent, utcnow
from core.pages import PageError, origin
from core.registry import PageOutcome, widget_pages, widget_sites

install = Blueprint("install", __name__, url_prefix="/operator/widget", template_folder="templates")

COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
LANG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*")
DEFAULT_COLOR = "#0b57d0"  # widget.css's --hl-accent
TEXT_LIMIT = 200
SEEN_DAYS = 30
# The texts most often changed on the tag (every other is in widget.js's TEXTS), in the page's order.
TEXTS = {"title": "Title", "greeting": "Greeting", "placeholder": "Message box placeholder"}


@dataclass
class WidgetTag:
    """The choices read from the page's query, checked: what goes on the tag, and what was left off, why."""

    attributes: dict[str, str] = field(default_factory=dict)  # data-helploop-KEY -> value, in order
    errors: dict[str, str] = field(default_factory=dict)  # field -> why it is not on the tag
    values: dict[str, str] = field(default_factory=dict)  # as typed, for the form
    answering: int | None = None  # the intents that can answer on a page with the tag's metadata

    def html(self, base: str) -> str:
        """The tag to paste, the values escaped for an HTML attribute."""
        parts = [f'<script src="{escape(base)}/widget.js"', f'  data-helploop-url="{escape(base)}"']
        parts += [f'  data-helploop-{key}="{escape(value)}"' for key, value in self.attributes.items()]
        return "\n".join(parts) + "\n  defer></script>"


def read_choices(args: Any, intents_metadata: Callable[[], list[dict[str, str]]]) -> WidgetTag:
    """The page's query (``args``) checked against what the widget reads and against the knowledge base's
    metadata (``intents_metadata``: one dict per intent, read only when the query gives metadata)."""
    tag = WidgetTag()
    for name in ("color", "position", "lang", "metadata", *TEXTS):
        tag.values[name] = (args.get(name) or "").strip()
    color = tag.values["color"]
    if color and not COLOR.fullmatch(color):
        tag.errors["color"] = f"{color!r} is not a hex colour such as #c2185b"
    elif color and color.lower() != DEFAULT_COLOR:  # the widget's own blue needs no attribute
        tag.attributes["color"] = color.lower()
    if tag.values["position"] not in ("", "right", "left"):
        tag.errors["position"] = "the widget sits on the right or the left"
    elif tag.values["position"] == "left":
        tag.attributes["position"] = "left"
    for name in TEXTS:
        value = tag.values[name]
        if len(value) > TEXT_LIMIT:
            tag.errors[name] = f"{len(value)} characters; at most {TEXT_LIMIT}"
        elif value:
            tag.attributes[name] = value
    lang = tag.values["lang"]
    if lang and not LANG.fullmatch(lang):
        tag.errors["lang"] = f"{lang!r} is not a language tag such as de or pt-BR"
    elif lang:
        tag.attributes["lang"] = lang
    if tag.values["metadata"]:
        try:
            pairs = check_metadata("metadata", None, "metadata", tag.values["metadata"])
        except KnowledgeBaseFormatError as exc:
            tag.errors["metadata"] = exc.message
        else:
            wanted = MetadataFilter.of(pairs.items())  # as the chat filters (the Try page too)
            answering = sum(wanted.matches(meta) for meta in intents_metadata())
            if not answering:
                tag.errors["metadata"] = (
                    "no intent of the knowledge base has "
                    + " and ".join(f"{k}:{v}" for k, v in pairs.items())
                    + ": the widget on that page could answer nothing"
                )
            else:
                tag.attributes["metadata"] = "|".join(f"{k}:{v}" for k, v in pairs.items())
                tag.answering = answering
    return tag


def site_check(raw: str, allowed: frozenset[str] | None, base: str) -> dict[str, Any]:
    """Whether the widget on ``raw``'s pages may call the chat API, and what to change when it may not."""
    try:
        site = origin(raw)
    except PageError as exc:
        return {"error": str(exc)}
    check: dict[str, Any] = {"site": site, "allowed": allowed is None or site in allowed}
    if not check["allowed"]:
        check["setting"] = ",".join(sorted({*(allowed or ()), site}))
    # A page served over https cannot call an http address (mixed content), whatever the origins say.
    check["mixed"] = site.startswith("https://") and base.startswith("http://")
    return check


def _tag() -> tuple[WidgetTag, str]:
    """The request's choices, checked, and the bot's address for the tag."""
    helploop = current_app.extensions["helploop"]

    def intents_metadata() -> list[dict[str, str]]:
        with helploop.database.session() as session:
            return [m or {} for m in session.scalars(select(Intent.metadata_))]

    base = (helploop.settings.public_url or request.host_url).rstrip("/")
    return read_choices(request.args, intents_metadata), base


PAGES_SHOWN = 20
# What became of a page's questions, as the overview's chart colours them.
OUTCOME_COLOURS = (
    ("answered", "answered", "#1e8e3e"),
    ("clarified", '"did you mean"', "#f4b400"),
    ("to_person", "to a person", "#d93025"),
    ("off_topic", "off topic", "#9aa0a6"),
)


@dataclass(frozen=True)
class BarPart:
    x: float
    width: float
    fill: str
    label: str


def page_bar(outcome: PageOutcome, width: float = 160.0) -> list[BarPart]:
    """One page's questions as a bar of ``width``: answered, "did you mean", to a person, off topic, each
    in proportion; empty when the page had no question."""
    parts, x = [], 0.0
    for name, said, fill in OUTCOME_COLOURS:
        count = getattr(outcome, name)
        if count and outcome.questions:
            share = count / outcome.questions
            label = f"{count} {said} ({share:.0%})"
            parts.append(BarPart(round(x, 1), round(share * width, 1), fill, label))
            x += share * width
    return parts


@install.get("")
@require_role("operator")
def widget_page() -> Any:
    helploop = current_app.extensions["helploop"]
    settings = helploop.settings
    tag, base = _tag()
    since = utcnow() - timedelta(days=SEEN_DAYS)
    with helploop.database.session() as session:
        seen = widget_sites(session, since=since)
        pages = widget_pages(session, since=since, limit=PAGES_SHOWN)
    raw_site = (request.args.get("site") or "").strip()
    return render_template(
        "admin/widget.html",
        tag=tag,
        snippet=tag.html(base),
        base=base,
        public_url=settings.public_url,
        origins=settings.widget_origin_set,
        texts=TEXTS,
        preview_query=request.query_string.decode("utf-8", "replace"),
        seen_days=SEEN_DAYS,
        own_site=request.host_url.rstrip("/"),
        seen=seen,
        pages=[(p, page_bar(p)) for p in pages],
        pages_shown=PAGES_SHOWN,
        site=site_check(raw_site, settings.widget_origin_set, base) if raw_site else None,
        site_value=raw_site,
    )


@install.get("/tag.json")
@require_role("operator")
def widget_tag() -> Any:
    """What the page's script asks as the choices change: the tag and what was left off it."""
    tag, base = _tag()
    answering = str(tag.answering) if tag.answering else None
    return jsonify({"snippet": tag.html(base), "errors": tag.errors, "answering": answering})


@install.get("/preview")
@require_role("operator")
def widget_preview() -> Response:
    """The real widget on an empty page, with the choices: shown in the install page's frame, served by this
    app so that it chats with it whatever the public address."""
    tag, _base = _tag()
    response = current_app.make_response(
        render_template(
            "admin/widget_preview.html", attributes=tag.attributes, base=request.host_url.rstrip("/")
        )
    )
    # framed by the install page only (the other operator pages may not be framed at all)
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'self'"
    )
    return response
