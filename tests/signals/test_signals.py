"""The pure half of feedback: each provider's documented payloads mapped to signals, the rate
rule, and the helpers that read fields leniently (providers add fields and change shapes)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.signals import (
    IssueRates,
    SignalKind,
    hard_refusals,
    issue_rates,
    message_id_candidates,
    scrub,
)
from newsletter.signals.providers import (
    iso_time,
    mailgun_signals,
    postmark_signals,
    sendgrid_signals,
    ses_signals,
    unix_time,
)


def test_times_as_providers_write_them() -> None:
    assert iso_time("2014-08-01T13:28:10.2735393-04:00") == datetime(
        2014, 8, 1, 17, 28, 10, 273539, tzinfo=UTC
    )
    assert iso_time("2018-03-26T17:58:59.675Z") == datetime(2018, 3, 26, 17, 58, 59, 675000, UTC)
    assert iso_time("2026-11-28T08:00:00") == datetime(2026, 11, 28, 8, tzinfo=UTC)
    assert iso_time("yesterday") is None and iso_time(12) is None and iso_time("") is None
    assert unix_time("1534110422") == datetime(2018, 8, 12, 21, 47, 2, tzinfo=UTC)
    assert unix_time("soon") is None and unix_time(None) is None and unix_time(1e20) is None


def test_message_id_candidates() -> None:
    assert message_id_candidates(["<a@b>", "a@b", " c@d ", 5, None, "no-at", "<x@y> z"]) == (
        "<a@b>",
        "<c@d>",
    )


@given(st.text())
def test_scrub_never_keeps_an_address_or_a_line_break(text: str) -> None:
    cleaned = scrub(f"550 {text} <reader@example.org> gone")
    assert "reader@example.org" not in cleaned and "\n" not in cleaned
    assert len(cleaned) <= 300


def test_ses_event_publishing_and_notifications() -> None:
    event = {
        "eventType": "Bounce",
        "mail": {
            "source": "bounce+7-0123456789@b.example",
            "headers": [{"name": "Message-Id", "value": "<ours@x>"}],
            "commonHeaders": {"messageId": "<0100-ses@email.amazonses.com>"},
            "tags": {"ree": ["bounce+7-0123456789@b.example"]},
        },
        "bounce": {
            "bounceType": "Undetermined",
            "bouncedRecipients": [{"emailAddress": "A@x"}, {"emailAddress": "b@x"}],
        },
    }
    first, second = ses_signals("m", event)
    assert (first.event_key, second.event_key) == ("m:0", "m:1")
    assert first.kind is SignalKind.SOFT_BOUNCE and first.recipient == "a@x"
    assert first.message_ids == ("<ours@x>", "<0100-ses@email.amazonses.com>")
    assert first.verp[0] == "bounce+7-0123456789@b.example"
    assert ses_signals("m", {"notificationType": "Delivery"}) == []
    odd = ses_signals("m", {"notificationType": "Bounce", "mail": [], "bounce": "x"})
    assert [s.kind for s in odd] == [SignalKind.SOFT_BOUNCE]  # no bounceType: not "Permanent"


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ({"RecordType": "Bounce", "ID": 1, "Type": "HardBounce"}, SignalKind.HARD_BOUNCE),
        ({"RecordType": "Bounce", "ID": 1, "Type": "BadEmailAddress"}, SignalKind.HARD_BOUNCE),
        ({"RecordType": "Bounce", "ID": 1, "Type": "SoftBounce"}, SignalKind.SOFT_BOUNCE),
        ({"RecordType": "Bounce", "ID": 1, "Type": "DnsError"}, SignalKind.SOFT_BOUNCE),
        ({"RecordType": "Bounce", "ID": 1, "Type": "SpamComplaint", "TypeCode": 512},
         SignalKind.COMPLAINT),
        ({"RecordType": "Bounce", "ID": 1, "Type": "SpamNotification", "TypeCode": 512},
         SignalKind.SOFT_BOUNCE),
        ({"RecordType": "Bounce", "ID": 1, "Type": "AutoResponder"}, None),
        ({"RecordType": "Bounce", "Type": "HardBounce"}, None),  # no ID: nothing to key it by
        ({"RecordType": "SpamComplaint", "ID": 2}, SignalKind.COMPLAINT),
        ({"RecordType": "SubscriptionChange", "SuppressSending": True,
          "SuppressionReason": "HardBounce", "Recipient": "a@x"}, SignalKind.HARD_BOUNCE),
        ({"RecordType": "SubscriptionChange", "SuppressSending": True,
          "SuppressionReason": "SpamComplaint"}, SignalKind.COMPLAINT),
        ({"RecordType": "SubscriptionChange", "SuppressSending": True,
          "SuppressionReason": "ManualSuppression"}, None),
        ({"RecordType": "SubscriptionChange", "SuppressSending": False,
          "SuppressionReason": "HardBounce"}, None),
        ({"RecordType": "Open"}, None),
    ],
)  # fmt: skip
def test_postmark_types(payload: dict[str, object], kind: SignalKind | None) -> None:
    found = postmark_signals(payload)
    assert [s.kind for s in found] == ([kind] if kind else [])


def test_postmark_keys_differ_by_record_and_change() -> None:
    bounce = postmark_signals({"RecordType": "Bounce", "ID": 9, "Type": "HardBounce"})[0]
    spam = postmark_signals({"RecordType": "SpamComplaint", "ID": 9})[0]
    change = {"RecordType": "SubscriptionChange", "SuppressSending": True,
              "SuppressionReason": "HardBounce", "ChangedAt": "2026-11-28T08:00:00Z"}  # fmt: skip
    one, two = postmark_signals(change)[0], postmark_signals({**change, "Recipient": "x@y"})[0]
    assert len({bounce.event_key, spam.event_key, one.event_key, two.event_key}) == 4


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ({"event": "failed", "severity": "permanent"}, SignalKind.HARD_BOUNCE),
        ({"event": "failed", "severity": "temporary"}, SignalKind.SOFT_BOUNCE),
        ({"event": "complained"}, SignalKind.COMPLAINT),
        ({"event": "delivered"}, None),
        ({"event": "unsubscribed"}, None),
    ],
)
def test_mailgun_events(event: dict[str, object], kind: SignalKind | None) -> None:
    found = mailgun_signals({**event, "id": "e1", "timestamp": 1.5})
    assert [s.kind for s in found] == ([kind] if kind else [])
    assert mailgun_signals({**event}) == []  # no id, no signal


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ({"event": "bounce", "type": "bounce"}, SignalKind.HARD_BOUNCE),
        ({"event": "bounce", "type": "blocked"}, SignalKind.SOFT_BOUNCE),
        ({"event": "bounce", "bounce_classification": "Technical Failure"}, SignalKind.SOFT_BOUNCE),
        ({"event": "bounce", "bounce_classification": "Invalid Address"}, SignalKind.HARD_BOUNCE),
        ({"event": "dropped", "reason": "Bounced Address"}, SignalKind.HARD_BOUNCE),
        ({"event": "dropped", "reason": "Spam Reporting Address"}, SignalKind.COMPLAINT),
        ({"event": "dropped", "reason": "Unsubscribed Address"}, None),
        ({"event": "spamreport"}, SignalKind.COMPLAINT),
        ({"event": "deferred"}, None),
        ({"event": "open"}, None),
    ],
)
def test_sendgrid_events(event: dict[str, object], kind: SignalKind | None) -> None:
    found = sendgrid_signals([{**event, "sg_event_id": "s1", "ree": "bounce+1-aa@x", "tls": 1}, 7])
    assert [s.kind for s in found] == ([kind] if kind else [])
    if found:
        assert found[0].verp == ("bounce+1-aa@x",)  # custom args, not reserved fields


def test_rates_and_their_thresholds() -> None:
    def rates(sent: int, failed: int, hard: int, complaints: int) -> IssueRates:
        return IssueRates(1, date(2026, 11, 28), sent, failed, hard, 0, complaints, failed)

    assert rates(1000, 0, 0, 0).warnings() == []
    assert rates(1000, 0, 0, 0).complaint_rate == 0 and rates(0, 0, 0, 1).complaint_rate == 0
    assert rates(10_000, 0, 0, 9).warnings() == []
    [warn] = rates(10_000, 0, 0, 10).warnings()
    assert warn.startswith("complaint rate 0.10% is over the 0.1% warning level")
    [limit] = rates(1000, 0, 0, 3).warnings()
    assert limit.startswith("complaint rate 0.30% is over the 0.3% limit")
    assert rates(95, 5, 0, 0).bounce_rate == 0.05
    [bounce] = rates(95, 5, 0, 0).warnings()
    assert "hard-bounce rate 5.00% is over the 5.0% warning level" in bounce
    assert rates(90, 5, 5, 0).bounce_rate == pytest.approx(10 / 95)
    assert "over the 10.0% limit" in rates(90, 5, 5, 0).warnings()[0]
    assert rates(0, 0, 0, 0).bounce_rate == 0


# Failed ledger rows' details as the send wrote them (mail.smtp, audience).
FAILED_DETAILS = {
    "RCPT: 550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown": True,
    "550 No such user here": True,
    "RCPT: 551 User not local": True,
    "DATA: 553 5.1.3 Bad recipient address syntax": True,
    "DATA: 550 5.7.1 Message rejected as spam": False,
    "RCPT: 554 5.7.515 Access denied, sending domain does not meet requirements": False,
    "552 5.2.2 Mailbox full": False,
    "not sent: an address with letters outside ASCII needs SMTPUTF8 (RFC 6531), and the relay "
    "did not offer it in its EHLO reply": False,
    "no message for this reader: ValueError: line 5.1.1 of the template": False,
    "": False,
}


@pytest.mark.parametrize(("detail", "hard"), FAILED_DETAILS.items())
def test_a_refusal_counts_as_a_hard_bounce_only_for_a_dead_mailbox(detail: str, hard: bool) -> None:
    """The send's own rule on what it recorded; a row no server answered is never a bounce."""
    assert hard_refusals([detail]) == int(hard)


def test_the_bounce_rate_counts_hard_refusals_when_the_caller_has_the_details() -> None:
    ledger = {"sent": 6, "failed": len(FAILED_DETAILS)}
    told = issue_rates(1, date(2026, 11, 28), ledger, {"hard_bounce": 1}, FAILED_DETAILS)
    assert told.refused == 4 and told.failed == 10
    assert told.bounce_rate == pytest.approx((4 + 1) / 16)
