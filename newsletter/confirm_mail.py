"""The double opt-in mail: one multipart/alternative message with the confirm link, no news.

It wears the digest's layout and stylesheet (fluid up to 600 px, dark mode, a preheader), so
the first mail a reader gets looks like the ones that follow. The HTML is rendered and inlined
once per process with keyed slots for the address and the link, which each mail fills in
(escaped) in one pass, so a sign-up costs no CSS inlining. Both parts are quoted-printable with
every line at most 76 characters (RFC 2045 6.7), headers folded to the same width. DKIM-signed
like the digest when the caller hands in a signer (`[dkim]` set). An address with letters
outside ASCII before the @-sign (`[smtp] smtputf8`) goes into To as raw UTF-8 (RFC 6532), the
rest of the message unchanged; the transport sends it with SMTPUTF8.
"""

from __future__ import annotations

import html
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime
from urllib.parse import urlsplit

from markupsafe import Markup

from newsletter.compose import qp_encode_line, to_field
from newsletter.config.settings import Settings
from newsletter.ports import Signer
from newsletter.render.inline import inline_css, read_stylesheet
from newsletter.templating import render, template

LINE_MAX = 76  # RFC 2045 6.7: encoded lines; headers are folded to the same width
POLICY = email_policy.SMTP.clone(max_line_length=LINE_MAX)
CSS_FILE = "digest.css"


@dataclass(frozen=True)
class ConfirmationMail:
    recipient: str
    message_id: str
    data: bytes


class ConfirmationMailer:
    """Builds the double opt-in mail: templates compiled and the HTML inlined once."""

    def __init__(self, settings: Settings, sign: Signer | None = None) -> None:
        self._settings = settings
        self._sign = sign  # signed like the digest: Gmail and Yahoo want DKIM on all bulk mail
        self._text = template(settings.templates_dir, "confirm.txt")
        key = secrets.token_hex(8)
        self._email_slot, self._link_slot = f"__CONFIRM_EMAIL_{key}__", f"__CONFIRM_URL_{key}__"
        self._slot = re.compile(f"{self._email_slot}|{self._link_slot}")
        self._utf8_to = f"to-{key}@utf8.invalid"  # stands in for a UTF-8 address (`build`)
        css = read_stylesheet(settings.templates_dir, CSS_FILE)
        context = self._context(self._email_slot, self._link_slot)
        context["head_css"] = Markup(css.head)
        page = render(template(settings.templates_dir, "confirm.html"), context)
        self._html = inline_css(page, css.inline)

    def _context(self, email: str, link: str) -> dict[str, object]:
        s = self._settings
        base = urlsplit(s.base_url)
        return {
            "name": s.name,
            "email": email,
            "confirm_url": link,
            "base_url": s.base_url,
            "base_label": f"{base.hostname}{base.path}".rstrip("/"),
            "days": s.confirm_max_age_days,
            "postal_address": s.postal_address,
            "logo": s.render.logo,
            "preheader": preheader(s.name, s.confirm_max_age_days),
        }

    def build(self, email: str, link: str, now: datetime) -> ConfirmationMail:
        """One multipart/alternative message, text first, quoted-printable, no advertising."""
        s = self._settings
        to = to_field(email, utf8=s.smtp.smtputf8)  # refuses what could break a header line
        values = {self._email_slot: html.escape(email), self._link_slot: html.escape(link)}
        page = self._slot.sub(lambda found: values[found.group()], self._html)
        text = render(self._text, self._context(email, link))
        message_id = f"<confirm.{secrets.token_hex(10)}@{s.sender_domain}>"
        msg = EmailMessage(policy=POLICY)
        msg["Date"] = format_datetime(now)
        msg["Message-ID"] = message_id
        msg["From"] = Address(display_name=s.from_name, addr_spec=s.from_address)
        msg["To"] = Address(addr_spec=email if email.isascii() else self._utf8_to)
        if s.reply_to:
            msg["Reply-To"] = Address(addr_spec=s.reply_to)
        msg["Subject"] = f"Please confirm your subscription to {s.name}"
        msg["Auto-Submitted"] = "auto-generated"
        msg["MIME-Version"] = "1.0"
        msg["Content-Type"] = "multipart/alternative"
        msg.set_payload([_part(text, "plain"), _part(page, "html")])
        data = msg.as_bytes(policy=POLICY)
        if not email.isascii():  # the email package cannot write one: RFC 6532 by hand
            stand_in = f"To: {self._utf8_to}\r\n".encode()
            data = data.replace(stand_in, to, 1)
        if self._sign is not None:
            data = self._sign(data)
        return ConfirmationMail(email, message_id, data)


def preheader(name: str, days: int) -> str:
    """The inbox preview: what to do and by when; never the subject again."""
    return f"One click starts your {name} subscription. The link works for {days} days."


def _part(content: str, subtype: str) -> MIMEPart:
    """A UTF-8 text part in quoted-printable with lines of at most 76 characters.

    The email package's own encoder wraps at the policy's header width (78 under
    policy.SMTP), so each line is encoded here, the way compose does for the digest.
    """
    part = MIMEPart(policy=POLICY)
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["Content-Transfer-Encoding"] = "quoted-printable"
    encoded = b"".join(qp_encode_line(line) for line in content.splitlines())
    part.set_payload(encoded.decode("ascii"))
    return part
