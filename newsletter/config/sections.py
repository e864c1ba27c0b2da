"""The optional config tables: delivery policy, web app and DKIM.

Kept apart from `settings.py` so that file stays about the core settings; each parser takes the
`Reader` of its table, so errors still name `table.key` and the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from newsletter.config.reader import Reader
from newsletter.errors import ConfigError

REDIS_URL_ENV = "NEWSLETTER_REDIS_URL"  # overrides [web] redis_url: such a URL may hold a password
REDIS_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class DeliveryConfig:
    # A run that starts this long after the send time refuses to send unless forced.
    stale_after_hours: float
    # Deferred recipients are retried by later runs until this long after the send time.
    retry_deadline_hours: float
    # Permanent failures with 5.1.x ("no such user") before an address is marked bounced.
    bounce_threshold: int
    # Per-recipient envelope sender bounce+<sealed id>@verp_domain (VERP); empty: from_address.
    verp_domain: str
    # Readers per batch: the unit several processes (or hosts) claim when sending one issue.
    batch_size: int


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
    # Clients the per-IP limit remembers; when full, the one quiet longest is forgotten.
    ip_limit_clients: int = 100_000
    # Strict-Transport-Security on every answer when base_url is https, for this many seconds.
    hsts: bool = True
    hsts_max_age: int = 31_536_000
    # Where the per-IP limit is counted, shared by every process that names the same Redis;
    # "" counts it in each process's memory.
    redis_url: str = ""
    # Start of every key in Redis: newsletters that share one Redis each need their own.
    redis_prefix: str = "newsletter"


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


def parse_delivery(reader: Reader) -> DeliveryConfig:
    return DeliveryConfig(
        stale_after_hours=reader.positive("stale_after_hours", float, 6.0),
        retry_deadline_hours=reader.positive("retry_deadline_hours", float, 24.0),
        bounce_threshold=reader.positive("bounce_threshold", int, 1),
        verp_domain=reader.get("verp_domain", str, ""),
        batch_size=reader.positive("batch_size", int, 500),
    )


def parse_web(reader: Reader, env: Mapping[str, str]) -> WebConfig:
    port = reader.get("port", int, 8000)
    if not 0 <= port <= 65535:
        raise reader.fail("port", f"expected a port number up to 65535, got {port}")
    prefix = reader.text("redis_prefix", "newsletter")
    if not prefix or any(c.isspace() for c in prefix):
        raise reader.fail("redis_prefix", "expected a non-empty word without spaces")
    return WebConfig(
        host=reader.text("host", "127.0.0.1"),
        port=port,
        ip_limit_per_hour=reader.positive("ip_limit_per_hour", int, 20),
        address_limit_per_day=reader.positive("address_limit_per_day", int, 3),
        resend_after_minutes=reader.positive("resend_after_minutes", int, 10),
        consent_version=reader.text("consent_version", "2026-11-v1"),
        ip_limit_clients=reader.positive("ip_limit_clients", int, 100_000),
        hsts=reader.get("hsts", bool, True),
        hsts_max_age=reader.positive("hsts_max_age", int, 31_536_000),
        redis_url=_redis_url(reader, env),
        redis_prefix=prefix,
    )


def _redis_url(reader: Reader, env: Mapping[str, str]) -> str:
    """`NEWSLETTER_REDIS_URL`, else `[web] redis_url`; "" when neither is set. Never echoed in
    an error: it may carry a password."""
    in_file = reader.text("redis_url", "")
    given = env.get(REDIS_URL_ENV, "").strip()
    url = given or in_file
    if url and urlsplit(url).scheme not in REDIS_SCHEMES:
        expected = "expected a redis://, rediss:// or unix:// URL (or empty: count per process)"
        if given:
            raise ConfigError(REDIS_URL_ENV, "(environment)", expected)
        raise reader.fail("redis_url", expected)
    return url


def parse_dkim(reader: Reader, base: Path, from_domain: str) -> DkimConfig:
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


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class WeeklyConfig:
    # Off: no weekly round-up, and the sign-up form offers daily mail only.
    enabled: bool
    # The round-up goes out on this weekday (0 = Monday) at send_time, with the week's top stories.
    weekday: int
    name: str
    max_articles: int


def parse_weekly(reader: Reader, daily_name: str) -> WeeklyConfig:
    enabled = reader.get("enabled", bool, False)
    day = reader.text("weekday", "friday").lower()
    if day not in WEEKDAYS:
        raise reader.fail("weekday", f"expected a weekday like friday, got {day!r}")
    name = reader.text("name", f"{daily_name} Weekly")
    if name == daily_name:
        raise reader.fail("name", "must differ from newsletter.name: the two are two lists")
    return WeeklyConfig(
        enabled=enabled,
        weekday=WEEKDAYS.index(day),
        name=name,
        max_articles=reader.positive("max_articles", int, 10),
    )
