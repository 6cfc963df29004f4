"""Login (a password, then a code from an authenticator app where the account has two-factor sign-in),
logout, and a user's own password and two-factor sign-in (form posts carry a CSRF token; sessions expire;
the posts are rate-limited with the login, so a stolen session cannot guess the current password quickly
either)."""

from __future__ import annotations

import hmac
import math
import time
from typing import Any, TypedDict

import requests
from authlib.common.errors import AuthlibBaseError
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user
from itsdangerous import BadData, URLSafeTimedSerializer
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from admin_ui.setup import SSO_SESSION, CurrentUser, require_role
from core.models import User
from crowd_feedback import single_sign_on, two_factor
from crowd_feedback.reviewers import (
    MIN_PASSWORD,
    AccountError,
    WrongSecret,
    account_to_reset,
    authenticate,
    change_own_password,
    end_other_sessions,
    recent_sign_ins,
    record_event,
    record_lockout,
    record_login,
    reset_password,
    session_token,
    set_own_email,
)

auth = Blueprint("auth", __name__, template_folder="templates")

# How long the code page waits for the code after a right password; then the password is asked again.
CODE_WAIT_SECONDS = 300
PENDING = "two_factor_pending"  # the session key of a sign-in waiting for its code
NEW_KEY = "two_factor_new_key"  # the session key of a key shown for set-up, not yet confirmed
NEW_CODES = "two_factor_recovery_codes"  # recovery codes to show once, on the next view of the page


def _pending() -> dict[str, Any] | None:
    """The sign-in waiting for its code: whose password was right, and when (None: none, or expired)."""
    pending = session.get(PENDING)
    if not isinstance(pending, dict) or time.time() - float(pending.get("at", 0)) > CODE_WAIT_SECONDS:
        return None
    return pending


def _typed_username() -> str:
    if request.endpoint == "auth.login_code":  # the account whose password was right, from the signed session
        pending = _pending()
        return str(pending["username"]).lower() if pending else ""
    return (request.form.get("username") or "").strip().lower()


def login_account() -> str:
    """The key a sign-in's wrong passwords are counted under: the account typed, whichever address tries it
    (a name with no account counts alike, so the refusal tells nobody which names exist). On the account's
    own pages, the signed-in account, whatever the form says."""
    if current_user.is_authenticated:
        return f"account:{current_user.username.lower()}"
    return f"account:{_typed_username()}"


def locked_out(limit: Any) -> Response:
    """The login (or code) page again, saying why a sign-in is refused: too many wrong passwords or codes for
    the account lately (``Settings.login_failures_per_account``); on the account's own pages, a page saying
    its password and two-factor changes are refused for a while. Audited and announced once a lockout."""
    # Within the window's length (the storage rounds the reset time up a little).
    window = limit.limit.get_expiry()
    minutes = max(1, math.ceil(min(limit.reset_at - time.time(), window) / 60))
    signed_in = bool(current_user.is_authenticated)  # the account's own pages: a session is guessing
    codes = request.endpoint == "auth.login_code"
    what = "session" if signed_in else "codes" if codes else "passwords"
    username = current_user.username if signed_in else _typed_username()
    current_app.logger.warning("refused for %r: too many wrong %s", username, what)
    try:
        with current_app.extensions["helploop"].database.session() as db:  # audited and announced, once
            record_lockout(
                db, username=username, failures=limit.limit.amount, window_seconds=window, what=what
            )
    except SQLAlchemyError:  # the refusal stands all the same; the log says what was not recorded
        current_app.logger.exception("the lockout of %r could not be recorded", username)
    plural = "s" if minutes > 1 else ""
    wait = f"Try again in {minutes} minute{plural}."
    if signed_in:
        error = f"Too many wrong passwords or codes for this account. {wait}"
        return make_response(render_template("admin/locked.html", error=error), 429)
    error = f"Too many wrong {what} for this account. {wait}"
    page = "admin/login_code.html" if codes else "admin/login.html"
    return make_response(render_template(page, error=error), 429)


