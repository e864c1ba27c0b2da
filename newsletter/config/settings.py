"""`config.toml` plus environment, read once into frozen, validated settings.

Precedence, highest first:
1. secrets from the environment (`NEWSLETTER_SECRET_KEY`, `NEWSLETTER_OLD_SECRET_KEYS`,
   `NEWSLETTER_SMTP_PASSWORD`); they never live in the committed file;
2. the TOML file given with `--config` (before or after the command) or named by
   `NEWSLETTER_CONFIG`, else `./config.toml`;
3. the defaults written below for optional keys.

Every check happens here, before anything is fetched or sent, and every failure names the key,
the file and what was expected; a key no parser asks for (a typo) is an error too. Relative
paths are resolved against the config file's folder.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from newsletter.config.operator import (
    AdminConfig,
    MetricsConfig,
    WebhooksConfig,
    parse_admin,
    parse_metrics,
    parse_webhooks,
)
from newsletter.config.reader import Reader
from newsletter.config.render import RenderConfig, parse_render
from newsletter.config.sections import (
    DeliveryConfig,
    DkimConfig,
    WebConfig,
    WeeklyConfig,
    parse_delivery,
    parse_dkim,
    parse_web,
    parse_weekly,
)
from newsletter.errors import ConfigError

TLS_MODES = ("starttls", "tls", "none")
SECRET_ENV = "NEWSLETTER_SECRET_KEY"
OLD_SECRETS_ENV = "NEWSLETTER_OLD_SECRET_KEYS"
SMTP_PASSWORD_ENV = "NEWSLETTER_SMTP_PASSWORD"
CONFIG_ENV = "NEWSLETTER_CONFIG"


@dataclass(frozen=True)
class FeedConfig:
    name: str
    url: str


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    tls: str
    username: str
    password: str
    timeout: float
    connections: int
    rate_limit: float
    # The relay takes SMTPUTF8 (RFC 6531): only then is a non-ASCII local part accepted.
    smtputf8: bool = False


@dataclass(frozen=True)
class FetchConfig:
    timeout: float
    max_bytes: int
    user_agent: str
    concurrency: int = 4  # feeds fetched at the same time: polite to a site serving several


@dataclass(frozen=True)
class Settings:
    path: Path
    name: str
    list_id: str
    feedback_id: str | None
    from_name: str
    from_address: str
    reply_to: str | None
    postal_address: str
    base_url: str
    site_url: str  # the news site itself: where "N more stories" in a full digest points
    unsubscribe_mailto: str | None
    timezone: ZoneInfo
    send_time: time
    min_articles: int
    max_articles: int
    feeds: tuple[FeedConfig, ...]
    fetch: FetchConfig
    smtp: SmtpConfig
    database_url: str
    output_dir: Path
    templates_dir: Path
    secret_keys: tuple[str, ...]
    confirm_max_age_days: int
    delivery: DeliveryConfig
    web: WebConfig
    dkim: DkimConfig
    render: RenderConfig
    weekly: WeeklyConfig
    webhooks: WebhooksConfig
    admin: AdminConfig
    metrics: MetricsConfig

    @property
    def sender_domain(self) -> str:
        return self.from_address.rpartition("@")[2]

    @property
    def secret_key_is_set(self) -> bool:
        return bool(self.secret_keys) and self.secret_keys[-1] != DRY_RUN_KEY

    def require_secret_key(self) -> None:
        """Refuse to go on with the public dry-run key: it would sign links anyone can forge."""
        if not self.secret_key_is_set:
            raise ConfigError(
                SECRET_ENV,
                "(environment)",
                "must be set: it signs the links we mail and keys VERP senders and the erased list",
            )


# A well-known key lets a dry run on a fresh clone build links; a real send refuses it.
DRY_RUN_KEY = "dry-run-only-not-secret"


def load_settings(
    path: str | Path = "config.toml", environ: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate the whole configuration; raise ConfigError on the first bad value."""
    path = Path(path).resolve()
    env = os.environ if environ is None else environ
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("(file)", str(path), "file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError("(file)", str(path), f"not UTF-8 text: {exc.reason}") from None
    except OSError as exc:
        raise ConfigError("(file)", str(path), f"cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("(syntax)", str(path), f"not valid TOML: {exc}") from None
    root = Reader(data, path)
    base = path.parent
    news = root.table("newsletter")
    from_name, from_address = _sender(news)
    base_url = _https_url(news, "base_url")
    rendering = parse_render(root.table("render"), base)
    web = parse_web(root.table("web"), env)
    settings = Settings(
        path=path,
        name=news.text("name"),
        list_id=_list_id(news, from_address),
        feedback_id=_feedback_id(news),
        from_name=from_name,
        from_address=from_address,
        reply_to=_optional_email(news, "reply_to"),
        postal_address=news.text("postal_address"),
        base_url=base_url.rstrip("/"),
        site_url=_site_url(news, base_url),
        unsubscribe_mailto=_optional_email(news, "unsubscribe_mailto"),
        timezone=_timezone(news),
        send_time=_send_time(news),
        min_articles=news.positive("min_articles", int, 1),
        max_articles=news.positive("max_articles", int, 40),
        feeds=_feeds(root, base),
        fetch=_fetch(root.table("fetch")),
        smtp=_smtp(root.table("smtp"), env),
        database_url=_database_url(root.table("store"), base),
        output_dir=base / root.table("output").text("dir", "out"),
        templates_dir=rendering.templates_dir,
        secret_keys=_secret_keys(env),
        confirm_max_age_days=root.table("tokens").positive("confirm_max_age_days", int, 7),
        delivery=parse_delivery(root.table("delivery")),
        web=web,
        dkim=parse_dkim(root.table("dkim"), base, from_address.rpartition("@")[2]),
        render=rendering,
        weekly=parse_weekly(root.table("weekly"), news.text("name")),
        webhooks=parse_webhooks(root.table("webhooks"), env),
        admin=parse_admin(root.table("admin"), env),
        metrics=parse_metrics(root.table("metrics"), env, web.port),
    )
    root.refuse_unknown()
    return settings


def _sender(news: Reader) -> tuple[str, str]:
    return news.text("from_name"), _email(news, "from_address")


def _email(reader: Reader, key: str) -> str:
    value = reader.text(key)
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise reader.fail(key, f"expected an email address: {exc}") from None


def _optional_email(reader: Reader, key: str) -> str | None:
    return _email(reader, key) if reader.data.get(key) else None


def _https_url(reader: Reader, key: str) -> str:
    value = reader.text(key)
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise reader.fail(key, f"expected an absolute http(s) URL, got {value!r}")
    return _lower_origin(value)


def _lower_origin(url: str) -> str:
    """Scheme and host in lower case ("HTTPS://News.example/Ree" as "https://news.example/Ree"):
    both are case-insensitive (RFC 3986 3.1, 3.2.2), while the web app decides on HSTS and
    Secure cookies by the written "https://" and compares a browser's Origin (always lower
    case) with the base URL's."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.lower()))


def _site_url(news: Reader, base_url: str) -> str:
    """`site_url`, by default the front page of the host that serves `base_url`."""
    base = urlsplit(base_url)
    value = news.text("site_url", f"{base.scheme}://{base.netloc}/")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise news.fail("site_url", f"expected an absolute http(s) URL, got {value!r}")
    return _lower_origin(value)


def _list_id(news: Reader, from_address: str) -> str:
    domain = from_address.rpartition("@")[2]
    value = news.text("list_id", f"daily.{domain}")
    if not re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", value) or len(value) > 255:
        raise news.fail("list_id", "expected a dotted label like daily.example.com (RFC 2919)")
    return value


def _feedback_id(news: Reader) -> str | None:
    """Gmail's Feedback Loop id: up to four colon-separated fields, the last 5-15 characters."""
    value = news.text("feedback_id", "")
    if not value:
        return None
    fields = value.split(":")
    if len(fields) > 4 or not 5 <= len(fields[-1]) <= 15 or not all(fields):
        raise news.fail("feedback_id", "expected like 'daily:reenews:ReeDaily01' (<= 4 fields)")
    if not re.fullmatch(r"[A-Za-z0-9:._-]+", value):
        raise news.fail("feedback_id", "letters, digits, '.', '_', '-' and ':' only")
    return value


def _timezone(news: Reader) -> ZoneInfo:
    value = news.text("timezone", "UTC")
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise news.fail(
            "timezone", f"expected an IANA zone like Europe/Berlin, got {value!r}"
        ) from None


def _send_time(news: Reader) -> time:
    value = news.text("send_time", "07:00")
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise news.fail("send_time", f"expected HH:MM, got {value!r}") from None


def _feeds(root: Reader, base: Path) -> tuple[FeedConfig, ...]:
    readers = root.tables("feeds")
    if not readers:
        raise root.fail("feeds", "expected at least one [[feeds]] table with name and url")
    feeds = []
    for reader in readers:
        url = reader.text("url")
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):
            if scheme not in ("", "file"):
                raise reader.fail("url", f"expected http(s) URL or a file path, got {url!r}")
            local = Path(url[len("file://") :] if scheme == "file" else url)
            url = str(local if local.is_absolute() else base / local)
        feeds.append(FeedConfig(name=reader.text("name"), url=url))
    return tuple(feeds)


def _fetch(reader: Reader) -> FetchConfig:
    return FetchConfig(
        timeout=reader.positive("timeout", float, 20.0),
        max_bytes=reader.positive("max_bytes", int, 5_000_000),
        user_agent=reader.text("user_agent", "ree-newsletter/0.1 (+feed digest)"),
        concurrency=reader.positive("concurrency", int, 4),
    )


def _smtp(reader: Reader, env: Mapping[str, str]) -> SmtpConfig:
    tls = reader.text("tls", "starttls")
    if tls not in TLS_MODES:
        raise reader.fail("tls", f"expected one of {', '.join(TLS_MODES)}, got {tls!r}")
    port = reader.positive("port", int, 587)
    if port > 65535:
        raise reader.fail("port", f"expected a port number up to 65535, got {port}")
    return SmtpConfig(
        host=reader.text("host", "localhost"),
        port=port,
        tls=tls,
        username=reader.get("username", str, ""),
        password=env.get(SMTP_PASSWORD_ENV, ""),
        timeout=reader.positive("timeout", float, 30.0),
        connections=reader.positive("connections", int, 4),
        rate_limit=reader.get("rate_limit", float, 0.0),
        smtputf8=reader.get("smtputf8", bool, False),
    )


def _database_url(reader: Reader, base: Path) -> str:
    url = reader.text("url", "sqlite:///subscribers/subscribers.db")
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        relative = url.removeprefix("sqlite:///")
        if relative and relative != ":memory:":
            url = f"sqlite:///{base / relative}"
    elif not url.startswith(("sqlite:", "postgresql")):
        raise reader.fail("url", f"expected a sqlite:/// or postgresql:// URL, got {url!r}")
    return url


def _secret_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    """Older keys first, the current key last: itsdangerous signs with the last one."""
    old = [k.strip() for k in env.get(OLD_SECRETS_ENV, "").split(",") if k.strip()]
    current = env.get(SECRET_ENV, "").strip()
    return (*old, current or DRY_RUN_KEY)
