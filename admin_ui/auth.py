"""Login, logout and a user's own password (form posts carry a CSRF token; sessions expire; the posts are
rate-limited with the login, so a stolen session cannot guess the current password quickly either)."""

from __future__ import annotations

import math
import time
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user

from admin_ui.setup import CurrentUser, require_role
from crowd_feedback.reviewers import (
    MIN_PASSWORD,
    AccountError,
    authenticate,
    change_own_password,
    record_lockout,
    record_login,
)

auth = Blueprint("auth", __name__, template_folder="templates")


def _typed_username() -> str:
    return (request.form.get("username") or "").strip().lower()


def login_account() -> str:
    """The key a sign-in's wrong passwords are counted under: the account typed, whichever address tries it
    (a name with no account counts alike, so the refusal tells nobody which names exist)."""
    return f"account:{_typed_username()}"


def locked_out(limit: Any) -> Response:
    """The login page again, saying why a sign-in is refused: too many wrong passwords for the account lately
    (``Settings.login_failures_per_account``)."""
    # Within the window's length (the storage rounds the reset time up a little).
    window = limit.limit.get_expiry()
    minutes = max(1, math.ceil(min(limit.reset_at - time.time(), window) / 60))
    current_app.logger.warning("sign-in refused for %r: too many wrong passwords", _typed_username())
    with current_app.extensions["helploop"].database.session() as db:  # audited and announced, once
        record_lockout(db, username=_typed_username(), failures=limit.limit.amount, window_seconds=window)
    plural = "s" if minutes > 1 else ""
    error = f"Too many wrong passwords for this account. Try again in {minutes} minute{plural}."
    return make_response(render_template("admin/login.html", error=error), 429)


def _home_for(role: str) -> str:
    return url_for("operator.overview") if role == "operator" else url_for("review.home")


@auth.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if current_user.is_authenticated:
        return redirect(_home_for(current_user.role))
    error = None
    if request.method == "POST":
        username = (request.form.get("username") or "").strip()
        password = request.form.get("password") or ""
        helploop = current_app.extensions["helploop"]
        with helploop.database.session() as db:
            user = authenticate(db, username=username, password=password)
            if user is not None:
                record_login(db, user=user)
            wrapped = CurrentUser(user) if user is not None else None
        if wrapped is None:
            error = "Wrong username or password."
        else:
            session.clear()
            session.permanent = True
            login_user(wrapped)
            target = request.args.get("next") or ""
            if not target.startswith("/") or target.startswith("//"):
                target = _home_for(wrapped.role)  # never redirect off-site
            return redirect(target)
    return render_template("admin/login.html", error=error), 401 if error else 200


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
    error = None
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
            else:
                login_user(wrapped)  # the session carries the new password's token
                flash("Password changed. Your sessions elsewhere have ended.")
                return redirect(_home_for(wrapped.role))
    page = render_template("admin/password.html", error=error, min_password=MIN_PASSWORD)
    return page, 400 if error else 200
