"""When the team answers chats ("Mon-Fri 09:00-17:30, Sat 10:00-14:00" in a time zone), so that a customer
handed to a person outside them is told when the team is back rather than only that nobody is online.

The schedule is a setting (``HELPLOOP_TEAM_HOURS``, ``HELPLOOP_TEAM_TIMEZONE``): entries separated by commas
or semicolons, each a day or a range of days (``Mon``, ``Mon-Fri``, ``Fri-Mon``, full names too) and one
span of time (``09:00-17:30``; ``24:00`` ends at midnight; ``22:00-06:00`` runs past midnight into the next
day). Times are the team's wall-clock times in its IANA time zone, daylight saving included. Empty: no
schedule (the team's presence alone decides, as before it)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MINUTES_A_DAY = 24 * 60
_DASH = r"\s*[-–—]\s*"
ENTRY = re.compile(
    rf"^(?P<first>[A-Za-z]+)(?:{_DASH}(?P<last>[A-Za-z]+))?\s+"
    rf"(?P<start>\d{{1,2}}:\d{{2}}){_DASH}(?P<end>\d{{1,2}}:\d{{2}})$"
)


class TeamHoursError(ValueError):
    """A schedule or time zone that cannot be read; the message names the part."""


def _day(word: str, entry: str) -> int:
    key = word.strip().lower()
    for index, name in enumerate(DAY_NAMES):
        if len(key) >= 3 and name.lower().startswith(key):
            return index
    raise TeamHoursError(f"{entry!r}: {word!r} is no day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)")


def _minutes(clock: str, entry: str) -> int:
    hours, minutes = (int(part) for part in clock.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise TeamHoursError(f"{entry!r}: {clock!r} is no time of day (00:00 to 24:00)")
    return hours * 60 + minutes


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class Span:
    """Open on ``day`` (0 = Monday) from ``start`` to ``end`` minutes after midnight (local time)."""

    day: int
    start: int
    end: int


@dataclass(frozen=True)
class TeamHours:
    spans: tuple[Span, ...]
    zone: ZoneInfo
    entries: tuple[str, ...]  # the entries as read, normalised ("Mon–Fri 09:00–17:30"), for display

    @classmethod
    def parse(cls, spec: str, timezone: str = "UTC") -> TeamHours | None:
        """The schedule ``spec`` in ``timezone``; None when ``spec`` is blank (no schedule)."""
        zone = read_zone(timezone)
        if not spec.strip():
            return None
        spans: list[Span] = []
        entries: list[str] = []
        for raw in re.split(r"[,;]", spec):
            entry = " ".join(raw.split())
            if not entry:
                continue
            match = ENTRY.match(entry)
            if match is None:
                raise TeamHoursError(
                    f"{entry!r}: write an entry as days and a span of time, e.g. 'Mon-Fri 09:00-17:30'"
                )
            first = _day(match["first"], entry)
            last = _day(match["last"], entry) if match["last"] else first
            start, end = _minutes(match["start"], entry), _minutes(match["end"], entry)
            if start == end or start == MINUTES_A_DAY:
                raise TeamHoursError(f"{entry!r}: the span of time is empty")
            days = [(first + offset) % 7 for offset in range((last - first) % 7 + 1)]
            for day in days:
                if end > start:
                    spans.append(Span(day, start, end))
                else:  # past midnight: the rest of this day and the start of the next
                    spans.append(Span(day, start, MINUTES_A_DAY))
                    if end:
                        spans.append(Span((day + 1) % 7, 0, end))
            named = DAYS[first] if first == last else f"{DAYS[first]}–{DAYS[last]}"
            entries.append(f"{named} {_clock(start)}–{_clock(end)}")
        if not spans:
            raise TeamHoursError(f"{spec!r}: no entry (e.g. 'Mon-Fri 09:00-17:30')")
        return cls(tuple(sorted(spans, key=lambda s: (s.day, s.start))), zone, tuple(entries))

    def describe(self) -> str:
        """ "Mon–Fri 09:00–17:30, Sat 10:00–14:00 (Europe/London)"."""
        return f"{', '.join(self.entries)} ({self.zone.key})"

    def _local(self, moment: datetime) -> datetime:
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(self.zone)

    def is_open(self, moment: datetime) -> bool:
        local = self._local(moment)
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        return any(span.day == day and span.start <= minute < span.end for span in self.spans)

    def back_at(self, moment: datetime) -> datetime | None:
        """None within the hours at ``moment``; outside them, when they next begin."""
        return None if self.is_open(moment) else self.next_opening(moment)

    def next_opening(self, moment: datetime) -> datetime:
        """The first moment after ``moment`` at which the team's hours begin (local time, aware)."""
        local = self._local(moment)
        # a span that goes on from the day before (past midnight) is no opening
        ends_at_midnight = {span.day for span in self.spans if span.end == MINUTES_A_DAY}
        openings = [s for s in self.spans if s.start or (s.day - 1) % 7 not in ends_at_midnight]
        for offset in range(8):
            day: date = local.date() + timedelta(days=offset)
            for span in openings:
                if span.day == day.weekday():
                    opening = _wall_clock(day, span.start, self.zone)
                    if opening > local:
                        return opening
        raise AssertionError("a schedule with spans opens within a week")  # parse refuses an empty one


def _wall_clock(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """``minutes`` after midnight of ``day`` in ``zone``; a time skipped by daylight saving moves on."""
    naive = datetime.combine(day, time(minutes // 60, minutes % 60))
    return naive.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)


def read_zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone.strip() or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise TeamHoursError(
            f"{timezone!r} is no time zone: use an IANA name such as Europe/London or America/New_York"
        ) from None


def when_back(opening: datetime, now: datetime) -> str:
    """How a customer is told when the team is back, from ``now``: "today at 09:00 GMT", "tomorrow at
    09:00 GMT", "on Monday at 09:00 CET" (a week or more away: "next Monday")."""
    local_now = (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(opening.tzinfo)
    days = (opening.date() - local_now.date()).days
    zone = opening.tzname() or ""
    clock = f"{opening:%H:%M}" + (f" {zone}" if zone.isalpha() else f" (UTC{zone})" if zone else "")
    if days <= 0:
        return f"today at {clock}"
    if days == 1:
        return f"tomorrow at {clock}"
    name = DAY_NAMES[opening.weekday()]
    return f"on {name} at {clock}" if days < 7 else f"next {name} at {clock}"
