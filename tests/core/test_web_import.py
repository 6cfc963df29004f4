"""A knowledge-base file fetched from the web (core.web_import), against a server on this machine: what is
fetched and under which name, what is refused (private addresses by default, other schemes, redirects into
the private network, pages too large, types no import reads), and the same through `helploop kb import`."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from core.kb_files import read_knowledge_base_files
from core.web_import import WebImportError, _CheckedRedirects, check_address, fetch_page
from tests.conftest import FAQ_PAGE


def test_an_faq_page_is_fetched_and_read_as_an_uploaded_one(site: str) -> None:
    host = site.removeprefix("http://")
    name, content = fetch_page(f"{site}/help/faq", limit_bytes=100_000, allow_private=True)
    assert (name, content) == (f"{host}/help/faq.html", FAQ_PAGE.encode())
    kb = read_knowledge_base_files([(name, content)])
    assert list(kb.intents) == ["how_do_i_freeze_my_card", "is_there_a_fee"]
    assert kb.intents["how_do_i_freeze_my_card"].answer == "Tap **Freeze**."
    # named by the page it ended on after a redirect
    assert fetch_page(f"{site}/moved", limit_bytes=100_000, allow_private=True)[0] == f"{host}/help/faq.html"


def test_each_type_is_named_for_its_reader_and_text_becomes_utf8(site: str) -> None:
    host = site.removeprefix("http://")
    markdown = fetch_page(f"{site}/faq.md", limit_bytes=1000, allow_private=True)
    assert markdown == (f"{host}/faq.md", "## Où est ma carte ?\nElle arrive.\n".encode())
    latin = fetch_page(f"{site}/latin", limit_bytes=1000, allow_private=True)
    assert latin == (f"{host}/latin.html", "<h2>Café?</h2><p>Oui.</p>".encode())
    name, content = fetch_page(f"{site}/kb", limit_bytes=1000, allow_private=True)
    assert name == f"{host}/kb.json" and list(read_knowledge_base_files([(name, content)]).intents) == ["hi"]
    # a help document behind a download link: named by its type, its bytes kept as they are
    name, content = fetch_page(f"{site}/files/4711", limit_bytes=100_000, allow_private=True)
    assert name == f"{host}/files/4711.pdf" and content.startswith(b"%PDF-")
    assert len(read_knowledge_base_files([(name, content)]).intents) == 4


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/logo.png", "gave image/png, which an import does not read"),
        ("/big", "is larger than 1 KB, the upload limit"),
        ("/missing", "answered 404 Not Found"),
    ],
)
def test_what_no_import_can_read_is_refused_with_the_reason(site: str, path: str, message: str) -> None:
    with pytest.raises(WebImportError, match=message):
        fetch_page(f"{site}{path}", limit_bytes=1024, allow_private=True)


def test_only_public_web_addresses_unless_private_ones_are_allowed(site: str) -> None:
    with pytest.raises(WebImportError, match=r"127\.0\.0\.1 is a private address .*HELPLOOP_IMPORT_PRIVATE"):
        fetch_page(f"{site}/help/faq", limit_bytes=100_000)
    for url in ("file:///etc/passwd", "ftp://example.com/faq.html", "http://", "example.com/faq"):
        with pytest.raises(WebImportError, match="is not a web address"):
            check_address(url)
    for url in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.8/", "http://[::1]:8080/"):
        with pytest.raises(WebImportError, match="is a private address"):
            check_address(url)
    with pytest.raises(WebImportError, match="cannot be found"):
        check_address("http://no-such-host.invalid/faq", allow_private=True)


def test_a_redirect_into_the_private_network_is_refused() -> None:
    import urllib.request
    from http.client import HTTPMessage

    handler = _CheckedRedirects(allow_private=False)
    request = urllib.request.Request("https://www.example.com/faq")
    redirect = io.BytesIO(b"moved")  # the redirect's own response
    with pytest.raises(WebImportError, match="169.254.169.254 is a private address"):
        handler.redirect_request(request, redirect, 302, "Found", HTTPMessage(), "http://169.254.169.254/")
    assert redirect.closed  # not followed, and its connection not left open


def test_the_cli_imports_a_web_address_and_refuses_a_private_one(
    site: str, settings: Any, tmp_path: Path
) -> None:
    import dataclasses

    from core.db import Database
    from core.knowledge_base import load_knowledge_base
    from tests.serving.test_cli import run

    assert run(settings, "db", "upgrade").exit_code == 0
    refused = run(settings, "kb", "import", f"{site}/help/faq")
    assert refused.exit_code == 2 and "127.0.0.1 is a private address" in refused.output
    assert "(nothing was imported)" in refused.output
    intranet = dataclasses.replace(settings, import_private_addresses=True)
    done = run(intranet, "kb", "import", f"{site}/help/faq")
    assert done.exit_code == 0, done.output
    assert "imported: 2 intents created, 0 updated, 2 examples added" in done.output
    with Database(settings).session() as session:
        assert sorted(load_knowledge_base(session).intents) == ["how_do_i_freeze_my_card", "is_there_a_fee"]
    missing = run(intranet, "kb", "import", f"{site}/missing")
    assert missing.exit_code == 2 and "answered 404 Not Found (nothing was imported)" in missing.output
