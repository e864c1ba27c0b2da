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
import json
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newsletter.cli.door import Door, command
from newsletter.cli.import_file import Line, read_addresses, shorten
from newsletter.errors import ConfigError
from newsletter.mail import dkim_signer
from newsletter.mail.smtp import SmtpTransport
from newsletter.models import ImportResult, ImportVerdict, SubscriberStatus

if TYPE_CHECKING:  # the subscription rules load the mail templates: only commands that use them
    from newsletter.subscriptions import Subscriptions

CLI_AGENT = "newsletter-cli"


def add_commands(commands: Any) -> None:
    """Register the `subscribers` command group on the top-level subparsers."""
    group = command(
        commands, "subscribers", help="add, import, list, count, export and erase subscribers"
    )
    sub = group.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
    add = command(
        sub, "add", help="sign up one address: pending, and a confirmation mail (unless --active)"
    )
    add.add_argument("address", help="the email address to sign up")
    _active_flag(add)
    add.set_defaults(handler=cmd_add)
    imp = command(sub, "import", help="import addresses from a CSV (column 'email') or a text file")
    imp.add_argument(
        "file", type=Path, help="a CSV file with an email column, or one address a line"
    )
    _active_flag(imp)
    imp.set_defaults(handler=cmd_import)
    lst = command(sub, "list", help="list subscribers, optionally of one status")
    lst.add_argument(
        "--status", choices=[s.value for s in SubscriberStatus], help="only this status"
    )
    lst.set_defaults(handler=cmd_list)
    counts = command(sub, "counts", help="number of subscribers by status")
    counts.set_defaults(handler=cmd_counts)
    export = command(
        sub, "export", help="print everything stored about an address as JSON (consent included)"
    )
    export.add_argument("address", help="the email address whose data to print")
    export.set_defaults(handler=cmd_export)
    erase = command(
        sub,
        "erase",
        help="delete an address's data, keeping a keyed hash so it is never mailed again",
    )
    erase.add_argument("address", help="the email address to erase")
    erase.set_defaults(handler=cmd_erase)
    prune = command(
        sub, "prune", help="delete sign-ups never confirmed within N days (data minimisation)"
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
def _service(door: Door) -> Iterator[Subscriptions]:
    """The subscription rules on the configured store, closed again afterwards."""
    from newsletter.subscriptions import Subscriptions

    settings = door.secret_settings()
    with door.store() as store:
        transport = SmtpTransport(settings.smtp)
        sign = dkim_signer(settings.dkim, door.clock)
        yield Subscriptions(settings, store, transport, door.clock, sign)


def _status(args: argparse.Namespace) -> SubscriberStatus:
    return SubscriberStatus.ACTIVE if args.active else SubscriberStatus.PENDING


def cmd_add(door: Door) -> int:
    from newsletter.subscriptions import SignupRequest, SignupResult, Visitor

    args = door.args
    with _service(door) as service:
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
    return 0 if signup.outcome in (SignupResult.SENT, SignupResult.ALREADY_ACTIVE) else 1


def cmd_import(door: Door) -> int:
    """Every line gets a verdict on stderr or in the tally; a file where none was taken fails."""
    args = door.args
    tally: Counter[ImportResult] = Counter()
    with _service(door) as service:
        lines = ((line, line.raw, line.problem) for line in read_addresses(args.file))
        from newsletter.bulk_import import import_addresses

        verdicts = import_addresses(service, lines, status=_status(args), source=args.source)
        for line, verdict in verdicts:
            tally[verdict.result] += 1
            _report(args.file, line, verdict)
    print(", ".join(f"{result}={tally[result]}" for result in ImportResult))
    if tally[ImportResult.REFUSED] and tally.total() == tally[ImportResult.REFUSED]:
        print(f"{args.file}: no line could be imported", file=sys.stderr)
        return 1
    return 0


def _report(path: Path, line: Line, verdict: ImportVerdict) -> None:
    """A refused or suppressed line on stderr, named by file and line number."""
    where = f"{path}:{line.number}"
    if verdict.result is ImportResult.REFUSED:
        shown = line.raw if line.problem else shorten(line.raw)  # a problem's raw is shortened
        print(f"{where}: refused {shown!r}: {verdict.reason}", file=sys.stderr)
    elif verdict.result is ImportResult.SUPPRESSED:
        print(f"{where}: kept suppressed: {verdict.reason}", file=sys.stderr)


def cmd_list(door: Door) -> int:
    status = SubscriberStatus(door.args.status) if door.args.status else None
    with door.store() as store:
        for subscriber in store.iter_subscribers(status):
            print(f"{subscriber.email}\t{subscriber.status}\t{subscriber.created_at:%Y-%m-%d}")
    return 0


def cmd_counts(door: Door) -> int:
    with door.store() as store:
        counts = store.count_by_status()
    for status in SubscriberStatus:
        print(f"{status.value:<13}{counts.get(status, 0)}")
    return 0


def cmd_prune(door: Door) -> int:
    days = door.args.days
    if days < 1:
        raise ConfigError("--days", "(command line)", f"expected at least 1, got {days}")
    with door.store() as store:
        deleted = store.prune_pending(door.clock() - timedelta(days=days))
    print(f"deleted {deleted} sign-up(s) not confirmed within {days} days")
    return 0


def cmd_export(door: Door) -> int:
    with _service(door) as service:
        data = service.export(door.args.address)
    print(json.dumps(data, indent=2, ensure_ascii=False))
    return 0


def cmd_erase(door: Door) -> int:
    args = door.args
    with _service(door) as service:
        erased = service.erase(args.address)
    found = "erased" if erased["subscriber"] else "not on the list"
    print(
        f"{args.address.strip()}: {found} (consent records: {erased['consents']}, "
        f"delivery records: {erased['deliveries']}); its keyed hash stays on the erased list, "
        "so it is never mailed again"
    )
    return 0
