"""Accounts: the operator's actions on them and their audit trail (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import AccountEvent, Claim, User
from crowd_feedback.review import ReviewError, ReviewPolicy, add_gold_item, next_item, submit_judgement
from crowd_feedback.reviewers import (
    AccountError,
    account_events,
    authenticate,
    change_own_password,
    create_user,
    list_accounts,
    record_lockout,
    record_login,
    reinstate,
    session_token,
    set_active,
    set_password,
)

SECRET = "correct horse battery"


def actions(session: Session, username: str) -> list[tuple[str, str]]:
    return [(e.action, e.actor) for e, name in reversed(account_events(session)) if name == username]


def test_password_reset_changes_login_and_session_token(db_session: Session) -> None:
    user = create_user(db_session, username="rita", password=SECRET, role="reviewer", actor="omar")
    token = session_token(user)
    with pytest.raises(AccountError, match="at least 10"):
        set_password(db_session, username="rita", password="short", actor="omar")
    with pytest.raises(AccountError, match="no user 'nobody'"):
        set_password(db_session, username="nobody", password="a new long secret", actor="omar")
    assert session_token(user) == token  # refused changes change nothing
    set_password(db_session, username="rita", password="a new long secret", actor="omar")
    assert authenticate(db_session, username="rita", password=SECRET) is None
    assert authenticate(db_session, username="rita", password="a new long secret").id == user.id
    assert session_token(user) != token  # sessions opened with the old password end
    assert actions(db_session, "rita") == [("created", "omar"), ("password_reset", "omar")]


def test_a_user_changes_their_own_password_with_the_current_one(db_session: Session) -> None:
    user = create_user(db_session, username="rita", password=SECRET, role="reviewer", actor="omar")
    token = session_token(user)
    refused = [
        ("not the password", "a new long secret", "the current password is wrong"),
        (SECRET, "short", "at least 10"),
        (SECRET, SECRET, "the new password is the current one"),
    ]
    for current, new, message in refused:
        with pytest.raises(AccountError, match=message):
            change_own_password(db_session, user_id=user.id, current=current, new=new)
    assert session_token(user) == token and actions(db_session, "rita") == [("created", "omar")]
    changed = change_own_password(db_session, user_id=user.id, current=SECRET, new="a new long secret")
    assert changed.id == user.id and session_token(user) != token
    assert authenticate(db_session, username="rita", password=SECRET) is None
    assert authenticate(db_session, username="rita", password="a new long secret").id == user.id
    assert actions(db_session, "rita") == [("created", "omar"), ("password_changed", "rita")]
    assert [row.last_login_at for row in list_accounts(db_session)] == [None]  # never signed in yet
    record_login(db_session, user=user, now=datetime(2026, 12, 6, 10, 5, tzinfo=UTC))
    db_session.flush()
    db_session.expire_all()  # read back from the database (PostgreSQL keeps the zone, SQLite does not)
    assert [row.last_login_at for row in list_accounts(db_session)] == [
        datetime(2026, 12, 6, 10, 5, tzinfo=UTC)
    ]
    set_active(db_session, username="rita", active=False, actor="omar")
    with pytest.raises(AccountError, match="not active"):  # a session that outlived its deactivation
        change_own_password(db_session, user_id=user.id, current="a new long secret", new="another secret!")


def test_sign_in_history_keeps_the_newest_twenty_and_other_sessions_can_be_ended(db_session: Session) -> None:
    from crowd_feedback.reviewers import SIGN_INS_KEPT, end_other_sessions, recent_sign_ins

    rita = create_user(db_session, username="rita", password=SECRET, role="reviewer")
    omar = create_user(db_session, username="omar", password=SECRET, role="operator")
    start = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
    for n in range(SIGN_INS_KEPT + 5):
        record_login(
            db_session,
            user=rita,
            now=start + timedelta(minutes=n),
            address=f"10.0.0.{n}",
            user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
            method="app code" if n % 2 else "password",
        )
    record_login(db_session, user=omar, now=start, address="10.9.9.9")
    db_session.expire_all()
    history = recent_sign_ins(db_session, user_id=rita.id)
    assert len(history) == SIGN_INS_KEPT == 20  # the oldest five went; omar's stays
    assert [s.address for s in history[:2]] == ["10.0.0.24", "10.0.0.23"] and history[
        -1
    ].address == "10.0.0.5"
    assert (history[0].method, history[1].method) == ("password", "app code")
    assert [s.address for s in recent_sign_ins(db_session, user_id=omar.id)] == ["10.9.9.9"]
    token = session_token(rita)
    end_other_sessions(db_session, user_id=rita.id)
    assert session_token(rita) != token  # every session opened before ends
    assert actions(db_session, "rita")[-1] == ("sessions_ended", "rita")
    rows = {row.username: row.last_event for row in list_accounts(db_session)}
    assert rows["rita"].startswith("signed out of other browsers by rita")


def test_a_lockout_is_audited_and_announced_once_a_window(db_session: Session) -> None:
    from core.events import recent_events

    create_user(db_session, username="Omar", password=SECRET, role="operator")
    start = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)

    def lock(username: str, minutes_later: int) -> bool:
        when = start + timedelta(minutes=minutes_later)
        return record_lockout(db_session, username=username, failures=10, window_seconds=900, now=when)

    assert not lock("nobody", 0)  # a name with no account: nothing to audit, no alarm per guessed name
    assert lock("omar", 0)  # the typed name, whatever its case
    db_session.query(AccountEvent).filter_by(action="locked").update({"created_at": start})
    assert not lock("omar", 5)  # the refused attempts that follow within the window add nothing
    assert lock("omar", 16)  # a new lockout after the window: someone is still at it
    assert actions(db_session, "Omar") == [("created", "cli"), ("locked", "system"), ("locked", "system")]
    events = recent_events(db_session, kind="account.locked")
    assert len(events) == 2 and events[0].data == {
        "username": "Omar",
        "failures": 10,
        "minutes": 15,
        "what": "passwords",
        "path": "/operator/accounts",
    }
    assert events[0].text.startswith(
        "Sign-ins to operator Omar are refused for up to 15 minutes after 10 wrong"
    )


def test_deactivation_ends_logins_releases_claims_and_spares_the_last_operator(db_session: Session) -> None:
    policy = ReviewPolicy(gold_rate=1.0)
    add_gold_item(db_session, text="where is my card", label="card_arrival", policy=policy)
    rita = create_user(db_session, username="rita", password=SECRET, role="reviewer")
    create_user(db_session, username="omar", password=SECRET, role="operator")
    assert next_item(db_session, reviewer=rita, policy=policy, rng=random.Random(0)) is not None
    assert db_session.scalar(select(func.count()).select_from(Claim)) == 1
    set_active(db_session, username="rita", active=False, actor="omar", reason="left the team")
    assert authenticate(db_session, username="rita", password=SECRET) is None
    assert db_session.scalar(select(func.count()).select_from(Claim)) == 0  # the item is back in the queue
    with pytest.raises(AccountError, match="already deactivated"):
        set_active(db_session, username="rita", active=False, actor="omar")
    with pytest.raises(AccountError, match="last active operator"):
        set_active(db_session, username="omar", active=False, actor="omar")
    assert db_session.scalars(select(User).where(User.username == "omar")).one().active
    set_active(db_session, username="rita", active=True, actor="omar")
    assert authenticate(db_session, username="rita", password=SECRET) is not None
    assert [a for a, _ in actions(db_session, "rita")] == ["created", "deactivated", "reactivated"]
    reasons = {e.action: e.reason for e, _ in account_events(db_session)}
    assert reasons["deactivated"] == "left the team"


def test_gold_suspension_is_audited_and_an_operator_reinstates_with_a_fresh_record(
    db_session: Session,
) -> None:
    policy = ReviewPolicy(gold_rate=1.0, gold_min_answered=3, gold_min_accuracy=0.6)
    for i in range(6):
        add_gold_item(db_session, text=f"where is my card {i}", label="card_arrival", policy=policy)
    bad = create_user(db_session, username="bart", password=SECRET, role="reviewer")
    with pytest.raises(AccountError, match="not suspended"):
        reinstate(db_session, username="bart", actor="omar", reason="checked")

    def answer(label: str) -> None:
        item = next_item(db_session, reviewer=bad, policy=policy, rng=random.Random(0))
        assert item is not None
        submit_judgement(
            db_session,
            item_id=item.id,
            reviewer=bad,
            label=label,
            answer_ok=None,
            known_intents=["card_arrival", "exchange_rate"],
            policy=policy,
        )

    for _ in range(3):
        answer("exchange_rate")
    assert bad.suspended_at is not None
    assert actions(db_session, "bart")[-1] == ("suspended", "system")
    (row,) = [r for r in list_accounts(db_session) if r.username == "bart"]
    assert row.suspended_reason == "accuracy on gold 0/3 below 60%" and row.gold == "0/3"
    assert row.last_event.startswith("suspended by system")
    with pytest.raises(AccountError, match="say why"):
        reinstate(db_session, username="bart", actor="omar", reason="  ")
    assert bad.suspended_at is not None
    reinstate(db_session, username="bart", actor="omar", reason="guidelines explained")
    assert bad.suspended_at is None and (bad.gold_answered, bad.gold_correct) == (0, 0)
    event = db_session.scalars(select(AccountEvent).order_by(AccountEvent.id.desc())).first()
    assert (event.action, event.actor) == ("reinstated", "omar")
    assert event.reason == "gold 0/3 before; guidelines explained"
    answer("card_arrival")  # back at work, judged afresh by the gold check
    assert (bad.gold_answered, bad.gold_correct) == (1, 1) and bad.suspended_at is None
    for _ in range(2):
        answer("exchange_rate")
    assert bad.suspended_at is not None and bad.suspended_reason == "accuracy on gold 1/3 below 60%"
    with pytest.raises(ReviewError, match="suspended"):
        next_item(db_session, reviewer=bad, policy=policy)


def test_api_tokens_authenticate_their_operator_until_revoked(db_session: Session) -> None:
    from core.models import ApiToken
    from crowd_feedback.reviewers import (
        authenticate_token,
        create_api_token,
        list_api_tokens,
        revoke_api_token,
    )

    create_user(db_session, username="omar", password=SECRET, role="operator")
    create_user(db_session, username="olga", password=SECRET, role="operator")
    create_user(db_session, username="rita", password=SECRET, role="reviewer")
    token, secret = create_api_token(db_session, username="omar", name="  ci   deploy ", actor="olga")
    other, other_secret = create_api_token(db_session, username="omar", name="backup", actor="omar")
    assert token.name == "ci deploy" and secret != other_secret and len({secret, other_secret}) == 2
    assert (
        db_session.scalar(select(func.count()).select_from(ApiToken).where(ApiToken.token_hash == secret))
        == 0
    )
    user = authenticate_token(db_session, secret)
    assert user is not None and user.username == "omar" and token.last_used_at is not None
    assert authenticate_token(db_session, secret + "x") is None
    assert authenticate_token(db_session, secret[4:]) is None  # without the prefix
    with pytest.raises(AccountError, match="for operators"):
        create_api_token(db_session, username="rita", name="x", actor="olga")
    with pytest.raises(AccountError, match="no user"):
        create_api_token(db_session, username="nobody", name="x", actor="olga")
    set_active(db_session, username="omar", active=False, actor="olga", reason="left")
    assert authenticate_token(db_session, secret) is None
    with pytest.raises(AccountError, match="deactivated"):
        create_api_token(db_session, username="omar", name="x", actor="olga")
    set_active(db_session, username="omar", active=True, actor="olga", reason="back")
    revoke_api_token(db_session, token_id=token.id, actor="olga")
    revoke_api_token(db_session, token_id=token.id, actor="olga")  # twice: recorded once
    assert authenticate_token(db_session, secret) is None
    assert authenticate_token(db_session, other_secret) is not None
    assert [t.id for t in list_api_tokens(db_session)] == [other.id, token.id]
    assert actions(db_session, "omar").count(("token_created", "olga")) == 1
    assert actions(db_session, "omar").count(("token_revoked", "olga")) == 1
    with pytest.raises(AccountError, match="no API token"):
        revoke_api_token(db_session, token_id=other.id + 100, actor="olga")


def test_operators_seen_lately_are_online(db_session: Session) -> None:
    from datetime import timedelta

    from core.models import utcnow
    from crowd_feedback.reviewers import mark_seen, operators_online, seen_lately

    omar = create_user(db_session, username="omar", password="a long password", role="operator")
    ana = create_user(db_session, username="ana", password="a long password", role="operator")
    rita = create_user(db_session, username="rita", password="a long password", role="reviewer")
    now = utcnow()
    assert operators_online(db_session, within_seconds=120, now=now) == 0  # never seen
    assert mark_seen(db_session, user_id=omar.id, now=now - timedelta(seconds=100))
    assert not mark_seen(
        db_session, user_id=omar.id, now=now - timedelta(seconds=90)
    )  # within 30 s: no write
    assert mark_seen(db_session, user_id=ana.id, now=now - timedelta(seconds=300))
    assert mark_seen(db_session, user_id=rita.id, now=now)
    assert operators_online(db_session, within_seconds=120, now=now) == 1  # omar; ana is stale, rita reviews
    assert operators_online(db_session, within_seconds=60, now=now) == 0
    assert mark_seen(db_session, user_id=ana.id, now=now)
    assert operators_online(db_session, within_seconds=120, now=now) == 2
    # What a request checks on the row it already loaded before it writes at all (naive: SQLite's UTC).
    assert seen_lately(now - timedelta(seconds=10), now) and not seen_lately(None, now)
    assert seen_lately((now - timedelta(seconds=10)).replace(tzinfo=None), now)
    assert not seen_lately(now - timedelta(seconds=31), now)
