"""`newsletter status`, `bounces` and `unsubscribes`: what went out, and what came back."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from email.message import Message
from pathlib import Path
from typing import Any

from newsletter import lifecycle
from newsletter.bounces import Verp
from newsletter.cli.door import Door, command, issue_date
from newsletter.config import Settings
from newsletter.errors import ConfigError
from newsletter.mail.arf import read_report
from newsletter.mail.inbound import (
    DsnRecipient,
    parse_dsn,
    read_mailbox,
    scan_other_bounce,
    unsubscribe_token,
)
from newsletter.mail.outbox import OutboxTransport
from newsletter.models import Frequency, Issue, SubscriberStatus
from newsletter.signals import (
    IssueRates,
    Signal,
    SignalDesk,
    SignalKind,
    issue_rates,
    message_id_candidates,
    scrub,
)
from newsletter.store import SqlStore
from newsletter.timing import kinds, stream_name


def add_commands(commands: Any) -> None:
    """Register this module's commands on the top-level subparsers."""
    status = command(commands, "status", help="recent issues with their delivery counts")
    status.add_argument("--limit", type=int, default=10, help="how many issues (default 10)")
    status.set_defaults(handler=cmd_status)
    close = command(
        commands,
        "close",
        help="end an unfinished issue, or a day that never went out, so runs stop reporting it",
        description="Deferred readers of the issue become expired; readers never tried keep "
        "no outcome and will not get it. An issue that reached nobody is abandoned: the next "
        "issue carries its articles. Use `send --force --date D` instead to send it.",
    )
    close.add_argument(
        "--date", type=issue_date, required=True, help="the issue to close (YYYY-MM-DD)"
    )
    close.add_argument("--weekly", action="store_true", help="the weekly round-up of that date")
    close.set_defaults(handler=cmd_close)
    bounces = command(
        commands, "bounces", help="read delivery-status notifications and mark hard bounces"
    )
    bounces.add_argument("path", type=Path, help="an mbox file or a Maildir folder of DSNs")
    bounces.add_argument(
        "--dry-run", action="store_true", help="report what would be marked, change nothing"
    )
    bounces.set_defaults(handler=cmd_bounces)
    unsubscribes = command(
        commands,
        "unsubscribes",
        help="read mail sent to newsletter.unsubscribe_mailto and unsubscribe those readers",
    )
    unsubscribes.add_argument("path", type=Path, help="an mbox file or a Maildir folder")
    unsubscribes.set_defaults(handler=cmd_unsubscribes)
    add_feedback_commands(commands, status)


def cmd_status(door: Door) -> int:
    if door.args.json:
        return cmd_status_json(door)
    settings = door.settings
    with door.store(read_only=True) as store:
        issues = recent_issues(settings, store, door.args.limit)
        if not issues:
            print("no issues yet")
        for issue in issues:
            ledger = lifecycle.standing(store, issue)
            counts = dict(ledger.counts)
            if not issue.status.finished:
                counts["not tried"] = ledger.untried
            outcome = ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no outcomes"
            ended = f"ended {issue.sent_at:%Y-%m-%d %H:%M} UTC" if issue.sent_at else "unfinished"
            label = f"{issue.issue_date}{' weekly' if issue.kind is Frequency.WEEKLY else ''}"
            print(f"{label:<17} {issue.status.value:<9} {ended:<27} {outcome}")
            print(f"            {issue.digest.subject or '(no digest)'}")
            print(f"            not reached: {ledger.unreached}")
            reason = lifecycle.held(settings, issue, ledger, door.clock())
            if not issue.status.finished and reason:
                print(f"            needs the operator: {reason}")
            print_rates(issue_rates_of(store, issue, ledger.counts))
        subscribers = store.count_by_status()
        print("subscribers: " + ", ".join(f"{s.value}={subscribers[s]}" for s in SubscriberStatus))
    return 0


def cmd_close(door: Door) -> int:
    with door.store() as store:
        kind = Frequency.WEEKLY if door.args.weekly else Frequency.DAILY
        print(lifecycle.close(door.settings, store, door.args.date, door.clock(), kind))
    return 0


def cmd_bounces(door: Door) -> int:
    """Each report goes through the signal desk, like a provider's webhook: the reader is found
    by our Message-ID or VERP sender (never by the address a report quotes), the report is
    recorded once (a mailbox read again counts nothing twice) and counts for its issue."""
    _mailbox_exists(door.args.path)
    tally: Counter[str] = Counter()
    with door.store(read_only=door.args.dry_run) as store:
        desk = _desk(door, store)
        for message in read_mailbox(door.args.path):
            recipients = parse_dsn(message)
            digest = hashlib.sha256(message.as_bytes()).hexdigest()[:40]
            for index, recipient in enumerate(recipients):
                signal = dsn_signal(recipient, f"dsn:{digest}:{index}")
                if signal is None:
                    tally["ignored"] += 1
                    continue
                outcome = _take_one(door, store, desk, signal, signal.event_key)
                tally[bounce_tally(signal.kind, outcome)] += 1
            other = None if recipients else other_bounces(door, store, message)
            if other is not None:
                tally[other] += 1
    print(", ".join(f"{key}={tally[key]}" for key in ("bounced", "counted", "ignored", "unknown")))
    return 0


