"""One place that decides whether an email address is acceptable, its stored form, its mailbox.

Stored form: what we can deliver to. The domain is kept as IDNA A-labels (`xn--...`), the form
every relay takes with or without SMTPUTF8, so a reader signing up as `ann@bücher.example` is
stored as `ann@xn--bcher-kva.example` and never needs RFC 6531 on the wire. A local part with
characters outside ASCII can only be delivered through a relay that offers SMTPUTF8 (RFC 6531),
so it is accepted only when the caller says the relay does (`[smtp] smtputf8`); otherwise it is
refused with a reason at sign-up and import, before anything is stored or any limit is spent.

Mailbox: where a provider delivers an address. Sub-addresses (`ann+news@`) reach `ann@`, and
Gmail also ignores dots (`a.n.n@gmail.com` is `ann@gmail.com`). The per-address limits on
confirmation mails are counted per mailbox, so fourteen spellings of one inbox cannot get
fourteen mails; the address itself is stored as typed.
"""

from __future__ import annotations

import re

import email_validator
from email_validator import EmailNotValidError, validate_email

from newsletter.errors import AddressError

LOCAL_PART_MAX_OCTETS = 64  # RFC 5321 4.5.3.1.1
DOTLESS_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}
SUBADDRESS = "+"
# The plain case, which is almost every line of an import: a dot-atom local part and an ASCII
# domain of letter-digit-hyphen labels under an alphabetic top-level label. For these the
# validator's answer is known (tests compare the two on generated addresses), and skipping it
# is what lets a 100,000-line import run at database speed (~90 us a line saved).
_PLAIN = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
# A plain domain (it has a dot) ending in one of the validator's special-use names (RFC
# 6761): one search instead of two comparisons a name (2.6 -> 0.6 us a line of an import).
_SPECIAL_NAMES = "|".join(map(re.escape, email_validator.SPECIAL_USE_DOMAIN_NAMES))
_SPECIAL_USE = re.compile(rf"\.(?:{_SPECIAL_NAMES})\Z")


def normalize_address(
    raw: str, *, smtputf8: bool = False, check_deliverability: bool = False
) -> str:
    """Return the stored form of the address or raise AddressError with a reason to show.

    `smtputf8`: the relay accepts SMTPUTF8, so a non-ASCII local part can be delivered.
    Deliverability (a DNS look-up) is off by default so that imports and tests stay offline.
    The local part is lower-cased: RFC 5321 lets a server treat it case-sensitively, but no
    mainstream provider does, and "Ann@" and "ann@" as two subscribers would mail one person
    twice and let a case change slip past suppression.
    """
    candidate = raw.strip()
    plain = _plain(candidate)
    if plain is not None:
        return plain
    if any(ch in candidate for ch in "\r\n\x00"):
        raise AddressError(raw, "The address contains a line break or NUL character.")
    try:
        result = validate_email(
            candidate, check_deliverability=check_deliverability, allow_smtputf8=smtputf8
        )
    except EmailNotValidError as exc:
        raise AddressError(raw, _reason(str(exc))) from None
    local = result.local_part.lower()
    octets = len(local.encode("utf-8"))
    if octets > LOCAL_PART_MAX_OCTETS:
        raise AddressError(
            raw,
            f"The part before the @-sign is {octets} bytes long; mail servers accept at most "
            f"{LOCAL_PART_MAX_OCTETS}.",
        )
    return f"{local}@{result.ascii_domain.lower()}"


def _plain(candidate: str) -> str | None:
    """The stored form of a plain address without asking the validator; None to ask it."""
    if len(candidate) > 254 or not _PLAIN.fullmatch(candidate):
        return None
    local, _, domain = candidate.rpartition("@")
    domain = domain.lower()
    if len(local) > LOCAL_PART_MAX_OCTETS or len(domain) > 253:
        return None
    if "--" in domain:  # `ab--` labels are IDNA's (RFC 5891 4.2.3.1): the validator judges
        return None
    if _SPECIAL_USE.search(domain):
        return None
    return f"{local.lower()}@{domain}"


def mailbox_key(address: str) -> str:
    """The mailbox a stored address is delivered to: no +tag, and no dots at Gmail.

    Works on the stored form (`normalize_address`): lower-case, A-label domain. A local part
    that is nothing but a tag (`+news@`) is its own mailbox.
    """
    local, _, domain = address.rpartition("@")
    base = local.split(SUBADDRESS, 1)[0] or local
    if domain in DOTLESS_DOMAINS:
        domain = DOTLESS_DOMAINS[domain]
        base = base.replace(".", "") or base
    return f"{base}@{domain}"


def _reason(message: str) -> str:
    """The validator's reason, said as what it means for the reader."""
    if message.startswith("Internationalized characters before the @-sign"):
        return (
            "Our mail server cannot deliver to an address with accented or non-Latin letters "
            "before the @-sign; please use another address."
        )
    return message
