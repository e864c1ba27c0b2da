"""Fetch every configured feed once, concurrently, and turn its entries into clean Articles.

One bad feed must never cost the digest the others, so every failure of a feed (network, HTTP
status, size, broken XML) becomes a FeedReport with a reason, and `collect` itself never raises
for it. Servers are treated politely: conditional GET, permanent redirects remembered, a feed
that answered 410 Gone is not asked again.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import html
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import feedparser
import httpx

from . import clean
from .config import FeedConfig, FetchConfig
from .errors import FeedError
from .models import Article, FeedBatch, FeedReport, FeedState

PERMANENT_REDIRECTS = frozenset({301, 308})
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5"


@dataclass(frozen=True)
class _Response:
    """The part of an HTTP answer that `collect` needs, read under the size cap."""

    status: int
    body: bytes
    headers: httpx.Headers
    url: str
    moved: bool


@dataclass(frozen=True)
class _Outcome:
    """One feed's contribution: its report, a state worth saving (if any), its articles."""

    report: FeedReport
    state: FeedState | None = None
    articles: tuple[Article, ...] = ()


async def collect(
    feeds: Sequence[FeedConfig],
    fetch: FetchConfig,
    states: Mapping[str, FeedState],
    now: datetime,
) -> FeedBatch:
    """Fetch and parse all feeds; merge duplicates; newest first.

    `states` maps a configured URL to what that feed told us last time. The batch carries a new
    state for every feed that gave a usable answer (200, 304 or 410), keyed by configured URL.
    """
    headers = {"User-Agent": fetch.user_agent, "Accept": ACCEPT}
    timeout = httpx.Timeout(fetch.timeout)
    async with httpx.AsyncClient(headers=headers, timeout=timeout, follow_redirects=True) as client:
        outcomes = await asyncio.gather(
            *(_collect_one(client, feed, fetch, states.get(feed.url), now) for feed in feeds)
        )
    return FeedBatch(
        articles=_merge(outcome.articles for outcome in outcomes),
        reports=tuple(outcome.report for outcome in outcomes),
        states=tuple(outcome.state for outcome in outcomes if outcome.state is not None),
    )


async def _collect_one(
    client: httpx.AsyncClient,
    feed: FeedConfig,
    fetch: FetchConfig,
    previous: FeedState | None,
    now: datetime,
) -> _Outcome:
    state = previous or FeedState(url=feed.url)
    if state.gone:
        return _failed(feed, "skipped: gone (410) on an earlier run; remove it or reset its state")
    try:
        if feed.url.startswith(("http://", "https://")):
            return await _collect_http(client, feed, fetch, state, now)
        body = await asyncio.to_thread(_read_file, Path(feed.url), fetch.max_bytes)
        return _succeeded(feed, _parse(body, "", "", feed.name, now))
    except FeedError as exc:
        return _failed(feed, str(exc))
    except Exception as exc:  # a surprise in one feed must not cost the digest the others
        return _failed(feed, f"unexpected {type(exc).__name__}: {exc}")


def _failed(feed: FeedConfig, reason: str, state: FeedState | None = None) -> _Outcome:
    return _Outcome(FeedReport(feed.name, feed.url, ok=False, error=reason), state)


def _succeeded(
    feed: FeedConfig, articles: tuple[Article, ...], state: FeedState | None = None, note: str = ""
) -> _Outcome:
    """An ok report; `note` (a moved feed) goes into `error`, the report's only text field."""
    report = FeedReport(feed.name, feed.url, True, len(articles), note=note or None)
    return _Outcome(report, state, articles)


async def _collect_http(
    client: httpx.AsyncClient, feed: FeedConfig, fetch: FetchConfig, state: FeedState, now: datetime
) -> _Outcome:
    response = await _get(client, state.permanent_url or feed.url, state, fetch)
    moved_to = response.url if response.moved else state.permanent_url
    note = f"moved permanently to {moved_to}; update the config" if moved_to else ""
    headers = response.headers
    if response.status == 410:
        return _failed(feed, "gone (410)", replace(state, gone=True, permanent_url=moved_to))
    if response.status == 304:
        new = replace(
            state,
            etag=headers.get("etag", state.etag),
            last_modified=headers.get("last-modified", state.last_modified),
            permanent_url=moved_to,
        )
        report = FeedReport(feed.name, feed.url, ok=True, not_modified=True, note=note or None)
        return _Outcome(report, new)
    if response.status >= 300:
        raise FeedError(f"HTTP {response.status} {httpx.codes.get_reason_phrase(response.status)}")
    content_type = headers.get("content-type", "")
    articles = _parse(response.body, content_type, response.url, feed.name, now)
    etag, modified = headers.get("etag"), headers.get("last-modified")
    return _succeeded(feed, articles, FeedState(feed.url, etag, modified, moved_to), note)


