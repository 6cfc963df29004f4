"""Binds login, CSRF protection and the admin blueprints to an app (called by the app factory)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, flash, redirect, request, session, url_for
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFProtect
from werkzeug.wrappers import Response

from core.models import User
from crowd_feedback.reviewers import mark_seen, seen_lately, session_token
from crowd_feedback.two_factor import required as two_factor_required
from crowd_feedback.workforce import duration_text

login_manager = LoginManager()
SSO_SESSION = "signed_in_through_sso"  # the session key of a sign-in through the identity provider
csrf = CSRFProtect()


@dataclass(frozen=True)
class SsoClient:
    """This app's client at the identity provider (OpenID Connect)."""

    issuer: str
    client_id: str
    client_secret: str
    name: str = "your company account"  # the sign-in button's "Sign in with ..."


def register_sso(app: Flask, client: SsoClient) -> None:
    """The provider's OAuth client for this app (authlib: discovery, PKCE, state, nonce, the ID token's
    signature and claims), in ``app.extensions["helploop_sso"]``."""
    from authlib.integrations.flask_client import OAuth

    oauth = OAuth(app)
    oauth.register(
        name="sso",
        client_id=client.client_id,
        client_secret=client.client_secret,
        server_metadata_url=client.issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={
            "scope": "openid email profile",
            "code_challenge_method": "S256",
            "default_timeout": 10,
        },
    )
    app.extensions["helploop_sso"] = oauth
    app.context_processor(lambda: {"sso_name": client.name})


class CurrentUser:
    """What Flask-Login keeps for a request: the row's id and role (no ORM object outlives its session)."""

    def __init__(self, user: User) -> None:
        self.id = user.id
        self.token = session_token(user)
        self.username = user.username
        self.role = user.role
        self.suspended = user.suspended_at is not None
        self.two_factor = bool(user.totp_secret)
        self.sso = user.sso_subject is not None  # linked to the identity provider (single sign-on)
        self.is_authenticated = True
        self.is_active = user.active
        self.is_anonymous = False

    def get_id(self) -> str:
        # The id and a token that changes with the password: a reset ends the sessions opened before it.
        return f"{self.id}:{self.token}"


@login_manager.user_loader
def load_user(user_id: str) -> CurrentUser | None:
    from flask import current_app

    number, _, token = user_id.partition(":")
    if not number.isdigit() or not token:
        return None
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        user = session.get(User, int(number))
        if user is None or not user.active or not hmac.compare_digest(session_token(user), token):
            return None  # deactivated, or the password changed since this session began
        if user.role == "operator" and not seen_lately(user.last_seen_at):
            # Presence for the live chat, written twice a minute at most: pages polling every few seconds
            # issue no write statement (on SQLite even an UPDATE matching nothing takes the write lock).
            mark_seen(session, user_id=user.id)
        return CurrentUser(user)


def require_role(*roles: str) -> Any:
    """Decorator: logged in, and one of ``roles``; 403 otherwise."""
    from functools import wraps

    def decorate(view: Any) -> Any:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                # The whole address, query included: a link to a search or a Try question survives login.
                return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapper

    return decorate


# Endpoints that take file uploads: the request size limit is raised to the upload limit for them alone
# (before the CSRF check reads the form, hence a hook registered ahead of it).
UPLOAD_ENDPOINTS = frozenset({"knowledge.import_files"})


def init_admin(
    app: Flask,
    *,
    exempt_from_csrf: list[Any],
    lifetime_minutes: int,
    production: bool,
    upload_bytes: int = 5_242_880,
    upload_endpoints: frozenset[str] = frozenset(),
    sso: SsoClient | None = None,
) -> None:
    from admin_ui.auth import auth, provider_calls
    from admin_ui.install import install
    from admin_ui.knowledge import knowledge
    from admin_ui.markdown import (
        has_placeholder,
        render_breakable,
        render_markdown,
        render_marked,
        render_match,
        render_pair_label,
        render_redacted,
    )
    from admin_ui.operator import operator
    from admin_ui.review import review

    app.config.update(
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=lifetime_minutes),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=production,
        REMEMBER_COOKIE_HTTPONLY=True,
        WTF_CSRF_TIME_LIMIT=lifetime_minutes * 60,
    )
    app.add_template_filter(render_markdown, "markdown")
    app.add_template_filter(render_redacted, "redacted")
    app.add_template_filter(render_breakable, "breakable")
    app.add_template_filter(render_pair_label, "pair_label")
    app.add_template_global(duration_text, "duration")  # "42 s", "12.5 min": any page's times
    app.add_template_filter(render_match, "search_hit")
    app.add_template_filter(render_marked, "marked")
    app.add_template_test(has_placeholder, "redacted")
    login_manager.init_app(app)
    if sso is not None:
        register_sso(app, sso)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "strong"

    uploads = UPLOAD_ENDPOINTS | upload_endpoints

    @app.before_request
    def allow_uploads() -> None:
        if request.endpoint in uploads:
            request.max_content_length = upload_bytes

    csrf.init_app(app)
    for blueprint in (*exempt_from_csrf, provider_calls):  # JSON APIs and the provider's signed calls
        csrf.exempt(blueprint)
    for blueprint in (auth, provider_calls, review, operator, knowledge, install):
        app.register_blueprint(blueprint)

    @app.before_request
    def two_factor_first() -> Response | None:
        """Where the settings require two-factor sign-in for the account's role and it has none yet, every
        reviewer and operator page leads to setting it up (the account's own pages and logout stay open)."""
        if (
            request.blueprint not in ("review", "operator", "knowledge")
            or request.endpoint == "review.static"
        ):
            return None  # the pages' scripts and styles are served to the set-up page too
        if not current_user.is_authenticated or session.get(SSO_SESSION):
            return None  # signed in through the identity provider, whose own second factor applies
        required_for = current_app.extensions["helploop"].settings.two_factor_required_for
        if current_user.two_factor or not two_factor_required(current_user.role, required_for):
            return None
        flash(f"Set up two-factor sign-in to go on: the settings require it for {required_for}.")
        return redirect(url_for("auth.two_factor_page"))

    # The account page's "sign in with the provider from now on" form is answered with a redirect to the
    # provider, which browsers check against form-action too: its origin is allowed there, and only there.
    provider = ""
    if sso is not None:
        issuer = urlsplit(sso.issuer)
        provider = f" {issuer.scheme}://{issuer.netloc}"

    @app.after_request
    def security_headers(response: Response) -> Response:
        if request.path.startswith(("/review", "/operator", "/login", "/account")):
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            forms = "'self'" + (provider if request.path == "/account" else "")
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                f"script-src 'self'; img-src 'self' data:; form-action {forms}; frame-ancestors 'none'",
            )
            response.headers.setdefault("Cache-Control", "no-store")
        return response
