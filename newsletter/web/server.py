"""One uvicorn configuration for `newsletter serve` and `newsletter run`, and the embedded server.

Client IPs (rate limits, consent records) come from proxy headers, trusted only from the
addresses in FORWARDED_ALLOW_IPS (uvicorn's default: 127.0.0.1, a proxy on the same host).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Generator
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from newsletter.config import Settings
from newsletter.errors import NewsletterError

WEB_SHUTDOWN_GRACE = 5  # seconds open requests get to finish on shutdown


def uvicorn_config(
    settings: Settings, app: Any, host: str | None = None, port: int | None = None, **extra: Any
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host or settings.web.host,
        port=settings.web.port if port is None else port,
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=WEB_SHUTDOWN_GRACE,
        **extra,
    )


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: ours stops the scheduler before the server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def start_embedded(
    settings: Settings, app: ASGIApp, host: str | None = None, port: int | None = None
) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """The web app in the running loop, as `newsletter serve` runs it; raises if it cannot bind.

    `host` and `port` default to `[web]`; the metrics listener passes `[metrics]`'s."""
    config = uvicorn_config(settings, app, host, port, log_config=None)
    server = EmbeddedServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if task.done():
        task.result()  # raises what stopped it (uvicorn exits on a port it cannot bind)
        raise NewsletterError(f"the web server did not start on {config.host}:{config.port}")
    return server, task


def exit_quietly_on_stop_signals() -> None:
    """Turn SIGTERM/SIGINT into a normal exit once uvicorn has shut down gracefully.

    uvicorn stops on these signals and then raises the same signal again under the handler it
    found; with the default handlers that kills the process (status -15) before the store is
    closed. This handler makes it a SystemExit(0) that unwinds through `finally` instead.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _raise_exit)


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
