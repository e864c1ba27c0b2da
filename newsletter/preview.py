"""What a dry run leaves behind for a person to open: the digest as HTML, text and one .eml."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from .compose import MessageTemplate, personalize
from .config import Settings
from .models import Digest, Recipient

PREVIEW_READER = "reader@example.com"


def write_preview(
    settings: Settings, digest: Digest, recipient: Recipient, issue_date: date, now: datetime
) -> tuple[Path, ...]:
    """Write digest.html, digest.txt and digest.eml under output_dir/<date>/ and return them."""
    folder = settings.output_dir / issue_date.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    template = MessageTemplate.build(digest, settings, issue_date, now)
    files = {
        "digest.html": personalize(digest.html, recipient, escape=True).encode("utf-8"),
        "digest.txt": personalize(digest.text, recipient, escape=False).encode("utf-8"),
        "digest.eml": template.render(recipient).data,
    }
    paths = []
    for name, data in files.items():
        path = folder / name
        path.write_bytes(data)
        paths.append(path)
    return tuple(paths)
