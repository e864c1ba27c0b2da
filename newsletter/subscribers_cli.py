"""`newsletter subscribers ...`: the operator's view of the list.

Every address goes through `normalize_address`, so the CLI refuses exactly what the web form
refuses, with the validator's reason. Imports never revive an unsubscribed or bounced address.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .addresses import normalize_address
from .config import load_settings
from .errors import AddressError, SuppressedAddressError
from .models import SubscriberStatus
from .ports import Store
from .store import open_store


def add_commands(commands: Any) -> None:
    """Register the `subscribers` command group on the top-level subparsers."""
    group = commands.add_parser("subscribers", help="add, import, list and count subscribers")
    sub = group.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
    add = sub.add_parser("add", help="add one address (pending unless --active)")
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


def _active_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--active",
        action="store_true",
        help="skip double opt-in: only for addresses whose consent you already hold",
    )
    parser.add_argument("--source", default="cli", help="where the consent came from (recorded)")


def _store(args: argparse.Namespace) -> Store:
    return open_store(load_settings(args.config).database_url)


def _status(args: argparse.Namespace) -> SubscriberStatus:
    return SubscriberStatus.ACTIVE if args.active else SubscriberStatus.PENDING


def cmd_add(args: argparse.Namespace) -> int:
    store = _store(args)
    email = normalize_address(args.address)
    subscriber = store.add_subscriber(
        email, status=_status(args), source=args.source, now=datetime.now(UTC)
    )
    print(f"{subscriber.email}: {subscriber.status}")
    return 0


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
    store = _store(args)
    tally: Counter[str] = Counter()
    now = datetime.now(UTC)
    for number, raw in read_addresses(args.file):
        try:
            email = normalize_address(raw)
            before = store.get_subscriber(email)
            after = store.add_subscriber(email, status=_status(args), source=args.source, now=now)
        except SuppressedAddressError as exc:
            tally["suppressed"] += 1
            print(f"{args.file}:{number}: kept suppressed: {exc.reason}", file=sys.stderr)
        except AddressError as exc:
            tally["refused"] += 1
            print(f"{args.file}:{number}: refused {raw!r}: {exc.reason}", file=sys.stderr)
        else:
            tally["added" if before is None else "unchanged" if before == after else "updated"] += 1
    print(
        ", ".join(
            f"{key}={tally[key]}"
            for key in ("added", "updated", "unchanged", "refused", "suppressed")
        )
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    status = SubscriberStatus(args.status) if args.status else None
    for subscriber in _store(args).iter_subscribers(status):
        print(f"{subscriber.email}\t{subscriber.status}\t{subscriber.created_at:%Y-%m-%d}")
    return 0


def cmd_counts(args: argparse.Namespace) -> int:
    counts = _store(args).count_by_status()
    for status in SubscriberStatus:
        print(f"{status.value:<13}{counts.get(status, 0)}")
    return 0
