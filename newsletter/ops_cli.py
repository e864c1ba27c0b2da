"""`newsletter` commands for running in production: `run [--once]`, `dkim keygen`, `check`.

`run` is the one-process deployment (scheduler and web app); `run --once` is the same decision
made once, for cron or a systemd timer, and exits with `send`'s statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import runtime
from .config import SECRET_ENV, Settings, load_settings
from .errors import ConfigError
from .models import RunSummary
from .report import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, exit_status, format_summary
from .sending import dkim_signer
from .store import open_store
from .transport import SmtpTransport

if TYPE_CHECKING:
    from .dkim_sign import DkimKey

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
KEY_SUFFIX = {"rsa-sha256": "rsa.pem", "ed25519-sha256": "ed25519.key"}


def add_commands(commands: Any) -> None:
    """Register this module's commands on the top-level subparsers."""
    run = commands.add_parser(
        "run",
        help="send each day's issue at its send time and serve the web app, until stopped",
        description="The long-running form: sends the issue at send_time in timezone, catches "
        "up after downtime within delivery.stale_after_hours, resumes unfinished issues, and "
        "serves the web app in the same process. SIGTERM stops it after the messages in flight.",
    )
    run.add_argument(
        "--once",
        action="store_true",
        help="send (or resume) the issue that is due now, if any, then exit: the cron form",
    )
    run.add_argument(
        "--no-web", action="store_true", help="do not serve the web app (`newsletter serve` does)"
    )
    run.set_defaults(handler=cmd_run)
    _add_dkim(commands)
    check = commands.add_parser(
        "check",
        help="check a configuration before the first real send; exit 1 if any check fails",
    )
    check.set_defaults(handler=cmd_check)


def _add_dkim(commands: Any) -> None:
    dkim = commands.add_parser("dkim", help="DKIM signing keys")
    sub = dkim.add_subparsers(dest="dkim_command", required=True, metavar="COMMAND")
    keygen = sub.add_parser(
        "keygen",
        help="write a new DKIM private key and print the DNS TXT record to publish",
        description="RSA keys are 2048-bit; an Ed25519 key signs in addition to the RSA one.",
    )
    keygen.add_argument("--selector", help="DNS selector (default: the one in [dkim] for --type)")
    keygen.add_argument(
        "--type", choices=("rsa", "ed25519"), default="rsa", help="key type (default: rsa)"
    )
    keygen.add_argument(
        "--out",
        type=Path,
        help="private key file to create (default: the path in [dkim], else "
        "keys/SELECTOR.rsa.pem or keys/SELECTOR.ed25519.key next to the config file)",
    )
    keygen.set_defaults(handler=cmd_dkim_keygen)


def cmd_run(args: argparse.Namespace) -> int:
    # Imported here: APScheduler and uvicorn would add ~0.1 s to every `newsletter send`.
    from .scheduler import IssueSender, run_once, serve, web_app

    settings = load_settings(args.config)
    if not settings.secret_key_is_set:
        raise ConfigError(SECRET_ENV, "(environment)", "must be set to sign unsubscribe links")
    sign = dkim_signer(settings.dkim)  # keys are read once, before anything runs
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # feed fetches are in the summary

    def report(summary: RunSummary) -> None:
        print(format_summary(settings, summary), flush=True)

    store = open_store(settings.database_url)
    transport = SmtpTransport(settings.smtp)
    sender = IssueSender(settings, store, transport, asyncio.Event(), sign, report)
    try:
        if not args.once:
            app = None if args.no_web else web_app(settings, store, transport, sender.clock)
            runtime.run(serve(settings, store, sender, app))
            return EXIT_OK
        due, summary = runtime.run(run_once(settings, store, sender))
    finally:
        store.close()
    if not due.send:
        print(f"nothing to send: {due.reason}")
        return EXIT_OK
    if summary is None or sender.stop.is_set():
        print("stopped before the end; the next run resumes where this one stopped")
        return EXIT_PARTIAL
    return exit_status(summary)


def cmd_dkim_keygen(args: argparse.Namespace) -> int:
    from .dkim_sign import ED25519, RSA, generate_key, zone_line

    settings = load_settings(args.config)
    algorithm = RSA if args.type == "rsa" else ED25519
    selector, path = _key_target(settings, algorithm, args.selector, args.out)
    key = generate_key(selector, algorithm, path)
    kind = f"RSA {key.bits}-bit" if algorithm == RSA else "Ed25519"
    print(f"wrote {path}: {kind} private key, readable by you only")
    print("publish this DNS TXT record:")
    print(zone_line(f"{selector}._domainkey.{settings.dkim.domain}", key.txt_record()))
    print(f"then set in {settings.path.name}:")
    print(_config_lines(settings, key, path))
    print("and run `newsletter check`: it compares the key with what DNS publishes")
    return EXIT_OK


def _key_target(
    settings: Settings, algorithm: str, selector: str | None, out: Path | None
) -> tuple[str, Path]:
    """Where the new key goes: the flags, else what [dkim] already names for this key type."""
    from .dkim_sign import RSA, DkimError

    dkim = settings.dkim
    if algorithm == RSA:
        configured, path = dkim.selector, (dkim.private_key if dkim.selector else None)
    else:
        configured, path = dkim.ed25519_selector, dkim.ed25519_private_key
    chosen = selector or configured
    if not chosen:
        raise DkimError("give --selector (or set it in [dkim] first)")
    if out is not None:
        return chosen, out
    if chosen == configured and path is not None:
        return chosen, path
    return chosen, settings.path.parent / "keys" / f"{chosen}.{KEY_SUFFIX[algorithm]}"


def _config_lines(settings: Settings, key: DkimKey, path: Path) -> str:
    from .dkim_sign import RSA

    try:
        shown = str(path.resolve().relative_to(settings.path.parent))
    except ValueError:
        shown = str(path.resolve())
    prefix = "" if key.algorithm == RSA else "ed25519_"
    return f'  [dkim]\n  {prefix}selector = "{key.selector}"\n  {prefix}private_key = "{shown}"'


def cmd_check(args: argparse.Namespace) -> int:
    from .check import Status, run_checks  # DNS and DKIM libraries: only this command needs them

    settings = load_settings(args.config)
    results = run_checks(settings)
    for result in results:
        print(result.line())
    failed = sum(result.status is Status.FAIL for result in results)
    if failed:
        print(f"{failed} of {len(results)} checks failed")
        return EXIT_ERROR
    print("ready: every check passed or was skipped with a note")
    return EXIT_OK
