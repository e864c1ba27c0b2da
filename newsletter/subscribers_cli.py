"""`newsletter subscribers ...`: the operator's view of the list.

Every address goes through `normalize_address`, so the CLI refuses exactly what the web form
refuses, with the validator's reason. The changes go through `subscriptions.Subscriptions`, the
same rules the web app follows: `add` without `--active` is a sign-up (pending address plus a
confirmation mail, under the per-address limits); imports never revive an unsubscribed, bounced
or erased address. Commands that check or write the erased list need NEWSLETTER_SECRET_KEY: the
list holds keyed hashes, and a wrong key would silently match nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .addresses import normalize_address
from .config import SECRET_ENV, load_settings
from .errors import AddressError, ConfigError, SuppressedAddressError
from .models import SubscriberStatus
from .ports import Store
from .store import open_store
from .subscriptions import SignupOutcome, SignupRequest, Subscriptions, Visitor
from .transport import SmtpTransport

CLI_AGENT = "newsletter-cli"


def add_commands(commands: Any) -> None:
    """Register the `subscribers` command group on the top-level subparsers."""
    group = commands.add_parser(
        "subscribers", help="add, import, list, count, export and erase subscribers"
    )
    sub = group.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
    add = sub.add_parser(
        "add", help="sign up one address: pending, and a confirmation mail (unless --active)"
    )
    add.add_argument("address")
    _active_flag(add)
    add.set_defaults(handler=cmd_add)
    imp = sub.add_parser("import", help="import addresses from a CSV (column 'email') or text file")
    imp.add_argument("file", type=Path)
    _active_flag(imp)
    imp.set_defaults(handler=cmd_import)
    lst = sub.add_parser("list", help="list subscribers, optionally of one status")
    lst.add_argument(
        "--status", choices=[s.value for s in SubscriberStatus], help="only this status"
    )
    lst.set_defaults(handler=cmd_list)
    counts = sub.add_parser("counts", help="number of subscribers by status")
    counts.set_defaults(handler=cmd_counts)
    export = sub.add_parser(
        "export", help="print everything stored about an address as JSON (consent included)"
    )
    export.add_argument("address")
    export.set_defaults(handler=cmd_export)
    erase = sub.add_parser(
        "erase", help="delete an address's data, keeping a keyed hash so it is never mailed again"
    )
    erase.add_argument("address")
    erase.set_defaults(handler=cmd_erase)
    prune = sub.add_parser(
        "prune", help="delete sign-ups never confirmed within N days (data minimisation)"
    )
    prune.add_argument(
        "--days", type=int, default=30, help="age of unconfirmed sign-ups to delete (default 30)"
    )
    prune.set_defaults(handler=cmd_prune)


def _active_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--active",
        action="store_true",
        help="skip double opt-in: only for addresses whose consent you already hold",
    )
    parser.add_argument("--source", default="cli", help="where the consent came from (recorded)")


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[Store]:
    store = open_store(load_settings(args.config).database_url)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def _service(args: argparse.Namespace) -> Iterator[Subscriptions]:
    """The subscription rules on the configured store, closed again afterwards."""
    settings = load_settings(args.config)
    if not settings.secret_key_is_set:
        raise ConfigError(SECRET_ENV, "(environment)", "must be set: it keys the erased list")
    store = open_store(settings.database_url)
    try:
        yield Subscriptions(settings, store, SmtpTransport(settings.smtp))
    finally:
        store.close()


def _status(args: argparse.Namespace) -> SubscriberStatus:
    return SubscriberStatus.ACTIVE if args.active else SubscriberStatus.PENDING


def cmd_add(args: argparse.Namespace) -> int:
    with _service(args) as service:
        if args.active:
            added = service.add_without_confirmation(args.address, _status(args), args.source)
            print(f"{added.email}: {added.status}")
            return 0
        request = SignupRequest(args.address, args.source, Visitor(user_agent=CLI_AGENT))
        signup = service.sign_up(request)
        if signup.mail is not None:
            asyncio.run(service.send(signup.mail))
    subscriber = signup.subscriber
    print(f"{subscriber.email}: {subscriber.status}; {signup.outcome}")
    return 0 if signup.outcome in (SignupOutcome.SENT, SignupOutcome.ALREADY_ACTIVE) else 1


def read_addresses(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, raw address) from a CSV with an 'email' column or a plain list."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        first = handle.readline()
        handle.seek(0)
        if "email" in first.lower() and ("," in first or ";" in first):
            dialect = csv.Sniffer().sniff(first, delimiters=",;")
            for number, row in enumerate(csv.DictReader(handle, dialect=dialect), start=2):
                key = next(k for k in row if k and k.strip().lower() == "email")
                yield number, row[key] or ""
        else:
            for number, line in enumerate(handle, start=1):
                if line.strip() and not line.lstrip().startswith("#"):
                    yield number, line.strip()


def cmd_import(args: argparse.Namespace) -> int:
    tally: Counter[str] = Counter()
    with _service(args) as service:
        for number, raw in read_addresses(args.file):
            tally[_import_one(service, args, number, raw)] += 1
    print(
        ", ".join(
            f"{key}={tally[key]}"
            for key in ("added", "updated", "unchanged", "refused", "suppressed")
        )
    )
    return 0


def _import_one(service: Subscriptions, args: argparse.Namespace, number: int, raw: str) -> str:
    """Add one line's address; return what happened to it, reporting refusals on stderr."""
    try:
        email = normalize_address(raw)
        before = service.store.get_subscriber(email)
        after = service.add_without_confirmation(email, _status(args), args.source)
    except SuppressedAddressError as exc:
        print(f"{args.file}:{number}: kept suppressed: {exc.reason}", file=sys.stderr)
        return "suppressed"
    except AddressError as exc:
        print(f"{args.file}:{number}: refused {raw!r}: {exc.reason}", file=sys.stderr)
        return "refused"
    return "added" if before is None else "unchanged" if before == after else "updated"


def cmd_list(args: argparse.Namespace) -> int:
    status = SubscriberStatus(args.status) if args.status else None
    with _store(args) as store:
        for subscriber in store.iter_subscribers(status):
            print(f"{subscriber.email}\t{subscriber.status}\t{subscriber.created_at:%Y-%m-%d}")
    return 0


def cmd_counts(args: argparse.Namespace) -> int:
    with _store(args) as store:
        counts = store.count_by_status()
    for status in SubscriberStatus:
        print(f"{status.value:<13}{counts.get(status, 0)}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    if args.days < 1:
        raise ConfigError("--days", "(command line)", f"expected at least 1, got {args.days}")
    with _store(args) as store:
        deleted = store.prune_pending(datetime.now(UTC) - timedelta(days=args.days))
    print(f"deleted {deleted} sign-up(s) not confirmed within {args.days} days")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    with _service(args) as service:
        data = service.export(args.address)
    print(json.dumps(data, indent=2, ensure_ascii=False))
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    with _service(args) as service:
        erased = service.erase(args.address)
    found = "erased" if erased["subscriber"] else "not on the list"
    print(
        f"{args.address.strip()}: {found} (consent records: {erased['consents']}, "
        f"delivery records: {erased['deliveries']}); its keyed hash stays on the erased list, "
        "so it is never mailed again"
    )
    return 0
