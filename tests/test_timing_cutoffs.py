"""The calendar of an issue, pinned at its edges: cutoffs, the stale window, the retry deadline.

Known answers are worked out by hand from the zone's rules (Europe/London: GMT in winter, BST
= UTC+1 from the last Sunday of March to the last Sunday of October); the properties hold for
any zone, send time and date, DST changes and next year's calendar included.
"""

from __future__ import annotations

import time as time_module
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.config import Settings, load_settings
from newsletter.errors import StaleIssueError
from newsletter.models import Digest, Frequency, Issue, IssueStatus
from newsletter.timing import (
    check_not_stale,
    hours,
    is_issue_day,
    issue_cutoff,
    kinds,
    latest_due_date,
    local_date,
    retry_deadline,
    stream_name,
)
from tests.support.config import ROOT

SHIPPED = load_settings(ROOT / "config.toml", environ={})  # London, 07:00, 6 h stale, 24 h retry
US = timedelta(microseconds=1)
LONDON = ZoneInfo("Europe/London")
# Zones with and without DST, both hemispheres, half- and quarter-hour offsets, the date line.
ZONES = [
    "Europe/London", "Europe/Berlin", "America/New_York", "America/Sao_Paulo", "Asia/Kolkata",
    "Asia/Kathmandu", "Australia/Sydney", "Australia/Lord_Howe", "Pacific/Auckland",
    "Pacific/Chatham", "Pacific/Apia", "Asia/Tehran", "America/St_Johns", "UTC",
]  # fmt: skip


def at(settings_: Settings, *, zone: str = "Europe/London", send: time = time(7)) -> Settings:
    return replace(settings_, timezone=ZoneInfo(zone), send_time=send)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# cutoffs, known answers


@pytest.mark.parametrize(
    ("day", "send", "cutoff"),
    [
        (date(2026, 11, 28), time(7), utc(2026, 11, 28, 7)),  # GMT
        (date(2027, 7, 1), time(7), utc(2027, 7, 1, 6)),  # BST: an hour earlier in UTC
        (date(2027, 3, 28), time(7), utc(2027, 3, 28, 6)),  # spring-forward day, after the jump
        (date(2027, 3, 28), time(1, 30), utc(2027, 3, 28, 1, 30)),  # 01:30 never happens: +0
        (date(2026, 10, 25), time(1, 30), utc(2026, 10, 25, 0, 30)),  # 01:30 twice: the first
        (date(2026, 10, 25), time(7), utc(2026, 10, 25, 7)),  # fall-back day, after the change
        (date(2026, 12, 31), time(23, 59, 59), utc(2026, 12, 31, 23, 59, 59)),
    ],
)
def test_the_cutoff_is_the_send_time_of_the_date_in_the_newsletters_zone(
    day: date, send: time, cutoff: datetime
) -> None:
    found = issue_cutoff(at(SHIPPED, send=send), day)
    assert found == cutoff and found.utcoffset() == timedelta(0)


def test_the_cutoff_of_a_zone_east_of_utc_falls_on_the_previous_utc_day() -> None:
    found = issue_cutoff(at(SHIPPED, zone="Pacific/Auckland"), date(2027, 1, 15))
    assert found == utc(2027, 1, 14, 18)  # NZDT is UTC+13


def test_local_date_is_the_readers_calendar_day() -> None:
    sydney = at(SHIPPED, zone="Australia/Sydney")
    assert local_date(sydney, utc(2026, 11, 28, 12, 59, 59)) == date(2026, 11, 28)
    assert local_date(sydney, utc(2026, 11, 28, 13)) == date(2026, 11, 29)  # AEDT midnight
    assert local_date(SHIPPED, utc(2027, 7, 1, 23, 30)) == date(2027, 7, 2)  # BST


# which issue is due


