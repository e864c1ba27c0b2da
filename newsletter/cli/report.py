"""What a run says when it ends: the summary lines and the exit status cron reads.

The statuses are listed once, in `EXIT_STATUSES`: `newsletter --help` prints them and the
README repeats them (a docs test keeps the two in step).
"""

from __future__ import annotations

from newsletter.config import Settings
from newsletter.models import DeliveryStatus, RunSummary

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_NOT_SENT = 0, 1, 2, 3, 4
EXIT_STATUSES = {
    EXIT_OK: "done: the issue went out, or there was nothing to do (already sent, empty day, "
    "another run is sending it)",
    EXIT_ERROR: "a config or input error stopped the command before anything was sent",
    EXIT_USAGE: "usage error: an unknown command or option, or a malformed argument",
    EXIT_PARTIAL: "the issue went out only in part (deferred or failed readers), or the run "
    "was stopped; later runs resume it",
    EXIT_NOT_SENT: "nothing went out: the mail server refused us, or the send time is further "
    "past than delivery.stale_after_hours",
}


def exit_status(summary: RunSummary) -> int:
    counts = summary.counts
    if summary.not_sent:
        return EXIT_NOT_SENT
    if summary.stopped:
        return EXIT_PARTIAL
    unreached = (DeliveryStatus.DEFERRED, DeliveryStatus.FAILED, DeliveryStatus.EXPIRED)
    if any(counts.get(status) for status in unreached):
        return EXIT_PARTIAL
    return EXIT_OK


def format_prepared(settings: Settings, summary: RunSummary) -> list[str]:
    """The issue as collected and rendered: its feeds and articles, before anyone is sent it."""
    mode = " (dry run: nothing sent, nothing stored)" if summary.dry_run else ""
    lines = [f"{settings.name}: issue of {summary.issue_date}{mode}"]
    for report in summary.feeds:
        if report.ok:
            state = "not modified" if report.not_modified else f"{report.articles} entries"
            note = f" ({report.note})" if report.note else ""
            lines.append(f"  feed ok      {report.name}: {state}{note}")
        else:
            lines.append(f"  feed FAILED  {report.name}: {report.error} (skipped)")
    lines.append(f"articles: {summary.articles}")
    lines.extend(summary.left_out)
    return lines


def format_summary(settings: Settings, summary: RunSummary) -> str:
    lines = format_prepared(settings, summary)
    lines.append(f"recipients: {summary.recipients}")
    if summary.message_bytes:
        lines.append(f"message size: {summary.message_bytes:,} bytes")
    if summary.counts:
        lines.append(
            "outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(summary.counts.items()))
        )
    if summary.status is not None:
        lines.append(f"issue: {summary.status.value}, {summary.unreached} reader(s) not reached")
    lines.extend(f"wrote: {path}" for path in summary.output_files)
    if summary.note:
        lines.append(summary.note)
    return "\n".join(lines)
