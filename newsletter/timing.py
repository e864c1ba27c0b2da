"""The calendar of one issue: when it is due, until when it may start, until when it is retried.

For the issue of date D (all instants in UTC, computed from `send_time` in `timezone`):
- its cutoff is D at the send time: it closes D's window of articles and is when D is due;
- a run that would start the issue more than `delivery.stale_after_hours` after the cutoff does
  not, unless the operator forces it: mail that is a day late surprises its readers;
- deferred readers are retried until `delivery.retry_deadline_hours` after the issue's cutoff.

A send time that does not exist on a spring-forward day (01:30 when clocks jump from 01:00 to
02:00) resolves as `datetime.combine` with zoneinfo resolves it (fold=0: the earlier offset),
which is an hour later on the wall clock; a repeated one on a fall-back day means its first
occurrence. Either way each local date has exactly one cutoff.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from newsletter.config import Settings
from newsletter.errors import StaleIssueError
from newsletter.models import Frequency, Issue


def stream_name(settings: Settings, kind: Frequency) -> str:
    """The list an issue belongs to: the daily newsletter, or the weekly round-up."""
    return settings.name if kind is Frequency.DAILY else settings.weekly.name


def kinds(settings: Settings) -> tuple[Frequency, ...]:
    """The streams this newsletter sends: daily always, weekly when enabled."""
    return (Frequency.DAILY, Frequency.WEEKLY) if settings.weekly.enabled else (Frequency.DAILY,)


def is_issue_day(settings: Settings, kind: Frequency, day: date) -> bool:
    return kind is Frequency.DAILY or day.weekday() == settings.weekly.weekday


def issue_cutoff(settings: Settings, issue_date: date) -> datetime:
    """The instant the issue of a date is due and its window of articles closes."""
    local = datetime.combine(issue_date, settings.send_time, tzinfo=settings.timezone)
    return local.astimezone(UTC)


def local_date(settings: Settings, now: datetime) -> date:
    """The calendar date at `now` where the readers live (the newsletter's timezone)."""
    return now.astimezone(settings.timezone).date()


def stale_window(settings: Settings) -> timedelta:
    return timedelta(hours=settings.delivery.stale_after_hours)


def stale(settings: Settings, due_at: datetime, now: datetime) -> bool:
    """Whether `due_at` is further past than the stale window: the one rule that keeps a late
    issue from reaching readers by surprise (starting it, resuming it, or a missed day)."""
    return now - due_at > stale_window(settings)


def retry_deadline(settings: Settings, issue: Issue) -> datetime:
    """Until this instant later runs retry the issue's deferred readers."""
    return issue.cutoff + timedelta(hours=settings.delivery.retry_deadline_hours)


def latest_due_date(settings: Settings, now: datetime, kind: Frequency = Frequency.DAILY) -> date:
    """The date of the latest issue of the stream whose send time is not in the future."""
    day = local_date(settings, now)
    while issue_cutoff(settings, day) > now or not is_issue_day(settings, kind, day):
        day -= timedelta(days=1)
    return day


def hours(span: timedelta, *, up: bool = False) -> str:
    """A span as the operator reads it: "6 h 2 min", "45 min".

    `up` rounds to the next minute, for a lateness shown beside the limit it broke: 6 h and
    30 s past a 6 h window reads "6 h 1 min", never "6 h".
    """
    seconds = abs(span.total_seconds())
    minutes = int(-(-seconds // 60) if up else seconds // 60)
    days, minutes = divmod(minutes, 24 * 60)
    whole_hours, minutes = divmod(minutes, 60)
    parts = [f"{days} d"] if days else []
    parts += [f"{whole_hours} h"] if whole_hours else []
    parts += [f"{minutes} min"] if minutes or not parts else []
    return ("-" if span.total_seconds() < 0 else "") + " ".join(parts)


def check_not_stale(settings: Settings, issue_date: date, now: datetime) -> None:
    """Refuse to start an issue whose send time is further past than the stale window."""
    cutoff = issue_cutoff(settings, issue_date)
    late, window = now - cutoff, stale_window(settings)
    if stale(settings, cutoff, now):
        local = cutoff.astimezone(settings.timezone)
        raise StaleIssueError(
            f"the issue of {issue_date} was due at {local:%Y-%m-%d %H:%M %Z}, "
            f"{hours(late, up=True)} ago, beyond delivery.stale_after_hours ({hours(window)}); "
            "nothing sent. Run `newsletter send --force` to send it anyway."
        )
