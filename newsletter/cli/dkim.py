"""`newsletter dkim keygen`: a new DKIM signing key and the DNS record to publish for it.

dkimpy and the key code are imported inside the handler, so other commands start without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from newsletter.cli.door import Door, command
from newsletter.cli.report import EXIT_OK
from newsletter.config import Settings

if TYPE_CHECKING:
    from newsletter.mail.dkim import DkimKey

KEY_SUFFIX = {"rsa-sha256": "rsa.pem", "ed25519-sha256": "ed25519.key"}


def add_commands(commands: Any) -> None:
    dkim = command(commands, "dkim", help="DKIM signing keys")
    sub = dkim.add_subparsers(dest="dkim_command", required=True, metavar="COMMAND")
    keygen = command(
        sub,
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


def cmd_dkim_keygen(door: Door) -> int:
    from newsletter.mail.dkim import ED25519, RSA, generate_key, zone_line

    settings, args = door.settings, door.args
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
    from newsletter.mail.dkim import RSA, DkimError

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
    from newsletter.mail.dkim import RSA

    try:
        shown = str(path.resolve().relative_to(settings.path.parent))
    except ValueError:
        shown = str(path.resolve())
    prefix = "" if key.algorithm == RSA else "ed25519_"
    return f'  [dkim]\n  {prefix}selector = "{key.selector}"\n  {prefix}private_key = "{shown}"'
