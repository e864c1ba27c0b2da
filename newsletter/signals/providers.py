"""Each provider's documented bounce and complaint payloads, mapped to `Signal` values.

Pure functions over already-authenticated JSON (the web wing checks signatures first). Every
field is read leniently: providers add fields, and a payload of the wrong shape yields no
signal rather than an exception. Events we do not act on (deliveries, opens, deferrals,
auto-replies) map to nothing.

Where the reader's identity comes from, per provider:
- SES: our Message-ID from `mail.headers` (SES rewrites the Message-ID on the wire, and for
  event publishing `commonHeaders.messageId` is SES's own), the VERP sender from `mail.source`.
- Postmark: `Metadata` values (set with `X-PM-Metadata-*` headers); Postmark's `MessageID` is
  its own UUID, not ours.
- Mailgun: `message.headers.message-id` (no angle brackets), `envelope.sender`,
  `user-variables`.
- SendGrid: `smtp-id` (our Message-ID only with an authenticated sending domain) and the
  custom args, which SendGrid flattens into each event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from newsletter.signals.events import Signal, SignalKind, message_id_candidates, scrub, strings

JsonObject = Mapping[str, Any]


def _object(value: object) -> JsonObject:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def iso_time(value: object) -> datetime | None:
    """An ISO 8601 time as providers write it ("2018-03-26T17:58:59.675Z", with an offset)."""
    text = _text(value).strip()
    if not text:
        return None
    if "." in text:  # .NET writes seven fractional digits; Python reads up to six
        head, _, tail = text.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        tail = tail[:digits][:6] + tail[digits:]
        text = f"{head}.{tail}" if tail[:1].isdigit() else head + tail
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def unix_time(value: object) -> datetime | None:
    try:
        seconds = float(value)  # type: ignore[arg-type]
        return datetime.fromtimestamp(seconds, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _digest_key(*parts: object) -> str:
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:40]


# Amazon SES (the JSON inside an SNS Notification's Message)


def ses_signals(sns_message_id: str, notification: JsonObject) -> list[Signal]:
    kind = _text(notification.get("eventType") or notification.get("notificationType"))
    mail = _object(notification.get("mail"))
    headers = {
        _text(h.get("name")).lower(): h.get("value")
        for h in map(_object, _list(mail.get("headers")))
    }
    common = _object(mail.get("commonHeaders"))
    ids = message_id_candidates([headers.get("message-id"), common.get("messageId")])
    verp = strings([mail.get("source"), headers.get("return-path")])
    tags = _object(mail.get("tags"))
    verp += strings(value for values in tags.values() for value in _list(values))
    if kind == "Bounce":
        bounce = _object(notification.get("bounce"))
        bounce_type = _text(bounce.get("bounceType"))
        # Only "Permanent" means the address is gone; Transient, Undetermined or a type SES
        # adds later suppresses nobody.
        signal_kind = (
            SignalKind.HARD_BOUNCE if bounce_type == "Permanent" else SignalKind.SOFT_BOUNCE
        )
        when = iso_time(bounce.get("timestamp"))
        people = _list(bounce.get("bouncedRecipients"))
        label = f"{bounce_type}/{_text(bounce.get('bounceSubType'))}"
    elif kind == "Complaint":
        complaint = _object(notification.get("complaint"))
        if _text(complaint.get("complaintFeedbackType")).lower() == "not-spam":
            return []
        signal_kind, when = SignalKind.COMPLAINT, iso_time(complaint.get("timestamp"))
        people = _list(complaint.get("complainedRecipients"))
        label = _text(complaint.get("complaintFeedbackType")) or "complaint"
    else:
        return []
    found = []
    for index, person in enumerate(map(_object, people or [{}])):
        diagnostic = _text(person.get("diagnosticCode")) or _text(person.get("status"))
        found.append(
            Signal(
                provider="ses",
                event_key=f"{sns_message_id}:{index}",
                kind=signal_kind,
                message_ids=ids,
                verp=verp,
                recipient=_text(person.get("emailAddress")).lower(),
                detail=scrub(f"{label} {diagnostic}".strip()),
                occurred_at=when,
            )
        )
    return found


# Postmark (one JSON object per request)

_POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
_POSTMARK_SOFT = {
    "SoftBounce", "Transient", "DnsError", "SpamNotification", "VirusNotification",
    "DMARCPolicy", "Blocked", "Unknown",
}  # fmt: skip
_POSTMARK_SUPPRESSION = {
    "HardBounce": SignalKind.HARD_BOUNCE,
    "SpamComplaint": SignalKind.COMPLAINT,
}


def postmark_signals(payload: JsonObject) -> list[Signal]:
    record = _text(payload.get("RecordType"))
    metadata = _object(payload.get("Metadata"))
    verp = strings(metadata.values())
    ids = message_id_candidates(metadata.values())
    recipient = _text(payload.get("Email") or payload.get("Recipient")).lower()
    if record == "Bounce":
        bounce_type = _text(payload.get("Type"))  # the string: TypeCode 512 means two things
        if bounce_type in _POSTMARK_HARD:
            kind = SignalKind.HARD_BOUNCE
        elif bounce_type in _POSTMARK_SOFT:
            kind = SignalKind.SOFT_BOUNCE
        elif bounce_type == "SpamComplaint":
            kind = SignalKind.COMPLAINT
        else:
            return []  # AutoResponder, AddressChange, Subscribe, OpenRelayTest, ...
        key, when = f"Bounce:{payload.get('ID')}", iso_time(payload.get("BouncedAt"))
        detail = f"{bounce_type} {_text(payload.get('Description'))}"
    elif record == "SpamComplaint":
        kind, key = SignalKind.COMPLAINT, f"SpamComplaint:{payload.get('ID')}"
        when, detail = iso_time(payload.get("BouncedAt")), "SpamComplaint"
    elif record == "SubscriptionChange":
        reason = _text(payload.get("SuppressionReason"))
        if payload.get("SuppressSending") is not True or reason not in _POSTMARK_SUPPRESSION:
            return []  # reactivations and ManualSuppression (Postmark's own unsubscribe link)
        kind = _POSTMARK_SUPPRESSION[reason]
        key = "SubscriptionChange:" + _digest_key(
            payload.get("MessageID"), payload.get("ChangedAt"), recipient
        )
        when, detail = iso_time(payload.get("ChangedAt")), f"suppressed: {reason}"
    else:
        return []
    if key.endswith(":None"):
        return []
    return [
        Signal("postmark", key, kind, ids, verp, recipient, scrub(detail), when),
    ]


# Mailgun (one {"signature", "event-data"} object per request)


def mailgun_signals(event: JsonObject) -> list[Signal]:
    name, severity = _text(event.get("event")), _text(event.get("severity"))
    if name == "failed" and severity == "permanent":
        kind = SignalKind.HARD_BOUNCE
    elif name == "failed":
        kind = SignalKind.SOFT_BOUNCE
    elif name == "complained":
        kind = SignalKind.COMPLAINT
    else:
        return []
    event_id = _text(event.get("id"))
    if not event_id:
        return []
    message = _object(event.get("message"))
    headers = _object(message.get("headers"))
    envelope = _object(event.get("envelope"))
    variables = _object(event.get("user-variables"))
    status = _object(event.get("delivery-status"))
    detail = f"{name} {severity} {_text(event.get('reason'))} {status.get('code', '')} " + _text(
        status.get("message") or status.get("description")
    )
    # Mailgun's ids are unique within a day only: the event time makes the key unique.
    key = f"{event_id}:{event.get('timestamp')}"
    return [
        Signal(
            provider="mailgun",
            event_key=key[:200],
            kind=kind,
            message_ids=message_id_candidates([headers.get("message-id")]),
            verp=strings([envelope.get("sender"), *variables.values()]),
            recipient=_text(event.get("recipient")).lower(),
            detail=scrub(detail),
            occurred_at=unix_time(event.get("timestamp")),
        )
    ]


# SendGrid (a JSON array of events per request)

# Reserved event fields; every other top-level key of an event is one of our custom args.
_SENDGRID_FIELDS = {
    "email", "timestamp", "event", "smtp-id", "sg_event_id", "sg_message_id", "category",
    "reason", "status", "type", "bounce_classification", "response", "attempt", "ip", "tls",
    "useragent", "url", "url_offset", "asm_group_id", "cert_err", "marketing_campaign_id",
    "marketing_campaign_name", "pool", "sg_machine_open", "sg_content_type", "sg_template_id",
    "sg_template_name",
}  # fmt: skip
_SENDGRID_NOT_ADDRESS = {
    "content", "frequency or volume too high", "reputation", "technical failure",
}  # fmt: skip
_SENDGRID_DROPPED = {
    "bounced address": SignalKind.HARD_BOUNCE,
    "invalid": SignalKind.HARD_BOUNCE,
    "spam reporting address": SignalKind.COMPLAINT,
}


def sendgrid_signals(events: list[Any]) -> list[Signal]:
    found = []
    for event in map(_object, events):
        kind = _sendgrid_kind(event)
        key = _text(event.get("sg_event_id"))
        if kind is None or not key or len(key) > 200:
            continue
        custom = [value for name, value in event.items() if name not in _SENDGRID_FIELDS]
        found.append(
            Signal(
                provider="sendgrid",
                event_key=key,
                kind=kind,
                message_ids=message_id_candidates([event.get("smtp-id"), *custom]),
                verp=strings(custom),
                recipient=_text(event.get("email")).lower(),
                detail=scrub(
                    f"{event.get('event')} {_text(event.get('type'))} "
                    f"{_text(event.get('status'))} {_text(event.get('reason'))}"
                ),
                occurred_at=unix_time(event.get("timestamp")),
            )
        )
    return found


def _sendgrid_kind(event: JsonObject) -> SignalKind | None:
    name = _text(event.get("event"))
    if name == "spamreport":
        return SignalKind.COMPLAINT
    if name == "bounce":
        classification = _text(event.get("bounce_classification")).lower()
        if _text(event.get("type")) == "blocked" or classification in _SENDGRID_NOT_ADDRESS:
            return SignalKind.SOFT_BOUNCE
        return SignalKind.HARD_BOUNCE
    if name == "dropped":
        return _SENDGRID_DROPPED.get(_text(event.get("reason")).lower())
    return None  # delivered, deferred, processed, open, click, unsubscribe, ...
