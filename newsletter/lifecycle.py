"""How an issue ends (sent, closed, held for the operator, abandoned) and what a run should do.

The rules, which the README's "Delivery you can trust" repeats:
- An issue is SENT only when every one of its readers has a final outcome and nobody expired.
- At its retry deadline its deferred readers become EXPIRED and, if nobody else is waiting, the
  issue is CLOSED. Readers never tried (no ledger row at all, e.g. the relay was down the whole
  time) are never closed away: the issue stays unfinished, and every run says so and exits
  non-zero until the operator finishes it (`send --force --date D`) or closes it (`close`).
- An issue that reached nobody is held once its stale window has passed, so it never reaches
  readers by surprise a day late. When the next issue is built, such an issue is abandoned and
  the next issue carries its articles ("everything since the last issue that went out").
- A day whose send time is past its stale window without any issue is reported the same way
  until the next send time (whose issue then covers it) or until the operator acts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property

from newsletter.config import Settings
from newsletter.models import Digest, Frequency, Issue, IssueStatus
from newsletter.ports import Store
from newsletter.timing import (
    hours,
    issue_cutoff,
    kinds,
    latest_due_date,
    retry_deadline,
    stale,
    stale_window,
    stream_name,
)

LOOKBACK = 30  # recent issues a run looks at for unfinished business


@dataclass(frozen=True)
class Standing:
    """An issue's ledger right now."""

    counts: dict[str, int]
    store: Store = field(repr=False, compare=False)
    issue: Issue = field(repr=False, compare=False)

    @cached_property
    def untried(self) -> int:
        """Readers never tried, counted when first asked for: on an unfinished issue that reads
        the issue's whole audience (~0.3 s at a million readers), which a send about to start
        needs only past the retry deadline. An issue ends with a ledger row for each of them
        (`expire_untried`), so an ended issue counts from the index alone."""
        return 0 if self.issue.status.finished else self.store.untried_count(self.issue.id)

    @property
    def reached_anyone(self) -> bool:
        return bool(self.counts.get("sent"))

    @property
    def unreached(self) -> int:
        """Readers who did not get it (yet): every outcome but sent, plus those never tried."""
        return sum(n for status, n in self.counts.items() if status != "sent") + self.untried


def standing(store: Store, issue: Issue) -> Standing:
    return Standing(store.outcome_counts(issue.id), store, issue)


def settle(settings: Settings, store: Store, issue: Issue, now: datetime) -> IssueStatus:
    """End the issue if its time has come; return its status (SENDING: still unfinished).

    Whether anyone is left untried is asked, not counted: a fresh issue of a million readers
    answers at its first reader instead of after its last."""
    if issue.status.finished:
        return issue.status
    counts = store.outcome_counts(issue.id)
    if counts.get("deferred"):
        if now < retry_deadline(settings, issue):
            return IssueStatus.SENDING
        store.expire_deferred(issue.id, now)
        counts = store.outcome_counts(issue.id)
    if store.any_untried(issue.id):
        return IssueStatus.SENDING
    status = IssueStatus.CLOSED if counts.get("expired") else IssueStatus.SENT
    store.set_issue_status(issue.id, status, now)
    return status


def what(issue_date: date, kind: Frequency = Frequency.DAILY) -> str:
    """How the operator's messages name an issue: "the issue of D" or "the weekly issue of D"."""
    return f"the {'weekly ' if kind is Frequency.WEEKLY else ''}issue of {issue_date}"


def finish_command(issue_date: date, kind: Frequency = Frequency.DAILY) -> str:
    weekly = " --weekly" if kind is Frequency.WEEKLY else ""
    return (
        f"`newsletter send --force --date {issue_date}{weekly}` sends it to the readers left; "
        f"`newsletter close --date {issue_date}{weekly}` closes it"
    )


def held(settings: Settings, issue: Issue, ledger: Standing, now: datetime) -> str | None:
    """Why an unfinished issue must wait for the operator, or None if a run may resume it."""
    day, kind = issue.issue_date, issue.kind
    if not ledger.reached_anyone and stale(settings, issue_cutoff(settings, day), now):
        late = hours(now - issue_cutoff(settings, day), up=True)
        return (
            f"{what(day, kind)} reached nobody within delivery.stale_after_hours "
            f"({hours(stale_window(settings))}; due {late} ago) and is not sent by surprise: "
            f"{finish_command(day, kind)}; otherwise the next issue carries its articles"
        )
    if now >= retry_deadline(settings, issue) and ledger.untried:
        return (
            f"{what(day, kind)} is past its retry deadline with {ledger.untried} reader(s) "
            f"never tried: {finish_command(day, kind)}"
        )
    return None


def settle_earlier(
    settings: Settings, store: Store, before: date, now: datetime, kind: Frequency
) -> None:
    """Settle every unfinished issue before `before` (a `send` from cron ends them too)."""
    for issue in store.recent_issues(stream_name(settings, kind), LOOKBACK):
        if not issue.status.finished and issue.issue_date < before:
            settle(settings, store, issue, now)


