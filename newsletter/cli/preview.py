"""What a dry run leaves behind for a person to open: the digest as HTML, text and one .eml.

The .eml is the exact message a reader would get, DKIM-signed when `[dkim]` is set, made out
to a stand-in reader (reader@example.com, whose link names nobody): the files stay on disk and
are passed around, so they carry no subscriber's address or working unsubscribe link.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from newsletter.compose import MessageTemplate, personalize
from newsletter.config.settings import Settings
from newsletter.models import Digest, Recipient
from newsletter.ports import Signer

PREVIEW_READER = "reader@example.com"


def write_preview(
    settings: Settings,
    digest: Digest,
    recipient: Recipient,
    issue_date: date,
    now: datetime,
    sign: Signer | None = None,
) -> tuple[Path, ...]:
    """Write digest.html, digest.txt and digest.eml under output_dir/<date>/ and return them."""
    folder = settings.output_dir / issue_date.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    template = MessageTemplate.build(digest, settings, issue_date, now)
    message = template.render(recipient).data
    files = {
        "digest.html": personalize(digest.html, recipient, escape=True).encode("utf-8"),
        "digest.txt": personalize(digest.text, recipient, escape=False).encode("utf-8"),
        "digest.eml": sign(message) if sign is not None else message,
    }
    paths = []
    for name, data in files.items():
        path = folder / name
        path.write_bytes(data)
        paths.append(path)
    return tuple(paths)