async def _get(
    client: httpx.AsyncClient, url: str, state: FeedState, fetch: FetchConfig
) -> _Response:
    """GET with validators, a total deadline and a size cap; network trouble is a FeedError."""
    headers = {}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    try:
        async with asyncio.timeout(fetch.timeout):
            async with client.stream("GET", url, headers=headers) as response:
                ok = response.status_code < 300
                body = await _read_capped(response, fetch.max_bytes) if ok else b""
    except (TimeoutError, httpx.TimeoutException):
        raise FeedError(f"timed out after {fetch.timeout:g} s") from None
    except httpx.ConnectError as exc:
        raise FeedError(f"cannot connect: {exc}") from None
    except httpx.HTTPError as exc:
        raise FeedError(f"request failed: {type(exc).__name__}: {exc}") from None
    history = response.history
    moved = bool(history) and all(r.status_code in PERMANENT_REDIRECTS for r in history)
    return _Response(response.status_code, body, response.headers, str(response.url), moved)


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """Stream the body and stop at `max_bytes`, so a huge or endless answer costs nothing."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FeedError(f"larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise FeedError(f"larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _read_file(path: Path, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as handle:
            body = handle.read(max_bytes + 1)
    except OSError as exc:
        raise FeedError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(body) > max_bytes:
        raise FeedError(f"larger than {max_bytes} bytes")
    return body


def _parse(
    body: bytes, content_type: str, location: str, source: str, now: datetime
) -> tuple[Article, ...]:
    """Parse with feedparser, which decodes by Content-Type and XML prolog as the RFCs say."""
    headers = {"content-type": content_type} if content_type else {}
    if location:
        headers["content-location"] = location
    # A stream, never a str: feedparser would treat a str as a URL or path and open it.
    # Its own sanitizer is off because it unwraps <iframe> or <form> and keeps their content;
    # every HTML field goes through nh3 (clean.sanitize_html) with our policy instead.
    parsed = feedparser.parse(io.BytesIO(body), response_headers=headers, sanitize_html=False)
    entries = [entry for entry in parsed.get("entries") or [] if _usable(entry)]
    if not entries and not parsed.get("version"):
        raise FeedError("not an RSS or Atom feed")
    if not entries and parsed.get("bozo"):
        raise FeedError(f"not a valid feed: {parsed.get('bozo_exception')}")
    return tuple(_article(entry, source, now) for entry in entries)


def _usable(entry: Mapping[str, Any]) -> bool:
    """An entry with no title, link or body is debris of broken XML, not an article."""
    return any(entry.get(key) for key in ("title", "link", "summary", "content"))


def _article(entry: Mapping[str, Any], source: str, now: datetime) -> Article:
    link = clean.safe_url(_text(entry.get("link")))
    title = _title(entry)
    content_raw, summary_raw = _bodies(entry)
    content_html = clean.clean_html(content_raw or summary_raw, link)
    if summary_raw:
        summary_html = clean.clean_html(summary_raw, link)
    else:
        summary_html = clean.excerpt_html(content_html)
    published, dated = _published(entry, now)
    return Article(
        id=_entry_id(entry, link, title, content_raw or summary_raw),
        title=title,
        link=link,
        author=_author(entry),
        published=published,
        summary_html=summary_html,
        summary_text=clean.summarize(summary_html),
        content_html=content_html,
        source=source,
        highlights=clean.extract_highlights(content_html),
        dated_by_feed=dated,
    )


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
    return clean.fix_text(_text(name) or _text(entry.get("author")))


def _title(entry: Mapping[str, Any]) -> str:
    raw = _text(entry.get("title"))
    detail = entry.get("title_detail")
    is_html = isinstance(detail, Mapping) and detail.get("type") in HTML_TYPES
    title = clean.fix_text(clean.html_to_text(clean.sanitize_html(raw)) if is_html else raw)
    return title or "(untitled)"


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


def _published(entry: Mapping[str, Any], now: datetime) -> tuple[datetime, bool]:
    """The feed's date in UTC (feedparser already converted it), or `now` for an undated entry."""
    for key in ("published_parsed", "updated_parsed"):
        value = entry.get(key)
        if value:
            try:
                return datetime.fromtimestamp(calendar.timegm(value), UTC), True
            except (TypeError, ValueError, OverflowError, OSError):
                continue
    return now, False


def _entry_id(entry: Mapping[str, Any], link: str, title: str, body: str) -> str:
    """guid/id, else link, else a content hash; prefixes keep the three kinds apart."""
    guid = _text(entry.get("id")).strip()
    if guid:
        return guid
    if link:
        return f"link:{link}"
    digest = hashlib.sha256(f"{title}\x00{body}".encode()).hexdigest()
    return f"sha256:{digest}"


def _merge(groups: Iterable[tuple[Article, ...]]) -> tuple[Article, ...]:
    """Keep the first of articles sharing an id or a link, then sort newest first."""
    seen: set[tuple[str, str]] = set()
    kept: list[Article] = []
    for articles in groups:
        for article in articles:
            keys = {("id", article.id)} | ({("link", article.link)} if article.link else set())
            if keys & seen:
                continue
            seen |= keys
            kept.append(article)
    return tuple(sorted(kept, key=lambda article: article.published, reverse=True))
