"""What a run says when it ends: the summary lines and the exit status cron reads.

Exit status: 0 the issue went out (or there was nothing to do: already sent, empty day, another
run is sending it), 1 a usage, config or input error stopped the run before anything was sent,
3 the issue went out only in part (some recipients deferred or failed; later runs retry the
deferred ones), 4 nothing went out: the mail server refused us, or the send time is further
past than the stale guard allows.
"""

from __future__ import annotations

from .config import Settings
from .models import DeliveryStatus, RunSummary

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL, EXIT_NOT_SENT = 0, 1, 3, 4


def exit_status(summary: RunSummary) -> int:
    counts = summary.counts
    if summary.stopped:
        return EXIT_PARTIAL
    if counts.get(DeliveryStatus.DEFERRED) or counts.get(DeliveryStatus.FAILED):
        return EXIT_PARTIAL
    return EXIT_OK


def format_summary(settings: Settings, summary: RunSummary) -> str:
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
    lines.append(f"recipients: {summary.recipients}")
    if summary.message_bytes:
        lines.append(f"message size: {summary.message_bytes:,} bytes")
    if summary.counts:
        lines.append(
            "outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(summary.counts.items()))
        )
    lines.extend(f"wrote: {path}" for path in summary.output_files)
    if summary.note:
        lines.append(summary.note)
    return "\n".join(lines)
