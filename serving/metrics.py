"""Prometheus metrics, one registry per app (tests and workers never share counters by accident)."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_latency = Histogram(
            "helploop_request_latency_seconds",
            "Request latency by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.turns = Counter(
            "helploop_turns_total", "Chat turns by status and arm", ["status", "arm"], registry=self.registry
        )
        self.feedback = Counter(
            "helploop_feedback_total", "Thumbs up/down", ["helpful"], registry=self.registry
        )
        self.live_chat_messages = Counter(
            "helploop_live_chat_messages_total",
            "Live-chat messages after a handoff, by sender (customer, agent)",
            ["sender"],
            registry=self.registry,
        )
        self.refused_origins = Counter(
            "helploop_widget_refused_origins_total",
            "Browser calls to the chat API from a site HELPLOOP_WIDGET_ORIGINS does not allow (the browser "
            "stops the widget there; the log names each such site once)",
            registry=self.registry,
        )
        self.chat_ratings = Counter(
            "helploop_chat_ratings_total",
            "Customers' ratings of their live chat with the team (1-5)",
            ["rating"],
            registry=self.registry,
        )
        self.clarify_choices = Counter(
            "helploop_clarify_choices_total",
            'Customers who answered "did you mean" with a choice (clicked or typed), by its position '
            '(1: first shown); "none": with "none of these"',
            ["rank"],
            registry=self.registry,
        )
        self.follow_ups = Counter(
            "helploop_follow_ups_total",
            "Messages answered from the reading with the question before them (bot.follow_up), by status",
            ["status"],
            registry=self.registry,
        )
        self.off_topic = Counter(
            "helploop_off_topic_total",
            "Messages declined as off the knowledge base's topic (below the model's familiarity floor), "
            "by arm",
            ["arm"],
            registry=self.registry,
        )
        self.other_language = Counter(
            "helploop_other_language_total",
            "Messages declined as off the knowledge base's topic that were written in another language, by "
            "language (told the bot answers in the knowledge base's language)",
            ["language"],
            registry=self.registry,
        )
        self.asked_again = Counter(
            "helploop_asked_again_total",
            "Answers asked for again in a conversation (bot.repetition), by outcome: answered (given again "
            "with the offer of a person) or handoff (asked once more than the limit: passed to a person)",
            ["outcome"],
            registry=self.registry,
        )
        self.keyword_asked = Counter(
            "helploop_keyword_asked_total",
            'Keyword messages ("pin") asked about with "did you mean" rather than answered, because the '
            "knowledge base shares their words among intents (bot.keywords), by arm",
            ["arm"],
            registry=self.registry,
        )
        self.shadow_dropped = Counter(
            "helploop_shadow_dropped_total", "Shadow scorings skipped under load", registry=self.registry
        )
        self.review_lookalikes_skipped = Counter(
            "helploop_review_lookalikes_skipped_total",
            "Confident turns not offered to pending review items because the router was busy",
            registry=self.registry,
        )
        self.channel_messages = Counter(
            "helploop_channel_messages_total",
            "Messages to messaging-app chats by outcome (sent, retry, deferred, failed; undelivered: "
            "reported by the app as not delivered after it took it)",
            ["outcome"],
            registry=self.registry,
        )
        self.handoff_notifications = Counter(
            "helploop_handoff_notifications_total",
            "Handoff webhook deliveries by outcome (sent, failed after retries)",
            ["outcome"],
            registry=self.registry,
        )
        self.review_items = Gauge(
            "helploop_review_items",
            "Review items (gold excepted) by status",
            ["status"],
            registry=self.registry,
        )
        self.handoffs_waiting = Gauge(
            "helploop_handoffs_waiting",
            "Conversations handed to a person and not yet marked handled",
            registry=self.registry,
        )
        self.suggestions_open = Gauge(
            "helploop_suggestions_open",
            "New-intent suggestions no operator has decided",
            registry=self.registry,
        )
        self.jobs = Gauge(
            "helploop_jobs", "Jobs queued or running, by kind", ["kind", "status"], registry=self.registry
        )
        self.ops_events = Gauge(
            "helploop_ops_events",
            "Ops events of the last 24 hours by delivery to the ops webhook (alert on failed)",
            ["status"],
            registry=self.registry,
        )
        self.backup_newest = Gauge(
            "helploop_backup_newest_timestamp_seconds",
            "Time of the newest scheduled database backup in the backup folder, 0 when there is none (only "
            "with HELPLOOP_BACKUP_DIR; alert when time() minus it exceeds two days)",
            ["folder"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "helploop_model_info",
            "Model version serving each arm (value 1)",
            ["arm", "version"],
            registry=self.registry,
        )

    def set_workload(
        self,
        *,
        review_items: dict[str, int],
        handoffs_waiting: int,
        suggestions_open: int,
        jobs: dict[tuple[str, str], int],
        ops_events: dict[str, int],
    ) -> None:
        """Work waiting for people and workers, read from the database at scrape time (alert on these)."""
        self.review_items.clear()
        for status in ("pending", "resolved", "escalated"):
            self.review_items.labels(status=status).set(review_items.get(status, 0))
        self.handoffs_waiting.set(handoffs_waiting)
        self.suggestions_open.set(suggestions_open)
        self.jobs.clear()
        for (kind, status), count in jobs.items():
            self.jobs.labels(kind=kind, status=status).set(count)
        for status, count in ops_events.items():
            self.ops_events.labels(status=status).set(count)

    def set_backup(self, folder: str, newest: datetime | None) -> None:
        self.backup_newest.clear()
        self.backup_newest.labels(folder=folder).set(newest.timestamp() if newest else 0)

    def set_models(self, versions: dict[str, str | None]) -> None:
        self.model_info.clear()
        for arm, version in versions.items():
            if version:
                self.model_info.labels(arm=arm, version=version).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
