"""The team's hours for chats (core.team_hours): how a schedule is read, when the team is in, when it is
back and how a customer is told; the settings refuse a schedule or time zone they cannot read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.settings import SettingsError, load_settings
from core.team_hours import Span, TeamHours, TeamHoursError, when_back

WEEK = "Mon-Fri 09:00-17:30; Sat 10:00-14:00"


def test_a_schedule_is_read_into_spans_a_day_and_described_as_written() -> None:
    hours = TeamHours.parse("mon-fri 09:00-17:30, Saturday 10:00 – 14:00", "Europe/London")
    assert hours is not None
    assert hours.spans == tuple(Span(day, 540, 1050) for day in range(5)) + (Span(5, 600, 840),)
    assert hours.describe() == "Mon–Fri 09:00–17:30, Sat 10:00–14:00 (Europe/London)"
    # a range of days may wrap round the week, and a span of time may run past midnight
    night = TeamHours.parse("Fri-Mon 22:00-02:00", "UTC")
    assert night is not None
    assert [(s.day, s.start, s.end) for s in night.spans] == [
        (0, 0, 120),
        (0, 1320, 1440),
        (1, 0, 120),
        (4, 1320, 1440),
        (5, 0, 120),
        (5, 1320, 1440),
        (6, 0, 120),
        (6, 1320, 1440),
    ]
    assert TeamHours.parse("", "Europe/Paris") is None and TeamHours.parse("  ") is None  # no schedule


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("Mon-Fry 09:00-17:00", "'Fry' is no day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"),
        ("Mo 09:00-17:00", "'Mo' is no day"),
        ("Mon 9-17", "write an entry as days and a span of time, e.g. 'Mon-Fri 09:00-17:30'"),
        ("Mon 09:00-24:30", "'24:30' is no time of day (00:00 to 24:00)"),
        ("Mon 09:60-17:00", "'09:60' is no time of day"),
        ("Mon 09:00-09:00", "'Mon 09:00-09:00': the span of time is empty"),
        (" ; , ", "no entry"),
    ],
)
def test_a_schedule_that_cannot_be_read_is_refused_naming_the_entry(spec: str, message: str) -> None:
    with pytest.raises(TeamHoursError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TeamHours.parse(spec, "UTC")


def test_in_hours_and_the_next_opening_follow_the_teams_wall_clock() -> None:
    hours = TeamHours.parse(WEEK, "Europe/London")
    assert hours is not None
    friday_evening = datetime(2026, 12, 4, 17, 29, tzinfo=UTC)  # GMT in winter: London is UTC
    assert hours.is_open(friday_evening) and not hours.is_open(datetime(2026, 12, 4, 17, 30, tzinfo=UTC))
    assert hours.next_opening(datetime(2026, 12, 4, 17, 30, tzinfo=UTC)) == datetime(
        2026, 12, 5, 10, 0, tzinfo=UTC
    )
    saturday_after = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)
    assert not hours.is_open(saturday_after)
    assert hours.next_opening(saturday_after) == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    # British summer time: 09:00 in London is 08:00 UTC
    summer = hours.next_opening(datetime(2026, 6, 7, 20, 0, tzinfo=UTC))
    assert summer == datetime(2026, 6, 8, 8, 0, tzinfo=UTC) and summer.tzname() == "BST"
    assert hours.is_open(datetime(2026, 6, 8, 8, 0, tzinfo=UTC))
    # a naive moment is UTC, as the database hands them back
    assert hours.next_opening(datetime(2026, 12, 5, 15, 0)) == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def test_past_midnight_the_span_goes_on_and_is_no_new_opening() -> None:
    hours = TeamHours.parse("Fri 22:00-02:00", "Asia/Dubai")  # UTC+4
    assert hours is not None
    assert hours.is_open(datetime(2026, 12, 4, 21, 30, tzinfo=UTC))  # Saturday 01:30 in Dubai
    assert not hours.is_open(datetime(2026, 12, 4, 22, 0, tzinfo=UTC))  # Saturday 02:00
    # on Saturday at 02:00 the next opening is next Friday's 22:00, not Saturday's 00:00
    after = hours.next_opening(datetime(2026, 12, 4, 22, 0, tzinfo=UTC))
    assert after == datetime(2026, 12, 11, 18, 0, tzinfo=UTC)


def test_an_opening_skipped_by_daylight_saving_moves_on_to_the_clocks_new_time() -> None:
    hours = TeamHours.parse("Sun 01:30-05:00", "Europe/London")  # 29 March 2026: 01:00 GMT -> 02:00 BST
    assert hours is not None
    opening = hours.next_opening(datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    assert opening == datetime(2026, 3, 29, 1, 30, tzinfo=UTC) and f"{opening:%H:%M %Z}" == "02:30 BST"


def test_the_customer_is_told_when_in_their_words() -> None:
    now = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)  # Saturday
    london = TeamHours.parse(WEEK, "Europe/London")
    assert london is not None
    assert when_back(london.next_opening(now), now) == "on Monday at 09:00 GMT"
    sunday = datetime(2026, 12, 6, 20, 0, tzinfo=UTC)
    assert when_back(london.next_opening(sunday), sunday) == "tomorrow at 09:00 GMT"
    assert (
        when_back(
            london.next_opening(datetime(2026, 12, 7, 7, 0, tzinfo=UTC)),
            datetime(2026, 12, 7, 7, 0, tzinfo=UTC),
        )
        == "today at 09:00 GMT"
    )
    # a zone with no letters for its name gets its offset; a week away is "next"
    dubai = TeamHours.parse("Mon 09:00-10:00", "Asia/Dubai")
    assert dubai is not None
    monday_late = datetime(2026, 12, 7, 7, 0, tzinfo=UTC)  # Monday 11:00 in Dubai: the hour is over
    assert when_back(dubai.next_opening(monday_late), monday_late) == "next Monday at 09:00 (UTC+04)"


def test_the_settings_read_the_hours_and_refuse_what_they_cannot() -> None:
    settings = load_settings(
        overrides={"environment": "testing"},
        environ={"HELPLOOP_TEAM_HOURS": WEEK, "HELPLOOP_TEAM_TIMEZONE": "Europe/London"},
    )
    assert settings.team_schedule is not None
    assert settings.team_schedule.describe() == "Mon–Fri 09:00–17:30, Sat 10:00–14:00 (Europe/London)"
    assert load_settings(overrides={"environment": "testing"}, environ={}).team_schedule is None
    with pytest.raises(SettingsError, match="team_hours: 'Mon-Fry 09:00-17:00': 'Fry' is no day"):
        load_settings(overrides={"environment": "testing", "team_hours": "Mon-Fry 09:00-17:00"}, environ={})
    with pytest.raises(SettingsError, match="team_timezone: 'Europe/Lundon' is no time zone"):
        load_settings(overrides={"environment": "testing", "team_timezone": "Europe/Lundon"}, environ={})
    with pytest.raises(SettingsError, match="handoff_away_message must not be blank"):
        load_settings(overrides={"environment": "testing", "handoff_away_message": " "}, environ={})