class _SignInFrom(TypedDict):
    address: str
    user_agent: str
    method: str


def _where_from(method: str) -> _SignInFrom:
    """How a sign-in was made, and the address and browser it came from, for the account's history."""
    return {
        "address": request.remote_addr or "",
        "user_agent": request.user_agent.string or "",
        "method": method,
    }


def _home_for(role: str) -> str:
    return url_for("operator.overview") if role == "operator" else url_for("review.home")


def on_this_site(target: str) -> bool:
    """Whether ``target`` (a ``next`` the client chose) is a path on this site. Not "//host", and not what a
    browser reads as one: "/\\host" (backslashes are slashes in http URLs) or "/<tab>/host" (tabs and line
    breaks are dropped from URLs)."""
    if any(ord(ch) < 0x20 or ch in "\\\x7f" for ch in target):
        return False
    return target.startswith("/") and not target.startswith("//")


def _sign_in(user: CurrentUser, target: str) -> Any:
    session.clear()
    session.permanent = True
    login_user(user)
    if not on_this_site(target):
        target = _home_for(user.role)  # never redirect off-site
    return redirect(target)


@auth.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if current_user.is_authenticated:
        return redirect(_home_for(current_user.role))
    error = None
    if request.method == "POST":
        username = (request.form.get("username") or "").strip()
        password = request.form.get("password") or ""
        target = request.args.get("next") or ""
        helploop = current_app.extensions["helploop"]
        with helploop.database.session() as db:
            user = authenticate(db, username=username, password=password)
            if user is not None and user.sso_subject is not None and _sso_on():
                # Removing the person at the company's provider must end their access: no password way in.
                name = helploop.settings.sso_name
                error = f"This account signs in with {name}: use the button below."
                return render_template("admin/login.html", error=error), 403
            if user is not None and user.totp_secret:
                # The password was right; the sign-in waits for the app's code (no session yet).
                session.clear()
                session[PENDING] = {
                    "user": user.id,
                    "username": user.username,
                    "token": session_token(user),
                    "at": time.time(),
                    "next": target,
                }
                return redirect(url_for("auth.login_code"))
            if user is not None:
                record_login(db, user=user, **_where_from("password"))
            wrapped = CurrentUser(user) if user is not None else None
        if wrapped is None:
            error = "Wrong username or password."
        else:
            return _sign_in(wrapped, target)
    return render_template("admin/login.html", error=error), 401 if error else 200


@auth.route("/login/code", methods=["GET", "POST"])
def login_code() -> Any:
    """The second step of a sign-in with two-factor: the six-digit code of the authenticator app. A wrong
    code is a refused sign-in (401), counted per account as wrong passwords are."""
    if current_user.is_authenticated:
        return redirect(_home_for(current_user.role))
    pending = _pending()
    if pending is None:
        session.pop(PENDING, None)
        flash("Sign in again: the code was not entered within 5 minutes of the password.")
        return redirect(url_for("auth.login"))
    error = None
    if request.method == "POST":
        helploop = current_app.extensions["helploop"]
        with helploop.database.session() as db:
            checked = two_factor.check_code(
                db,
                user_id=int(pending["user"]),
                code=request.form.get("code") or "",
                sealer=helploop.settings.sealer(),
                # Still the account the password was typed for: not deactivated, no new password since.
                accept=lambda user: hmac.compare_digest(session_token(user), str(pending["token"])),
            )
            if checked.user is not None:
                how = "app code" if checked.recovery_left is None else "recovery code"
                record_login(db, user=checked.user, **_where_from(how))
            wrapped = CurrentUser(checked.user) if checked.user is not None else None
        if wrapped is not None:
            response = _sign_in(wrapped, str(pending.get("next") or ""))
            if checked.recovery_left is not None:
                flash(
                    f"Signed in with a recovery code; {checked.recovery_left} left. Phone lost? Move to a "
                    "new one on your two-factor page (your name at the top, then Two-factor sign-in), where "
                    "a recovery code serves in place of the app's."
                )
            return response
        if checked.reason == "inactive":
            session.pop(PENDING, None)
            flash("Sign in again: this account changed since the password was typed.")
            return redirect(url_for("auth.login"))
        error = "Wrong code, or a code used already: type the newest code of the app."
        if checked.reason == "unreadable":
            error = (
                "This server cannot read your app's key: its secret key has changed. Sign in with one of "
                "your recovery codes, or ask an operator to reset your two-factor sign-in."
            )
    return render_template("admin/login_code.html", error=error), 401 if error else 200


