"""Application factory and the per-app state (settings, database, model holder, metrics)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from flask import Flask, current_app, g
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from sqlalchemy.orm import Session

from bot.engine import AnsweringEngine
from bot.language import check_language
from core.db import Database
from core.knowledge_base import AnswerBook, read_answer_book
from core.mail import EMAIL
from core.registry import serving_plan
from core.settings import Settings, SettingsError, load_settings
from crowd_feedback.review import ReviewPolicy
from serving.mail import Mailer
from serving.metrics import Metrics
from serving.model_holder import ModelHolder, read_as_set
from serving.notify import HandoffNotifier, MailQueue
from serving.review_router import ReviewRouter
from serving.shadow import ShadowScorer

if TYPE_CHECKING:
    from serving.channels import ChannelSender

# Created unbound; each app binds it in create_app (no global app at import time).
limiter = Limiter(key_func=get_remote_address, default_limits=[])
_blueprint_limits = threading.Lock()
_blueprint_limits_set = False


def _app_setting(name: str) -> Callable[[], str]:
    """A limit read from the running app's settings at each request."""
    return lambda: str(getattr(current_app.extensions["helploop"].settings, name))


def _limit_blueprints() -> None:
    """The limits of whole blueprints, set once a process: they are module objects, and setting them again for
    each app made added the new limits to the old (a test's tight login limit then held in later tests' apps).
    Each limit reads the running app's settings when a request comes."""
    global _blueprint_limits_set
    from admin_ui.auth import auth, locked_out, login_account
    from serving.admin_api import admin_api

    with _blueprint_limits:
        if _blueprint_limits_set:
            return
        limiter.limit(_app_setting("chat_rate_limit"))(admin_api)
        limiter.limit(_app_setting("login_rate_limit"), methods=["POST"])(auth)  # per address
        # Per account, from any address: only a refused sign-in (401) counts; past the limit the account's
        # sign-ins are refused, its right password too, until the window has passed. Counted per page, so
        # only the login page's: the owner, signed in already, still changes the password meanwhile.
        limiter.limit(
            _app_setting("login_failures_per_account"),
            key_func=login_account,
            methods=["POST"],
            deduct_when=lambda response: response.status_code == 401,
            on_breach=locked_out,
        )(auth)
        _blueprint_limits_set = True


@dataclass
class HelpLoop:
    settings: Settings
    database: Database
    models: ModelHolder
    metrics: Metrics
    write_lock: AbstractContextManager[Any]
    shadow: ShadowScorer
    router: ReviewRouter
    policy: ReviewPolicy
    notifier: HandoffNotifier
    channel_sender: ChannelSender | None = None  # sends replies to messaging apps (when one is set up)
    mail: MailQueue | None = None  # e-mails to people off the request path (a link to set a new password)
    # sends the team's replies by e-mail (core.mail): a thread of its own, so a slow mail server never holds
    # up the messaging apps' answers
    mail_sender: ChannelSender | None = None
    # Sites refused by HELPLOOP_WIDGET_ORIGINS whose refusal was logged (once each, at most REFUSED_LOGGED)
    refused_origins: set[str] = field(default_factory=set)


def state() -> HelpLoop:
    return current_app.extensions["helploop"]


