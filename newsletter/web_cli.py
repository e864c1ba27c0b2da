"""`newsletter serve`: the subscription web app (subscribe, confirm, unsubscribe, archive).

Behind a reverse proxy see `web_server.py` for which client IP is used.
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType
from typing import Any

from .config import load_settings
from .store import open_store
from .transport import SmtpTransport


def add_commands(commands: Any) -> None:
    """Register this module's commands on the top-level subparsers."""
    serve = commands.add_parser(
        "serve",
        help="run the subscription web app: sign-up form, confirm and unsubscribe links, archive",
    )
    serve.add_argument("--host", help="address to listen on (default: [web].host)")
    serve.add_argument(
        "--port", type=int, help="port to listen on, 0 for any free one (default: [web].port)"
    )
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn  # the web stack is imported only by the commands that serve it

    from .web import create_app
    from .web_server import uvicorn_config

    settings = load_settings(args.config)
    store = open_store(settings.database_url)
    try:
        app = create_app(settings, store, SmtpTransport(settings.smtp))
        config = uvicorn_config(settings, app, args.host, args.port, log_level="info")
        _exit_quietly_on_stop_signals()
        uvicorn.Server(config).run()
    finally:
        store.close()
    return 0


def _exit_quietly_on_stop_signals() -> None:
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