@auth.post("/logout")
def logout() -> Any:
    logout_user()
    session.clear()
    flash("You are logged out.")
    return redirect(url_for("auth.login"))


@auth.route("/account/password", methods=["GET", "POST"])
@require_role("reviewer", "operator")
def password() -> Any:
    """Change one's own password: the current one, and the new one twice. The account's other sessions end
    (their token was derived from the old password); this one is signed in again."""
    if _sso_on() and current_user.sso:
        return _kept_at_provider()
    error = None
    wrong = False
    if request.method == "POST":
        form = request.form
        new = form.get("new_password") or ""
        if new != (form.get("confirm_password") or ""):
            error = "The new password and its repetition differ."
        else:
            helploop = current_app.extensions["helploop"]
            try:
                with helploop.database.session() as db:
                    user = change_own_password(
                        db, user_id=current_user.id, current=form.get("current_password") or "", new=new
                    )
                    wrapped = CurrentUser(user)
            except AccountError as exc:
                error = f"Refused: {exc}."
                wrong = isinstance(exc, WrongSecret)
            else:
                login_user(wrapped)  # the session carries the new password's token
                flash("Password changed. Your sessions elsewhere have ended.")
                return redirect(_home_for(wrapped.role))
    page = render_template("admin/password.html", error=error, min_password=MIN_PASSWORD)
    # A wrong current password is a refused sign-in (401): counted for the account, from any address.
    return page, (401 if wrong else 400) if error else 200


@auth.route("/account/two-factor", methods=["GET", "POST"])
@require_role("reviewer", "operator")
def two_factor_page() -> Any:
    """Turn two-factor sign-in on (scan the key, confirm with a code and the password; the recovery codes are
    shown once) or off (the password and a code; refused where the settings require it); either way the
    account's other sessions end. Or renew the recovery codes (the password)."""
    if _sso_on() and current_user.sso:
        return _kept_at_provider()
    helploop = current_app.extensions["helploop"]
    required_for = helploop.settings.two_factor_required_for
    error = None
    wrong = False
    if request.method == "POST":
        form = request.form
        action = form.get("action", "")
        try:
            with helploop.database.session() as db:
                if action == "enable":
                    key = session.get(NEW_KEY)
                    if not key:
                        raise AccountError("the key shown has expired; scan the new one")
                    user, codes = two_factor.enable(
                        db,
                        user_id=current_user.id,
                        password=form.get("current_password") or "",
                        key=str(key),
                        code=form.get("code") or "",
                        sealer=helploop.settings.sealer(),
                    )
                    done = "Two-factor sign-in is on: from now on, sign-ins ask for the app's code."
                    session[NEW_CODES] = codes
                elif action == "disable":
                    user = two_factor.disable(
                        db,
                        user_id=current_user.id,
                        password=form.get("current_password") or "",
                        code=form.get("code") or "",
                        sealer=helploop.settings.sealer(),
                    )
                    done = (
                        "The old phone's key no longer works: scan this one with the new phone."
                        if two_factor.required(user.role, required_for)
                        else "Two-factor sign-in is off: sign-ins ask for the password only."
                    )
                elif action == "renew":
                    session[NEW_CODES] = two_factor.renew_recovery_codes(
                        db, user_id=current_user.id, password=form.get("current_password") or ""
                    )
                    user = db.get(User, current_user.id)
                    assert user is not None
                    done = "New recovery codes: the earlier ones no longer work."
                else:
                    raise AccountError("unknown action")
                wrapped = CurrentUser(user)
        except AccountError as exc:
            error = f"Refused: {exc}."
            wrong = isinstance(exc, WrongSecret)
        else:
            session.pop(NEW_KEY, None)
            login_user(wrapped)  # the session carries the account's new token
            flash(done if action == "renew" else done + " Your sessions on other browsers have ended.")
            return redirect(url_for("auth.two_factor_page"))
    enabled = current_user.two_factor  # as loaded for this request
    with helploop.database.session() as db:
        left = two_factor.recovery_codes_left(db, user_id=current_user.id) if enabled else 0
    new_codes = session.pop(NEW_CODES, None) if enabled else None
    must = two_factor.required(current_user.role, required_for)
    key = qr = None
    if not enabled:
        key = session.get(NEW_KEY) or two_factor.new_key()
        session[NEW_KEY] = key  # the same key until it is confirmed, so a reload does not orphan a scan
        qr = two_factor.qr_svg(two_factor.provisioning_uri(key, username=current_user.username))
    page = render_template(
        "admin/two_factor.html",
        error=error,
        enabled=enabled,
        required=must,
        key=key,
        key_display=two_factor.key_for_display(key) if key else "",
        qr=qr,
        new_codes=new_codes,
        codes_left=left,
        codes_made=two_factor.RECOVERY_CODES,
    )
    return page, (401 if wrong else 400) if error else 200


