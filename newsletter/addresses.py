"""One place that decides whether an email address is acceptable and what its stored form is."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from .errors import AddressError


def normalize_address(raw: str, *, check_deliverability: bool = False) -> str:
    """Return the normalized address or raise AddressError with the validator's reason.

    SMTPUTF8 is refused (`allow_smtputf8=False`) because relays may not support it, and
    deliverability (a DNS look-up) is off by default so that imports and tests stay offline.
    The local part is lower-cased too: RFC 5321 lets a server treat it case-sensitively, but
    no mainstream provider does, and "Ann@" and "ann@" as two subscribers would mail one
    person twice and let a case change slip past suppression.
    """
    candidate = raw.strip()
    if any(ch in candidate for ch in "\r\n\x00"):
        raise AddressError(raw, "The address contains a line break or NUL character.")
    try:
        result = validate_email(
            candidate, check_deliverability=check_deliverability, allow_smtputf8=False
        )
    except EmailNotValidError as exc:
        raise AddressError(raw, str(exc)) from None
    return result.normalized.lower()
