"""Message bytes per recipient, built from one per-issue template.

Serializing an `EmailMessage` costs ~5 ms; joining prebuilt pieces costs ~20 µs. So the email
package builds the issue's message once, with markers where the reader's own values go, and
`MessageTemplate.render` only splices values into bytes.

Quoted-printable is line-local (a source line encodes to one or more encoded lines, never
touching its neighbours), so each body line is encoded once per issue, except the few lines that
hold a personal field: those are kept as text and encoded per recipient after substitution.
"""

from __future__ import annotations

import binascii
import html
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from email import policy as email_policy
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime

import idna

from newsletter.config import Settings
from newsletter.errors import AddressError
from newsletter.models import (
    EMAIL_PLACEHOLDER,
    PERSONAL_FIELDS,
    PREFERENCES_URL_PLACEHOLDER,
    UNSUBSCRIBE_URL_PLACEHOLDER,
    Digest,
    Recipient,
)

POLICY = email_policy.SMTP
_PART_MARKERS = {"plain": "@@PART_PLAIN@@", "html": "@@PART_HTML@@"}
_SUBJECT_MARKER = "@@SUBJECT@@"

Segment = bytes | str  # bytes: ready to send; str: a source line to fill and encode


@dataclass(frozen=True)
class ComposedMessage:
    recipient: Recipient
    message_id: str
    data: bytes
    # The body (the bytes after the blank line) as whole lines in pieces, the template's own
    # pieces the same objects in every reader's copy: a DKIM signer canonicalizes those once
    # per issue (`dkim_fast.FastSigner`). Empty: not known, hash the body as a whole.
    body: tuple[bytes, ...] = ()


def qp_encode_line(line: str) -> bytes:
    """Quoted-printable for one source line, with CRLF soft breaks (binascii writes LF)."""
    encoded = binascii.b2a_qp(line.encode("utf-8"), quotetabs=False, istext=True)
    return encoded.replace(b"=\n", b"=\r\n") + b"\r\n"


def _body_segments(text: str) -> list[Segment]:
    """Encode every line without personal fields now; keep the others as source text."""
    segments: list[Segment] = []
    for line in text.splitlines():
        if any(field in line for field in PERSONAL_FIELDS):
            segments.append(line)
        elif segments and isinstance(segments[-1], bytes):
            segments[-1] += qp_encode_line(line)
        else:
            segments.append(qp_encode_line(line))
    return segments


def _looks_encoded(subject: str) -> bool:
    """Whether the email package would decode part of this text as an RFC 2047 encoded word.

    It does so to any value it is given (Python 3.11), so a feed title that spells one, such as
    `=?utf-8?q?a=0D=0ABcc:_x@example.org?=`, would reach the wire decoded: another subject, or
    with an encoded CR LF, headers and a body of the title's making.
    """
    return "=?" in subject


def _encoded_subject(subject: str) -> bytes:
    """The whole subject as encoded words of our own, which decode to exactly its text."""
    if any(ch in subject for ch in "\r\n"):
        raise ValueError(f"a subject must be one line: {subject!r}")
    header = Header(subject, "utf-8", header_name="Subject")
    return header.encode(linesep="\r\n").encode("ascii")


def _text_part(subtype: str) -> MIMEPart:
    part = MIMEPart(policy=POLICY)
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["Content-Transfer-Encoding"] = "quoted-printable"
    part.set_payload(_PART_MARKERS[subtype] + "\r\n")
    return part


def _skeleton(digest: Digest, settings: Settings, now: datetime) -> EmailMessage:
    """The shared headers and MIME structure; the email package checks and encodes them."""
    msg = EmailMessage(policy=POLICY)
    msg["Date"] = format_datetime(now)
    msg["From"] = Address(display_name=settings.from_name, addr_spec=settings.from_address)
    if settings.reply_to:
        msg["Reply-To"] = Address(addr_spec=settings.reply_to)
    msg["Subject"] = _SUBJECT_MARKER if _looks_encoded(digest.subject) else digest.subject
    msg["List-Id"] = f"{settings.name} <{settings.list_id}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["List-Archive"] = f"<{settings.base_url}/archive>"
    if settings.feedback_id:  # the same for every reader of every issue (Google FBL)
        msg["Feedback-ID"] = settings.feedback_id
    msg["Precedence"] = "bulk"
    msg["Auto-Submitted"] = "auto-generated"
    msg["MIME-Version"] = "1.0"
    msg["Content-Type"] = "multipart/alternative"
    msg.set_payload([_text_part("plain"), _text_part("html")])
    return msg