def browser_summary(user_agent: str) -> str:
    """ "Firefox on Linux" from a User-Agent header, for a person to recognise their own sign-ins (the whole
    header is kept too)."""
    browsers = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"))
    browser = next((name for mark, name in browsers if mark in user_agent), "")
    if not browser and "Safari/" in user_agent:
        browser = "Safari"
    systems = (
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    )
    system = next((name for mark, name in systems if mark in user_agent), "")
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or (user_agent[:40] if user_agent else "unknown")


@auth.get("/account")
@require_role("reviewer", "operator")
def account() -> Any:
    """The signed-in person's own account: password, two-factor sign-in, e-mail address, the newest sign-ins
    (when, how, from which address and browser) and signing out of every other browser."""
    return _account_page()


def _account_page(email_error: str | None = None, email_typed: str | None = None) -> str:
    helploop = current_app.extensions["helploop"]
    enabled = current_user.two_factor  # as loaded for this request
    with helploop.database.session() as db:
        codes_left = two_factor.recovery_codes_left(db, user_id=current_user.id) if enabled else 0
        sign_ins = [
            {
                "at": s.at,
                "method": s.method,
                "address": s.address,
                "browser": browser_summary(s.user_agent),
                "user_agent": s.user_agent,
            }
            for s in recent_sign_ins(db, user_id=current_user.id)
        ]
        email = db.scalar(select(User.email).where(User.id == current_user.id))
    return render_template(
        "admin/account.html",
        email=email,
        email_error=email_error,
        email_typed=email_typed,
        reset_available=reset_by_email(),
        two_factor_on=enabled,
        two_factor_required=two_factor.required(current_user.role, helploop.settings.two_factor_required_for),
        codes_left=codes_left,
        sign_ins=sign_ins,
    )


@auth.post("/account/sign-out-others")
@require_role("reviewer", "operator")
def sign_out_others() -> Any:
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as db:
        wrapped = CurrentUser(end_other_sessions(db, user_id=current_user.id))
    login_user(wrapped)  # this browser carries the new token
    flash("Signed out of every other browser: each of them has to sign in again.")
    return redirect(url_for("auth.account"))


# ------------------------------------------------------------------------- a forgotten password, by e-mail

RESET_SECONDS = 3600  # how long an e-mailed link to set a new password works
RESET_SALT = "helploop-password-reset"
RESET_SENT = (
    "If that account has an e-mail address, a link to set a new password is on its way to it. The link works "
    "for an hour, once."
)


