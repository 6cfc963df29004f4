"""Tables shared by every layer: knowledge base, conversations and turns, model registry.

Later features add their own tables through new Alembic revisions; this module only grows.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base

JSONType = JSON().with_variant(JSONB(), "postgresql")
# A JSON column where Python None is SQL NULL (plain JSON stores the JSON value null): "IS NULL" finds it.
NullableJSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
INTENT_NAME_LENGTH = 100
MAX_SOURCE_LENGTH = 1000  # an intent's source: a file name or a web address
MAX_TEXT_LENGTH = 2000


def utcnow() -> datetime:
    return datetime.now(UTC)


def finite(value: Any) -> Any:
    """``value`` with every float that is not finite (NaN, infinity) as None, through dicts and lists: JSON
    has no NaN, and PostgreSQL's JSONB refuses the token Python writes for it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def as_utc(moment: datetime) -> datetime:
    """A stored timestamp as an aware UTC datetime (SQLite hands back naive UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def new_uuid() -> str:
    return uuid.uuid4().hex


class KnowledgeBaseVersion(Base):
    """One row per change of the knowledge base; the snapshot makes every version exportable again."""

    __tablename__ = "kb_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    data_hash: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(500))
    intent_count: Mapped[int] = mapped_column(Integer)
    example_count: Mapped[int] = mapped_column(Integer)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONType)


class Intent(Base):
    __tablename__ = "intents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(INTENT_NAME_LENGTH), unique=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    answer: Mapped[str] = mapped_column(Text, default="")
    follow_ups: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # For reviewers only: when this intent is the right label and when it is not.
    reviewer_note: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Key-value pairs a query can filter on ("product: savings"); a declarative class has ``metadata``.
    metadata_: Mapped[dict[str, str]] = mapped_column(
        "metadata", JSONType, default=dict, server_default=text("'{}'")
    )
    # The FAQ page, document or web address the intent was imported from (None: written or imported as a
    # knowledge base): importing that source again removes the intents it no longer has.
    source: Mapped[str | None] = mapped_column(String(MAX_SOURCE_LENGTH), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    examples: Mapped[list[ExampleQuestion]] = relationship(
        back_populates="intent", cascade="all, delete-orphan", order_by="ExampleQuestion.id"
    )


class SavedReply(Base):
    """A text of the team's own for the live chat (core.saved_replies; migration 0060), offered in the reply
    box beside the knowledge base's answers."""

    __tablename__ = "saved_replies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(100))  # unique whatever its case (checked on saving)
    text: Mapped[str] = mapped_column(Text)  # Markdown, as a live-chat message
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SynonymGroup(Base):
    """Phrases that mean the same in this knowledge base ("cashpoint", "ATM"): customers' words read as the
    one the examples use (bot.synonyms), applied to the served models without retraining."""

    __tablename__ = "synonym_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phrases: Mapped[list[str]] = mapped_column(JSONType)  # as written, in order