def abandon_unreached(
    settings: Settings, store: Store, before: date, now: datetime, kind: Frequency
) -> list[date]:
    """Abandon held issues before `before` that reached nobody: the new issue carries them."""
    abandoned = []
    for issue in store.recent_issues(stream_name(settings, kind), LOOKBACK):
        if issue.status.finished or issue.issue_date >= before:
            continue
        ledger = standing(store, issue)
        if not ledger.reached_anyone and held(settings, issue, ledger, now):
            store.expire_deferred(issue.id, now)
            store.expire_untried(issue.id, now)
            store.set_issue_status(issue.id, IssueStatus.ABANDONED, now)
            abandoned.append(issue.issue_date)
    return sorted(abandoned)


def close(
    settings: Settings,
    store: Store,
    issue_date: date,
    now: datetime,
    kind: Frequency = Frequency.DAILY,
) -> str:
    """The operator ends an issue (or a day that never went out); return what happened."""
    issue = store.get_issue(stream_name(settings, kind), issue_date)
    if issue is None:
        empty = Digest(subject="", preheader="", html="", text="", article_ids=())
        cutoff = issue_cutoff(settings, issue_date)
        made = store.create_issue(stream_name(settings, kind), issue_date, cutoff, empty, now, kind)
        store.set_issue_status(made.id, IssueStatus.ABANDONED, now)
        return f"{what(issue_date, kind)} was never made; marked abandoned (the next covers it)"
    if issue.status.finished:
        return f"{what(issue_date, kind)} is already {issue.status.value}; nothing changed"
    store.expire_deferred(issue.id, now)
    untried = store.expire_untried(issue.id, now)
    reached = standing(store, issue).reached_anyone
    status = IssueStatus.CLOSED if reached else IssueStatus.ABANDONED
    store.set_issue_status(issue.id, status, now)
    never = f"; {untried} reader(s) never tried will not get it" if untried else ""
    return f"{what(issue_date, kind)} is now {status.value}{never}"


@dataclass
class Plan:
    """What a run started now should do: issues to send (oldest first), and what to report."""

    sends: list[tuple[date, Frequency]] = field(default_factory=list)  # oldest first
    alerts: list[str] = field(default_factory=list)  # the operator must act: exit non-zero
    notes: list[str] = field(default_factory=list)  # why nothing else is done now

    def describe(self) -> str:
        return "; ".join(self.notes) or "nothing is due"


def plan(settings: Settings, store: Store, now: datetime) -> Plan:
    """The one decision `run --once`, the daily job and the retry sweep make.

    Every unfinished issue is settled (its deadline may have come), resumed while its own
    deadline allows, or reported when it needs the operator; then the latest due day is started
    if it is still within its stale window, or reported as missed.
    """
    result = Plan()
    for kind in kinds(settings):
        _plan_stream(settings, store, now, kind, result)
    if not settings.weekly.enabled:
        stranded = store.count_active(Frequency.WEEKLY)
        if stranded:  # they chose it while it was on: with it off they get nothing at all
            result.alerts.append(
                f"{stranded} reader(s) chose the weekly round-up, but [weekly] is off, so they "
                "get no issue at all: turn [weekly] on again (enabled = true)"
            )
    result.sends.sort()
    return result


def _plan_stream(
    settings: Settings, store: Store, now: datetime, kind: Frequency, result: Plan
) -> None:
    name = stream_name(settings, kind)
    unfinished = [i for i in store.recent_issues(name, LOOKBACK) if not i.status.finished]
    for issue in sorted(unfinished, key=lambda i: i.issue_date):
        _plan_unfinished(settings, store, issue, now, result)
    day = latest_due_date(settings, now, kind)
    if store.get_issue(name, day) is not None:
        return
    due_at = issue_cutoff(settings, day)
    when = f"{what(day, kind)} was due at {due_at.astimezone(settings.timezone):%H:%M %Z}"
    weekly = " --weekly" if kind is Frequency.WEEKLY else ""
    if not stale(settings, due_at, now):
        result.sends.append((day, kind))
        result.notes.append(f"{when}, {hours(now - due_at)} ago")
    else:
        result.alerts.append(
            f"{when}, {hours(now - due_at, up=True)} ago, beyond delivery.stale_after_hours "
            f"({hours(stale_window(settings))}); nothing was sent: "
            f"`newsletter send --force --date {day}{weekly}` sends it now, or "
            f"`newsletter close --date {day}{weekly}` skips it; the next issue covers everything "
            "since the last issue that went out"
        )


def _plan_unfinished(
    settings: Settings, store: Store, issue: Issue, now: datetime, result: Plan
) -> None:
    day, kind = issue.issue_date, issue.kind
    status = settle(settings, store, issue, now)
    if status.finished:
        result.notes.append(f"{what(day, kind)} is now {status.value}")
        return
    ledger = standing(store, issue)
    reason = held(settings, issue, ledger, now)
    if reason:
        result.alerts.append(reason)
    elif next(store.pending_recipients(issue.id, batch_size=1, retry_due=now), None):
        result.sends.append((day, kind))
        result.notes.append(f"{what(day, kind)} is unfinished; resuming it")
    else:
        result.notes.append(f"{what(day, kind)} has deferred readers, none due yet")