def _reset_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(str(current_app.config["SECRET_KEY"]), salt=RESET_SALT)


def reset_by_email() -> bool:
    """Links to set a new password can be e-mailed: an SMTP server and this app's public address are set
    (the link is never built from the request's Host header, which whoever asks for it chooses)."""
    helploop = current_app.extensions["helploop"]
    return helploop.mail is not None and bool(helploop.settings.public_url)  # mail: set with an SMTP server


@auth.route("/login/forgot", methods=["GET", "POST"])
def forgot_password() -> Any:
    """ "Forgot your password?": a username or e-mail address; a link to set a new one goes to the account's
    address. The page says the same whether or not there is such an account (nobody learns who has one);
    posts are rate-limited per address with the login."""
    if current_user.is_authenticated:
        return redirect(_home_for(current_user.role))
    helploop = current_app.extensions["helploop"]
    available = reset_by_email()
    sent = False
    if request.method == "POST" and available:
        with helploop.database.session() as db:
            user = account_to_reset(db, who=(request.form.get("who") or "")[:254])
            if user is not None and not (user.sso_subject is not None and _sso_on()):
                token = _reset_serializer().dumps([user.id, session_token(user)])
                link = helploop.settings.public_url.rstrip("/") + url_for("auth.reset_with_link", token=token)
                helploop.mail.send(
                    (str(user.email),),
                    "Set a new HelpLoop password",
                    f"Someone (we hope you) asked to set a new password for the HelpLoop account "
                    f"{user.username}.\n\nSet it here within the hour (the link works once):\n{link}\n\n"
                    "If it was not you, ignore this e-mail: your password stays as it is.\n",
                )
                record_event(db, user=user, action="reset_link_sent", actor=user.username)
        sent = True
    return render_template("admin/forgot.html", available=available, sent=sent, message=RESET_SENT)


@auth.route("/login/reset/<token>", methods=["GET", "POST"])
def reset_with_link(token: str) -> Any:
    """The e-mailed link: a new password, twice. Works for an hour and once (it is bound to the account's
    password as it was); every session of the account ends; two-factor sign-in, where on, still asks its code
    at the next sign-in."""
    try:
        user_id, state = _reset_serializer().loads(token, max_age=RESET_SECONDS)
    except (BadData, ValueError, TypeError):
        return render_template("admin/reset.html", expired=True, error=None, min_password=MIN_PASSWORD), 400
    error = None
    if request.method == "POST":
        new = request.form.get("new_password") or ""
        if new != (request.form.get("confirm_password") or ""):
            error = "The new password and its repetition differ."
        else:
            helploop = current_app.extensions["helploop"]
            try:
                with helploop.database.session() as db:
                    reset_password(db, user_id=int(user_id), token=str(state), new=new)
            except AccountError as exc:
                error = f"Refused: {exc}."
            else:
                flash("Password set. Log in with it: your sessions elsewhere have ended.")
                return redirect(url_for("auth.login"))
    expired = False
    with current_app.extensions["helploop"].database.session() as db:
        user = db.get(User, int(user_id))
        expired = user is None or not user.active or not hmac.compare_digest(session_token(user), str(state))
    page = render_template("admin/reset.html", expired=expired, error=error, min_password=MIN_PASSWORD)
    return page, 400 if (error or expired) else 200


@auth.post("/account/email")
@require_role("reviewer", "operator")
def own_email() -> Any:
    """The signed-in person's e-mail address, for a link when they forget their password (the current
    password confirms it: a wrong one is a refused sign-in, 401)."""
    helploop = current_app.extensions["helploop"]
    typed = (request.form.get("email") or "")[:300]
    try:
        with helploop.database.session() as db:
            user = set_own_email(
                db, user_id=current_user.id, password=request.form.get("current_password") or "", email=typed
            )
            address = user.email
    except AccountError as exc:
        # the page again with what was typed; a wrong password is a refused sign-in (401)
        return _account_page(email_error=f"Refused: {exc}.", email_typed=typed), (
            401 if isinstance(exc, WrongSecret) else 400
        )
    flash(f"E-mail address set: {address}." if address else "E-mail address removed.")
    return redirect(url_for("auth.account") + "#email")


