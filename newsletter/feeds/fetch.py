"""Getting a feed's bytes over HTTP: conditional GET with a deadline and a size cap.

Network trouble of any kind becomes a FeedError with a one-line reason, so `collect` can report
the feed and go on with the others.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from newsletter.config.settings import FetchConfig
from newsletter.errors import FeedError
from newsletter.models import FeedState

PERMANENT_REDIRECTS = frozenset({301, 308})
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)


@dataclass(frozen=True)
class Response:
    """The part of an HTTP answer that `collect` needs, read under the size cap."""

    status: int
    body: bytes
    headers: httpx.Headers
    url: str
    moved: bool

    @property
    def reason(self) -> str:
        """The status's standard phrase, not the server's (whose text we do not echo)."""
        return httpx.codes.get_reason_phrase(self.status)


def client(fetch: FetchConfig) -> httpx.AsyncClient:
    headers = {"User-Agent": fetch.user_agent, "Accept": ACCEPT}
    timeout = httpx.Timeout(fetch.timeout)
    return httpx.AsyncClient(headers=headers, timeout=timeout, follow_redirects=True)


async def get(
    client: httpx.AsyncClient, url: str, state: FeedState, fetch: FetchConfig
) -> Response:
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
    return Response(response.status_code, body, response.headers, str(response.url), moved)


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
