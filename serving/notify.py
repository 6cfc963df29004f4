"""Tell people when a conversation is handed to them: a JSON POST to a webhook (Slack's incoming webhooks,
a helpdesk, an automation tool) off the request path, signed when a secret is set, retried with backoff; and
an e-mail to the team's addresses (``HELPLOOP_HANDOFF_EMAIL_TO``), for every reason but a live chat's
messages (the person chatting sees those on the page).

Only the redacted message leaves HelpLoop; the original and the customer's contact stay in the inbox,
behind the operator login, which the payload links to.
"""

from __future__ import annotations

import logging
import smtplib
import time
from collections.abc import Callable
from typing import Any

from core.webhooks import Poster, attempt, post_json, signed_request
from serving.background import BackgroundQueue
from serving.mail import Mailer, failure

log = logging.getLogger("helploop.serving.notify")
REASONS = {
    "bot": "The bot could not answer and handed the conversation to a person.",
    "asked": "The customer asked for a person.",
    "contact": "The customer left a contact for a person to reach them.",
    "message": "The customer wrote in a live chat with a person.",
    "low_rating": "A customer was unhappy with a live chat.",
}
# The e-mail's subject per reason; "message" (a customer writing in a live chat) is not e-mailed.
SUBJECTS = {
    "bot": "A conversation was handed to a person",
    "asked": "A customer asked for a person",
    "contact": "A customer left a contact",
    "low_rating": "A customer rated a live chat low",
}


def deliver_notice(
    mailer: Mailer,
    addresses: tuple[str, ...],
    subject: str,
    text: str,
    *,
    attempts: int = 3,
    backoff_seconds: float = 1.0,
) -> bool:
    """One notice by e-mail, ``attempts`` tries with backoff, none more after a permanent refusal (5xx)."""
    for number in range(1, attempts + 1):
        try:
            mailer.send_notice(addresses, subject, text)
        except (smtplib.SMTPException, OSError) as exc:
            refused = failure(exc)
            log.warning("e-mail attempt %d/%d failed: %s", number, attempts, refused.error)
            if refused.final:
                return False
            if number < attempts:
                time.sleep(backoff_seconds * 2 ** (number - 1))
            continue
        return True
    return False


class MailQueue:
    """E-mails to people (a link to set a new password) sent from a background thread, off the request
    path, with ``deliver_notice``'s retries."""

    def __init__(self, mailer: Mailer, *, backoff_seconds: float = 1.0) -> None:
        self.mailer = mailer
        self.backoff_seconds = backoff_seconds
        self._work = BackgroundQueue("helploop-mail", self._deliver, capacity=1000)

    def send(self, addresses: tuple[str, ...], subject: str, text: str) -> None:
        self._work.put({"to": addresses, "subject": subject, "text": text})

    def drain(self, timeout: float = 10.0) -> bool:
        return self._work.drain(timeout)

    def _deliver(self, notice: dict[str, Any]) -> None:
        deliver_notice(
            self.mailer, notice["to"], notice["subject"], notice["text"], backoff_seconds=self.backoff_seconds
        )


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
        mailer: Mailer | None = None,
        mail_to: tuple[str, ...] = (),
    ) -> None:
        self.url = url
        self.mailer = mailer if mail_to else None
        self.mail_to = mail_to
        self.secret = secret
        self.public_url = public_url.rstrip("/")
        self._post = post
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self._on_result = on_result or (lambda _outcome: None)
        self._work = BackgroundQueue("helploop-handoff-notifier", self._deliver, capacity=1000)

    @property
    def enabled(self) -> bool:
        return bool(self.url) or self.mailer is not None

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
        if self.url:
            self._post_webhook(payload)
        if self.mailer is not None and payload["reason"] in SUBJECTS:
            self._email(self.mailer, payload)

    def _email(self, mailer: Mailer, payload: dict[str, Any]) -> None:
        """The notice by e-mail: its subject names the reason and the message's start; counted ``emailed``
        or ``email_failed`` (at once when the server refuses it for good: 5xx)."""
        message = str(payload["message"])
        line = " ".join(message.split())  # a header is one line: a message may hold line breaks
        subject = f"{SUBJECTS[payload['reason']]}: “{line[:60]}{'…' if len(line) > 60 else ''}”"
        lines = [REASONS[payload["reason"]], "", f"Last message: “{message}”"]
        if payload["page"]:
            lines.append(f"On the page: {payload['page']}")
        lines.append(
            f"Open the conversation: {payload['url']}"
            if payload["url"]
            else f"Conversation {payload['session_id']} in the inbox (HELPLOOP_PUBLIC_URL would link it)."
        )
        sent = deliver_notice(
            mailer,
            self.mail_to,
            subject,
            "\n".join(lines) + "\n",
            attempts=self.attempts,
            backoff_seconds=self.backoff_seconds,
        )
        self._on_result("emailed" if sent else "email_failed")

    def _post_webhook(self, payload: dict[str, Any]) -> None:
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
