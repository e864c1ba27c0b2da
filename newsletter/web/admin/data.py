"""What the dashboard shows, read from the store and shaped for the templates.

Days are the newsletter's days (its time zone); the charts cover the last `DAYS` days, the
issue table the last `ISSUES` issues with their ledger counts and rates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from newsletter.models import Issue, SubscriberStatus
from newsletter.signals import IssueRates, issue_rates

DAYS = 30
ISSUES = 30
SERIES = ("sign-ups", "confirmations", "unsubscribes", "bounces", "complaints")


class AdminStore(Protocol):
    def count_by_status(self) -> dict[SubscriberStatus, int]: ...
    def recent_issues(self, newsletter: str, limit: int = 10) -> list[Issue]: ...
    def get_issue(self, newsletter: str, issue_date: date) -> Issue | None: ...
    def ledger_by_issue(self, issue_ids: Iterable[int]) -> dict[int, dict[str, int]]: ...
    def signal_tallies(self, issue_ids: Iterable[int]) -> dict[int, dict[str, int]]: ...
    def failed_details(self, issue_ids: Iterable[int]) -> dict[int, list[str]]: ...
    def event_times(self, since: datetime) -> dict[str, list[datetime]]: ...
    def feed_health(self, since: datetime) -> list[dict[str, Any]]: ...
    def recent_signals(self, limit: int = 20) -> list[dict[str, Any]]: ...
    def untried_count(self, issue_id: int) -> int: ...


@dataclass(frozen=True)
class IssueRow:
    issue: Issue
    ledger: dict[str, int]
    rates: IssueRates
    warnings: list[str]


def issue_rows(store: AdminStore, newsletter: str, limit: int = ISSUES) -> list[IssueRow]:
    issues = store.recent_issues(newsletter, limit)
    ids = [issue.id for issue in issues]
    ledgers, tallies = store.ledger_by_issue(ids), store.signal_tallies(ids)
    failed = store.failed_details(ids)
    rows = []
    for issue in issues:
        counts = ledgers[issue.id]
        rates = issue_rates(issue.id, issue.issue_date, counts, tallies[issue.id], failed[issue.id])
        rows.append(IssueRow(issue, ledgers[issue.id], rates, rates.warnings()))
    return rows


def one_issue(store: AdminStore, newsletter: str, day: date) -> IssueRow | None:
    issue = store.get_issue(newsletter, day)
    if issue is None:
        return None
    ledger = store.ledger_by_issue([issue.id])[issue.id]
    tallies = store.signal_tallies([issue.id])[issue.id]
    failed = store.failed_details([issue.id])[issue.id]
    rates = issue_rates(issue.id, issue.issue_date, ledger, tallies, failed)
    return IssueRow(issue, ledger, rates, rates.warnings())


def daily_series(
    store: AdminStore, now: datetime, zone: ZoneInfo, days: int = DAYS
) -> tuple[list[date], dict[str, list[int]]]:
    """Per local day of the last `days` days, how many of each event."""
    today = now.astimezone(zone).date()
    labels = [today - timedelta(days=days - 1 - n) for n in range(days)]
    since = datetime.combine(labels[0], datetime.min.time(), zone)
    found = store.event_times(since)
    series = {}
    for name in SERIES:
        per_day = Counter(moment.astimezone(zone).date() for moment in found.get(name, []))
        series[name] = [per_day[day] for day in labels]
    return labels, series
