"""Fetch every configured feed once and turn its entries into clean Articles.

One bad feed must never cost the digest the others, so every failure of a feed (network, HTTP
status, size, broken XML or JSON) becomes a FeedReport with a reason, and `collect` itself
never raises for it. Servers are treated politely: at most `fetch.concurrency` requests at a
time, conditional GET, permanent redirects remembered, a feed that answered 410 Gone is not
asked again.

- `fetch`: the bytes of one feed on the web (imported only when a feed is: httpx is ~80 ms of a
  send's start-up, and the bundled and many real configs read files);
- `parse` and `jsonfeed`: bytes to entries (RSS, Atom, JSON Feed);
- `entry`: an entry to an Article, every field cleaned and capped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from newsletter.clean import link_identity
from newsletter.config.settings import FeedConfig, FetchConfig
from newsletter.errors import FeedError
from newsletter.feeds.entry import FEED_TEXT_BUDGET, HTML_MAX, HTML_MIN, Notes, to_article
from newsletter.feeds.parse import parse
from newsletter.models import Article, FeedBatch, FeedReport, FeedState

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class _FeedResult:
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
    An undated entry is dated `now` here (`dated_by_feed=False`); selection knows better.
    """
    gate = asyncio.Semaphore(fetch.concurrency)

    async def one(feed: FeedConfig) -> _FeedResult:
        async with gate:
            started = time.perf_counter()  # a duration for the metrics, not a time of day
            result = await _collect_one(client, feed, fetch, states.get(feed.url), now)
            seconds = time.perf_counter() - started
            return replace(result, report=replace(result.report, seconds=seconds))

    async with contextlib.AsyncExitStack() as stack:
        # The HTTP client (httpx, its transport, a TLS context) only when a feed is on the web:
        # ~130 ms of a send's start-up otherwise spent for files.
        client = None
        if any(_on_the_web(feed.url) for feed in feeds):
            from newsletter.feeds import fetch as fetching

            client = await stack.enter_async_context(fetching.client(fetch))
        outcomes = await asyncio.gather(*(one(feed) for feed in feeds))
    return FeedBatch(
        articles=_merge(outcome.articles for outcome in outcomes),
        reports=tuple(outcome.report for outcome in outcomes),
        states=tuple(outcome.state for outcome in outcomes if outcome.state is not None),
    )


def _on_the_web(url: str) -> bool:
    """As the config reads it: a scheme is case-insensitive (RFC 3986 3.1), so "HTTPS://..." is
    on the web too, not a file of that name."""
    return urlsplit(url).scheme in ("http", "https")


async def _collect_one(
    client: httpx.AsyncClient | None,
    feed: FeedConfig,
    fetch: FetchConfig,
    previous: FeedState | None,
    now: datetime,
) -> _FeedResult:
    state = previous or FeedState(url=feed.url)
    if state.gone:
        return _failed(feed, "skipped: gone (410) on an earlier run; remove it or reset its state")
    try:
        if _on_the_web(feed.url):
            assert client is not None  # collect makes one when a feed is on the web
            return await _collect_http(client, feed, fetch, state, now)
        body = await asyncio.to_thread(_read_file, Path(feed.url), fetch.max_bytes)
        return _succeeded(feed, body, "", "", now)
    except FeedError as exc:
        return _failed(feed, str(exc))
    except Exception as exc:  # a surprise in one feed must not cost the digest the others
        return _failed(feed, f"unexpected {type(exc).__name__}: {exc}")


def _read_file(path: Path, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as handle:
            body = handle.read(max_bytes + 1)
    except OSError as exc:
        raise FeedError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(body) > max_bytes:
        raise FeedError(f"larger than {max_bytes} bytes")
    return body


def _failed(feed: FeedConfig, reason: str, state: FeedState | None = None) -> _FeedResult:
    return _FeedResult(FeedReport(feed.name, feed.url, ok=False, error=reason), state)


def _succeeded(
    feed: FeedConfig,
    body: bytes,
    content_type: str,
    location: str,
    now: datetime,
    state: FeedState | None = None,
    moved: str = "",
) -> _FeedResult:
    """Parse a feed's body into Articles; the report notes anything the operator should know."""
    entries, left_out = parse(body, content_type)
    notes = Notes(extra_entries=left_out)
    budget = FEED_TEXT_BUDGET
    articles = []
    for entry in entries:
        articles.append(to_article(entry, feed.name, location, now, notes, budget))
        size = len(entry.content) + len(entry.summary)
        notes.short_bodies += size > max(min(budget, HTML_MAX), HTML_MIN)
        budget -= min(size, HTML_MAX)
    note = "; ".join(([moved] if moved else []) + notes.lines())
    report = FeedReport(feed.name, feed.url, True, len(articles), note=note or None)
    return _FeedResult(report, state, tuple(articles))


async def _collect_http(
    client: httpx.AsyncClient, feed: FeedConfig, fetch: FetchConfig, state: FeedState, now: datetime
) -> _FeedResult:
    from newsletter.feeds import fetch as fetching  # loaded by `collect` with the client

    response = await fetching.get(client, state.permanent_url or feed.url, state, fetch)
    moved_to = response.url if response.moved else state.permanent_url
    moved = f"moved permanently to {moved_to}; update the config" if moved_to else ""
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
        report = FeedReport(feed.name, feed.url, ok=True, not_modified=True, note=moved or None)
        return _FeedResult(report, new)
    if response.status >= 300:
        raise FeedError(f"HTTP {response.status} {response.reason}")
    new_state = FeedState(feed.url, headers.get("etag"), headers.get("last-modified"), moved_to)
    content_type = headers.get("content-type", "")
    return _succeeded(feed, response.body, content_type, response.url, now, new_state, moved)


def _merge(groups: Iterable[tuple[Article, ...]]) -> tuple[Article, ...]:
    """Keep the first of articles sharing an id or a link (tracking and fragment aside).

    Then sort newest first. The first is the one from the feed listed first in the config.
    """
    seen: set[tuple[str, str]] = set()
    kept: list[Article] = []
    for articles in groups:
        for article in articles:
            keys = {("id", article.id)}
            if article.link:
                keys.add(("link", link_identity(article.link)))
            if keys & seen:
                continue
            seen |= keys
            kept.append(article)
    return tuple(sorted(kept, key=lambda article: article.published, reverse=True))
