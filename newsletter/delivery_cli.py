"""`newsletter status`, `bounces` and `unsubscribes`: what went out, and what came back."""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .addresses import normalize_address
from .bounces import Verp, parse_dsn, read_mailbox, unsubscribe_token
from .config import SECRET_ENV, load_settings
from .errors import AddressError, ConfigError
from .models import SubscriberStatus
from .ports import Store
from .store import open_store
from .subscriptions import Subscriptions
from .transport import OutboxTransport


def add_commands(commands: Any) -> None:
    """Register this module's commands on the top-level subparsers."""
    status = commands.add_parser("status", help="recent issues with their delivery counts")
    status.add_argument("--limit", type=int, default=10, help="how many issues (default 10)")
    status.set_defaults(handler=cmd_status)
    bounces = commands.add_parser(
        "bounces", help="read delivery-status notifications and mark hard bounces"
    )
    bounces.add_argument("path", type=Path, help="an mbox file or a Maildir folder of DSNs")
    bounces.add_argument(
        "--dry-run", action="store_true", help="report what would be marked, change nothing"
    )
    bounces.set_defaults(handler=cmd_bounces)
    unsubscribes = commands.add_parser(
        "unsubscribes",
        help="read mail sent to newsletter.unsubscribe_mailto and unsubscribe those readers",
    )
    unsubscribes.add_argument("path", type=Path, help="an mbox file or a Maildir folder")
    unsubscribes.set_defaults(handler=cmd_unsubscribes)


def cmd_status(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    store = open_store(settings.database_url, read_only=True)
    try:
        issues = store.recent_issues(settings.name, args.limit)
        if not issues:
            print("no issues yet")
        for issue in issues:
            counts = store.outcome_counts(issue.id)
            outcome = ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no outcomes"
            sent_at = f"sent {issue.sent_at:%Y-%m-%d %H:%M} UTC" if issue.sent_at else "sending"
            print(f"{issue.issue_date}  {issue.status.value:<8} {sent_at:<26} {outcome}")
            print(f"            {issue.digest.subject}")
        subscribers = store.count_by_status()
        print("subscribers: " + ", ".join(f"{s.value}={subscribers[s]}" for s in SubscriberStatus))
    finally:
        store.close()
    return 0


def cmd_bounces(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if not args.path.exists():
        raise ConfigError("path", str(args.path), "no such mbox file or Maildir folder")
    store = open_store(settings.database_url, read_only=args.dry_run)
    verp = Verp(settings.secret_keys, settings.delivery.verp_domain or settings.sender_domain)
    tally: Counter[str] = Counter()
    try:
        for message in read_mailbox(args.path):
            for recipient in parse_dsn(message):
                tally[_apply(store, verp, recipient, settings.delivery.bounce_threshold, args)] += 1
    finally:
        store.close()
    print(", ".join(f"{key}={tally[key]}" for key in ("bounced", "counted", "ignored", "unknown")))
    return 0


def cmd_unsubscribes(args: argparse.Namespace) -> int:
    """The mailto half of List-Unsubscribe: each request carries the reader's signed token."""
    settings = load_settings(args.config)
    if not settings.secret_key_is_set:
        raise ConfigError(SECRET_ENV, "(environment)", "must be set to verify unsubscribe tokens")
    if not args.path.exists():
        raise ConfigError("path", str(args.path), "no such mbox file or Maildir folder")
    store = open_store(settings.database_url)
    # The same rule as the web's one-click POST; nothing is mailed, so the outbox is never used.
    service = Subscriptions(settings, store, OutboxTransport())
    tally: Counter[str] = Counter()
    try:
        for message in read_mailbox(args.path):
            token = unsubscribe_token(message)
            subscriber_id = service.read_unsubscribe_link(token) if token else None
            subscriber = service.unsubscribe(subscriber_id) if subscriber_id else None
            tally["unsubscribed" if subscriber else "ignored"] += 1
            if subscriber:
                print(f"{subscriber.email}: unsubscribed")
    finally:
        store.close()
    print(f"unsubscribed={tally['unsubscribed']}, ignored={tally['ignored']}")
    return 0


def _apply(
    store: Store, verp: Verp, recipient: Any, threshold: int, args: argparse.Namespace
) -> str:
    """Mark one DSN recipient; the VERP sender wins over a rewritten Final-Recipient."""
    if not recipient.hard:
        return "ignored"
    subscriber_id = verp.read(recipient.verp_to)
    subscriber = store.get_subscriber_by_id(subscriber_id) if subscriber_id else None
    if subscriber is None:
        try:
            subscriber = store.get_subscriber(normalize_address(recipient.final_recipient))
        except AddressError:
            subscriber = None
    if subscriber is None:
        return "unknown"
    print(f"{subscriber.email}: {recipient.action} {recipient.status}")
    if args.dry_run:
        return "counted"
    bounced = store.record_hard_bounce(subscriber.id, threshold, datetime.now(UTC))
    return "bounced" if bounced else "counted"
