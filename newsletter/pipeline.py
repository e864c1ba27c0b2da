"""The daily issue, step by step: the only place that knows the order.

The CLI, the scheduler and the tests all call `run_issue`. It is handed its store, transport and
clock, so a dry run is the same code with an outbox transport and a read-only store.

1. prepare: resume the stored issue of the date, or collect, select and render a new one
   (once), refusing a stale one unless forced and abandoning earlier ones that reached nobody;
2. check that an unfinished issue may be resumed (`lifecycle.held`) unless forced;
3. claim the issue's lease (one run per issue);
4. send to every reader without an outcome, recording each reply;
5. finish: `lifecycle.settle` says whether the issue is sent, closed or still unfinished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import cached_property

from newsletter import lease, lifecycle
from newsletter.audience import Audience
from newsletter.clock import Clock
from newsletter.compose import ComposedMessage, MessageTemplate
from newsletter.config import Settings
from newsletter.errors import StaleIssueError, StoreError
from newsletter.ledger_writer import Rows, ledger_writer
from newsletter.models import (
    Digest,
    Frequency,
    Issue,
    IssueStatus,
    Outcome,
    Recipient,
    RunSummary,
    new_public_id,
)
from newsletter.pool import DeliveryPolicy, deliver
from newsletter.ports import Signer, Store, Transport
from newsletter.render import DigestRenderer
from newsletter.selection import select_articles
from newsletter.timing import (
    check_not_stale,
    issue_cutoff,
    local_date,
    retry_deadline,
    stream_name,
)
from newsletter.tokens import Tokens, preferences_url, unsubscribe_url
from newsletter.weekly import select_week

OutcomeHook = Callable[[ComposedMessage, Outcome], None]
# With --force every deferred reader is due now, whatever its next attempt said.
EVERYONE_DUE = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass
class Run:
    """Everything one run needs, handed in by the caller."""

    settings: Settings
    store: Store
    transport: Transport
    clock: Clock
    dry_run: bool = False
    force: bool = False  # the operator insists: a stale or held issue is sent (or resumed)
    on_outcome: OutcomeHook | None = None
    stop_event: asyncio.Event | None = None  # set on SIGTERM: finish in-flight, take no more
    sign: Signer | None = None  # DKIM, applied to the exact bytes that are sent
    owner: str = field(default_factory=lease.new_owner)

    @cached_property
    def tokens(self) -> Tokens:
        days = timedelta(days=self.settings.confirm_max_age_days)
        return Tokens(self.settings.secret_keys, days, self.clock)

    def recipient(self, subscriber_id: int, email: str, public_id: str = "") -> Recipient:
        # Links name the subscriber's random public id; a copy for nobody on the list (a test
        # copy, a preview) gets a fresh one that names no one.
        token = self.tokens.unsubscribe(public_id or new_public_id())
        mailto = self.settings.unsubscribe_mailto
        return Recipient(
            subscriber_id=subscriber_id,
            email=email,
            unsubscribe_url=unsubscribe_url(self.settings.base_url, token),
            unsubscribe_mailto=f"mailto:{mailto}?subject=unsubscribe%20{token}" if mailto else None,
            preferences_url=preferences_url(self.settings.base_url, token),
        )

    def stopping(self) -> bool:
        return self.stop_event is not None and self.stop_event.is_set()


async def prepare_issue(
    run: Run, issue_date: date, kind: Frequency = Frequency.DAILY
) -> tuple[Issue | Digest | None, RunSummary]:
    """Return the stored issue (resume), a new one, or None for an empty day."""
    settings = run.settings
    name = stream_name(settings, kind)
    existing = run.store.get_issue(name, issue_date)
    if existing is not None:
        return existing, _resumed(run, existing)
    if not (run.dry_run or run.force):
        check_not_stale(settings, issue_date, run.clock())
    if kind is Frequency.WEEKLY:
        selection = select_week(settings, run.store, issue_date, run.clock())
    else:
        selection = await select_articles(settings, run.store, issue_date, run.clock())
    # A concurrent run may have created the issue while we fetched; its articles now count as
    # sent, so without this look we would call the day empty instead of leaving it to that run.
    existing = run.store.get_issue(name, issue_date)
    if existing is not None:
        return existing, _resumed(run, existing)
    summary = RunSummary(issue_date=issue_date, dry_run=run.dry_run, feeds=selection.reports)
    articles = selection.articles
    summary.articles = len(articles)
    if selection.reports and not any(report.ok for report in selection.reports):
        summary.not_sent = True
        summary.note = "every feed failed: not a quiet day; nothing sent"
        return None, summary
    if len(articles) < settings.min_articles:
        summary.note = (
            f"empty day: {len(articles)} new article(s), at least {settings.min_articles} "
            "needed; nothing sent"
        )
        return None, summary
    number = run.store.count_issues(name, issue_date) + 1
    digest = DigestRenderer(settings).render(articles, issue_date, number, name, kind)
    summary.articles = len(digest.article_ids)  # a digest too big for one mail shows fewer
    summary.left_out = selection.left_out_report(digest.article_ids)
    if run.dry_run:
        return digest, summary
    # An issue built before its send time covers only what exists now; the next starts here.
    cutoff = min(issue_cutoff(settings, issue_date), run.clock())
    try:
        issue = run.store.create_issue(name, issue_date, cutoff, digest, run.clock(), kind)
    except StoreError:
        # Another run created it between our look and our insert: send that one instead.
        winner = run.store.get_issue(name, issue_date)
        if winner is None:
            raise
        return winner, summary
    for state in selection.states:
        run.store.save_feed_state(state, run.clock())
    return issue, summary


def _resumed(run: Run, issue: Issue) -> RunSummary:
    summary = RunSummary(issue_date=issue.issue_date, dry_run=run.dry_run)
    summary.articles = len(issue.digest.article_ids)
    return summary


async def run_issue(
    run: Run, issue_date: date | None = None, kind: Frequency = Frequency.DAILY
) -> tuple[RunSummary, Digest | None]:
    """Collect, select, render once, then send to every reader of the issue without an outcome."""
    settings = run.settings
    issue_date = issue_date or local_date(settings, run.clock())
    prepared, summary = await _settle_and_prepare(run, issue_date, kind)
    if prepared is None:
        return summary, None
    issue = prepared if isinstance(prepared, Issue) else None
    digest = issue.digest if issue else prepared
    assert isinstance(digest, Digest)
    template = MessageTemplate.build(digest, settings, issue_date, run.clock())
    if issue is None or run.dry_run:
        summary.counts = await _send(run, _audience(run, template, issue, summary))
        return summary, digest
    if not _may_send(run, issue, summary):
        return summary, digest
    try:
        lost = await _send_batches(run, template, issue, summary)
    except StoreError as exc:
        summary.stopped = True
        summary.note = f"stopped: {exc}; the next run resumes where this one stopped"
        _stopped_standing(run, issue, summary)
        return summary, digest
    _finish(run, issue, summary, lost)
    return summary, digest


async def prepare_shared(
    run: Run, issue_date: date | None = None, kind: Frequency = Frequency.DAILY
) -> tuple[RunSummary, bool]:
    """What `run_issue` does before its send, once, for the processes that will send the issue:
    each then resumes the stored issue instead of fetching and rendering it again (premailer
    and Jinja2 alone are ~0.25 s of CPU, before its first message). True: an issue is stored
    (new or earlier); False: none to send, the summary says why (an empty day, failed feeds)."""
    issue_date = issue_date or local_date(run.settings, run.clock())
    prepared, summary = await _settle_and_prepare(run, issue_date, kind)
    return summary, isinstance(prepared, Issue)


async def _settle_and_prepare(
    run: Run, issue_date: date, kind: Frequency
) -> tuple[Issue | Digest | None, RunSummary]:
    abandoned: list[date] = []
    settings = run.settings
    if not run.dry_run:
        lifecycle.settle_earlier(settings, run.store, issue_date, run.clock(), kind)
    if not run.dry_run and run.store.get_issue(stream_name(settings, kind), issue_date) is None:
        # Articles of an earlier issue that reached nobody go into this one instead.
        abandoned = lifecycle.abandon_unreached(settings, run.store, issue_date, run.clock(), kind)
    prepared, summary = await prepare_issue(run, issue_date, kind)
    if abandoned:
        days = ", ".join(str(day) for day in abandoned)
        summary.note = f"the issue of {days} reached nobody and was abandoned; this one covers it"
    return prepared, summary


def _stopped_standing(run: Run, issue: Issue, summary: RunSummary) -> None:
    """The ledger as it stands after a store fault, if the store can still say (a full disk
    still reads; a dropped connection is replaced); else no state at all rather than a wrong
    one ("0 readers not reached" of an issue that stopped half-way)."""
    try:
        ledger = lifecycle.standing(run.store, issue)
        unreached = ledger.unreached
    except StoreError:
        summary.status = None
        return
    summary.counts, summary.status = ledger.counts, IssueStatus.SENDING
    summary.unreached = unreached


async def _send_batches(
    run: Run, template: MessageTemplate, issue: Issue, summary: RunSummary
) -> asyncio.Event:
    """Our batches, then any that another process left behind; the event: a lease was lost.

    With our own batches done we stay while others still hold some, so a batch whose holder
    died is taken over now (`lease.wait_for_takeover`), not by tomorrow's run.
    """
    takeover = False
    while True:
        readers = _audience(run, template, issue, summary, takeover=takeover)
        async with lease.renewing(run.store, run.owner, run.clock, readers.held) as lost:
            await _send(run, readers, lost)
        if lost.is_set() or run.stopping():
            return lost
        takeover = await lease.wait_for_takeover(run.store, issue.id, run.clock, run.stopping)
        if not takeover:
            return lost


def _may_send(run: Run, issue: Issue, summary: RunSummary) -> bool:
    """False (with the summary saying why) for a finished issue or one held for the operator."""
    status = lifecycle.settle(run.settings, run.store, issue, run.clock())
    summary.status = status
    if status.finished:
        summary.counts = run.store.outcome_counts(issue.id)
        done = "was already sent" if status is IssueStatus.SENT else f"is {status.value}"
        summary.note = f"{lifecycle.what(issue.issue_date, issue.kind)} {done}; nothing to do"
        return False
    if run.force:
        return True
    reason = lifecycle.held(run.settings, issue, lifecycle.standing(run.store, issue), run.clock())
    if reason is not None:
        raise StaleIssueError(reason)
    return True


def _audience(
    run: Run,
    template: MessageTemplate,
    issue: Issue | None,
    summary: RunSummary,
    *,
    takeover: bool = False,
) -> Audience:
    return Audience(
        settings=run.settings,
        store=run.store,
        issue=issue,
        template=template,
        recipient=run.recipient,
        summary=summary,
        clock=run.clock,
        sign=run.sign,
        on_outcome=run.on_outcome,
        retry_due=EVERYONE_DUE if run.force else None,
        owner=run.owner,
        takeover=takeover,
    )


async def _send(run: Run, phase: Audience, lost: asyncio.Event | None = None) -> dict[str, int]:
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
            run.clock,
            should_stop,
        )

    issue = phase.issue
    if issue is None or run.dry_run:
        return await go()

    async with run.store.ledger_session(issue.id) as write_rows:

        def write(rows: Rows) -> Awaitable[None] | None:
            return write_rows(rows, run.clock())

        async with ledger_writer(write) as phase.ledger:
            return await go()


def _finish(run: Run, issue: Issue, summary: RunSummary, lost: asyncio.Event) -> None:
    if run.stopping() or lost.is_set():
        summary.counts = run.store.outcome_counts(issue.id)
        summary.stopped = True
        summary.note = "stopped before the end; the next run resumes where this one stopped"
        return
    status = lifecycle.settle(run.settings, run.store, issue, run.clock())
    # As settled: an issue that just ended has nobody untried, and counting them again would
    # read the whole list once more (~0.3 s at a million readers).
    ledger = lifecycle.standing(run.store, replace(issue, status=status))
    summary.counts, summary.status, summary.unreached = ledger.counts, status, ledger.unreached
    if status is IssueStatus.SENDING:
        deferred, untried = ledger.counts.get("deferred", 0), ledger.untried
        if run.store.batch_holders(issue.id, run.clock()):
            summary.note = "other processes are still sending it; the last to finish settles it"
            return
        summary.note = (
            f"unfinished: {deferred} deferred, {untried} not tried; later runs retry them "
            f"until {retry_deadline(run.settings, issue):%Y-%m-%d %H:%M} UTC"
        )


async def send_test_copy(
    run: Run, email: str, issue_date: date | None = None, kind: Frequency = Frequency.DAILY
) -> RunSummary:
    """One copy of the issue to one address; no issue is created and nothing is recorded."""
    run = replace(run, dry_run=True, force=True)
    issue_date = issue_date or local_date(run.settings, run.clock())
    prepared, summary = await prepare_issue(run, issue_date, kind)
    if prepared is None:
        return summary
    digest = prepared.digest if isinstance(prepared, Issue) else prepared
    template = MessageTemplate.build(digest, run.settings, issue_date, run.clock())
    known = run.store.get_subscriber(email)
    reader = run.recipient(known.id, email, known.public_id) if known else run.recipient(0, email)
    message = template.render(reader)
    if run.sign is not None:
        signed = run.sign(message.data, message.body)
        message = ComposedMessage(message.recipient, message.message_id, signed)
    policy = DeliveryPolicy(connections=1, attempts=1)
    sender = run.settings.from_address
    summary.counts = await deliver(
        [message], run.transport, lambda _: sender, policy, _ignore, run.clock
    )
    summary.recipients, summary.message_bytes = 1, len(message.data)
    summary.note = f"test copy of the {issue_date} issue to {email}"
    summary.dry_run = False
    return summary


async def _ignore(message: ComposedMessage, outcome: Outcome) -> None:
    return None
