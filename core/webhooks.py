"""Outgoing webhooks (the handoff notifier in serving, the ops events in core.events): one JSON POST, and the
signature a receiver checks."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.request
from collections.abc import Callable
from typing import Any

Poster = Callable[[str, bytes, dict[str, str]], int]  # (url, body, headers) -> HTTP status


def post_json(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - the operator's own URL
        return int(response.status)


def signature(secret: str, body: bytes) -> str:
    """``X-HelpLoop-Signature``: ``sha256=`` + HMAC-SHA256 of the raw body with the shared secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_request(payload: dict[str, Any], *, secret: str, user_agent: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one delivery (``X-HelpLoop-Signature`` when a secret is set)."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "User-Agent": user_agent}
    if secret:
        headers["X-HelpLoop-Signature"] = signature(secret, body)
    return body, headers


def attempt(post: Poster, url: str, body: bytes, headers: dict[str, str]) -> str | None:
    """One POST: None when the receiver took it (2xx), else what went wrong."""
    try:
        status = post(url, body, headers)
    except Exception as exc:  # noqa: BLE001 - any network error is a failed attempt, retried by the caller
        return f"{type(exc).__name__}: {exc}"[:500]
    return None if 200 <= status < 300 else f"HTTP {status}"
