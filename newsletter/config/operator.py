"""The operator's tables: provider webhooks, the /admin dashboard and /metrics. All off by default.

Secrets come from the environment only (a webhook signing key, the Postmark webhook password);
the admin password *hash* may sit in the file or the environment (the environment wins), since a
hash is not the password. Each parser takes the `Reader` of its table, so errors name the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from newsletter.config.reader import Reader

POSTMARK_PASSWORD_ENV = "NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD"
MAILGUN_KEY_ENV = "NEWSLETTER_MAILGUN_SIGNING_KEY"
SENDGRID_KEY_ENV = "NEWSLETTER_SENDGRID_PUBLIC_KEY"
ADMIN_HASH_ENV = "NEWSLETTER_ADMIN_PASSWORD_HASH"
METRICS_TOKEN_ENV = "NEWSLETTER_METRICS_TOKEN"
# `newsletter admin hash-password` writes this shape (see newsletter/web/admin/passwords.py).
PASSWORD_HASH = re.compile(
    r"\$scrypt\$ln=\d{1,2},r=\d{1,2},p=\d{1,2}\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*"
)
_TOPIC_ARN = re.compile(r"arn:aws(-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}")


@dataclass(frozen=True)
class WebhooksConfig:
    # Amazon SES through SNS: the topics we accept (an empty list leaves the endpoint off).
    ses_topic_arns: tuple[str, ...] = ()
    ses_max_age_minutes: int = 60
    postmark_username: str = "postmark"
    postmark_password: str = ""
    mailgun_signing_key: str = ""
    mailgun_max_age_minutes: int = 15
    sendgrid_public_key: str = ""
    sendgrid_max_age_minutes: int = 15

    @property
    def enabled(self) -> tuple[str, ...]:
        on = {
            "ses": bool(self.ses_topic_arns),
            "postmark": bool(self.postmark_password),
            "mailgun": bool(self.mailgun_signing_key),
            "sendgrid": bool(self.sendgrid_public_key),
        }
        return tuple(name for name, yes in on.items() if yes)


@dataclass(frozen=True)
class AdminConfig:
    password_hash: str = ""
    session_hours: int = 12
    login_attempts_per_hour: int = 10

    @property
    def enabled(self) -> bool:
        return bool(self.password_hash)


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9108
    # Also answer /metrics on the public web app (behind your proxy's access rules).
    on_public_app: bool = False
    token: str = field(default="", repr=False)


def parse_webhooks(reader: Reader, env: Mapping[str, str]) -> WebhooksConfig:
    raw = reader.data.get("ses_topic_arns", [])
    reader.asked.add("ses_topic_arns")
    if not isinstance(raw, list) or not all(isinstance(arn, str) for arn in raw):
        raise reader.fail("ses_topic_arns", "expected a list of SNS topic ARNs")
    for arn in raw:
        if not _TOPIC_ARN.fullmatch(arn):
            raise reader.fail(
                "ses_topic_arns", f"expected arn:aws:sns:REGION:ACCOUNT:NAME, got {arn!r}"
            )
    return WebhooksConfig(
        ses_topic_arns=tuple(raw),
        ses_max_age_minutes=reader.positive("ses_max_age_minutes", int, 60),
        postmark_username=reader.text("postmark_username", "postmark"),
        postmark_password=env.get(POSTMARK_PASSWORD_ENV, ""),
        mailgun_signing_key=env.get(MAILGUN_KEY_ENV, "").strip(),
        mailgun_max_age_minutes=reader.positive("mailgun_max_age_minutes", int, 15),
        sendgrid_public_key=env.get(SENDGRID_KEY_ENV, "").strip(),
        sendgrid_max_age_minutes=reader.positive("sendgrid_max_age_minutes", int, 15),
    )


def parse_admin(reader: Reader, env: Mapping[str, str]) -> AdminConfig:
    in_file = reader.get("password_hash", str, "").strip()
    value = env.get(ADMIN_HASH_ENV, "").strip() or in_file
    if value and not PASSWORD_HASH.fullmatch(value):
        where = ADMIN_HASH_ENV if env.get(ADMIN_HASH_ENV, "").strip() else "admin.password_hash"
        raise reader.fail(
            "password_hash",
            f"{where}: expected the output of `newsletter admin hash-password` ($scrypt$...)",
        )
    return AdminConfig(
        password_hash=value,
        session_hours=reader.positive("session_hours", int, 12),
        login_attempts_per_hour=reader.positive("login_attempts_per_hour", int, 10),
    )


def parse_metrics(reader: Reader, env: Mapping[str, str], web_port: int) -> MetricsConfig:
    enabled = reader.get("enabled", bool, False)
    on_public = reader.get("on_public_app", bool, False)
    port = reader.get("port", int, 9108)
    if not 0 <= port <= 65535:
        raise reader.fail("port", f"expected a port number up to 65535, got {port}")
    host = reader.text("host", "127.0.0.1")
    if enabled and port == web_port and port != 0:
        raise reader.fail("port", "must differ from web.port: /metrics is never on the public app")
    return MetricsConfig(
        enabled=enabled,
        host=host,
        port=port,
        on_public_app=on_public,
        token=env.get(METRICS_TOKEN_ENV, "").strip(),
    )
