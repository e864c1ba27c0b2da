"""The optional config tables: delivery policy, web app and DKIM.

Kept apart from `config.py` so that file stays about the core settings; each parser takes the
`_Reader` of its table, so errors still name `table.key` and the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import _Reader


@dataclass(frozen=True)
class DeliveryConfig:
    # A run that starts this long after the send time refuses to send unless forced.
    stale_after_hours: float
    # Deferred recipients are retried by later runs until this long after the send time.
    retry_deadline_hours: float
    # Permanent failures with 5.1.x ("no such user") before an address is marked bounced.
    bounce_threshold: int
    # Per-recipient envelope sender bounce+<token>@bounce_domain (VERP); empty: from_address.
    verp_domain: str


@dataclass(frozen=True)
class WebConfig:
    host: str
    port: int
    # Sign-ups allowed per client IP per hour, and confirmation mails per address per day.
    ip_limit_per_hour: int
    address_limit_per_day: int
    # Do not send another confirmation to a pending address within this many minutes.
    resend_after_minutes: int
    # Bump when the sign-up wording changes: each consent record keeps the version it saw.
    consent_version: str


@dataclass(frozen=True)
class DkimConfig:
    domain: str
    selector: str
    private_key: Path
    ed25519_selector: str
    ed25519_private_key: Path | None

    @property
    def enabled(self) -> bool:
        return bool(self.selector)


def parse_delivery(reader: _Reader) -> DeliveryConfig:
    return DeliveryConfig(
        stale_after_hours=reader.positive("stale_after_hours", float, 6.0),
        retry_deadline_hours=reader.positive("retry_deadline_hours", float, 24.0),
        bounce_threshold=reader.positive("bounce_threshold", int, 1),
        verp_domain=reader.get("verp_domain", str, ""),
    )


def parse_web(reader: _Reader) -> WebConfig:
    port = reader.get("port", int, 8000)
    if not 0 <= port <= 65535:
        raise reader.fail("port", f"expected a port number up to 65535, got {port}")
    return WebConfig(
        host=reader.text("host", "127.0.0.1"),
        port=port,
        ip_limit_per_hour=reader.positive("ip_limit_per_hour", int, 20),
        address_limit_per_day=reader.positive("address_limit_per_day", int, 3),
        resend_after_minutes=reader.positive("resend_after_minutes", int, 10),
        consent_version=reader.text("consent_version", "2026-11-v1"),
    )


def parse_dkim(reader: _Reader, base: Path, from_domain: str) -> DkimConfig:
    selector = reader.get("selector", str, "")
    key = reader.get("private_key", str, "")
    if selector and not key:
        raise reader.fail("private_key", "required when dkim.selector is set")
    ed_selector = reader.get("ed25519_selector", str, "")
    ed_key = reader.get("ed25519_private_key", str, "")
    if ed_selector and not ed_key:
        raise reader.fail("ed25519_private_key", "required when dkim.ed25519_selector is set")
    return DkimConfig(
        domain=reader.get("domain", str, "") or from_domain,
        selector=selector,
        private_key=base / key if key else Path(),
        ed25519_selector=ed_selector,
        ed25519_private_key=base / ed_key if ed_key else None,
    )