def cmd_unsubscribes(door: Door) -> int:
    """The mailto half of List-Unsubscribe: each request carries the reader's signed token."""
    settings = door.secret_settings()
    _mailbox_exists(door.args.path)
    tally: Counter[str] = Counter()
    with door.store() as store:
        # The same rule as the web's one-click POST; nothing is mailed, so the outbox is unused.
        from newsletter.subscriptions import Subscriptions

        service = Subscriptions(settings, store, OutboxTransport(), door.clock)
        for message in read_mailbox(door.args.path):
            token = unsubscribe_token(message)
            subscriber_id = service.read_unsubscribe_link(token) if token else None
            subscriber = service.unsubscribe(subscriber_id) if subscriber_id else None
            tally["unsubscribed" if subscriber else "ignored"] += 1
            if subscriber:
                print(f"{subscriber.email}: unsubscribed")
    print(f"unsubscribed={tally['unsubscribed']}, ignored={tally['ignored']}")
    return 0


def _mailbox_exists(path: Path) -> None:
    if not path.exists():
        raise ConfigError("path", str(path), "no such mbox file or Maildir folder")


def dsn_signal(recipient: DsnRecipient, key: str) -> Signal | None:
    """One RFC 3464 recipient block as a report; None for what is no bounce (delayed, delivered,
    relayed, expanded: the relay is still trying, or it worked).

    A 5.1.x failure is a hard bounce. Any other failure (5.7.x policy or reputation, 5.2.2 a
    full mailbox, 4.x.x retries given up) is a soft bounce, as the providers' webhooks map
    their transient, policy and "blocked" bounces: recorded for the operator and the issue's
    soft-bounce count, suppressing nobody, since the address itself may be fine.
    """
    if recipient.hard:
        kind = SignalKind.HARD_BOUNCE
    elif recipient.soft:
        kind = SignalKind.SOFT_BOUNCE
    else:
        return None
    return Signal(
        provider="dsn",
        event_key=key,
        kind=kind,
        message_ids=message_id_candidates(recipient.message_ids),
        verp=recipient.verp,
        recipient=recipient.final_recipient.lower(),
        detail=scrub(f"{recipient.action} {recipient.status} {recipient.diagnostic}".strip()),
    )


def bounce_tally(kind: SignalKind, outcome: str) -> str:
    """The desk's outcome in the words of `bounces`' tally line (kept as it always was):
    bounced or counted for a hard bounce that found its reader (a dry run says counted),
    unknown for one that found nobody, ignored for everything else (soft bounces, reports
    read before, a second report of a bounce already counted for that reader and issue)."""
    if kind is not SignalKind.HARD_BOUNCE:
        return "ignored"
    if outcome in ("bounced", "counted"):
        return outcome
    if outcome == "unmatched":
        return "unknown"
    return "counted" if outcome.startswith("would apply") else "ignored"


# Reports that come back after the send: complaint rates in `status`, `status --json`,
# feedback-loop reports (`complaints`) and bounces in formats other than RFC 3464 (`bounces`).


def add_feedback_commands(commands: Any, status: Any) -> None:
    status.add_argument(
        "--json", action="store_true", help="the same as one JSON document, for scripts"
    )
    complaints = command(
        commands,
        "complaints",
        help="read feedback-loop reports (ARF) and unsubscribe the readers who complained",
        description="Reads ARF reports (RFC 5965; Yahoo, Microsoft JMRP, provider forwards) "
        "from an mbox file or a Maildir folder. A complaint about one of our messages, found "
        "by its Message-ID, our VERP sender or its signed unsubscribe link (never by the "
        "address alone), unsubscribes the reader at once and counts for that issue. A report "
        "read twice counts once.",
    )
    complaints.add_argument("path", type=Path, help="an mbox file or a Maildir folder of reports")
    complaints.add_argument(
        "--dry-run", action="store_true", help="report whom each complaint names, change nothing"
    )
    complaints.set_defaults(handler=cmd_complaints)


def issue_rates_of(store: SqlStore, issue: Issue, ledger: Mapping[str, int]) -> IssueRates:
    """The issue's rates from the ledger counts the caller already has (at a million readers
    each count is a scan of a million index entries: one per issue is enough)."""
    tallies = store.signal_tallies([issue.id])[issue.id]
    details = store.failed_details([issue.id])[issue.id]
    return issue_rates(issue.id, issue.issue_date, dict(ledger), tallies, details)


def print_rates(rates: IssueRates) -> None:
    print(
        f"            complaints: {rates.complaints} ({rates.complaint_rate:.2%}), "
        f"hard bounces: {rates.hard_bounces} + {rates.refused} refused as no such mailbox "
        f"({rates.bounce_rate:.2%}), soft bounces: {rates.soft_bounces}"
    )
    for warning in rates.warnings():
        print(f"            warning: {warning}")


