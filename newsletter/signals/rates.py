"""An issue's complaint and hard-bounce rates, and the thresholds mailbox providers publish.

Complaint rate: complaints reported for the issue / messages sent. Gmail (bulk senders) asks
for below 0.10% and treats 0.30% or more as a problem; Yahoo asks for below 0.3%.
Hard-bounce rate: readers whose mailbox does not exist (the relay refused them during the send
for that reason, or a hard bounce was reported later) / messages attempted (sent + failed). A
`failed` ledger row is not a bounce by itself: a 5.7.x policy refusal, a relay without SMTPUTF8
or a message that could not be made says nothing about the address, so a refusal counts only
when `newsletter.bounces.is_hard_bounce` says so, the rule the send itself applied to it.
Gmail publishes no number; Amazon SES asks for below 5% and may pause sending at 10%.
Every count is of readers, not of reports (see `store.signal_tallies`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from newsletter.bounces import is_hard_bounce


@dataclass(frozen=True)
class Threshold:
    name: str
    warn: float  # "keep below": at or above this the issue gets a warning
    limit: float  # "never reach": at or above this the warning says the limit is crossed
    source: str


COMPLAINTS = Threshold("complaint rate", 0.001, 0.003, "Gmail and Yahoo: below 0.1%, never 0.3%")
HARD_BOUNCES = Threshold("hard-bounce rate", 0.05, 0.10, "Amazon SES: below 5%, pause at 10%")


@dataclass(frozen=True)
class IssueRates:
    issue_id: int
    issue_date: date
    sent: int
    failed: int
    hard_bounces: int  # readers reported after the send (DSN, webhook); refusals counted apart
    soft_bounces: int
    complaints: int
    hard_refusals: int  # failed rows that were dead mailboxes (5.1.x, 550/551/553)

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.sent if self.sent else 0.0

    @property
    def refused(self) -> int:
        """Readers the relay refused during the send because their mailbox does not exist."""
        return self.hard_refusals

    @property
    def bounce_rate(self) -> float:
        attempted = self.sent + self.failed
        return (self.refused + self.hard_bounces) / attempted if attempted else 0.0

    def warnings(self) -> list[str]:
        return rate_warnings(self)


def _level(value: float, threshold: Threshold) -> str | None:
    if value >= threshold.limit:
        return f"{threshold.name} {value:.2%} is over the {threshold.limit:.1%} limit"
    if value >= threshold.warn:
        return f"{threshold.name} {value:.2%} is over the {threshold.warn:.1%} warning level"
    return None


def rate_warnings(rates: IssueRates) -> list[str]:
    """One line per rate that crossed a threshold, naming whose threshold it is."""
    found = []
    for value, threshold in (
        (rates.complaint_rate, COMPLAINTS),
        (rates.bounce_rate, HARD_BOUNCES),
    ):
        level = _level(value, threshold)
        if level:
            found.append(f"{level} ({threshold.source})")
    return found


# The reply code at the head of a failed row's detail, as `mail.smtp` writes a refusal: "550
# ...", "RCPT: 550 ...", "DATA: 550 ...". Rows without one are no server's answer: a message
# that could not be made (the send never asks whether that is a bounce) or SMTPUTF8 missing.
_REPLY_CODE = re.compile(r"^(?:[A-Z]{4}: )?([2-5][0-9]{2})(?![0-9])")


def hard_refusals(details: Iterable[str]) -> int:
    """How many failed ledger rows, by their detail, were dead mailboxes: the send's own rule
    (`is_hard_bounce` on the reply code and text) applied again to what it recorded."""
    count = 0
    for detail in details:
        code = _REPLY_CODE.match(detail)
        if code and is_hard_bounce(int(code.group(1)), detail):
            count += 1
    return count


def issue_rates(
    issue_id: int,
    issue_date: date,
    ledger: dict[str, int],
    tallies: dict[str, int],
    failed_details: Iterable[str],
) -> IssueRates:
    """The rates of one issue from its ledger counts, its reports' tallies by kind and the
    details of its failed rows (`store.failed_details`), which tell a dead mailbox from a
    policy refusal."""
    return IssueRates(
        issue_id=issue_id,
        issue_date=issue_date,
        sent=ledger.get("sent", 0),
        failed=ledger.get("failed", 0),
        hard_bounces=tallies.get("hard_bounce", 0),
        soft_bounces=tallies.get("soft_bounce", 0),
        complaints=tallies.get("complaint", 0),
        hard_refusals=hard_refusals(failed_details),
    )
