"""The daily issue, step by step: the only place that knows the order.

The CLI, the scheduler and the tests all call `run_issue`. It is handed its store, transport and
clock, so a dry run is the same code with an outbox transport and a read-only store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from functools import cached_property

from .compose import ComposedMessage, MessageTemplate
from .config import Settings
from .deliver import DeliveryPolicy, deliver
from .errors import StoreError
from .models import (
    Digest,
    Issue,
    IssueStatus,
    Outcome,
    Recipient,
    RunSummary,
    SubscriberStatus,
)
from .ports import Store, Transport
from .render import DigestRenderer
from .selection import issue_cutoff, select_articles
from .tokens import Tokens, unsubscribe_url

Clock = Callable[[], datetime]
OutcomeHook = Callable[[ComposedMessage, Outcome], None]


def utc_now() -> datetime:
    return datetime.now(UTC)


def today(settings: Settings, now: datetime) -> date:
    return now.astimezone(settings.timezone).date()


@dataclass
class Run:
    """Everything one run needs, handed in by the caller."""

    settings: Settings
    store: Store
    transport: Transport
    clock: Clock = utc_now
    dry_run: bool = False
    on_outcome: OutcomeHook | None = None

    @cached_property
    def tokens(self) -> Tokens:
        days = timedelta(days=self.settings.confirm_max_age_days)
        return Tokens(self.settings.secret_keys, days)

    def recipient(self, subscriber_id: int, email: str) -> Recipient:
        token = self.tokens.unsubscribe(subscriber_id)
        mailto = self.settings.unsubscribe_mailto
        return Recipient(
            subscriber_id=subscriber_id,
            email=email,
            unsubscribe_url=unsubscribe_url(self.settings.base_url, token),
            unsubscribe_mailto=f"mailto:{mailto}?subject=unsubscribe%20{token}" if mailto else None,
        )


async def prepare_issue(run: Run, issue_date: date) -> tuple[Issue | Digest | None, RunSummary]:
    """Return the stored issue (resume), a new one, or None for an empty day."""
    settings = run.settings
    existing = run.store.get_issue(settings.name, issue_date)
    if existing is not None:
        summary = RunSummary(issue_date=issue_date, dry_run=run.dry_run)
        summary.articles = len(existing.digest.article_ids)
        return existing, summary
    selection = await select_articles(settings, run.store, issue_date, run.clock())
    summary = RunSummary(issue_date=issue_date, dry_run=run.dry_run, feeds=selection.reports)
    articles = selection.articles
    summary.articles = len(articles)
    if len(articles) < settings.min_articles:
        summary.note = (
            f"empty day: {len(articles)} new article(s), at least {settings.min_articles} "
            "needed; nothing sent"
        )
        return None, summary
    digest = DigestRenderer(settings).render(articles, issue_date)
    if run.dry_run:
        return digest, summary
    cutoff = issue_cutoff(settings, issue_date)
    try:
        issue = run.store.create_issue(settings.name, issue_date, cutoff, digest, run.clock())
    except StoreError:
        # Another run created it between our look and our insert: send that one instead.
        winner = run.store.get_issue(settings.name, issue_date)
        if winner is None:
            raise
        return winner, summary
    for state in selection.states:
        run.store.save_feed_state(state)
    return issue, summary


def _messages(
    run: Run, template: MessageTemplate, issue: Issue | None
) -> Iterator[ComposedMessage]:
    if issue is not None:
        subscribers = run.store.pending_recipients(issue.id)
    else:
        subscribers = run.store.iter_subscribers(SubscriberStatus.ACTIVE)
    for subscriber in subscribers:
        yield template.render(run.recipient(subscriber.id, subscriber.email))


async def run_issue(run: Run, issue_date: date | None = None) -> tuple[RunSummary, Digest | None]:
    """Collect, select, render once, then send to every active subscriber without an outcome."""
    settings = run.settings
    issue_date = issue_date or today(settings, run.clock())
    prepared, summary = await prepare_issue(run, issue_date)
    if prepared is None:
        return summary, None
    issue = prepared if isinstance(prepared, Issue) else None
    digest = issue.digest if issue else prepared
    assert isinstance(digest, Digest)
    if issue is not None and issue.status is IssueStatus.SENT:
        summary.note = f"the issue of {issue_date} was already sent; nothing to do"
        summary.counts = run.store.outcome_counts(issue.id)
        return summary, digest
    template = MessageTemplate.build(digest, settings, issue_date, run.clock())
    summary.counts = await _send_all(run, template, issue, summary)
    if issue is not None and not run.dry_run:
        _finish(run, issue, summary)
    return summary, digest


async def _send_all(
    run: Run, template: MessageTemplate, issue: Issue | None, summary: RunSummary
) -> dict[str, int]:
    policy = DeliveryPolicy(
        connections=run.settings.smtp.connections, rate_limit=run.settings.smtp.rate_limit
    )

    def record(message: ComposedMessage, outcome: Outcome) -> None:
        summary.recipients += 1
        summary.message_bytes = max(summary.message_bytes, len(message.data))
        if issue is not None and not run.dry_run:
            run.store.record_outcome(
                issue.id, message.recipient.subscriber_id, outcome, run.clock()
            )
        if run.on_outcome is not None:
            run.on_outcome(message, outcome)

    sender = run.settings.from_address
    return await deliver(
        _messages(run, template, issue), run.transport, lambda _: sender, policy, record
    )


def _finish(run: Run, issue: Issue, summary: RunSummary) -> None:
    counts = run.store.outcome_counts(issue.id)
    if not counts.get("deferred"):
        run.store.set_issue_status(issue.id, IssueStatus.SENT, run.clock())
    summary.counts = counts


async def send_test_copy(run: Run, email: str, issue_date: date | None = None) -> RunSummary:
    """One copy of the issue to one address; no issue is created and nothing is recorded."""
    run = replace(run, dry_run=True)
    issue_date = issue_date or today(run.settings, run.clock())
    prepared, summary = await prepare_issue(run, issue_date)
    if prepared is None:
        return summary
    digest = prepared.digest if isinstance(prepared, Issue) else prepared
    template = MessageTemplate.build(digest, run.settings, issue_date, run.clock())
    known = run.store.get_subscriber(email)
    message = template.render(run.recipient(known.id if known else 0, email))
    policy = DeliveryPolicy(connections=1, attempts=1)
    sender = run.settings.from_address
    summary.counts = await deliver([message], run.transport, lambda _: sender, policy, _ignore)
    summary.recipients, summary.message_bytes = 1, len(message.data)
    summary.note = f"test copy of the {issue_date} issue to {email}"
    summary.dry_run = False
    return summary


def _ignore(message: ComposedMessage, outcome: Outcome) -> None:
    return None
