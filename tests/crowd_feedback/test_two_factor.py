"""Two-factor sign-in: the codes (RFC 6238's test vector), turning it on and off, single use of a code, the
operator's reset, and what the settings require (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import re
import threading

import pyotp
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import RecoveryCode, User
from core.sealed import Sealer
from crowd_feedback import two_factor
from crowd_feedback.reviewers import (
    AccountError,
    account_events,
    create_user,
    list_accounts,
    session_token,
)

SECRET = "correct horse battery"
KEY = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # fixed, so no run can draw a code that happens to match
SEALER = Sealer("test-secret-key")
NOW = 1_796_000_000.0  # a fixed moment (2026-11-30), mid-step: NOW // 30 * 30 + 20


def code(key: str, seconds_from_now: float = 0.0) -> str:
    return pyotp.TOTP(key).at(NOW + seconds_from_now)


def actions(session: Session, username: str) -> list[tuple[str, str, str]]:
    return [
        (e.action, e.actor, e.reason) for e, name in reversed(account_events(session)) if name == username
    ]


def test_codes_are_rfc_6238s_and_a_phone_a_step_off_is_accepted() -> None:
    # RFC 6238 appendix B, SHA-1, T = 59 s: 94287082 (eight digits); the six we use are its last six.
    rfc_key = base64.b32encode(b"12345678901234567890").decode()
    assert two_factor.matching_step(rfc_key, "287082", now=59) == 1
    assert two_factor.matching_step(rfc_key, "287 082", now=59) == 1  # as some apps show it
    step = int(NOW // 30)
    assert two_factor.matching_step(KEY, code(KEY), now=NOW) == step
    assert (
        two_factor.matching_step(KEY, code(KEY, -30), now=NOW) == step - 1
    )  # the phone's clock a step behind
    assert two_factor.matching_step(KEY, code(KEY, 30), now=NOW) == step + 1
    for far in (-90, -60, 60, 90):
        assert two_factor.matching_step(KEY, code(KEY, far), now=NOW) is None
    assert two_factor.matching_step(KEY, code(KEY), now=NOW, after=step) is None  # used already
    assert two_factor.matching_step(KEY, code(KEY, 30), now=NOW, after=step) == step + 1
    for bad in ("", "12345", "1234567", "abcdef", code(KEY)[:5] + "x"):
        assert two_factor.matching_step(KEY, bad, now=NOW) is None
    fresh = two_factor.new_key()
    assert re.fullmatch(r"[A-Z2-7]{32}", fresh) and two_factor.new_key() != fresh
    assert two_factor.key_for_display("ABCDEFGHIJ") == "ABCD EFGH IJ"
    uri = two_factor.provisioning_uri(KEY, username="omar")
    assert (
        uri.startswith("otpauth://totp/HelpLoop:omar?")
        and f"secret={KEY}" in uri
        and "issuer=HelpLoop" in uri
    )
    svg = two_factor.qr_svg(uri)
    assert svg.startswith("<svg") and "<path" in svg and "<script" not in svg


def test_turning_it_on_needs_the_password_and_a_code_from_the_app(db_session: Session) -> None:
    user = create_user(db_session, username="rita", password=SECRET, role="reviewer", actor="omar")
    token = session_token(user)
    with pytest.raises(AccountError, match="current password is wrong"):
        two_factor.enable(
            db_session, sealer=SEALER, user_id=user.id, password="guess", key=KEY, code=code(KEY), now=NOW
        )
    with pytest.raises(AccountError, match="code does not match"):
        two_factor.enable(
            db_session, sealer=SEALER, user_id=user.id, password=SECRET, key=KEY, code=code(KEY, 90), now=NOW
        )
    assert user.totp_secret is None and session_token(user) == token  # nothing changed on a refusal
    two_factor.enable(
        db_session, sealer=SEALER, user_id=user.id, password=SECRET, key=KEY, code=code(KEY), now=NOW
    )
    assert SEALER.open(user.totp_secret or "") == KEY and user.totp_last_step == int(NOW // 30)
    assert session_token(user) != token  # the account's other sessions end
    with pytest.raises(AccountError, match="on already"):
        two_factor.enable(
            db_session, sealer=SEALER, user_id=user.id, password=SECRET, key=KEY, code=code(KEY, 30), now=NOW
        )
    assert [row.two_factor for row in list_accounts(db_session)] == [True]
    assert actions(db_session, "rita") == [
        ("created", "omar", "role reviewer"),
        ("two_factor_enabled", "rita", ""),
    ]


def test_a_sign_in_code_works_once(db_session: Session) -> None:
    user = create_user(db_session, username="rita", password=SECRET, role="reviewer")
    two_factor.enable(
        db_session, sealer=SEALER, user_id=user.id, password=SECRET, key=KEY, code=code(KEY), now=NOW
    )
    # The code that turned it on is used: a sign-in with it in the same half-minute is refused.
    assert (
        two_factor.check_code(db_session, sealer=SEALER, user_id=user.id, code=code(KEY), now=NOW).reason
        == "wrong"
    )
    later = two_factor.check_code(
        db_session, sealer=SEALER, user_id=user.id, code=code(KEY, 30), now=NOW + 30
    )
    assert later.reason == "ok" and later.user is not None and later.user.id == user.id
    again = two_factor.check_code(
        db_session, sealer=SEALER, user_id=user.id, code=code(KEY, 30), now=NOW + 40
    )
    assert again.reason == "wrong"  # read over a shoulder: of no use
    # Nor the step before it, though still within the drift allowed.
    assert (
        two_factor.check_code(db_session, sealer=SEALER, user_id=user.id, code=code(KEY), now=NOW + 31).reason
        == "wrong"
    )
    wrong = two_factor.check_code(
        db_session, sealer=SEALER, user_id=user.id, code=code(KEY, 600), now=NOW + 60
    )
    assert wrong.reason == "wrong" and wrong.user is None
    # A sign-in for an account that changed since its password was typed is refused as such, and its code
    # is not spent.
    changed = two_factor.check_code(
        db_session, sealer=SEALER, user_id=user.id, code=code(KEY, 90), now=NOW + 90, accept=lambda u: False
    )
    assert changed.reason == "inactive" and changed.user is None
    assert user.totp_last_step == int((NOW + 30) // 30)
    assert (
        two_factor.check_code(
            db_session, sealer=SEALER, user_id=user.id, code=code(KEY, 90), now=NOW + 90
        ).reason
        == "ok"
    )


def test_turning_it_off_and_the_operators_reset(db_session: Session) -> None:
    user = create_user(db_session, username="omar", password=SECRET, role="operator")
    two_factor.enable(
        db_session, sealer=SEALER, user_id=user.id, password=SECRET, key=KEY, code=code(KEY), now=NOW
    )
    with pytest.raises(AccountError, match="code does not match"):  # the code used to turn it on
        two_factor.disable(
            db_session, sealer=SEALER, user_id=user.id, password=SECRET, code=code(KEY), now=NOW
        )
    with pytest.raises(AccountError, match="current password is wrong"):
        two_factor.disable(
            db_session, sealer=SEALER, user_id=user.id, password="guess", code=code(KEY, 30), now=NOW
        )
    on = session_token(user)
    two_factor.disable(
        db_session, sealer=SEALER, user_id=user.id, password=SECRET, code=code(KEY, 30), now=NOW
    )
    assert user.totp_secret is None and user.totp_last_step is None and session_token(user) != on
    assert two_factor.recovery_codes_left(db_session, user_id=user.id) == 0  # they went with it
    with pytest.raises(AccountError, match="off already"):
        two_factor.disable(
            db_session, sealer=SEALER, user_id=user.id, password=SECRET, code=code(KEY, 60), now=NOW + 60
        )
    with pytest.raises(AccountError, match="no two-factor sign-in to reset"):
        two_factor.reset(db_session, username="omar", actor="ada", reason="phone lost")
    two_factor.enable(
        db_session, sealer=SEALER, user_id=user.id, password=SECRET, key=KEY, code=code(KEY, 60), now=NOW + 60
    )
    with pytest.raises(AccountError, match="say why"):
        two_factor.reset(db_session, username="omar", actor="ada", reason="  ")
    two_factor.reset(db_session, username="omar", actor="ada", reason="phone lost, checked by call")
    assert user.totp_secret is None and two_factor.recovery_codes_left(db_session, user_id=user.id) == 0
    assert [a for a in actions(db_session, "omar") if a[0].startswith("two_factor")] == [
        ("two_factor_enabled", "omar", ""),
        ("two_factor_disabled", "omar", ""),
        ("two_factor_enabled", "omar", ""),
        ("two_factor_reset", "ada", "phone lost, checked by call"),
    ]
    assert two_factor.required("operator", "operators") and not two_factor.required("reviewer", "operators")
    assert two_factor.required("reviewer", "everyone") and not two_factor.required("operator", "nobody")
    with pytest.raises(AccountError, match="must be one of nobody, operators, everyone"):
        two_factor.required("operator", "admins")


def test_the_key_is_stored_sealed_and_a_changed_secret_key_leaves_the_recovery_codes(
    db_session: Session,
) -> None:
    user = create_user(db_session, username="rita", password=SECRET, role="reviewer")
    _, codes = two_factor.enable(
        db_session, sealer=SEALER, user_id=user.id, password=SECRET, key=KEY, code=code(KEY), now=NOW
    )
    stored = db_session.scalar(select(User.totp_secret).where(User.id == user.id))
    assert stored is not None and stored.startswith("sealed:v1:") and KEY not in stored
    # Another secret key (a restore on another server): the app's codes cannot be checked, and it says so;
    # a recovery code still signs in; with the old key as a fallback the app's codes work again.
    other = Sealer("another secret key")
    unreadable = two_factor.check_code(
        db_session, sealer=other, user_id=user.id, code=code(KEY, 30), now=NOW + 30
    )
    assert (unreadable.reason, unreadable.user) == ("unreadable", None)
    with pytest.raises(AccountError, match="cannot read your app's key"):
        two_factor.disable(db_session, sealer=other, user_id=user.id, password=SECRET, code=code(KEY, 30))
    assert two_factor.check_code(db_session, sealer=other, user_id=user.id, code=codes[0]).reason == "ok"
    rotated = Sealer("another secret key", ["test-secret-key"])
    assert (
        two_factor.check_code(
            db_session, sealer=rotated, user_id=user.id, code=code(KEY, 30), now=NOW + 30
        ).reason
        == "ok"
    )
    assert two_factor.stored_keys(db_session, other) == two_factor.StoredKeys(0, 0, 1)
    assert two_factor.stored_keys(db_session, rotated) == two_factor.StoredKeys(0, 0, 0, under_fallback=1)
    # Sealed again under the new key (what `helploop db upgrade` does): the fallback is no longer needed.
    assert two_factor.seal_stored_keys(db_session, rotated) == (0, 1)
    assert two_factor.stored_keys(db_session, other) == two_factor.StoredKeys(1, 0, 0)
    assert (
        two_factor.check_code(
            db_session, sealer=other, user_id=user.id, code=code(KEY, 60), now=NOW + 60
        ).reason
        == "ok"
    )


def test_keys_stored_in_the_clear_before_sealing_still_work_and_are_sealed_once(db_session: Session) -> None:
    user = create_user(db_session, username="rita", password=SECRET, role="reviewer")
    create_user(db_session, username="omar", password=SECRET, role="operator")  # no two-factor sign-in
    user.totp_secret = KEY  # as a release before sealing stored it
    db_session.flush()
    token = session_token(user)
    assert two_factor.stored_keys(db_session, SEALER) == two_factor.StoredKeys(0, 1, 0)
    assert (
        two_factor.check_code(db_session, sealer=SEALER, user_id=user.id, code=code(KEY), now=NOW).reason
        == "ok"
    )
    assert two_factor.seal_stored_keys(db_session, SEALER) == (1, 0)
    assert two_factor.seal_stored_keys(db_session, SEALER) == (0, 0)  # nothing seals twice
    assert user.totp_secret.startswith("sealed:v1:") and session_token(user) != token
    assert two_factor.stored_keys(db_session, SEALER) == two_factor.StoredKeys(1, 0, 0)
    later = two_factor.check_code(
        db_session, sealer=SEALER, user_id=user.id, code=code(KEY, 30), now=NOW + 30
    )
    assert later.reason == "ok"


def test_recovery_codes_sign_in_once_each_and_can_be_renewed(db_session: Session) -> None:
    user = create_user(db_session, username="rita", password=SECRET, role="reviewer")
    made = two_factor.enable(
        db_session, sealer=SEALER, user_id=user.id, password=SECRET, key=KEY, code=code(KEY), now=NOW
    )
    codes = made[1]
    assert len(codes) == len(set(codes)) == 10
    assert all(re.fullmatch(r"[a-hj-km-np-z2-9]{5}-[a-hj-km-np-z2-9]{5}", c) for c in codes)
    stored = db_session.scalars(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)).all()
    assert len(stored) == 10 and not set(codes) & set(stored)  # only hashes are kept
    assert two_factor.recovery_codes_left(db_session, user_id=user.id) == 10
    # Typed as people type them: upper case, without the dash, with spaces.
    first = two_factor.check_code(
        db_session, sealer=SEALER, user_id=user.id, code=codes[0].upper().replace("-", " ")
    )
    assert first.reason == "ok" and first.recovery_left == 9
    assert (
        two_factor.check_code(db_session, sealer=SEALER, user_id=user.id, code=codes[0]).reason == "wrong"
    )  # spent
    assert (
        two_factor.check_code(db_session, sealer=SEALER, user_id=user.id, code="abcde-fghjk").reason
        == "wrong"
    )
    # An app code still works beside them, and says nothing of recovery codes.
    app_code = two_factor.check_code(
        db_session, sealer=SEALER, user_id=user.id, code=code(KEY, 30), now=NOW + 30
    )
    assert app_code.reason == "ok" and app_code.recovery_left is None
    with pytest.raises(AccountError, match="current password is wrong"):
        two_factor.renew_recovery_codes(db_session, user_id=user.id, password="guess")
    renewed = two_factor.renew_recovery_codes(db_session, user_id=user.id, password=SECRET)
    assert len(renewed) == 10 and not set(renewed) & set(codes)
    assert (
        two_factor.check_code(db_session, sealer=SEALER, user_id=user.id, code=codes[1]).reason == "wrong"
    )  # void now
    assert two_factor.recovery_codes_left(db_session, user_id=user.id) == 10
    # A recovery code turns it off too (the phone lost), with the password.
    two_factor.disable(db_session, sealer=SEALER, user_id=user.id, password=SECRET, code=renewed[0])
    assert user.totp_secret is None
    with pytest.raises(AccountError, match="no recovery codes to renew"):
        two_factor.renew_recovery_codes(db_session, user_id=user.id, password=SECRET)
    assert [(a, why) for a, _, why in actions(db_session, "rita")][1:] == [
        ("two_factor_enabled", ""),
        ("recovery_code_used", "9 left"),
        ("recovery_codes_renewed", ""),
        ("recovery_code_used", "9 left"),
        ("two_factor_disabled", ""),
    ]


@pytest.mark.postgres
def test_two_sign_ins_with_one_code_at_once_let_one_in(postgres_schema_url: str) -> None:
    # Four requests carry the same code at the same moment: each reads the account's last used step before
    # any records it; the step is recorded by one conditional UPDATE, so one of them signs in.
    from sqlalchemy import delete

    from core.db import make_engine

    engine = make_engine(postgres_schema_url)
    with Session(engine) as session:
        user = create_user(session, username="race2fa", password=SECRET, role="reviewer")
        two_factor.enable(
            session, sealer=SEALER, user_id=user.id, password=SECRET, key=KEY, code=code(KEY), now=NOW
        )
        session.commit()
        user_id = user.id
    barrier = threading.Barrier(4)
    results: list[str] = []

    def all_read(_user: User) -> bool:
        barrier.wait(10)
        return True

    def sign_in() -> None:
        with Session(engine) as session:
            checked = two_factor.check_code(
                session, sealer=SEALER, user_id=user_id, code=code(KEY, 30), now=NOW + 30, accept=all_read
            )
            session.commit()
            results.append(checked.reason)

    threads = [threading.Thread(target=sign_in) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with Session(engine) as session:
        session.execute(delete(User).where(User.username == "race2fa"))
        session.commit()
    engine.dispose()
    assert sorted(results) == ["ok", "wrong", "wrong", "wrong"]