# ------------------------------------------------------------------------------------------ single sign-on

SSO_INTENT = "sso_intent"  # the session key of a sign-in (or link) sent to the identity provider


def _sso_on() -> bool:
    return "helploop_sso" in current_app.extensions


def _kept_at_provider() -> Any:
    """An account that signs in through the identity provider has its password and second factor there."""
    name = current_app.extensions["helploop"].settings.sso_name
    flash(f"You sign in with {name}: change your password and second factor there.")
    return redirect(url_for("auth.account"))


def _sso_client() -> Any:
    if not _sso_on():
        abort(404)
    return current_app.extensions["helploop_sso"].create_client("sso")


def _sso_refused(error: str, status: int) -> Any:
    """The login page (or, signed in, the account page) saying why single sign-on did not sign in."""
    current_app.logger.warning("single sign-on refused: %s", error)
    if current_user.is_authenticated:
        flash(f"Not linked: {error}")
        return redirect(url_for("auth.account"))
    return render_template("admin/login.html", error=error), status


def _sso_redirect() -> Any:
    """To the provider's sign-in page (the client makes the state, the nonce and the PKCE verifier and keeps
    them in this session). The provider's discovery document is read once and must name the configured
    issuer, so a look-alike document elsewhere cannot choose where tokens come from."""
    client = _sso_client()
    settings = current_app.extensions["helploop"].settings
    if settings.public_url:  # the address people reach the app at, as registered at the provider
        callback = settings.public_url.rstrip("/") + url_for("auth.sso_callback")
    else:
        callback = url_for("auth.sso_callback", _external=True)
    try:
        issuer = str(client.load_server_metadata().get("issuer", ""))
    except (requests.RequestException, ValueError) as exc:
        return _sso_refused(f"{settings.sso_name} could not be reached ({exc})", 502)
    if issuer.rstrip("/") != settings.sso_issuer.rstrip("/"):
        error = (
            f"{settings.sso_name}'s discovery document names the issuer {issuer!r}, not the one configured"
        )
        return _sso_refused(error, 502)
    return client.authorize_redirect(callback)


@auth.get("/login/sso")
def sso_login() -> Any:
    """Sign in through the company's identity provider (OpenID Connect, authorization code with PKCE)."""
    if current_user.is_authenticated:
        return redirect(_home_for(current_user.role))
    _sso_client()
    session[SSO_INTENT] = {"link": None, "next": request.args.get("next") or ""}
    return _sso_redirect()


@auth.post("/account/sso/link")
@require_role("reviewer", "operator")
def sso_link() -> Any:
    """Link this account to the person's account at the identity provider: they sign in there once, from
    this session; afterwards the account signs in only through it."""
    _sso_client()
    session[SSO_INTENT] = {"link": current_user.id, "next": ""}
    return _sso_redirect()