def test_an_issue_is_due_from_its_cutoff_instant_on() -> None:
    cutoff = issue_cutoff(SHIPPED, date(2026, 11, 28))
    assert latest_due_date(SHIPPED, cutoff) == date(2026, 11, 28)
    assert latest_due_date(SHIPPED, cutoff - US) == date(2026, 11, 27)
    assert latest_due_date(SHIPPED, cutoff + US) == date(2026, 11, 28)


def test_before_the_send_time_after_local_midnight_yesterdays_issue_is_the_latest() -> None:
    assert latest_due_date(SHIPPED, utc(2026, 11, 28, 0, 5)) == date(2026, 11, 27)
    # With a late send time, the whole local day before it still belongs to yesterday.
    late = at(SHIPPED, send=time(23, 30))
    assert latest_due_date(late, utc(2026, 11, 28, 0, 5)) == date(2026, 11, 27)
    assert latest_due_date(late, utc(2026, 11, 28, 23, 29)) == date(2026, 11, 27)


def test_the_weekly_issue_is_due_only_on_its_weekday() -> None:
    weekly = replace(SHIPPED, weekly=replace(SHIPPED.weekly, enabled=True, weekday=4))  # Friday
    saturday = utc(2026, 11, 28, 9)
    assert latest_due_date(weekly, saturday, Frequency.WEEKLY) == date(2026, 11, 27)
    assert latest_due_date(weekly, saturday, Frequency.DAILY) == date(2026, 11, 28)
    friday_cutoff = issue_cutoff(weekly, date(2026, 11, 27))
    assert latest_due_date(weekly, friday_cutoff - US, Frequency.WEEKLY) == date(2026, 11, 20)
    assert latest_due_date(weekly, friday_cutoff, Frequency.WEEKLY) == date(2026, 11, 27)
    assert is_issue_day(weekly, Frequency.WEEKLY, date(2026, 11, 27))
    assert not is_issue_day(weekly, Frequency.WEEKLY, date(2026, 11, 28))
    assert is_issue_day(weekly, Frequency.DAILY, date(2026, 11, 28))


def test_streams_are_the_daily_list_and_the_weekly_only_when_enabled() -> None:
    assert kinds(SHIPPED) == (Frequency.DAILY,)
    weekly = replace(SHIPPED, weekly=replace(SHIPPED.weekly, enabled=True))
    assert kinds(weekly) == (Frequency.DAILY, Frequency.WEEKLY)
    assert stream_name(weekly, Frequency.DAILY) == "REE Daily"
    assert stream_name(weekly, Frequency.WEEKLY) == "REE Daily Weekly"


# stale window and retry deadline


def test_an_issue_may_start_up_to_exactly_the_stale_window_after_its_cutoff() -> None:
    day = date(2026, 11, 28)
    cutoff = issue_cutoff(SHIPPED, day)
    check_not_stale(SHIPPED, day, cutoff + timedelta(hours=6))  # on the limit: still sent
    check_not_stale(SHIPPED, day, cutoff - timedelta(hours=30))  # early is never stale
    with pytest.raises(StaleIssueError) as refused:
        check_not_stale(SHIPPED, day, cutoff + timedelta(hours=6) + US)
    assert str(refused.value) == (
        "the issue of 2026-11-28 was due at 2026-11-28 07:00 GMT, 6 h 1 min ago, beyond "
        "delivery.stale_after_hours (6 h); nothing sent. Run `newsletter send --force` to send "
        "it anyway."
    )


def test_the_stale_message_gives_the_due_time_in_the_newsletters_zone() -> None:
    summer = date(2027, 7, 1)
    late = issue_cutoff(SHIPPED, summer) + timedelta(hours=7, minutes=30)
    with pytest.raises(StaleIssueError, match=r"due at 2027-07-01 07:00 BST, 7 h 30 min ago"):
        check_not_stale(SHIPPED, summer, late)


