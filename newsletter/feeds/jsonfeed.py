"""JSON Feed (https://jsonfeed.org/version/1.1, and 1.0) read with the json module.

The format is small enough to read by hand, and reading it ourselves keeps its fields apart as
the spec defines them: `title` and `summary` are plain text, `content_html` is HTML and goes
through the same sanitizer as RSS, `content_text` is escaped into paragraphs.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from newsletter.errors import FeedError
from newsletter.feeds.entry import RawEntry
from newsletter.feeds.images import RawImage

VERSION_PREFIX = "https://jsonfeed.org/version/"
_SURROGATE = re.compile("[\ud800-\udfff]")


def parse(body: bytes) -> list[RawEntry]:
    try:
        data = json.loads(body)  # detects UTF-8, -16 and -32 as RFC 8259 allows
    except (ValueError, RecursionError) as exc:
        raise FeedError(f"not a valid JSON Feed: {_first_line(exc)}") from None
    if not isinstance(data, dict) or not str(data.get("version", "")).startswith(VERSION_PREFIX):
        raise FeedError("not a JSON Feed: no https://jsonfeed.org/version/ in 'version'")
    items = data.get("items")
    if not isinstance(items, list):
        raise FeedError("not a valid JSON Feed: 'items' is not a list")
    entries = [_entry(item) for item in items if isinstance(item, dict)]
    return [entry for entry in entries if entry.usable()]


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _entry(item: Mapping[str, Any]) -> RawEntry:
    content = _string(item.get("content_html"))
    if not content and (text := _string(item.get("content_text"))):
        content = _paragraphs(text)
    summary = _string(item.get("summary"))
    return RawEntry(
        guid=_id(item.get("id")),
        title=_string(item.get("title")),
        title_is_html=False,
        link=_string(item.get("url")) or _string(item.get("external_url")),
        author=_author(item),
        published=_date(item.get("date_published")) or _date(item.get("date_modified")),
        content=content,
        summary=_paragraphs(summary) if summary else "",
        images=tuple(RawImage(url, kind="image") for url in _images(item)),
        categories=tuple(t for t in map(_string, _list(item.get("tags"))) if t.strip()),
    )


def _images(item: Mapping[str, Any]) -> list[str]:
    """`image` (the item's main picture), then `banner_image`; both URLs, nothing more said."""
    return [url for key in ("image", "banner_image") if (url := _string(item.get(key)))]


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _string(value: object) -> str:
    """A string field as text; JSON may spell a lone surrogate ("\\udcff"), which has no UTF-8
    and failed the whole feed in the sanitizer: U+FFFD stands in, as a browser's would."""
    return _SURROGATE.sub("\ufffd", value) if isinstance(value, str) else ""


def _id(value: object) -> str:
    """Version 1.1 says a string; 1.0 feeds also send numbers, which mean the same digits."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, int | float):
        return str(value)
    return _string(value)


def _author(item: Mapping[str, Any]) -> str:
    """1.1 has a list of `authors`; 1.0 had one `author`. Names only, never addresses."""
    authors = item.get("authors")
    candidates = authors if isinstance(authors, list) else [item.get("author")]
    names = [_string(a.get("name")) for a in candidates if isinstance(a, dict)]
    return ", ".join(name for name in names if name.strip())


def _date(value: object) -> datetime | None:
    """RFC 3339; a date without an offset is read as UTC, a broken one as no date."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _paragraphs(text: str) -> str:
    """Plain text as HTML paragraphs, one per blank-line-separated block."""
    blocks = [block.strip() for block in text.replace("\r\n", "\n").split("\n\n")]
    return "".join(f"<p>{html.escape(block, quote=False)}</p>" for block in blocks if block)