@dataclass(frozen=True)
class MessageTemplate:
    """One issue's message with holes for To, Message-ID, List-Unsubscribe and body fields."""

    headers: bytes
    body: tuple[tuple[Segment, ...], ...]
    body_kinds: tuple[str, ...]
    between: tuple[bytes, ...]
    domain: str
    id_prefix: str
    smtputf8: bool = False  # `[smtp] smtputf8`: a reader's address may be written as UTF-8

    @classmethod
    def build(
        cls, digest: Digest, settings: Settings, issue_date: date, now: datetime
    ) -> MessageTemplate:
        raw = _skeleton(digest, settings, now).as_bytes(policy=POLICY)
        headers, _, body = raw.partition(b"\r\n\r\n")
        if _looks_encoded(digest.subject):  # a whole line (Date comes before, MIME after)
            line = f"\r\nSubject: {_SUBJECT_MARKER}\r\n".encode()
            encoded = b"\r\nSubject: " + _encoded_subject(digest.subject) + b"\r\n"
            headers = headers.replace(line, encoded, 1)
        head, rest = body.split(_PART_MARKERS["plain"].encode(), 1)
        middle, tail = rest.split(_PART_MARKERS["html"].encode(), 1)
        return cls(
            headers=headers + b"\r\n",
            body=(tuple(_body_segments(digest.text)), tuple(_body_segments(digest.html))),
            body_kinds=("plain", "html"),
            between=(head, middle.removeprefix(b"\r\n"), tail.removeprefix(b"\r\n")),
            domain=settings.sender_domain,
            id_prefix=f"{issue_date:%Y%m%d}.{secrets.token_hex(4)}",
            smtputf8=settings.smtp.smtputf8,
        )

    def new_message_id(self) -> str:
        """Unique per copy and opaque: a database id here would tell every reader the size and
        growth of the list. Reports find the reader through the ledger, which stores this."""
        return f"<{self.id_prefix}.{secrets.token_hex(10)}@{self.domain}>"

    def render(self, recipient: Recipient) -> ComposedMessage:
        """The complete message for one reader: headers, then both parts with values filled in."""
        to = to_field(recipient.email, utf8=self.smtputf8)
        _check_single_line(recipient)
        message_id = self.new_message_id()
        unsubscribe = f"<{recipient.unsubscribe_url}>"
        if recipient.unsubscribe_mailto:
            unsubscribe += f",\r\n <{recipient.unsubscribe_mailto}>"
        personal = f"Message-ID: {message_id}\r\nList-Unsubscribe: {unsubscribe}\r\n"
        body = [self.between[0]]
        for index, segments in enumerate(self.body):
            values = _values(recipient, escape=self.body_kinds[index] == "html")
            body.extend(_fill(segments, values))
            body.append(self.between[index + 1])
        head = [to, personal.encode("ascii"), self.headers, b"\r\n"]
        return ComposedMessage(recipient, message_id, b"".join(head + body), tuple(body))


def _values(recipient: Recipient, *, escape: bool) -> dict[str, str]:
    email = html.escape(recipient.email) if escape else recipient.email
    return {
        EMAIL_PLACEHOLDER: email,
        UNSUBSCRIBE_URL_PLACEHOLDER: recipient.unsubscribe_url,
        PREFERENCES_URL_PLACEHOLDER: recipient.preferences_url or recipient.unsubscribe_url,
    }


def _fill(segments: tuple[Segment, ...], values: dict[str, str]) -> list[bytes]:
    out = []
    for segment in segments:
        if isinstance(segment, bytes):
            out.append(segment)
            continue
        for placeholder, value in values.items():
            segment = segment.replace(placeholder, value)
        out.append(qp_encode_line(segment))
    return out


def envelope_address(email: str, *, smtputf8: bool = False) -> str:
    """The address as it goes on the wire: an internationalised domain as A-labels (IDNA 2008,
    UTS 46), so a relay without SMTPUTF8 takes it. A non-ASCII local part cannot be written
    without SMTPUTF8 (RFC 6531): unless `smtputf8` (the relay offers it, `[smtp] smtputf8`),
    AddressError, which makes it that reader's outcome.

    With SMTPUTF8 the local part goes as UTF-8 and the domain still as A-labels, not U-labels:
    RFC 6531 3.2 allows either, A-labels are what the domain is stored as and what DNS is asked
    for, and one form for every reader keeps one mailbox key and one ledger row per address.
    """
    if email.isascii():
        return email
    local, _, domain = email.rpartition("@")
    if not (smtputf8 or local.isascii()):
        raise AddressError(email, "the local part is not ASCII; it needs a relay with SMTPUTF8")
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise AddressError(email, f"the domain is not a valid IDNA name: {exc}") from None
    return f"{local}@{ascii_domain}"


def to_field(email: str, *, utf8: bool) -> bytes:
    """The To field, one line. With `utf8` (the relay offers SMTPUTF8) a non-ASCII address goes
    as raw UTF-8 (RFC 6532 3.2): an encoded word is not allowed in an addr-spec (RFC 2047 5).
    Such a message needs SMTPUTF8 on the wire, which the transport asks for when it sees UTF-8
    in the envelope or the header block. Without `utf8` only ASCII is written."""
    if not header_safe(email) or not (utf8 or email.isascii()):
        raise ValueError(f"unsafe value for a header: {email!r}")
    return b"To: " + email.encode("utf-8") + b"\r\n"


# Characters that end a line for some reader of the message: CR, LF, NUL and the other C0 and
# C1 controls (NEL U+0085 among them), U+2028 and U+2029 (str.splitlines breaks on all of
# them), and lone surrogates, which have no UTF-8 at all.
_LINE_BREAKING = frozenset(("Cc", "Cs", "Zl", "Zp"))


def header_safe(value: str) -> bool:
    """Whether a value from subscriber data may go into a header line as it is."""
    if value.isascii():
        return value.isprintable()
    return not any(unicodedata.category(ch) in _LINE_BREAKING for ch in value)


def _check_single_line(recipient: Recipient) -> None:
    """Header values built from subscriber data must never inject a header. The links are ours
    and ASCII by construction; the address, which may be UTF-8, is checked by `to_field`."""
    links = (recipient.unsubscribe_url, recipient.unsubscribe_mailto or "")
    for value in (*links, recipient.preferences_url):
        if not (value.isascii() and header_safe(value)):
            raise ValueError(f"unsafe value for a header: {value!r}")


def personalize(text: str, recipient: Recipient, *, escape: bool) -> str:
    """The reader's view of a digest part, for previews written by a dry run."""
    for placeholder, value in _values(recipient, escape=escape).items():
        text = text.replace(placeholder, value)
    return text
