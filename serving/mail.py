"""The SMTP client that sends the team's replies by e-mail (core.mail queues them in the outbox).

Each reply is one e-mail, plain text (the reply's Markdown as typed) with an HTML alternative (the Markdown
rendered, raw HTML escaped), from ``HELPLOOP_MAIL_FROM`` with ``Reply-To`` the team's mailbox, threaded by
the Message-ID fixed when it was queued. A temporary refusal (SMTP 4xx), a network error or a timeout is
tried again with the outbox's retries; a permanent one (5xx: no such mailbox, relaying denied, a wrong
password) fails at once, with the server's words kept for the transcript.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import escape

from core.channels import Failure, Sent
from core.mail import SmtpServer, parse_smtp_url
from core.settings import Settings

TIMEOUT_SECONDS = 20.0
_RENDERER = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable("table")
HTML = """<!doctype html>
<html><body style="font-family:sans-serif;line-height:1.5;color:#222">
{reply}
{quote}</body></html>
"""


def build_email(address: str, payload: dict[str, Any], *, sender: str, reply_to: str) -> EmailMessage:
    """The e-mail of a queued reply (``core.mail.queue_email``'s payload) to ``address``."""
    text = str(payload.get("text") or "")
    quote = payload.get("quote")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = address
    message["Reply-To"] = reply_to or parseaddr(sender)[1]
    message["Subject"] = str(payload.get("subject") or "")
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = str(payload["message_header"])
    references = [str(r) for r in payload.get("references") or []]
    if references:
        message["In-Reply-To"] = references[-1]
        message["References"] = " ".join(references)
    message["Auto-Submitted"] = "no"  # a person wrote it (RFC 3834): auto-responders may answer
    plain = text
    quoted_html = ""
    if quote:
        lines = "\n".join(f"> {line}" for line in str(quote).splitlines())
        plain += f"\n\n---\nYou wrote to us:\n{lines}\n"
        quoted_html = (
            '<hr><p style="color:#666">You wrote to us:</p>'
            f'<blockquote style="color:#666;border-left:3px solid #ccc;margin:0;padding-left:1em">'
            f"{escape(str(quote))}</blockquote>\n"
        )
    message.set_content(plain)
    message.add_alternative(HTML.format(reply=_RENDERER.render(text), quote=quoted_html), subtype="html")
    return message


def _connect(server: SmtpServer, timeout: float) -> smtplib.SMTP:
    """An SMTP session, encrypted as ``server.security`` asks and logged in when a user is set."""
    context = ssl.create_default_context()
    client: smtplib.SMTP
    if server.security == "ssl":
        client = smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(server.host, server.port, timeout=timeout)
    try:
        client.ehlo()
        if server.security != "ssl":
            if client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
            elif server.security == "starttls":
                raise smtplib.SMTPNotSupportedError(
                    f"{server.host} does not offer STARTTLS: nothing is sent unencrypted "
                    "(use smtps:// if it takes TLS on another port)"
                )
        if server.username:
            client.login(server.username, server.password)
    except BaseException:
        client.close()
        raise
    return client


def _said(words: bytes | str) -> str:
    return words.decode(errors="replace") if isinstance(words, bytes) else words


def failure(exc: Exception) -> Failure:
    """A send that did not go: final for the server's permanent refusals (5xx), tried again otherwise."""
    code = getattr(exc, "smtp_code", None)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [c for c, _ in exc.recipients.values()]
        code = codes[0] if codes else None
        words = "; ".join(f"{c} {_said(m)}" for c, m in exc.recipients.values())
    elif isinstance(exc, smtplib.SMTPResponseException):
        words = f"{exc.smtp_code} {_said(exc.smtp_error)}"
    else:
        words = f"{type(exc).__name__}: {exc}"
    final = isinstance(exc, smtplib.SMTPNotSupportedError) or (isinstance(code, int) and 500 <= code < 600)
    return Failure(words[:500], final=final)


class Mailer:
    """The outbox's client for channel ``email`` (``serving.channels.clients``)."""

    name = "email"

    def __init__(self, settings: Settings, timeout: float = TIMEOUT_SECONDS) -> None:
        self.server = parse_smtp_url(settings.smtp_url)
        self.sender = settings.mail_from
        self.reply_to = settings.mail_reply_to
        self.timeout = timeout

    def _deliver(self, message: EmailMessage) -> None:
        client = _connect(self.server, self.timeout)
        try:
            client.send_message(message)
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):  # sent already: the goodbye does not matter
                client.close()

    def send(self, chat_key: str, payload: dict[str, Any]) -> Failure | Sent:
        message = build_email(chat_key, payload, sender=self.sender, reply_to=self.reply_to)
        try:
            self._deliver(message)
        except (smtplib.SMTPException, OSError) as exc:
            return failure(exc)
        return Sent(str(message["Message-ID"]))

    def check(self) -> str:
        """Connect, encrypt and log in without sending anything (``helploop doctor``): what was reached.
        Raises the SMTP or network error otherwise."""
        client = _connect(self.server, self.timeout)
        try:
            client.noop()
        finally:
            client.quit()
        return self.server.describe()

    def send_notice(self, addresses: Sequence[str], subject: str, text: str) -> str:
        """A notice to the team (``serving.notify``: a conversation handed to a person), plain text, marked
        as sent by a machine (RFC 3834: auto-responders stay quiet). Its Message-ID; raises the SMTP error."""
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(addresses)
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=parseaddr(self.sender)[1].rpartition("@")[2] or None)
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(text)
        self._deliver(message)
        return str(message["Message-ID"])

    def send_test(self, address: str) -> str:
        """One e-mail to ``address`` now (``helploop mail test``): its Message-ID; raises the SMTP error."""
        payload = {
            "text": "A test e-mail from HelpLoop: replies to customers by e-mail will go out this way.",
            "subject": "HelpLoop test e-mail",
            "message_header": make_msgid(domain=parseaddr(self.sender)[1].rpartition("@")[2] or None),
        }
        message = build_email(address, payload, sender=self.sender, reply_to=self.reply_to)
        self._deliver(message)
        return str(message["Message-ID"])
