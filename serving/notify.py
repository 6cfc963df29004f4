"""Tell people when a conversation is handed to them: a JSON POST to a webhook (Slack's incoming webhooks,
a helpdesk, an automation tool) off the request path, signed when a secret is set, retried with backoff.

Only the redacted message leaves HelpLoop; the original and the customer's contact stay in the inbox,
behind the operator login, which the payload links to.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from core.webhooks import Poster, attempt, post_json, signed_request
from serving.background import BackgroundQueue

log = logging.getLogger("helploop.serving.notify")
REASONS = {
    "bot": "The bot could not answer and handed the conversation to a person.",
    "asked": "The customer asked for a person.",
    "contact": "The customer left a contact for a person to reach them.",
    "message": "The customer wrote in a live chat with a person.",
    "low_rating": "A customer was unhappy with a live chat.",
}


class HandoffNotifier:
    def __init__(
        self,
        url: str,
        *,
        secret: str = "",
        public_url: str = "",
        post: Poster = post_json,
        attempts: int = 3,
        backoff_seconds: float = 1.0,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self.secret = secret
        self.public_url = public_url.rstrip("/")
        self._post = post
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self._on_result = on_result or (lambda _outcome: None)
        self._work = BackgroundQueue("helploop-handoff-notifier", self._deliver, capacity=1000)

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def notify(self, *, session_id: str, reason: str, message: str, page: str | None = None) -> None:
        """Queue one notification (returns at once). ``message`` must already be redacted; ``page``: the web
        page the widget chat is on (core.pages, kept redacted), when known."""
        if not self.enabled:
            return
        link = f"{self.public_url}/operator/conversations/{session_id}" if self.public_url else ""
        text = f"{REASONS[reason]} Last message: “{message}”" + (f" (on {page})" if page else "")
        text += f" {link}" if link else ""
        self._work.put(
            {
                "event": "handoff",
                "reason": reason,
                "session_id": session_id,
                "message": message,
                "page": page,
                "url": link,
                "text": text,  # what Slack-style incoming webhooks display
            }
        )

    def drain(self, timeout: float = 10.0) -> bool:
        return self._work.drain(timeout)

    def _deliver(self, payload: dict[str, Any]) -> None:
        body, headers = signed_request(payload, secret=self.secret, user_agent="HelpLoop-handoff/1")
        for number in range(1, self.attempts + 1):
            problem = attempt(self._post, self.url, body, headers)
            if problem is None:
                self._on_result("sent")
                return
            log.warning("handoff webhook attempt %d/%d failed: %s", number, self.attempts, problem)
            if number < self.attempts:
                time.sleep(self.backoff_seconds * 2 ** (number - 1))
        self._on_result("failed")
