"""The editor's note: an optional Markdown file for the issue's date, shown under the masthead.

`<notes_dir>/2026-11-28.md` becomes HTML through markdown-it-py (CommonMark; raw HTML in the
file is shown as text, not passed through), then through the same nh3 allow-list as feed HTML.
Pictures are left out: a note is words, and a picture without a known size would leave a hole.
A note that cannot be read, is not UTF-8 or is too long stops the render with the file's name:
the editor meant it for this issue, so sending the issue without it would be the wrong fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.clean import html_to_text, sanitize_html
from newsletter.errors import RenderError
from newsletter.slots import inert

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

NOTE_MAX_BYTES = 8_000  # about 1,200 words: a note, not an article
_IMG = re.compile(r"<img\b[^>]*>")


@cache
def _markdown() -> MarkdownIt:
    """Built on the first note: most days have none, and every send would pay the import."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


@dataclass(frozen=True)
class Note:
    html: str  # sanitized, inert; safe to mark as Markup in the template
    text: str  # the same words for the text part
    words: int


def note_path(notes_dir: Path, issue_date: date) -> Path:
    return notes_dir / f"{issue_date.isoformat()}.md"


def load_note(notes_dir: Path, issue_date: date) -> Note | None:
    """The note for the date, or None when there is no file (the usual case)."""
    path = note_path(notes_dir, issue_date)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RenderError(f"editor's note {path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > NOTE_MAX_BYTES:
        raise RenderError(
            f"editor's note {path}: {len(data):,} bytes, at most {NOTE_MAX_BYTES:,}; shorten it"
        )
    try:
        source = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RenderError(f"editor's note {path}: not UTF-8 text ({exc.reason})") from None
    return note_from_markdown(source)


def note_from_markdown(source: str) -> Note | None:
    """Markdown to sanitized HTML and plain text; None when nothing readable is left."""
    html = _IMG.sub("", sanitize_html(_markdown().render(source))).strip()
    text = html_to_text(html).strip()
    if not text:
        return None
    return Note(html=inert(html), text=inert(text), words=len(text.split()))
