"""A real HTTP server on 127.0.0.1 for feed tests: no mocks, real sockets, real status codes.

Usage from any test module:

    @pytest.fixture
    def server() -> Iterator[FeedServer]:
        with FeedServer() as running:
            yield running

    url = server.add("/feed.xml", body, etag='"v1"')
    server.redirect("/old", "/feed.xml", status=301)

Every request is recorded in `server.requests`, so a test can check headers or that a URL was
(not) fetched. Slow routes wait on an event that `close` sets, so shutdown never hangs.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TypedDict, Unpack, cast

RSS_TYPE = "application/rss+xml; charset=utf-8"


@dataclass(frozen=True)
class Route:
    """What one path answers. `etag`/`last_modified` enable 304 for matching validators."""

    body: bytes = b""
    status: int = 200
    content_type: str = RSS_TYPE
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    etag: str | None = None
    last_modified: str | None = None
    send_length: bool = True


class RouteOptions(TypedDict, total=False):
    """The keyword options of `FeedServer.add`: the fields of `Route` after `body`."""

    status: int
    content_type: str
    headers: Mapping[str, str]
    delay: float
    etag: str | None
    last_modified: str | None
    send_length: bool


@dataclass(frozen=True)
class Request:
    path: str
    headers: Mapping[str, str]
    at: float = field(default_factory=time.monotonic)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close joins handler threads: nothing outlives the test
    owner: FeedServer


class _Handler(BaseHTTPRequestHandler):
    timeout = 10  # a client that connects and says nothing cannot keep the server alive

    def do_GET(self) -> None:
        owner = cast(_Server, self.server).owner
        owner.record(Request(self.path, {k.lower(): v for k, v in self.headers.items()}))
        route = owner.routes.get(self.path.split("?", 1)[0])
        if route is None:
            route = Route(b"not found", status=404, content_type="text/plain")
        if route.delay and owner.stopping.wait(route.delay):
            return
        # The client may have given up (timeout, size cap): that is what those tests want.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._answer(route)

    def _answer(self, route: Route) -> None:
        fresh = _not_modified(
            route, self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since")
        )
        self.send_response(304 if fresh else route.status)
        self.send_header("Content-Type", route.content_type)
        if route.etag:
            self.send_header("ETag", route.etag)
        if route.last_modified:
            self.send_header("Last-Modified", route.last_modified)
        for name, value in route.headers.items():
            self.send_header(name, value)
        body = b"" if fresh else route.body
        if route.send_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: pytest shows failures, not access logs."""


def _not_modified(route: Route, if_none_match: str | None, since: str | None) -> bool:
    """RFC 9110: If-None-Match wins over If-Modified-Since when both are sent."""
    if route.status != 200:
        return False
    if if_none_match is not None:
        tags = [tag.strip() for tag in if_none_match.split(",")]
        return route.etag is not None and (route.etag in tags or "*" in tags)
    if since is None or route.last_modified is None:
        return False
    try:
        return parsedate_to_datetime(route.last_modified) <= parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False


class FeedServer:
    """ThreadingHTTPServer on 127.0.0.1, port chosen by the OS, serving registered routes."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, body: bytes = b"", **options: Unpack[RouteOptions]) -> str:
        """Register what `path` answers (options as in `Route`); returns its full URL."""
        self.routes[path] = Route(body, **options)
        return self.url(path)

    def add_file(self, path: str, file: Path, **options: Unpack[RouteOptions]) -> str:
        return self.add(path, file.read_bytes(), **options)

    def redirect(self, path: str, target: str, status: int = 301) -> str:
        location = target if "://" in target else self.url(target)
        return self.add(path, status=status, headers={"Location": location})

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def hits(self, path: str) -> list[Request]:
        with self._lock:
            return [request for request in self.requests if request.path == path]

    def _serve(self) -> None:
        self._server.serve_forever(poll_interval=0.05)  # shutdown waits at most one poll

    def start(self) -> FeedServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