def test_the_stale_window_follows_the_configured_hours() -> None:
    day = date(2026, 11, 28)
    short = replace(SHIPPED, delivery=replace(SHIPPED.delivery, stale_after_hours=0.5))
    check_not_stale(short, day, issue_cutoff(short, day) + timedelta(minutes=30))
    with pytest.raises(StaleIssueError, match=r"\(30 min\)"):
        check_not_stale(short, day, issue_cutoff(short, day) + timedelta(minutes=30) + US)


def test_deferred_readers_are_retried_until_the_configured_hours_after_the_cutoff() -> None:
    cutoff = utc(2026, 11, 28, 7)
    digest = Digest(subject="s", preheader="", html="", text="", article_ids=())
    issue = Issue(1, "REE Daily", date(2026, 11, 28), IssueStatus.SENDING, cutoff, digest, cutoff)
    assert retry_deadline(SHIPPED, issue) == utc(2026, 11, 29, 7)
    shorter = replace(SHIPPED, delivery=replace(SHIPPED.delivery, retry_deadline_hours=1.5))
    assert retry_deadline(shorter, issue) == utc(2026, 11, 28, 8, 30)


# spans as the operator reads them


@pytest.mark.parametrize(
    ("span", "up", "shown"),
    [
        (timedelta(0), False, "0 min"),
        (timedelta(seconds=59), False, "0 min"),
        (timedelta(seconds=59), True, "1 min"),
        (timedelta(seconds=60), True, "1 min"),
        (timedelta(minutes=45), False, "45 min"),
        (timedelta(hours=6), False, "6 h"),
        (timedelta(hours=6, seconds=30), False, "6 h"),
        (timedelta(hours=6, seconds=30), True, "6 h 1 min"),
        (timedelta(hours=6, minutes=2), False, "6 h 2 min"),
        (timedelta(days=1), False, "1 d"),
        (timedelta(days=2, minutes=5), False, "2 d 5 min"),
        (timedelta(days=1, hours=3, minutes=4), False, "1 d 3 h 4 min"),
        (-timedelta(minutes=90), False, "-1 h 30 min"),
        (-timedelta(seconds=30), True, "-1 min"),
    ],
)
def test_a_span_reads_in_days_hours_and_minutes(span: timedelta, up: bool, shown: str) -> None:
    assert hours(span, up=up) == shown


# properties: any zone, any send time, any date (DST changes and next year included)

dates = st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 31))
send_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 1, 15, 30, 45, 59]))


@settings(max_examples=150, derandomize=True)
@given(zone=st.sampled_from(ZONES), send=send_times, day=dates)
def test_every_instant_is_in_exactly_one_issues_window(zone: str, send: time, day: date) -> None:
    """Consecutive cutoffs increase, and the window (cutoff(D-1), cutoff(D)] of each date holds
    the instants `latest_due_date` calls D's: the day before its cutoff is D-1's."""
    local = at(SHIPPED, zone=zone, send=send)
    before, cutoff = issue_cutoff(local, day - timedelta(days=1)), issue_cutoff(local, day)
    assert timedelta(hours=22) <= cutoff - before <= timedelta(hours=26)  # DST moves an hour
    assert latest_due_date(local, cutoff) == day
    assert latest_due_date(local, cutoff - US) == day - timedelta(days=1)
    assert latest_due_date(local, before) == day - timedelta(days=1)
    assert local_date(local, cutoff) == day  # even where the send time does not exist


def test_a_span_rounds_down_unless_asked_to_round_up() -> None:
    assert hours(timedelta(minutes=5, seconds=59)) == "5 min"
    assert hours(timedelta(minutes=5, seconds=59), up=True) == "6 min"


def test_the_cutoff_is_in_utc_whatever_the_machines_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stored and compared as UTC: a host set to New York time must not shift it to -05:00."""
    monkeypatch.setenv("TZ", "America/New_York")
    time_module.tzset()
    try:
        found = issue_cutoff(SHIPPED, date(2026, 11, 28))
    finally:
        monkeypatch.undo()
        time_module.tzset()
    assert found == utc(2026, 11, 28, 7) and found.utcoffset() == timedelta(0)