def db_session() -> Session:
    """One session per request, closed at teardown."""
    if "db_session" not in g:
        g.db_session = state().database.sessionmaker()
    return g.db_session


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the web app. ``config``: lower-case keys override HelpLoop settings, upper-case keys go to
    Flask's config (e.g. ``TESTING``). ``model_loader`` may replace the bundle loader (tests)."""
    from bot.runtime import configure_inference_threads
    from serving.admin_api import BODY_ENDPOINTS, admin_api
    from serving.api import api
    from serving.azure_qa import azure_qa
    from serving.channels import ChannelSender, channels, http_post
    from serving.errors import refuse_unstorable_text, register_error_handlers
    from serving.health import health
    from serving.job_kinds import install as install_job_kinds
    from serving.openapi import docs
    from serving.rasa import rasa
    from serving.widget import widget

    install_job_kinds()
    config = dict(config or {})
    loader = config.pop("model_loader", None)
    channel_post = config.pop("channel_post", None)  # tests: the messaging apps' API, answered locally
    flask_config = {k: v for k, v in config.items() if k.isupper()}
    overrides = {k: v for k, v in config.items() if not k.isupper()}
    settings = load_settings(overrides)
    try:
        check_language(settings.language)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None

    app = Flask(__name__, instance_path=settings.instance_path, instance_relative_config=False)
    if settings.trusted_proxies:
        # Behind nginx, Traefik or a load balancer: the client's address (rate limits, the sign-in history)
        # and the scheme (secure cookies, links) come from the X-Forwarded-* headers those proxies set; with
        # none trusted the headers are ignored, so a client cannot pick its own address.
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SECRET_KEY_FALLBACKS=settings.secret_key_fallback_list,  # sessions signed before the key changed
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        JSON_SORT_KEYS=False,
        RATELIMIT_STORAGE_URI=settings.ratelimit_storage_url,
        RATELIMIT_HEADERS_ENABLED=True,
        RATELIMIT_ENABLED=settings.ratelimit_enabled,
    )
    app.config.update(flask_config)
    logging.basicConfig(level=logging.INFO)

    database = Database(settings)

    def read_plan() -> dict[str, Any] | None:
        with database.session() as session:
            return serving_plan(session)

    def load(path: str) -> AnsweringEngine:
        return read_as_set(
            (loader or read_bundle)(path),
            spelling_correction=settings.spelling_correction,
            keyword_share=settings.keyword_share,
            negation=settings.negation,
        )

    def read_bundle(path: str) -> AnsweringEngine:
        return AnsweringEngine.load(path, runtime=settings.serving_runtime, threads=settings.torch_threads)

    def read_answers(known_version: int | None) -> AnswerBook | None:
        with database.session() as session:
            return read_answer_book(session, known_version=known_version)

    models = ModelHolder(
        read_plan,
        load,
        poll_seconds=settings.deployment_poll_seconds,
        answers_reader=read_answers,
    )
    write_lock: AbstractContextManager[Any] = threading.Lock() if settings.is_sqlite else nullcontext()
    metrics = Metrics()
    shadow = ShadowScorer(database, on_drop=metrics.shadow_dropped.inc)
    policy = ReviewPolicy.from_settings(settings)

    def embed_texts(texts: list[str]) -> np.ndarray | None:
        production = models.state.production
        return None if production is None else production.embed(texts)

    router = ReviewRouter(
        database,
        policy,
        write_lock,
        on_skip=metrics.review_lookalikes_skipped.inc,
        embed_texts=embed_texts,
    )
    mailer = Mailer(settings) if settings.mail_on else None  # the handoff notices', the reset links'
    notifier = HandoffNotifier(
        settings.handoff_webhook_url,
        secret=settings.handoff_webhook_secret,
        public_url=settings.public_url,
        on_result=lambda outcome: metrics.handoff_notifications.labels(outcome=outcome).inc(),
        mailer=mailer,
        mail_to=settings.handoff_emails,
    )

    def counted(outcome: str, count: int) -> None:
        metrics.channel_messages.labels(outcome=outcome).inc(count)

    sender = (
        ChannelSender(database, settings, channel_post or http_post, on_result=counted)
        if settings.channels
        else None
    )
    mail_sender = (
        ChannelSender(database, settings, on_result=counted, channels=(EMAIL,)) if settings.mail_on else None
    )
    app.extensions["helploop"] = HelpLoop(
        settings,
        database,
        models,
        metrics,
        write_lock,
        shadow,
        router,
        policy,
        notifier,
        sender,
        mail=MailQueue(mailer) if mailer is not None else None,
        mail_sender=mail_sender,
    )
    if not app.config.get("TESTING"):
        configure_inference_threads(settings.torch_threads)
    limiter.init_app(app)
    app.teardown_appcontext(_close_session)
    register_error_handlers(app)
    _limit_blueprints()
    for blueprint in (api, admin_api, rasa, azure_qa, channels, health, docs, widget):
        app.register_blueprint(blueprint)
    from admin_ui import init_admin
    from admin_ui.setup import SsoClient

    init_admin(
        app,
        exempt_from_csrf=[
            api,
            admin_api,
            rasa,
            azure_qa,
            channels,
        ],  # JSON APIs without cookies: nothing to forge
        lifetime_minutes=settings.session_lifetime_minutes,
        production=settings.environment == "production",
        upload_bytes=settings.max_upload_bytes,
        upload_endpoints=BODY_ENDPOINTS,
        sso=(
            SsoClient(
                settings.sso_issuer, settings.sso_client_id, settings.sso_client_secret, settings.sso_name
            )
            if settings.sso_issuer
            else None
        ),
    )
    # After the admin's hooks: an upload endpoint's larger body limit is set before this reads the body.
    app.before_request(refuse_unstorable_text)
    if settings.load_models_on_start:
        models.start()
        for outbox_sender in (sender, mail_sender):
            if outbox_sender is not None:
                outbox_sender.start()
        if settings.embedded_worker:
            # The embedded default is one process: it also runs the job worker (training) in a thread.
            from training.jobs import Worker

            Worker(database, settings).start()
    return app
