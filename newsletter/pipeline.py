"""The daily issue, step by step: the only place that knows the order.

The CLI, the scheduler and the tests all call `run_issue`. It is handed its store, transport and
clock, so a dry run is the same code with an outbox transport and a read-only store.

1. prepare: resume the stored issue of the date, or collect, select and render a new one
   (once), refusing a stale one unless forced;
2. claim the issue's lease (one run per issue);
3. send to every active subscriber without an outcome, recording each reply;
4. finish: mark the issue sent unless deferred recipients are still due a retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import cached_property

from . import lease
from .compose import ComposedMessage, MessageTemplate
from .config import Settings
from .deliver import DeliveryPolicy, deliver
from .errors import IssueBusyError, StaleIssueError, StoreError
from .ledger_writer import Rows, ledger_writer
from .models import Digest, Issue, IssueStatus, Outcome, Recipient, RunSummary
from .ports import Store, Transport
from .render import DigestRenderer
from .selection import issue_cutoff, select_articles
from .sending import SendPhase, Signer, retry_deadline
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
    force: bool = False  # send even if the send time is further past than the stale guard
    on_outcome: OutcomeHook | None = None
    stop_event: asyncio.Event | None = None  # set on SIGTERM: finish in-flight, take no more
    sign: Signer | None = None  # DKIM, applied to the exact bytes that are sent
    owner: str = field(default_factory=lease.new_owner)

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

    def stopping(self) -> bool:
        return self.stop_event is not None and self.stop_event.is_set()


def _check_not_stale(run: Run, issue_date: date) -> None:
    if run.dry_run or run.force:
        return
    cutoff = issue_cutoff(run.settings, issue_date)
    window = timedelta(hours=run.settings.delivery.stale_after_hours)
    late = run.clock() - cutoff
    if late > window:
        local = cutoff.astimezone(run.settings.timezone)
        raise StaleIssueError(
            f"the issue of {issue_date} was due at {local:%Y-%m-%d %H:%M %Z}, "
            f"{late.total_seconds() / 3600:.1f} h ago, beyond delivery.stale_after_hours "
            f"({window.total_seconds() / 3600:g} h); nothing sent. "
            "Run `newsletter send --force` to send it anyway."
        )


async def prepare_issue(run: Run, issue_date: date) -> tuple[Issue | Digest | None, RunSummary]:
    """Return the stored issue (resume), a new one, or None for an empty day."""
    settings = run.settings
    existing = run.store.get_issue(settings.name, issue_date)
    if existing is not None:
        return existing, _resumed(run, existing)
    _check_not_stale(run, issue_date)
    selection = await select_articles(settings, run.store, issue_date, run.clock())
    # A concurrent run may have created the issue while we fetched; its articles now count as
    # sent, so without this look we would call the day empty instead of leaving it to that run.
    existing = run.store.get_issue(settings.name, issue_date)
    if existing is not None:
        return existing, _resumed(run, existing)
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
    # An issue built before its send time covers only what exists now; the next starts here.
    cutoff = min(issue_cutoff(settings, issue_date), run.clock())
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


def _resumed(run: Run, issue: Issue) -> RunSummary:
    summary = RunSummary(issue_date=issue.issue_date, dry_run=run.dry_run)
    summary.articles = len(issue.digest.article_ids)
    return summary


async def run_issue(run: Run, issue_date: date | None = None) -> tuple[RunSummary, Digest | None]:
    """Collect, select, render once, then send to every active subscriber without an outcome."""
    settings = run.settings
    issue_date = issue_date or today(settings, run.clock())
    if not run.dry_run:
        close_overdue(run)
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
    if issue is None or run.dry_run:
        summary.counts = await _send(run, _phase(run, template, issue, summary))
        return summary, digest
    try:
        async with lease.held(run.store, issue.id, run.owner, run.clock) as lost:
            phase = _phase(run, template, issue, summary)
            await _send(run, phase, lost)
            _finish(run, issue, summary, lost)
    except IssueBusyError as busy:
        summary.note = f"{busy}; this run leaves it alone"
    return summary, digest


def close_overdue(run: Run) -> None:
    """Mark earlier issues sent once their retry deadline has passed and no run holds them.

    Their deferred readers stay `deferred` in the ledger (the final word for that issue); without
    this an issue still retrying at its deadline would stay `sending` for good.
    """
    now = run.clock()
    for issue in run.store.recent_issues(run.settings.name, 7):
        held = issue.claimed_until is not None and issue.claimed_until > now
        overdue = now >= retry_deadline(run.settings, issue)
        if issue.status is IssueStatus.SENDING and overdue and not held:
            run.store.set_issue_status(issue.id, IssueStatus.SENT, now)


def _phase(
    run: Run, template: MessageTemplate, issue: Issue | None, summary: RunSummary
) -> SendPhase:
    return SendPhase(
        settings=run.settings,
        store=run.store,
        issue=issue,
        template=template,
        recipient=run.recipient,
        summary=summary,
        clock=run.clock,
        sign=run.sign,
        on_outcome=run.on_outcome,
    )


async def _send(run: Run, phase: SendPhase, lost: asyncio.Event | None = None) -> dict[str, int]:
    smtp = run.settings.smtp
    policy = DeliveryPolicy(connections=smtp.connections, rate_limit=smtp.rate_limit)

    def should_stop() -> bool:
        return run.stopping() or (lost is not None and lost.is_set())

    async def go() -> dict[str, int]:
        return await deliver(
            phase.messages(),
            run.transport,
            phase.envelope_sender,
            policy,
            phase.record,
            should_stop,
        )

    issue = phase.issue
    if issue is None or run.dry_run:
        return await go()

    with run.store.ledger_session(issue.id) as write_rows:

        def write(rows: Rows) -> None:
            write_rows(rows, run.clock())

        async with ledger_writer(write) as phase.ledger:
            return await go()


def _finish(run: Run, issue: Issue, summary: RunSummary, lost: asyncio.Event) -> None:
    counts = run.store.outcome_counts(issue.id)
    summary.counts = counts
    if run.stopping() or lost.is_set():
        summary.stopped = True
        summary.note = "stopped before the end; the next run resumes where this one stopped"
        return
    deferred = counts.get("deferred", 0)
    deadline = retry_deadline(run.settings, issue)
    if deferred and run.clock() < deadline:
        summary.note = f"{deferred} deferred; runs before {deadline:%Y-%m-%d %H:%M} UTC retry them"
        return
    run.store.set_issue_status(issue.id, IssueStatus.SENT, run.clock())


async def send_test_copy(run: Run, email: str, issue_date: date | None = None) -> RunSummary:
    """One copy of the issue to one address; no issue is created and nothing is recorded."""
    run = replace(run, dry_run=True, force=True)
    issue_date = issue_date or today(run.settings, run.clock())
    prepared, summary = await prepare_issue(run, issue_date)
    if prepared is None:
        return summary
    digest = prepared.digest if isinstance(prepared, Issue) else prepared
    template = MessageTemplate.build(digest, run.settings, issue_date, run.clock())
    known = run.store.get_subscriber(email)
    message = template.render(run.recipient(known.id if known else 0, email))
    if run.sign is not None:
        message = ComposedMessage(message.recipient, message.message_id, run.sign(message.data))
    policy = DeliveryPolicy(connections=1, attempts=1)
    sender = run.settings.from_address
    summary.counts = await deliver([message], run.transport, lambda _: sender, policy, _ignore)
    summary.recipients, summary.message_bytes = 1, len(message.data)
    summary.note = f"test copy of the {issue_date} issue to {email}"
    summary.dry_run = False
    return summary


async def _ignore(message: ComposedMessage, outcome: Outcome) -> None:
    return None
