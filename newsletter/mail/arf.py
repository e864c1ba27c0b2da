"""Feedback-loop reports (ARF, RFC 5965) as Yahoo, Microsoft (JMRP) and others send them.

A report is `multipart/report; report-type=feedback-report` with a human-readable part, a
`message/feedback-report` part of "Field: value" lines (Feedback-Type, User-Agent, Version,
Original-Mail-From, Original-Rcpt-To, Arrival-Date, ...) and the original message or its
headers (`message/rfc822` or `text/rfc822-headers`). Real reports stray from the RFC (field
name case, `Version: 3.0`), so names are read case-insensitively and versions are not checked.

What finds the reader is what we wrote into the original: its Message-ID, its envelope sender
(our VERP address, in Original-Mail-From or the original's Return-Path) and the signed
unsubscribe link in its List-Unsubscribe header. Microsoft masks the recipient address, and an
address is never trusted on its own anyway; it is kept for the operator to read.
"""

from __future__ import annotations

import email
import hashlib
import re
from dataclasses import dataclass
from email.message import Message

COMPLAINT_TYPES = ("abuse",)  # "not-spam" retracts; fraud, virus, auth-failure are not about us
_UNSUBSCRIBE_PATH = re.compile(r"/u/([A-Za-z0-9_.-]+)")


@dataclass(frozen=True)
class FeedbackReport:
    report_key: str  # the report's own Message-ID, else a hash of it: reading it twice is once
    feedback_type: str
    user_agent: str
    original_rcpt_to: str
    arrival_date: str
    message_ids: tuple[str, ...]  # the original's Message-ID (ours, if it was our mail)
    senders: tuple[str, ...]  # Original-Mail-From and the original's Return-Path
    unsubscribe_tokens: tuple[str, ...]  # from the original's List-Unsubscribe https URL

    @property
    def complaint(self) -> bool:
        return self.feedback_type in COMPLAINT_TYPES


def _fields(part: Message) -> dict[str, str]:
    """The report fields, names lower-cased; the first of a repeated field wins."""
    payload = part.get_payload()
    block = payload[0] if isinstance(payload, list) and payload else None
    if not isinstance(block, Message):  # some senders put the fields in a text part
        text = part.get_payload(decode=True)
        block = email.message_from_bytes(text if isinstance(text, bytes) else b"")
    fields: dict[str, str] = {}
    for name, value in block.items():
        fields.setdefault(name.lower(), " ".join(str(value).split()))
    return fields


def _original(report: Message) -> Message | None:
    for part in report.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if kind == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            return email.message_from_bytes(raw if isinstance(raw, bytes) else b"")
    return None


def read_report(message: Message) -> FeedbackReport | None:
    """The feedback report in a message, or None if it is not one."""
    if message.get_content_type() != "multipart/report":
        return None
    if str(message.get_param("report-type", "")).lower() != "feedback-report":
        return None
    parts = [p for p in message.walk() if p.get_content_type() == "message/feedback-report"]
    if not parts:
        return None
    fields = _fields(parts[0])
    original = _original(message)
    message_ids: list[str] = []
    senders = [fields.get("original-mail-from", "")]
    tokens: list[str] = []
    if original is not None:
        message_ids += [str(v) for v in original.get_all("Message-ID", [])]
        senders += [str(v) for v in original.get_all("Return-Path", [])]
        for value in original.get_all("List-Unsubscribe", []):
            tokens += _UNSUBSCRIBE_PATH.findall(" ".join(str(value).split()))
    own_id = str(message.get("Message-ID", "")).strip()
    key = own_id or hashlib.sha256(message.as_bytes()).hexdigest()
    return FeedbackReport(
        report_key=key[:180],
        feedback_type=fields.get("feedback-type", "").lower(),
        user_agent=fields.get("user-agent", ""),
        original_rcpt_to=fields.get("original-rcpt-to", ""),
        arrival_date=fields.get("arrival-date", "") or fields.get("received-date", ""),
        message_ids=tuple(" ".join(m.split()) for m in message_ids if m.strip()),
        senders=tuple(s.strip().strip("<>") for s in senders if s.strip()),
        unsubscribe_tokens=tuple(dict.fromkeys(tokens)),
    )
