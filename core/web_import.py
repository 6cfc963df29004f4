"""A knowledge-base file fetched from the web for an import: the company's FAQ page by its address, as Azure
question answering adds a URL source (``helploop kb import https://…``, or the Knowledge page's web
address, run as a job).

The page is fetched once (no crawl), at most ``limit_bytes`` (the upload limit) within ``timeout`` seconds,
and handed to ``core.kb_files`` as an upload would be: an HTML page is read as an FAQ page, Markdown as a
Markdown FAQ, and a CSV, JSON, YAML, TSV, Excel or zip file by its name. Only ``http`` and ``https``; the
address, and every address a redirect leads to, must resolve to public addresses unless
``allow_private`` (``HELPLOOP_IMPORT_PRIVATE_ADDRESSES``, for a help centre on the intranet): an operator's
form must not become a way into the server's own network (cloud metadata, the database, admin ports)."""

from __future__ import annotations

import ipaddress
import re
import socket
import urllib.error
import urllib.request
from http.client import HTTPMessage
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from core.kb_files import DOCUMENTS, IMPORT_SUFFIXES

MAX_REDIRECTS = 5
HTML_TYPES = {"text/html", "application/xhtml+xml"}
MARKDOWN_TYPES = {"text/markdown", "text/x-markdown"}
OTHER_TYPES = {
    "application/json": ".json",
    "text/csv": ".csv",
    "text/tab-separated-values": ".tsv",
    "application/pdf": ".pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
}
BINARY = {".xlsx", ".zip", *DOCUMENTS}
USER_AGENT = "HelpLoop knowledge-base import (+https://github.com/helploop)"


MAX_URL_LENGTH = 2000


def looks_like_web_address(url: str) -> bool:
    """Whether ``url`` is worth queueing an import for (http or https, a host, not too long); the job checks
    the rest (check_address) when it fetches."""
    return bool(re.match(r"^https?://[^\s/]+", url, re.IGNORECASE)) and len(url) <= MAX_URL_LENGTH


class WebImportError(ValueError):
    """An address that cannot or may not be fetched, or what it gave cannot be imported."""


def check_address(url: str, *, allow_private: bool = False) -> None:
    """Refuse anything but an http(s) address whose host resolves to public addresses only (unless
    ``allow_private``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebImportError(f"{url!r} is not a web address: give one that starts with https:// or http://")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        found = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise WebImportError(f"{parts.hostname} cannot be found ({exc})") from None
    if allow_private:
        return
    for *_, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if not address.is_global or address.is_multicast:
            raise WebImportError(
                f"{parts.hostname} is a private address ({address}): an import reaches public web pages only "
                "(set HELPLOOP_IMPORT_PRIVATE_ADDRESSES=true for a help centre on your own network)"
            )


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Each redirect's target is checked as the address given was, and there are at most MAX_REDIRECTS."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, allow_private: bool) -> None:
        super().__init__()
        self.allow_private = allow_private

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: HTTPMessage, newurl: str
    ) -> urllib.request.Request | None:
        try:
            check_address(newurl, allow_private=self.allow_private)
        except WebImportError:
            fp.close()  # the redirect's own response, not followed: its connection is not left open
            raise
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def file_name(url: str, content_type: str) -> str:
    """The name the fetched file is imported (and named in errors) under: host and path, with the suffix its
    type says ("example.com/help/faq.html")."""
    parts = urlsplit(url)
    path = PurePosixPath(parts.path or "/")
    stem = f"{parts.netloc}{parts.path.rstrip('/') or ''}" or parts.netloc
    suffix = path.suffix.lower()
    if content_type in HTML_TYPES:
        return stem if suffix in (".html", ".htm") else f"{stem}.html"
    if content_type in MARKDOWN_TYPES:
        return stem if suffix in (".md", ".markdown") else f"{stem}.md"
    if suffix in IMPORT_SUFFIXES:
        return stem
    if content_type in OTHER_TYPES:
        return f"{stem}{OTHER_TYPES[content_type]}"
    raise WebImportError(
        f"{url} gave {content_type or 'no content type'}, which an import does not read: give an FAQ page "
        "(HTML), a Markdown file, a help document (.pdf, .docx), or a knowledge-base file (.csv, .json, "
        ".yml, .tsv, .xlsx, .zip)"
    )


def fetch_page(
    url: str, *, limit_bytes: int, timeout: float = 15.0, allow_private: bool = False
) -> tuple[str, bytes]:
    """(the file's name, its content: text re-encoded as UTF-8) of the page at ``url``."""
    url = url.strip()
    check_address(url, allow_private=allow_private)
    opener = urllib.request.build_opener(_CheckedRedirects(allow_private))
    request = urllib.request.Request(
        url, headers={"User-Agent": USER_AGENT, "Accept": "text/html, */*;q=0.5"}
    )
    try:
        with opener.open(request, timeout=timeout) as response:
            final = response.geturl()
            content_type = response.headers.get_content_type() if response.headers.get("Content-Type") else ""
            charset = response.headers.get_content_charset()
            content = response.read(limit_bytes + 1)
    except urllib.error.HTTPError as exc:
        exc.close()  # an error holds the response's connection open until closed
        raise WebImportError(f"{url} answered {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, WebImportError):  # a redirect to an address that may not be fetched
            raise reason from None
        raise WebImportError(f"{url} could not be fetched: {reason}") from None
    except TimeoutError:
        raise WebImportError(f"{url} did not answer within {timeout:.0f} s") from None
    if len(content) > limit_bytes:
        raise WebImportError(f"{url} is larger than {limit_bytes // 1024} KB, the upload limit")
    name = file_name(final, content_type)
    if PurePosixPath(name).suffix.lower() in BINARY:
        return name, content
    try:
        text = content.decode(charset or "utf-8")
    except (LookupError, UnicodeDecodeError):
        text = content.decode("cp1252", errors="replace")  # a page that says nothing true of its encoding
    return name, text.lstrip("\ufeff").encode("utf-8")
