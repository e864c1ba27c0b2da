"""An issue's complaint and hard-bounce rates, and the thresholds mailbox providers publish.

Complaint rate: complaints reported for the issue / messages sent. Gmail (bulk senders) asks
for below 0.10% and treats 0.30% or more as a problem; Yahoo asks for below 0.3%.
Hard-bounce rate: readers refused for good (the relay's permanent refusals in the ledger plus
hard bounces reported later) / messages attempted (sent + failed). Gmail publishes no number;
Amazon SES asks for below 5% and may pause sending at 10%.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


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
    hard_bounces: int  # reported after the send (DSN, webhook); failed rows are counted apart
    soft_bounces: int
    complaints: int

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.sent if self.sent else 0.0

    @property
    def bounce_rate(self) -> float:
        attempted = self.sent + self.failed
        return (self.failed + self.hard_bounces) / attempted if attempted else 0.0

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


def issue_rates(
    issue_id: int, issue_date: date, ledger: dict[str, int], tallies: dict[str, int]
) -> IssueRates:
    """The rates of one issue from its ledger counts and its reports' tallies by kind."""
    return IssueRates(
        issue_id=issue_id,
        issue_date=issue_date,
        sent=ledger.get("sent", 0),
        failed=ledger.get("failed", 0),
        hard_bounces=tallies.get("hard_bounce", 0),
        soft_bounces=tallies.get("soft_bounce", 0),
        complaints=tallies.get("complaint", 0),
    )
