"""Delivery feedback in: bounces and complaints from providers and feedback loops, as plain values.

Core code (no store, mail, web or cli imports): `events` names what came in, `providers` maps
each provider's documented payload to those values, `desk` finds the reader by our own
Message-ID or the HMAC-checked VERP id (never by an address in the body alone) and hands the
result to the store in one transaction, `rates` says when an issue's complaint or hard-bounce
rate crosses the mailbox providers' published thresholds, counting readers, not reports, and
only dead mailboxes as hard bounces.
"""

from newsletter.signals.desk import Match, SignalDesk, SignalStore, Taken
from newsletter.signals.events import Signal, SignalKind, message_id_candidates, scrub
from newsletter.signals.rates import (
    IssueRates,
    Threshold,
    hard_refusals,
    issue_rates,
    rate_warnings,
)

__all__ = [
    "IssueRates",
    "Match",
    "Signal",
    "SignalDesk",
    "SignalKind",
    "SignalStore",
    "Taken",
    "Threshold",
    "hard_refusals",
    "issue_rates",
    "message_id_candidates",
    "rate_warnings",
    "scrub",
]
