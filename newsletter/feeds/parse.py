"""Feed bytes to entries: RSS and Atom through feedparser, JSON Feed through `jsonfeed`.

feedparser decodes by Content-Type and XML prolog as the RFCs say. It is given no address for
the document on purpose: with one it resolves every relative value against it, the guid too,
so an entry's identity would change whenever the feed moves. Links are resolved here instead,
and guids are kept as written.
"""

from __future__ import annotations

import calendar
import html
import io
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import feedparser

from newsletter.errors import FeedError
from newsletter.feeds import jsonfeed
from newsletter.feeds.entry import RawEntry
from newsletter.feeds.images import from_feedparser

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
JSON_TYPES = frozenset({"application/feed+json", "application/json"})
MAX_ENTRIES = 500  # a feed is a window on recent news; more is an archive dump


def parse(body: bytes, content_type: str) -> tuple[list[RawEntry], int]:
    """The usable entries of a feed (at most MAX_ENTRIES) and how many more were left out."""
    if _is_json(body, content_type):
        entries = jsonfeed.parse(body)
    else:
        entries = _parse_xml(body, content_type)
    return entries[:MAX_ENTRIES], max(len(entries) - MAX_ENTRIES, 0)


# A numeric character reference. One naming a surrogate (&#xD800;) or no character at all
# (&#x110000;) is not XML, and feedparser's fallback parser then fails on it (encoding it, or
# in chr()), taking the whole feed with it.
_CHAR_REF = re.compile(rb"&#([xX][0-9a-fA-F]+|[0-9]+);")
_REPLACEMENT = b"&#xFFFD;"


def _decodable(match: re.Match[bytes]) -> bytes:
    """The reference (in short), or U+FFFD's where it names no character, as a browser does."""
    digits = match.group(1)
    hexadecimal = digits[:1] in (b"x", b"X")
    number = (digits[1:] if hexadecimal else digits).lstrip(b"0") or b"0"
    if len(number) > 8:  # past U+10FFFF either way (and int() refuses 4,300 digits)
        return _REPLACEMENT
    code = int(number, 16 if hexadecimal else 10)
    if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
        return _REPLACEMENT
    return b"&#x%X;" % code  # without its leading zeros, which feedparser's int() counts


def _is_json(body: bytes, content_type: str) -> bool:
    kind = content_type.partition(";")[0].strip().lower()
    if kind in JSON_TYPES:
        return True
    start = body[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    return kind in ("", "text/plain", "application/octet-stream") and start.startswith(b"{")


def _parse_xml(body: bytes, content_type: str) -> list[RawEntry]:
    headers = {"content-type": content_type} if content_type else {}
    body = _CHAR_REF.sub(_decodable, body)
    # A stream, never a str: feedparser would treat a str as a URL or path and open it.
    # Its own sanitizer is off because it unwraps <iframe> or <form> and keeps their content;
    # every HTML field goes through nh3 (clean.sanitize_html) with our policy instead.
    parsed = feedparser.parse(io.BytesIO(body), response_headers=headers, sanitize_html=False)
    entries = [_entry(e) for e in parsed.get("entries") or []]
    entries = [entry for entry in entries if entry.usable()]
    if not entries and not parsed.get("version"):
        raise FeedError("not an RSS, Atom or JSON feed")
    if not entries and parsed.get("bozo"):
        raise FeedError(f"not a valid feed: {parsed.get('bozo_exception')}")
    return entries


def _entry(entry: Mapping[str, Any]) -> RawEntry:
    detail = entry.get("title_detail")
    content, summary = _bodies(entry)
    return RawEntry(
        guid=_text(entry.get("id")),
        title=_text(entry.get("title")),
        title_is_html=isinstance(detail, Mapping) and detail.get("type") in HTML_TYPES,
        link=_text(entry.get("link")),
        author=_author(entry),
        published=_published(entry),
        content=content,
        summary=summary,
        images=from_feedparser(entry),
        categories=_categories(entry),
    )


def _categories(entry: Mapping[str, Any]) -> tuple[str, ...]:
    """RSS <category> and Atom <category term> in feed order (WordPress: categories first)."""
    tags = entry.get("tags")
    terms = (tag.get("term") for tag in tags if isinstance(tag, Mapping)) if tags else ()
    return tuple(term for term in terms if isinstance(term, str) and term.strip())


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _html_of(detail: object, value: str) -> str:
    """The value as HTML: feedparser marks plain-text fields, which must be escaped first."""
    kind = detail.get("type", "") if isinstance(detail, Mapping) else ""
    if kind == "text/plain":
        return f"<p>{html.escape(value, quote=False)}</p>" if value.strip() else ""
    return value


def _author(entry: Mapping[str, Any]) -> str:
    """The author's name; RSS <author> is "email (Name)" and the email is not for the digest."""
    detail = entry.get("author_detail")
    name = detail.get("name") if isinstance(detail, Mapping) else None
    return _text(name) or _text(entry.get("author"))


def _bodies(entry: Mapping[str, Any]) -> tuple[str, str]:
    """Full body (content:encoded, Atom content; HTML preferred) and summary, both as HTML.

    feedparser copies the content into `summary` when a feed has no summary of its own; such a
    copy comes back as "" so that the caller makes a proper excerpt instead.
    """
    parts = [p for p in entry.get("content") or [] if isinstance(p, Mapping) and p.get("value")]
    parts.sort(key=lambda part: part.get("type") == "text/plain")
    content = _text(parts[0].get("value")) if parts else ""
    summary = _text(entry.get("summary"))
    summary_html = "" if summary == content else _html_of(entry.get("summary_detail"), summary)
    return (_html_of(parts[0], content) if parts else ""), summary_html


def _published(entry: Mapping[str, Any]) -> datetime | None:
    """The feed's date in UTC (feedparser already converted it), or None for an undated entry."""
    for key in ("published_parsed", "updated_parsed"):
        value = entry.get(key)
        if value:
            try:
                return datetime.fromtimestamp(calendar.timegm(value), UTC)
            except (TypeError, ValueError, OverflowError, OSError):
                continue
    return None
