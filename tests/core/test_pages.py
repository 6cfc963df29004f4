"""core.pages: the page a widget chat is on, and the origins the widget may be embedded on."""

from __future__ import annotations

from typing import Any

import pytest

from core.pages import PAGE_LIMIT, PageError, origin, read_page, site_origin
from core.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://shop.example.com", "https://shop.example.com"),
        ("HTTPS://Shop.Example.COM/", "https://shop.example.com"),  # as browsers write an origin
        ("https://shop.example.com:443/cards", "https://shop.example.com"),  # the default port left out
        ("http://shop.example.com:80", "http://shop.example.com"),
        ("http://localhost:8000/help?x=1", "http://localhost:8000"),
        ("https://shop.example.com:8443", "https://shop.example.com:8443"),
        ("http://[::1]:8000/", "http://[::1]:8000"),
        ("  https://shop.example.com  ", "https://shop.example.com"),
    ],
)
def test_origin_is_written_as_browsers_write_it(value: str, expected: str) -> None:
    assert origin(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "shop.example.com",  # no scheme
        "ftp://shop.example.com",
        "file:///home/me/page.html",
        "https://",
        "https://user:secret@shop.example.com",
        "https://shop.example.com:99999",
        "javascript:alert(1)",
    ],
)
def test_anything_but_a_web_address_is_refused(value: str) -> None:
    with pytest.raises(PageError):
        origin(value)


def test_an_origin_setting_is_a_site_not_a_page() -> None:
    assert site_origin("https://shop.example.com/") == "https://shop.example.com"
    for page in (
        "https://shop.example.com/help",
        "https://shop.example.com/?a=1",
        "https://shop.example.com#x",
    ):
        with pytest.raises(PageError, match="page's address"):
            site_origin(page)


def test_a_page_is_kept_without_query_or_fragment_and_redacted() -> None:
    page = read_page("https://Shop.example.com/cards/replace?token=abc123&email=jane@example.com#top")
    assert page.site == "https://shop.example.com"
    assert page.url == "https://shop.example.com/cards/replace"
    # an address in the path, typed or percent-encoded, is redacted as a reviewer's text is
    assert read_page("https://shop.example.com/u/jane.doe@example.com/orders").url == (
        "https://shop.example.com/u/[EMAIL]/orders"
    )
    assert (
        read_page("https://shop.example.com/u/jane.doe%40example.com").url
        == "https://shop.example.com/u/[EMAIL]"
    )
    # order numbers and dates in a path are no personal data: they stay
    assert read_page("https://shop.example.com/orders/20261207-58213").url.endswith("/orders/20261207-58213")
    assert read_page("https://shop.example.com").url == "https://shop.example.com/"


def test_a_long_address_is_cut_to_the_column_and_a_too_long_one_refused() -> None:
    long = read_page("https://shop.example.com/" + "a" * 900)
    assert len(long.url) == PAGE_LIMIT and long.url.endswith("…")
    with pytest.raises(PageError, match="longer than 2000"):
        read_page("https://shop.example.com/" + "a" * 2000)


def test_widget_origins_are_read_and_checked_when_the_settings_load() -> None:
    assert load_settings({}, environ={}).widget_origin_set is None  # "*": any site
    settings = load_settings(
        {"widget_origins": "https://Shop.example.com/, https://help.example.com:8443"}, environ={}
    )
    assert settings.widget_origin_set == {"https://shop.example.com", "https://help.example.com:8443"}
    with pytest.raises(
        SettingsError, match="widget_origins: 'https://shop.example.com/help' is a page's address"
    ):
        load_settings({"widget_origins": "https://shop.example.com/help"}, environ={})
    with pytest.raises(SettingsError, match="widget_origins: 'shop.example.com' is not an http"):
        load_settings({"widget_origins": "shop.example.com"}, environ={})


def test_the_pages_questions_came_from_are_counted_by_outcome_those_helped_least_first(
    db_session: Any,
) -> None:
    """core.registry.widget_pages: a page's questions by what became of them over the period; a clicked chip
    and small talk are not questions; a turn before the period, or with no page, is not counted."""
    from datetime import timedelta

    from core.models import Turn, utcnow
    from core.registry import SUGGESTION_ARM, get_or_create_conversation, log_turn, widget_pages

    conversation = get_or_create_conversation(db_session, conversation_id=None, channel="widget")
    cards, help_page = "https://shop.example.com/cards", "https://shop.example.com/help"

    def turn(status: str, page: str | None, **kw: Any) -> Turn:
        return log_turn(
            db_session, conversation_id=conversation.id, user_text="q", status=status, intent=None, answer="",
            confidence=0.5, candidates=[], member_scores={}, model_version="v1", latency_ms=1.0, page=page,
            **kw,
        )  # fmt: skip

    for status in ("answered", "answered", "answered", "clarify"):
        turn(status, cards)
    turn("answered", cards).helpful = False
    turn("answered", cards, served_by=SUGGESTION_ARM)  # a clicked chip
    turn("small_talk", cards)
    for status in ("handoff", "asked_for_person", "off_topic", "answered"):
        turn(status, help_page)
    turn("handoff", None)  # not from a web page
    turn("handoff", help_page).created_at = utcnow() - timedelta(days=40)
    db_session.flush()
    pages = widget_pages(db_session, since=utcnow() - timedelta(days=30))
    assert [p.page for p in pages] == [help_page, cards]  # three of four not answered first, then one of five
    helped_least, best = pages
    assert (
        helped_least.questions,
        helped_least.answered,
        helped_least.to_person,
        helped_least.off_topic,
    ) == (
        4,
        1,
        2,
        1,
    )
    assert (best.questions, best.answered, best.clarified, best.thumbs_down, best.not_answered) == (
        5,
        4,
        1,
        1,
        1,
    )
    assert widget_pages(db_session, since=utcnow() - timedelta(days=30), limit=1) == [helped_least]
    assert widget_pages(db_session, since=utcnow() + timedelta(days=1)) == []
