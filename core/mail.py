"""Replies by e-mail: a team member's live-chat reply also sent to the e-mail address the customer left.

A customer handed to a person while nobody can answer leaves an e-mail address or a phone number
(``registry.leave_contact``), and has usually left the page by the time someone writes. With an SMTP server
set up (``HELPLOOP_SMTP_URL``, ``HELPLOOP_MAIL_FROM``), the live chat's reply box can send the reply to that
address too. It is written to the messaging apps' outbox (``channel_messages``, channel ``email``, the address
as the chat) in the same transaction as the live-chat message, and a sender thread of the web process's own
sends it with the apps' retries (``core.channels.deliver_due``; the SMTP client is ``serving.mail``). The
transcript shows how far it got, as for a message to a messaging app.

The customer's answer goes to the team's mailbox (``HELPLOOP_MAIL_REPLY_TO``, else the sender's address):
HelpLoop sends e-mail, it does not read any.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from email.utils import make_msgid, parseaddr
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import registry  # a module import: core.registry's contact rules
from core.models import ChannelMessage, ConversationMessage, Turn, utcnow

EMAIL = "email"  # the outbox's channel for replies by e-mail
SCHEMES = {"smtp": 587, "smtps": 465}
QUOTE_LIMIT = 1000  # characters of the customer's last message quoted under the reply
SUBJECT_LIMIT = 200
ADDRESS_LIMIT = 128  # channel_messages.chat_key
# What the transcript says of an e-mailed reply, by core.channels.progress (a mail server reports no
# delivery or reading: "sent" is as far as HelpLoop can tell).
PROGRESS = {"pending": "email_pending", "sent": "emailed", "failed": "email_failed"}


class MailSettingsError(ValueError):
    """An SMTP address or sender that cannot be used."""


@dataclass(frozen=True)
class SmtpServer:
    """Where replies by e-mail go out: ``security`` is ``ssl`` (TLS from the first byte, smtps://),
    ``starttls`` (upgraded before anything is sent; required) or ``starttls_if_offered`` (smtp:// to this
    machine's own relay, which may offer none)."""

    host: str
    port: int
    security: str
    username: str = ""
    password: str = ""

    def describe(self) -> str:
        """The server without its password, for pages and logs."""
        who = f"{self.username}@" if self.username else ""
        how = {"ssl": "TLS", "starttls": "STARTTLS", "starttls_if_offered": "STARTTLS if offered"}
        return f"{who}{self.host}:{self.port} ({how[self.security]})"


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_smtp_url(url: str) -> SmtpServer:
    """``smtp://[user[:password]@]host[:port]`` (port 587, STARTTLS required: a password and the customers'
    replies never cross the network in the clear; to a relay on this machine, STARTTLS only if it offers it)
    or ``smtps://…`` (port 465, TLS from the start). The user and password are percent-encoded."""
    parts = urlsplit(url.strip())
    if parts.scheme not in SCHEMES:
        raise MailSettingsError(
            f"smtp_url must start with smtp:// (STARTTLS) or smtps:// (TLS), not {url.split(':', 1)[0]!r}"
        )
    try:
        port = parts.port or SCHEMES[parts.scheme]
    except ValueError:
        raise MailSettingsError("smtp_url has a port that is no number from 1 to 65535") from None
    host = parts.hostname or ""
    if not host:
        raise MailSettingsError("smtp_url names no server (e.g. smtp://user:password@smtp.example.com:587)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise MailSettingsError("smtp_url takes a server only: no path, query or fragment")
    if parts.scheme == "smtps":
        security = "ssl"
    else:
        security = "starttls_if_offered" if _loopback(host) else "starttls"
    return SmtpServer(
        host=host,
        port=port,
        security=security,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
    )


def check_sender(value: str, key: str) -> str:
    """An address to send from or reply to (``Support <help@example.com>`` or ``help@example.com``): the
    value as given, or an error naming ``key``."""
    _, address = parseaddr(value)
    if not address or not registry.CONTACT_EMAIL.match(address) or "\n" in value or "\r" in value:
        raise MailSettingsError(
            f"{key} must be an e-mail address, optionally with a name ('Support <help@example.com>'), "
            f"not {value!r}"
        )
    return value.strip()


def check_subject(value: str) -> str:
    """The e-mails' subject on one line (a line break would end the header)."""
    value = re.sub(r"\s+", " ", value).strip()
    if not value or len(value) > SUBJECT_LIMIT:
        raise MailSettingsError(f"mail_subject must be 1 to {SUBJECT_LIMIT} characters, not {len(value)}")
    return value


def email_address(contact: str | None) -> str | None:
    """The e-mail address among what the customer left (None: they left a phone number, or nothing)."""
    contact = (contact or "").strip()
    return contact if registry.CONTACT_EMAIL.match(contact) else None


def _last_customer_words(session: Session, conversation_id: str, before: int) -> str | None:
    """What the customer wrote last before the team's message ``before``: a live-chat message, or their
    last question to the bot (its original words, as the transcript shows them)."""
    message = session.scalars(
        select(ConversationMessage)
        .where(
            ConversationMessage.conversation_id == conversation_id,
            ConversationMessage.sender == "customer",
            ConversationMessage.id < before,
        )
        .order_by(ConversationMessage.id.desc())
        .limit(1)
    ).first()
    turn = session.scalars(
        select(Turn)
        .where(Turn.conversation_id == conversation_id, Turn.served_by != registry.SUGGESTION_ARM)
        .order_by(Turn.id.desc())
        .limit(1)
    ).first()
    newest = max(
        (c for c in (message, turn) if c is not None),
        key=lambda c: c.created_at.replace(tzinfo=None),
        default=None,
    )
    if newest is None:
        return None
    words = newest.text if isinstance(newest, ConversationMessage) else newest.user_text
    words = (words or "").strip()
    return words[:QUOTE_LIMIT] or None


def queue_email(
    session: Session, *, message: ConversationMessage, contact: str | None, subject: str, sender: str
) -> ChannelMessage:
    """Put the team's live-chat ``message`` in the outbox as an e-mail to the address the customer left
    (``MessageError`` when they left none). Its Message-ID is fixed now, so a retry is the same e-mail; it
    answers the conversation's earlier e-mails (In-Reply-To, References), so the customer's mail program
    shows them as one thread; it quotes what the customer wrote last."""
    address = email_address(contact)
    if address is None:
        raise registry.MessageError("the customer left no e-mail address")
    if len(address) > ADDRESS_LIMIT:
        raise registry.MessageError(f"the customer's address is longer than {ADDRESS_LIMIT} characters")
    earlier = [
        str(p["message_header"])
        for p in session.scalars(
            select(ChannelMessage.payload)
            .where(ChannelMessage.conversation_id == message.conversation_id, ChannelMessage.channel == EMAIL)
            .order_by(ChannelMessage.id)
        )
        if p.get("message_header")
    ]
    domain = parseaddr(sender)[1].rpartition("@")[2] or None
    payload: dict[str, Any] = {
        "text": message.text,
        "from": "agent",
        "message_id": message.id,
        "subject": subject,
        "message_header": make_msgid(domain=domain),
        "references": earlier[-20:],  # a long thread names its latest; mail programs need no more
        "quote": _last_customer_words(session, message.conversation_id, message.id),
    }
    outgoing = ChannelMessage(
        conversation_id=message.conversation_id,
        channel=EMAIL,
        chat_key=address,
        payload=payload,
        status="pending",
        attempts=0,
        created_at=utcnow(),
    )
    session.add(outgoing)
    session.flush()
    return outgoing
