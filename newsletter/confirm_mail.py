"""The double opt-in mail: one multipart/alternative message with the confirm link, no news.

Templates compiled once, like the digest's; DKIM-signed like the digest when `[dkim]` is set
(dkimpy is imported only then).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime

import jinja2

from .config import Settings
from .errors import RenderError
from .render import fill
from .sending import dkim_signer

POLICY = email_policy.SMTP


@dataclass(frozen=True)
class ConfirmationMail:
    recipient: str
    message_id: str
    data: bytes


class ConfirmationMailer:
    """Builds the double opt-in mail: templates compiled once, like the digest's."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(settings.templates_dir),
            autoescape=jinja2.select_autoescape(["html", "htm", "xml"], default=False),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        env.filters["fill"] = fill
        self._sign = dkim_signer(settings.dkim)  # like the digest (standards E.24)
        try:
            self._html = env.get_template("confirm.html")
            self._text = env.get_template("confirm.txt")
        except jinja2.TemplateError as exc:
            raise RenderError(f"confirmation mail template: {exc}") from exc

    def build(self, email: str, link: str, now: datetime) -> ConfirmationMail:
        """One multipart/alternative message, text first, quoted-printable, no advertising."""
        s = self._settings
        context = {
            "name": s.name,
            "email": email,
            "confirm_url": link,
            "base_url": s.base_url,
            "days": s.confirm_max_age_days,
            "postal_address": s.postal_address,
        }
        message_id = f"<confirm.{secrets.token_hex(10)}@{s.sender_domain}>"
        msg = EmailMessage(policy=POLICY)
        msg["Date"] = format_datetime(now)
        msg["Message-ID"] = message_id
        msg["From"] = Address(display_name=s.from_name, addr_spec=s.from_address)
        msg["To"] = Address(addr_spec=email)
        if s.reply_to:
            msg["Reply-To"] = Address(addr_spec=s.reply_to)
        msg["Subject"] = f"Please confirm your subscription to {s.name}"
        msg["Auto-Submitted"] = "auto-generated"
        msg["MIME-Version"] = "1.0"
        msg["Content-Type"] = "multipart/alternative"
        msg.set_payload(
            [_part(self._text.render(context), "plain"), _part(self._html.render(context), "html")]
        )
        data = msg.as_bytes(policy=POLICY)
        if self._sign is not None:
            data = self._sign(data)
        return ConfirmationMail(email, message_id, data)


def _part(content: str, subtype: str) -> MIMEPart:
    """A UTF-8 text part in quoted-printable (7-bit safe, lines <= 76: standards A.8, A.9)."""
    part = MIMEPart(policy=POLICY)
    part.set_content(content, subtype=subtype, cte="quoted-printable")
    return part