def recent_issues(settings: Settings, store: SqlStore, limit: int) -> list[Issue]:
    """The newest `limit` issues of every stream (daily, and weekly when it is on), newest
    first; a weekly round-up before the daily issue of its date."""
    return sorted(
        (
            issue
            for kind in kinds(settings)
            for issue in store.recent_issues(stream_name(settings, kind), limit)
        ),
        key=lambda issue: (issue.issue_date, issue.kind),
        reverse=True,
    )[:limit]


def cmd_status_json(door: Door) -> int:
    settings = door.settings
    with door.store(read_only=True) as store:
        found = []
        for issue in recent_issues(settings, store, door.args.limit):
            ledger = lifecycle.standing(store, issue)
            rates = issue_rates_of(store, issue, ledger.counts)
            reason = lifecycle.held(settings, issue, ledger, door.clock())
            found.append(
                {
                    "date": issue.issue_date.isoformat(),
                    "kind": issue.kind.value,
                    "status": issue.status.value,
                    "ended": issue.sent_at.isoformat() if issue.sent_at else None,
                    "subject": issue.digest.subject,
                    "ledger": dict(sorted(ledger.counts.items())),
                    "not_tried": None if issue.status.finished else ledger.untried,
                    "not_reached": ledger.unreached,
                    "needs_operator": reason if not issue.status.finished and reason else None,
                    "complaints": rates.complaints,
                    "hard_bounces": rates.hard_bounces,
                    "hard_refusals": rates.refused,
                    "soft_bounces": rates.soft_bounces,
                    "complaint_rate": round(rates.complaint_rate, 6),
                    "hard_bounce_rate": round(rates.bounce_rate, 6),
                    "warnings": rates.warnings(),
                }
            )
        counts = store.count_by_status()
        document = {
            "newsletter": settings.name,
            "issues": found,
            "subscribers": {status.value: counts[status] for status in SubscriberStatus},
        }
    print(json.dumps(document, indent=2))
    return 0


def _desk(door: Door, store: SqlStore) -> SignalDesk:
    settings = door.settings
    verp = Verp(settings.secret_keys, settings.delivery.verp_domain or settings.sender_domain)
    return SignalDesk(store, verp, settings.delivery.bounce_threshold, door.clock)


def cmd_complaints(door: Door) -> int:
    settings = door.secret_settings()  # VERP ids and unsubscribe links are checked with the key
    _mailbox_exists(door.args.path)
    tally: Counter[str] = Counter()
    with door.store(read_only=door.args.dry_run) as store:
        desk = _desk(door, store)
        from newsletter.subscriptions import Subscriptions

        service = Subscriptions(settings, store, OutboxTransport(), door.clock)
        for message in read_mailbox(door.args.path):
            report = read_report(message)
            if report is None:
                tally["not a report"] += 1
                continue
            if not report.complaint:
                tally["ignored"] += 1
                continue
            refs = (service.read_unsubscribe_link(t) for t in report.unsubscribe_tokens)
            named = (service.find(ref) for ref in refs if ref is not None)
            signal = Signal(
                provider="arf",
                event_key=report.report_key,
                kind=SignalKind.COMPLAINT,
                message_ids=message_id_candidates(report.message_ids),
                verp=report.senders,
                recipient=report.original_rcpt_to.lower(),
                detail=scrub(f"{report.feedback_type} from {report.user_agent}"),
                signed_ids=tuple(found.id for found in named if found is not None),
            )
            tally[_take_one(door, store, desk, signal, f"arf:{report.report_key}")] += 1
    print(", ".join(f"{key}={tally[key]}" for key in sorted(tally)) or "no reports")
    return 0


def _take_one(door: Door, store: SqlStore, desk: SignalDesk, signal: Signal, key: str) -> str:
    """Apply one report (or, in a dry run, say whom it names) and return its outcome."""
    match = desk.match(signal, door.clock())
    who = store.get_subscriber_by_id(match.subscriber_id) if match else None
    if door.args.dry_run:
        outcome = "unmatched" if who is None else f"would apply ({signal.kind.value})"
    else:
        taken = desk.take(signal.provider, key, [signal])
        outcome = "duplicate" if taken.duplicate else next(iter(taken.outcomes), "duplicate")
    if who is not None and match is not None:
        print(f"{who.email}: {signal.kind.value.replace('_', ' ')} (by {match.by}): {outcome}")
    return outcome


def other_bounces(door: Door, store: SqlStore, message: Message) -> str | None:
    """A bounce `parse_dsn` could not read, through flufl.bounce, as a tally word (see
    `bounce_tally`); None if it is no bounce."""
    bounce = scan_other_bounce(message)
    if bounce is None:
        return None
    if not bounce.permanent:
        return "ignored"  # temporary failures: the relay retries, nothing to count
    key = "mailbox:" + hashlib.sha256(message.as_bytes()).hexdigest()[:40]
    signal = Signal(
        provider="mailbox",
        event_key=key,
        kind=SignalKind.HARD_BOUNCE,
        message_ids=message_id_candidates(bounce.message_ids),
        verp=bounce.verp_to,
        recipient=bounce.permanent[0],
        detail="permanent failure (non-RFC 3464 bounce)",
    )
    return bounce_tally(signal.kind, _take_one(door, store, _desk(door, store), signal, key))
