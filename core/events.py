"""Operator notifications: an outbox of events, delivered to the ops webhook by the worker.

A domain change that an operator should hear about writes an ``OpsEvent`` row in the same transaction as the
change (``emit``), so an event exists exactly when the change committed: a rolled-back promotion sends
nothing, and a crash between the change and the POST loses nothing. A worker (``deliver_due``, every few
seconds) POSTs pending events as JSON (Slack-compatible ``text``), signed like the handoff webhook, and
retries a failed delivery after 1, 2, 4 and 8 minutes before marking it failed; the Activity page lists
every event with its delivery and can send it again.

Kinds (``core.settings.OPS_EVENT_KINDS``):

* ``deployment.changed``: what serves traffic changed: shadow, canary, promote, rollback, end canary/shadow,
  and the canary guard taking a worse canary out by itself (the one an operator most needs to hear about).
* ``job.finished``: a training run or an operator's job (export, re-aggregation) succeeded, failed or was
  cancelled; a scheduled job (the daily retention) only when it did not succeed.
* ``reviewer.suspended``: the gold check suspended a reviewer.
* ``account.locked``: an account's sign-ins are refused for a while after too many wrong passwords from any
  addresses (``Settings.login_failures_per_account``): someone may be guessing its password.
* ``item.escalated``: a review item stayed unresolved after the most judgements and waits for an operator.
* ``item.personal_data``: a reviewer reported personal data that redaction missed in a review item; it is
  out of the queue until an operator redacts it by hand.
* ``gold.contested``: most reviewers answer a check question otherwise than its key (the key may be wrong).
* ``knowledge.changed``: a new knowledge-base version that changed something (an import, a CI push through
  the admin API, an edit on the Knowledge page, a restore), with what it changed.
* ``knowledge.disputed``: reviewers filed a question under one intent that the knowledge base has as an
  example of another (one of them is wrong; training would learn both).
* ``guidelines.changed``: a new version of the reviewing guidelines.
* ``models.pruned``: the bundles of old models were deleted (``helploop models prune`` or after a training
  run), with which versions and how much space it freed; those versions can no longer be deployed.
* ``test``: sent from the Activity page to check the receiving end.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from core.models import OpsEvent, as_utc, utcnow
from core.settings import OPS_EVENT_KINDS, Settings
from core.webhooks import Poster, attempt, post_json, signed_request

RETRY_MINUTES = (1, 2, 4, 8)  # wait after the 1st, 2nd, ... failed attempt
MAX_ATTEMPTS = len(RETRY_MINUTES) + 1
KEEP_DAYS = 90  # older events (unless still pending) are deleted by an hourly watch
BATCH = 20
LOOK_BUDGET_SECONDS = 10.0  # POSTs per look stop after this long (the watcher thread has other watches)
CLAIM_SECONDS_PER_EVENT = 10  # twice a POST's timeout: a batch's claim outlasts its deliveries
STATUSES = ("pending", "delivered", "failed", "unsent")


class EventError(ValueError):
    pass


def emit(
    session: Session, kind: str, text: str, *, path: str = "", data: dict[str, Any] | None = None
) -> OpsEvent:
    """Record an event in the caller's transaction. ``path``: the page about it (the payload's ``url`` is the
    public URL plus this path); ``text``: one line a person reads; ``data``: the figures, for automation."""
    if kind not in OPS_EVENT_KINDS:
        raise EventError(f"unknown event kind {kind!r}; known: {list(OPS_EVENT_KINDS)}")
    row = OpsEvent(
        kind=kind,
        text=text[:2000],
        data=dict(data or {}) | ({"path": path} if path else {}),
        status="pending",
        attempts=0,
    )
    session.add(row)
    session.flush()
    return row


def event_url(event: OpsEvent, settings: Settings) -> str:
    path = str((event.data or {}).get("path", ""))
    return f"{settings.public_url.rstrip('/')}{path}" if settings.public_url and path else ""


def payload(event: OpsEvent, settings: Settings) -> dict[str, Any]:
    """What the ops webhook receives: ``event`` (the kind), ``id`` (repeats on a retry: receivers can
    de-duplicate by it), ``text`` (with the link, which Slack-style incoming webhooks display), ``url`` and
    ``data``."""
    url = event_url(event, settings)
    data = {k: v for k, v in (event.data or {}).items() if k != "path"}
    return {
        "event": event.kind,
        "id": event.id,
        "created_at": as_utc(event.created_at).isoformat(),
        "text": event.text + (f" {url}" if url else ""),
        "url": url,
        "data": data,
    }


def deliver_due(
    session: Session,
    settings: Settings,
    *,
    post: Poster = post_json,
    now: datetime | None = None,
    limit: int = BATCH,
    clock: Callable[[], float] = time.monotonic,
) -> Counter[str]:
    """POST the pending events that are due, oldest first. Three steps, so no transaction is open while a
    slow receiver keeps us waiting (on SQLite that would hold up every chat turn's write):

    1. claim: the due rows (``SKIP LOCKED`` on PostgreSQL) get their attempt counted and a claim until
       ``now + CLAIM_SECONDS_PER_EVENT * limit``, committed: another worker skips them meanwhile, and a
       worker that dies mid-way leaves them to be sent again once the claim runs out (at least once; the
       ``id`` lets receivers drop a repeat);
    2. POST each one, outside any transaction, oldest first; after the first failure the rest are not tried
       (``deferred``: no attempt counted, due a minute later), so a receiver that is down costs one timeout
       per look, not one per event (the canary guard shares the watcher thread); and once a look has spent
       ``LOOK_BUDGET_SECONDS`` on a slow receiver, the rest wait for the next look (due at once, no
       attempt counted);
    3. record each outcome: delivered, a retry after 1, 2, 4, 8 minutes, or failed.

    Events nobody subscribed to (no URL, or a kind outside ``ops_webhook_events``) become ``unsent``:
    configuring a webhook later does not replay old news. Returns the outcomes counted."""
    now = now or utcnow()
    query = (
        select(OpsEvent)
        .where(
            OpsEvent.status == "pending",
            or_(OpsEvent.next_attempt_at.is_(None), OpsEvent.next_attempt_at <= now),
        )
        .order_by(OpsEvent.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    outcomes: Counter[str] = Counter()
    wanted = set(settings.ops_event_kinds)
    claimed: list[tuple[int, bytes, dict[str, str]]] = []
    for event in session.scalars(query).all():
        if not settings.ops_webhook_url or event.kind not in wanted:
            event.status = "unsent"
            outcomes["unsent"] += 1
            continue
        body, headers = signed_request(
            payload(event, settings), secret=settings.ops_webhook_secret, user_agent="HelpLoop-ops/1"
        )
        headers["X-HelpLoop-Event"] = event.kind
        event.attempts += 1
        event.next_attempt_at = now + timedelta(seconds=CLAIM_SECONDS_PER_EVENT * limit)
        claimed.append((event.id, body, headers))
    session.commit()
    if not claimed:
        return outcomes
    problems: dict[int, str | None] = {}
    started = clock()
    failed = False
    for event_id, body, headers in claimed:
        problems[event_id] = attempt(post, settings.ops_webhook_url, body, headers)
        if problems[event_id] is not None:
            failed = True
            break  # the receiver is failing: the rest wait for the next try instead of timing out in turn
        if clock() - started >= LOOK_BUDGET_SECONDS:
            break  # a slow receiver: the rest go on the next look, a few seconds from now
    for event_id, _, _ in claimed:
        sent = session.get(OpsEvent, event_id)
        if sent is None:  # deleted meanwhile
            continue
        if event_id not in problems:  # not tried: no attempt counted; due with the failed one's retry
            sent.attempts -= 1
            sent.next_attempt_at = now + timedelta(minutes=RETRY_MINUTES[0]) if failed else now
            outcomes["deferred"] += 1
            continue
        problem = problems[event_id]
        if problem is None:
            sent.status, sent.delivered_at, sent.next_attempt_at = "delivered", now, None
            outcomes["delivered"] += 1
        elif sent.attempts >= MAX_ATTEMPTS:
            sent.status, sent.last_error, sent.next_attempt_at = "failed", problem, None
            outcomes["failed"] += 1
        else:
            sent.last_error = problem
            sent.next_attempt_at = now + timedelta(minutes=RETRY_MINUTES[sent.attempts - 1])
            outcomes["retry"] += 1
    session.flush()
    return outcomes


def purge_old(session: Session, settings: Settings, *, now: datetime | None = None) -> str | None:
    """Delete events older than ``KEEP_DAYS`` that are no longer waiting to be sent (an hourly watch)."""
    cutoff = (now or utcnow()) - timedelta(days=KEEP_DAYS)
    result = session.execute(
        delete(OpsEvent).where(OpsEvent.created_at < cutoff, OpsEvent.status != "pending")
    )
    removed = int(getattr(result, "rowcount", 0) or 0)
    return f"deleted {removed} events older than {KEEP_DAYS} days" if removed else None


def deliver_watch(session: Session, settings: Settings) -> str | None:
    """The worker's watch. It speaks (a logged warning) only when a delivery went wrong: the outcomes of the
    look, e.g. ``delivered 2, retry 1``; a look that delivered everything it tried is not news."""
    outcomes = deliver_due(session, settings)
    if not (outcomes["retry"] or outcomes["failed"]):
        return None
    done = {k: v for k, v in outcomes.items() if k != "unsent"}
    return ", ".join(f"{k} {v}" for k, v in sorted(done.items()))


def resend(session: Session, *, event_id: int) -> OpsEvent:
    """Queue an event for delivery again (after fixing the receiving end), attempts counted afresh."""
    event = session.get(OpsEvent, event_id)
    if event is None:
        raise EventError(f"event {event_id} does not exist")
    if event.status == "pending":
        raise EventError(f"event {event_id} is already waiting to be sent")
    event.status, event.attempts, event.next_attempt_at, event.last_error = "pending", 0, None, None
    session.flush()
    return event


def recent_events(session: Session, *, kind: str | None = None, limit: int = 100) -> list[OpsEvent]:
    query = select(OpsEvent).order_by(OpsEvent.id.desc()).limit(limit)
    if kind:
        query = query.where(OpsEvent.kind == kind)
    return list(session.scalars(query))


def delivery_counts(session: Session, *, since: datetime) -> dict[str, int]:
    """Events per delivery status since ``since`` (the Activity page's summary)."""
    rows = session.execute(
        select(OpsEvent.status, func.count()).where(OpsEvent.created_at >= since).group_by(OpsEvent.status)
    )
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: int(n) for status, n in rows})
    return counts


def event_view(event: OpsEvent, settings: Settings) -> dict[str, Any]:
    return {
        "id": event.id,
        "kind": event.kind,
        "text": event.text,
        "path": str((event.data or {}).get("path", "")),
        "url": event_url(event, settings),
        "data": {k: v for k, v in (event.data or {}).items() if k != "path"},
        "status": event.status,
        "attempts": event.attempts,
        "next_attempt_at": event.next_attempt_at,
        "last_error": event.last_error,
        "delivered_at": event.delivered_at,
        "created_at": event.created_at,
    }