@auth.get("/login/sso/callback")
def sso_callback() -> Any:
    """Where the provider sends the browser back: the code is exchanged for tokens (server to server), the
    ID token verified (signature from the provider's keys, issuer, audience, expiry, nonce), and the
    person signed in (an account made at their first sign-in), or the signed-in account linked."""
    client = _sso_client()
    helploop = current_app.extensions["helploop"]
    settings = helploop.settings
    intent = session.pop(SSO_INTENT, None)
    if not isinstance(intent, dict):
        return _sso_refused("the sign-in was not started here, or has expired: start it again", 400)
    try:
        token = client.authorize_access_token()
    except AuthlibBaseError as exc:  # the provider's error, a state not made here, a claim that fails
        said = exc.description or exc.error or "the answer could not be verified"
        return _sso_refused(f"{settings.sso_name} did not sign you in: {said}", 401)
    except JoseError as exc:  # the signature, or a key the provider does not publish
        said = exc.description or exc.error
        return _sso_refused(f"the identity token could not be verified ({said})", 401)
    except requests.RequestException as exc:
        return _sso_refused(f"{settings.sso_name} could not be reached ({exc})", 502)
    claims = token.get("userinfo")
    if not claims:
        return _sso_refused(f"{settings.sso_name} sent no identity token", 401)
    issuer = settings.sso_issuer.rstrip("/")
    try:
        with helploop.database.session() as db:
            if intent.get("link"):
                if not current_user.is_authenticated or current_user.id != intent["link"]:
                    raise AccountError("the account that started the link is no longer signed in here")
                wrapped = CurrentUser(
                    single_sign_on.link(db, user_id=current_user.id, issuer=issuer, claims=claims)
                )
            else:
                role = single_sign_on.role_for(
                    claims,
                    groups_claim=settings.sso_groups_claim,
                    groups=settings.sso_groups,
                    default_role=settings.sso_default_role,
                )
                user = single_sign_on.sign_in(db, issuer=issuer, claims=claims, role=role)
                record_login(db, user=user, **_where_from("single sign-on"))
                wrapped = CurrentUser(user)
    except single_sign_on.NotAllowed as exc:
        return _sso_refused(f"Refused: {exc}. Ask an operator which groups may.", 403)
    except AccountError as exc:
        return _sso_refused(f"Refused: {exc}.", 403)
    if intent.get("link"):
        login_user(wrapped)
        session[SSO_SESSION] = True
        flash(f"Linked: from now on this account signs in with {settings.sso_name}, not its password.")
        return redirect(url_for("auth.account"))
    response = _sign_in(wrapped, str(intent.get("next") or ""))
    session[SSO_SESSION] = True
    return response


# The provider's own calls (server to server): no CSRF token, no login's rate limits; a signed token instead.
provider_calls = Blueprint("sso_provider", __name__)
SIGNING_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)


@provider_calls.post("/login/sso/backchannel-logout")
def sso_backchannel_logout() -> Any:
    """OpenID Connect Back-Channel Logout: the provider POSTs a signed logout token when the person signs
    out there or an administrator ends their sessions; every session of their account here ends at once."""
    client = _sso_client()
    helploop = current_app.extensions["helploop"]
    settings = helploop.settings

    def answer(status: int, why: str = "") -> Any:
        body = jsonify(error="invalid_request", error_description=why) if why else ""
        response = make_response(body, status)
        response.headers["Cache-Control"] = "no-store"
        return response

    token = request.form.get("logout_token", "")
    if not token:
        return answer(400, "no logout_token")
    try:
        try:
            keys = KeySet.import_key_set(client.fetch_jwk_set())
            decoded = jwt.decode(token, keys, algorithms=SIGNING_ALGORITHMS)
        except InvalidKeyIdError:  # the provider rotated its keys since they were read
            keys = KeySet.import_key_set(client.fetch_jwk_set(force=True))
            decoded = jwt.decode(token, keys, algorithms=SIGNING_ALGORITHMS)
        subject = single_sign_on.logout_subject(
            decoded.claims, issuer=settings.sso_issuer, client_id=settings.sso_client_id, now=time.time()
        )
    except JoseError as exc:
        return answer(400, f"the logout token could not be verified ({exc.description or exc.error})")
    except AccountError as exc:
        return answer(400, str(exc))
    except (requests.RequestException, ValueError) as exc:
        current_app.logger.warning("back-channel logout: the provider's keys could not be read: %s", exc)
        return answer(503, "the provider's keys could not be read")
    with helploop.database.session() as db:
        user = single_sign_on.signed_out_at_provider(
            db, issuer=settings.sso_issuer.rstrip("/"), subject=subject
        )
        if user is not None:
            current_app.logger.info("signed out at the provider: every session of %s ended", user.username)
    return answer(200)