class ExampleQuestion(Base):
    __tablename__ = "example_questions"
    __table_args__ = (UniqueConstraint("intent_id", "text", name="uq_example_questions_intent_text"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    intent_id: Mapped[int] = mapped_column(ForeignKey("intents.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(String(MAX_TEXT_LENGTH))
    # "kb" for imported examples; later: "review" for crowd-verified pairs.
    source: Mapped[str] = mapped_column(String(20), default="kb")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    intent: Mapped[Intent] = relationship(back_populates="examples")


class Conversation(Base):
    __tablename__ = "conversations"
    # The operator's list pages newest activity first: one index walk, whatever the number of conversations.
    __table_args__ = (
        Index("ix_conversations_last_activity", "last_activity_at"),
        # Handed to a person, by when (migration 0048): the overview reads a month of them.
        Index(
            "ix_conversations_handoff_requested",
            "handoff_requested_at",
            sqlite_where=text("handoff_requested_at IS NOT NULL"),
            postgresql_where=text("handoff_requested_at IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_uuid)
    channel: Mapped[str] = mapped_column(String(40), default="widget")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    handoff_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # A person took over (the user asked, or the bot handed off) and an operator marked it handled.
    handoff_closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    handoff_closed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    handoff_note: Mapped[str | None] = mapped_column(String(500), nullable=True)
    # How a person can reach the customer (e-mail or phone) left in the widget after a handoff: personal data,
    # shown to operators only, cleared by the retention job and by erasure.
    contact: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # The operator chatting with the customer now (set by their first reply, cleared when the handoff is
    # marked handled): while set, the customer's messages go to them and the bot stays quiet.
    agent: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # The customer's rating of the live chat with the team (1-5, CSAT), with an optional comment (personal
    # data like the messages: redacted by the retention job) and the team member who chatted last, rated.
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rating_comment: Mapped[str | None] = mapped_column(String(500), nullable=True)
    rated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    rated_agent: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # The web page the widget chat was last on (core.pages, migration 0058): its site (the browser's origin)
    # and its address without query or fragment, redacted. None for the messaging apps and API callers.
    site: Mapped[str | None] = mapped_column(String(200), nullable=True)
    page_url: Mapped[str | None] = mapped_column(String(500), nullable=True)

    turns: Mapped[list[Turn]] = relationship(back_populates="conversation", order_by="Turn.id")
    messages: Mapped[list[ConversationMessage]] = relationship(
        back_populates="conversation", order_by="ConversationMessage.id"
    )


class ConversationMessage(Base):
    """A message of the live chat after a handoff: an operator's reply, or the customer's message to them
    (not a bot turn: nothing was predicted, nothing is reviewed or trained on); or a note of the team's on the
    conversation (``sender`` "note"), which the customer never sees."""

    __tablename__ = "conversation_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sender: Mapped[str] = mapped_column(String(20))  # agent | customer | note (the team's own, never sent)
    agent: Mapped[str | None] = mapped_column(String(100), nullable=True)  # the operator, for agent messages
    text: Mapped[str] = mapped_column(Text)
    # Personal data like turns.user_text (a reply may quote the customer): redacted after the period.
    redacted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")


class ConversationViewer(Base):
    """Someone from the team with a conversation's page open (its live poll reports it), and when they last
    typed in its reply box (migration 0062; core.presence): two people answering one customer see each other
    before they both write. Rows go with the conversation; stale ones are purged as new ones are written."""

    __tablename__ = "conversation_viewers"

    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    typing_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Turn(Base):
    """One user message and the bot's reply, with everything needed to audit and learn from it."""

    __tablename__ = "turns"
    __table_args__ = (
        # Leads with status and time (a status's turns of a period); the other columns are those the month's
        # figures and the handoff inbox read (migration 0033), so those come from the index alone.
        Index(
            "ix_turns_status_created",
            "status",
            "created_at",
            "served_by",
            "intent",
            "helpful",
            "chosen_intent",
            "conversation_id",
        ),
        Index("ix_turns_arm_created", "served_by", "created_at"),
        # The typed "that's wrong" turns by time (a few in a hundred): the overview's choices and corrections
        # read a month of them without walking the month's every turn.
        Index(
            "ix_turns_complaints_created",
            "created_at",
            sqlite_where=text("rated_turn_id IS NOT NULL"),
            postgresql_where=text("rated_turn_id IS NOT NULL"),
        ),
        # The choices answered "none of these" by time (migration 0044): the overview counts a month of them.
        Index(
            "ix_turns_declined_at",
            "declined_at",
            sqlite_where=text("declined_at IS NOT NULL"),
            postgresql_where=text("declined_at IS NOT NULL"),
        ),
        # Declined messages written in another language, by time (migration 0045): the overview counts a
        # month of them by language.
        Index(
            "ix_turns_language_created",
            "created_at",
            sqlite_where=text("language IS NOT NULL"),
            postgresql_where=text("language IS NOT NULL"),
        ),
        # Answers asked for again, by time (migration 0046): the overview counts a month of them.
        Index(
            "ix_turns_asked_again_created",
            "created_at",
            sqlite_where=text("asked_again IS NOT NULL"),
            postgresql_where=text("asked_again IS NOT NULL"),
        ),
        # The widget's turns by time, with what the install page's table of pages and the conversations from a
        # page read (migration 0059): a month of them by page from the index alone.
        Index(
            "ix_turns_page_created",
            "created_at",
            "page",
            "status",
            "served_by",
            "helpful",
            "conversation_id",
            sqlite_where=text("page IS NOT NULL"),
            postgresql_where=text("page IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    user_text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))  # core.registry.TURN_STATUSES
    intent: Mapped[str | None] = mapped_column(String(INTENT_NAME_LENGTH), nullable=True)
    answer: Mapped[str] = mapped_column(Text, default="")
    confidence: Mapped[float] = mapped_column(Float)
    # [{"intent": str, "probability": float}, ...] best first
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # {"member name": [{"intent": str, "score": float}, ...]}
    member_scores: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    model_version: Mapped[str] = mapped_column(String(80))
    latency_ms: Mapped[float] = mapped_column(Float)
    # Which deployment arm answered: production | canary (shadow predictions live in shadow_prediction).
    served_by: Mapped[str] = mapped_column(String(20), default="production", server_default="production")
    shadow_prediction: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # The chips shown with the reply: "did you mean" choices (clarify) or follow-ups (answered), intent names
    # in order. None on turns logged before migration 0015.
    suggested: Mapped[list[str] | None] = mapped_column(NullableJSONType, nullable=True)
    # On a clarify turn: the choice the customer clicked next (their own answer to "did you mean"), and when.
    chosen_intent: Mapped[str | None] = mapped_column(String(INTENT_NAME_LENGTH), nullable=True)
    chosen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Or when the customer answered those choices with "none of these" (bot.choice; migration 0044).
    declined_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # On a typed "that's wrong" (small talk that rated the previous answer unhelpful and offered the intents
    # ranked next as chips): the answered turn it rated. A chip clicked next is recorded as chosen_intent here
    # and counts in review as the customer's own answer to that question (review.customer_picks).
    rated_turn_id: Mapped[int | None] = mapped_column(
        ForeignKey("turns.id", ondelete="SET NULL"), nullable=True, index=True
    )
    # The metadata filter the question came with (``bot.engine.MetadataFilter.to_dict``: the widget's page,
    # Azure's ``filters``); None without one.
    metadata_filter: Mapped[dict[str, Any] | None] = mapped_column(NullableJSONType, nullable=True)
    # Under that filter: the intent the bot would have answered with had there been none, when the filter kept
    # the question from it (a page whose metadata leaves out the answer its visitors ask for).
    kept_from: Mapped[str | None] = mapped_column(String(INTENT_NAME_LENGTH), nullable=True, index=True)
    # A follow-up ("is there a charge for that?") the model read after the question before it: that earlier
    # text, as read (``bot.follow_up``; migration 0039). None: the message was read alone.
    context_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Below the model's familiarity floor ("what's the weather in Paris?" to a bank;
    # ``Prediction.unfamiliar``; migration 0040): declined (status "off_topic"), or handed over in turns
    # logged before that status.
    # No Python-side default: a row written at an older revision (migration tests) must not name it.
    off_topic: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # The message as the model read it when misspelt words were read as the knowledge base's own ("my crad
    # hasnt arived" -> "my card hasnt arrived", ``bot.spelling``; migration 0041). None: read as typed.
    read_as: Mapped[str | None] = mapped_column(Text, nullable=True)
    # A keyword message ("pin") asked about with "did you mean" because the knowledge base uses its words for
    # several intents, though the model would have answered (``Prediction.vague``; migration 0042).
    # No Python-side default: a row written at an older revision (migration tests) must not name it.
    vague: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # The intent the customer said the message is not about ("I don't want to close my account, I just want
    # to ...": ``Prediction.ruled_out``, bot.negation; migration 0043), left out of the answer. None: none.
    ruled_out: Mapped[str | None] = mapped_column(String(INTENT_NAME_LENGTH), nullable=True)
    # Declined as off the knowledge base's topic and confidently written in another language: its code
    # ("de"; bot.language, migration 0045). None: the knowledge base's language, or not sure, or answered.
    language: Mapped[str | None] = mapped_column(String(8), nullable=True)
    # The customer asked again, in this conversation, for the answer its last answer gave (bot.repetition;
    # migration 0046): how many times in a row that answer has now been given, counting this turn (2: asked
    # again once). On an answered turn the reply offered a person; on a handoff the bot passed the
    # conversation on instead of giving it once more. None: a first answer, and every other turn.
    asked_again: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The web page the message was written from (core.pages: origin and redacted path, migration 0059); the
    # conversation keeps only the latest. None: not from the widget, or logged before.
    page: Mapped[str | None] = mapped_column(String(500), nullable=True)
    helpful: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    feedback_comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    feedback_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # When the retention job replaced the original message by its redacted form (None: still the original).
    redacted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    conversation: Mapped[Conversation] = relationship(back_populates="turns")


class ModelVersion(Base):
    """The model registry: every bundle the project built, where it lies and how it scored."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(80), unique=True)
    bundle_path: Mapped[str] = mapped_column(String(1000))
    data_hash: Mapped[str] = mapped_column(String(64))
    kb_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("kb_versions.id", ondelete="SET NULL"), nullable=True
    )
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Set when `helploop models prune` deleted the bundle: the row stays (turns, runs and the deployment
    # history name the version), but the version can no longer be deployed.
    pruned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    pruned_by: Mapped[str | None] = mapped_column(String(100), nullable=True)


class Deployment(Base):
    """What serves traffic. One row per change (the newest row is in force), so the table is its own audit
    trail: who changed it, when and why."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    production_version: Mapped[str] = mapped_column(String(80))
    canary_version: Mapped[str | None] = mapped_column(String(80), nullable=True)
    canary_share: Mapped[float] = mapped_column(Float, default=0.0)
    shadow_version: Mapped[str | None] = mapped_column(String(80), nullable=True)
    actor: Mapped[str] = mapped_column(String(100), default="system")
    reason: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AnswerPolicy(Base):
    """How sure the bot must be to answer, set by an operator for the whole installation: the precision each
    serving model's gate is fitted to (None: as each model was built). One row per change, so the table is its
    own audit trail; web workers follow the newest row without a restart."""

    __tablename__ = "answer_policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_precision: Mapped[float | None] = mapped_column(Float, nullable=True)
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class User(Base):
    """A person who logs in: a crowd reviewer or an operator."""

    __tablename__ = "users"
    __table_args__ = (Index("uq_users_sso", "sso_issuer", "sso_subject", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # Where a link to set a new password goes when its owner forgets theirs (lower-case; migration 0061).
    email: Mapped[str | None] = mapped_column(String(254), unique=True, nullable=True)
    role: Mapped[str] = mapped_column(String(20))  # reviewer | operator
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    suspended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    suspended_reason: Mapped[str | None] = mapped_column(String(300), nullable=True)
    gold_answered: Mapped[int] = mapped_column(Integer, default=0)
    gold_correct: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The last request of this person's browser session (kept to within a minute): an operator seen lately is
    # "online", so a customer who asks for a person is told whether someone can join the chat now.
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # When this person last signed in (migration 0049; None: never since): the Accounts page shows it, so an
    # account nobody uses any more can be found and deactivated.
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Two-factor sign-in (migration 0050): the authenticator app's shared key (sealed, core.sealed, since
    # migration 0057; None: password only) and the last time step a code was accepted for, so a code seen
    # over a shoulder cannot be used again.
    totp_secret: Mapped[str | None] = mapped_column(String(255), nullable=True)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Raised by "sign out of every other browser" (migration 0050): the session token derives from it too.
    session_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The version of the reviewing guidelines this person last read (0: the built-in text; None: never).
    guidelines_read: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Single sign-on (migration 0051): the identity provider's issuer and its stable id of the person (the ID
    # token's "sub"). While single sign-on is configured such an account signs in only through it, so
    # removing the person at the company's provider ends their access here too.
    sso_issuer: Mapped[str | None] = mapped_column(String(255), nullable=True)
    sso_subject: Mapped[str | None] = mapped_column(String(255), nullable=True)


class ApiToken(Base):
    """A bearer token for the admin API (automation: CI pushing the knowledge base, starting retraining,
    rolling out). Only its SHA-256 is stored; it acts as its user, and stops with them."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the first characters, to recognise a token in lists
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(80))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    user: Mapped[User] = relationship()


class SignIn(Base):
    """A sign-in through the login page (migration 0050): when, from which address and browser, and how
    (password, app code, recovery code). The account's own page lists the newest, so a sign-in its owner
    did not make stands out; the newest 20 per account are kept."""

    __tablename__ = "sign_ins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    address: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(200), default="")
    method: Mapped[str] = mapped_column(String(20), default="password")


class RecoveryCode(Base):
    """A two-factor recovery code (migration 0050): signs in once in place of the authenticator app's code,
    for a person whose phone is lost or flat. Only its SHA-256 is stored (the codes are random, 50 bits)."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AccountEvent(Base):
    """Audit trail of accounts: created, password reset, deactivated, reactivated, suspended (by the gold
    check), reinstated; who did it (an operator's username, "cli" or "system"), when and why."""

    __tablename__ = "account_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(30))
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReviewItem(Base):
    """A question (or a cluster of similar ones) that people should label."""

    __tablename__ = "review_items"
    __table_args__ = (Index("ix_review_items_queue", "status", "queue_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending|resolved|escalated
    reasons: Mapped[list[str]] = mapped_column(JSONType, default=list)
    text: Mapped[str] = mapped_column(Text)  # redacted: what reviewers see
    # The vector of the question reviewers are shown (the first turn); members must be close to it.
    embedding: Mapped[list[float] | None] = mapped_column(NullableJSONType, nullable=True)
    cluster_size: Mapped[int] = mapped_column(Integer, default=1)
    uncertainty: Mapped[float] = mapped_column(Float, default=1.0)
    # Sort key: higher first. uncertainty x cluster size, minus an ageing term on the creation time, so
    # that ORDER BY on a stored column ages items without rewriting them.
    queue_key: Mapped[float] = mapped_column(Float, default=0.0)
    bot_intent: Mapped[str | None] = mapped_column(String(INTENT_NAME_LENGTH), nullable=True)
    bot_answer: Mapped[str] = mapped_column(Text, default="")
    bot_confidence: Mapped[float] = mapped_column(Float, default=0.0)
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # The turns of the question's conversation just before it, as reviewers see them (redacted when the item
    # was made): [{"text", "status", "intent", "chosen_intent", "helpful"}, ...] oldest first. None: nothing
    # before it (or an item with no turn behind it, such as a check question from the knowledge base).
    context: Mapped[list[dict[str, Any]] | None] = mapped_column(NullableJSONType, nullable=True)
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    gold_label: Mapped[str | None] = mapped_column(String(INTENT_NAME_LENGTH), nullable=True)
    # An item asking reviewers about a knowledge-base example the check flagged (reason "kb_check"): the
    # intent the example is filed under.
    kb_intent: Mapped[str | None] = mapped_column(String(INTENT_NAME_LENGTH), nullable=True)
    required_judgements: Mapped[int] = mapped_column(Integer, default=3)
    resolved_label: Mapped[str | None] = mapped_column(String(300), nullable=True)
    resolved_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The operator who decided this item by hand (settled it, adopted or dismissed its new-intent
    # suggestion): re-aggregation leaves such items alone.
    settled_by: Mapped[str | None] = mapped_column(String(80), nullable=True)
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # A reviewer found personal data that redaction missed in what the item shows (the question or the turns
    # before it): the item is out of the queue until an operator redacts it by hand (migration 0038).
    privacy_reported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    privacy_reported_by: Mapped[str | None] = mapped_column(String(80), nullable=True)
    # The question as the automatic rules redacted it, before an operator redacted it by hand: the member turn
    # behind it reads so, and stands for ``text`` wherever member questions are shown or trained on.
    hand_redacted_from: Mapped[str | None] = mapped_column(Text, nullable=True)

    def shown_text(self, redacted: str) -> str:
        """A member turn's redacted text as reviewers see it and pairs carry it (the hand-redacted question
        for the turn behind it)."""
        return (
            self.text
            if self.hand_redacted_from is not None and redacted == self.hand_redacted_from
            else redacted
        )

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    turns: Mapped[list[ReviewItemTurn]] = relationship(cascade="all, delete-orphan")
    judgements: Mapped[list[Judgement]] = relationship(back_populates="item", order_by="Judgement.id")


class ReviewItemTurn(Base):
    __tablename__ = "review_item_turns"
    # From a turn to its review items (the key leads with the item): audited precision, a transcript's review
    # links, the customers' picks and erasure all join this way.
    __table_args__ = (Index("ix_review_item_turns_turn_id", "turn_id"),)

    item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id", ondelete="CASCADE"), primary_key=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"), primary_key=True)
    reason: Mapped[str] = mapped_column(String(30))


class Judgement(Base):
    __tablename__ = "judgements"
    __table_args__ = (UniqueConstraint("item_id", "reviewer_id", name="uq_judgements_item_reviewer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id", ondelete="CASCADE"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # An intent name, "new_intent" (with new_intent_text) or "not_a_question".
    label: Mapped[str] = mapped_column(String(300))
    new_intent_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    answer_ok: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # The item's other member questions this reviewer was shown: {redacted text: "asks the same" (bool)}.
    member_checks: Mapped[dict[str, bool] | None] = mapped_column(JSONType, nullable=True)
    # Shown the turns before the question (review_items.context): whether the question is clear only with
    # them (then most such answers keep the item from making training pairs: the bot reads messages alone).
    # None: there were none to show, or the judgement is older than migration 0035.
    needs_context: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # From taking the item (the claim) to answering it; None for judgements recorded before migration 0017.
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    item: Mapped[ReviewItem] = relationship(back_populates="judgements")


class Claim(Base):
    """A lease: a reviewer is working on an item until expires_at; an abandoned claim simply expires."""

    __tablename__ = "claims"
    __table_args__ = (UniqueConstraint("item_id", "reviewer_id", name="uq_claims_item_reviewer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id", ondelete="CASCADE"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class VerifiedPair(Base):
    """A (question, intent) pair confirmed by the crowd, weighted by its posterior, ready for training."""

    __tablename__ = "verified_pairs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    intent: Mapped[str] = mapped_column(String(INTENT_NAME_LENGTH))
    weight: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    """Long work (training, bulk aggregation, exports) as a row: a worker claims it under a lease, reports
    progress into it, honours cancel, and another worker picks it up if the lease runs out."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(
        String(20), default="queued"
    )  # queued|running|succeeded|failed|cancelled
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    step: Mapped[str] = mapped_column(String(200), default="")
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    eta_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_by: Mapped[str] = mapped_column(String(100), default="system")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ImportUpload(Base):
    """A file uploaded on the Knowledge page that its import job reads (a Word document or a PDF takes too
    long to read inside the request): kept in the database, which every worker reaches, and deleted when the
    job ends."""

    __tablename__ = "import_uploads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(Integer, index=True)
    position: Mapped[int] = mapped_column(Integer)  # the order the files were chosen in
    name: Mapped[str] = mapped_column(String(255))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ChannelChat(Base):
    """A chat on a messaging app (core.channels: Telegram, WhatsApp) and the conversation it is in now. The
    app's own id of the chat (a Telegram chat id, a WhatsApp phone number) is personal data: it stays here,
    never in the conversation's id, and goes when the conversation is erased. A chat quiet for longer than
    ``channel_conversation_hours`` starts a new conversation (a new row)."""

    __tablename__ = "channel_chats"
    __table_args__ = (Index("ix_channel_chats_chat", "channel", "chat_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    chat_key: Mapped[str] = mapped_column(String(128))
    conversation_id: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The customer's last message in it (a question, a pressed button, a photo): Meta's apps take the team's
    # replies only within 24 hours of it (migration 0056; None for chats from before).
    customer_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ChannelEvent(Base):
    """An update a messaging app delivered (its own id), kept for a day so a delivery it repeats (after a
    timeout, or twice at once) is answered once."""

    __tablename__ = "channel_events"

    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class ChannelMessage(Base):
    """A message to send to a chat on a messaging app (the bot's reply, a team member's live-chat message):
    an outbox, written with the turn or the live-chat message it carries, sent by the worker in order per
    chat, with retries."""

    __tablename__ = "channel_messages"
    __table_args__ = (
        Index("ix_channel_messages_status_due", "status", "next_attempt_at"),
        Index("ix_channel_messages_app_id", "channel", "app_message_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(20))
    chat_key: Mapped[str] = mapped_column(String(128))
    # {"text", "choices": [{"title", "payload"}], "turn_id"?: the answer's thumbs, "reply_to"?: app's id}
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # pending|sent|failed (failed also when the app took it and reported later that it could not deliver it)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The app's id of the message it took (the last piece of a long one; WhatsApp's wamid, Messenger's mid),
    # which its receipts name; and when the customer's phone got it and when they read it (migration 0055).
    app_message_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class OpsEvent(Base):
    """Something an operator should hear about (a deployment change, a finished job, a suspended reviewer, an
    escalated item), written in the same transaction as the change itself (an outbox): the ops webhook
    delivers it from a worker, with retries, and the Activity page lists it."""

    __tablename__ = "ops_events"
    __table_args__ = (Index("ix_ops_events_status_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    text: Mapped[str] = mapped_column(Text)  # one line a person reads (Slack's "text")
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending|delivered|failed|unsent
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReviewGuidelines(Base):
    """One version of the reviewing guidelines (Markdown), written by an operator; the newest is shown.
    No row: the built-in text of crowd_feedback.guidelines."""

    __tablename__ = "review_guidelines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class KeptExample(Base):
    """An operator's "keep as it is" on an example the knowledge-base check flagged (the model reads it as
    another intent): it is no longer listed as a warning while it stays under that intent."""

    __tablename__ = "kept_examples"
    __table_args__ = (UniqueConstraint("question_key", "intent", name="uq_kept_examples_key_intent"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    question_key: Mapped[str] = mapped_column(String(MAX_TEXT_LENGTH))  # core.kb_checks.question_key
    text: Mapped[str] = mapped_column(String(MAX_TEXT_LENGTH))
    intent: Mapped[str] = mapped_column(String(INTENT_NAME_LENGTH))
    kept_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
