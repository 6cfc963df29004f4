"""The web page a widget chat is on, as operators see it (migration 0058), and the origins the widget may be
embedded on (``HELPLOOP_WIDGET_ORIGINS``).

A page is kept as its site (``scheme://host[:port]``, the browser's origin) and its address without the query
and the fragment, which can carry sign-in tokens, search terms or personal data; what is left of the path is
redacted as a reviewer's text is (``core.redaction``: ``/account/jane@example.com`` keeps ``[EMAIL]``).
Operators see the page a customer asked from in the live chat, and the install page lists the sites the
widget has answered on."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote, urlsplit

SITE_LIMIT = 200  # conversations.site
PAGE_LIMIT = 500  # conversations.page_url
RAW_LIMIT = 2000  # the longest address the chat API reads at all
DEFAULT_PORTS = {"http": 80, "https": 443}


class PageError(ValueError):
    """Not the http(s) address of a web page (or of a site, for an origin)."""


@dataclass(frozen=True)
class Page:
    site: str  # https://shop.example.com
    url: str  # https://shop.example.com/cards/replace, redacted, at most PAGE_LIMIT characters


def origin(value: str) -> str:
    """``scheme://host[:port]`` of an http(s) address as browsers write an origin: lower case, the default
    port left out. PageError when it is not one."""
    parts = urlsplit(value.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        raise PageError(f"{value!r} has no valid port") from None
    host = parts.hostname
    if scheme not in DEFAULT_PORTS or not host:
        raise PageError(f"{value!r} is not an http(s) address (e.g. https://shop.example.com)")
    if parts.username is not None or parts.password is not None:
        raise PageError(f"{value!r} holds a user name or password")
    shown = f"[{host}]" if ":" in host else host
    site = f"{scheme}://{shown}" + (f":{port}" if port is not None and port != DEFAULT_PORTS[scheme] else "")
    if len(site) > SITE_LIMIT:
        raise PageError(f"the site's address is longer than {SITE_LIMIT} characters")
    return site


def site_origin(value: str) -> str:
    """An origin as written in ``HELPLOOP_WIDGET_ORIGINS``: a site's address, a trailing "/" allowed, no path,
    query or fragment (a browser's Origin header never has one, so such an entry could never match)."""
    site = origin(value)
    parts = urlsplit(value.strip())
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise PageError(
            f"{value!r} is a page's address; an origin is the site alone (e.g. https://shop.example.com)"
        )
    return site


@lru_cache(maxsize=1024)
def read_page(raw: str) -> Page:
    """The page as it is kept: its site and its redacted address without query or fragment. Read once per
    address (a customer asks from the same few pages; redacting a path costs 0.07-0.2 ms)."""
    from core.redaction import redact  # the redaction rules load with the first page read, not at import

    if len(raw) > RAW_LIMIT:
        raise PageError(f"the page's address is longer than {RAW_LIMIT} characters")
    site = origin(raw)
    path = redact(unquote(urlsplit(raw.strip()).path or "/"))
    url = site + path
    if len(url) > PAGE_LIMIT:
        url = url[: PAGE_LIMIT - 1] + "…"
    return Page(site=site, url=url)
