"""`newsletter serve`: the subscription web app (subscribe, confirm, unsubscribe, archive), with
`/metrics` on its own listener when `[metrics] enabled`; `--workers N` answers with N processes
on the one port (`web/prefork.py`).

Behind a reverse proxy see `web/server.py` for which client IP is used.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from typing import Any

from newsletter.cli.door import Door, command
from newsletter.config import Settings
from newsletter.errors import ConfigError, NewsletterError
from newsletter.mail import dkim_signer
from newsletter.mail.smtp import SmtpTransport
from newsletter.store.engine import parse_url, sqlite_path

log = logging.getLogger(__name__)


def add_commands(commands: Any) -> None:
    """Register this module's commands on the top-level subparsers."""
    serve = command(
        commands,
        "serve",
        help="run the subscription web app: sign-up form, confirm and unsubscribe links, archive",
    )
    serve.add_argument("--host", help="address to listen on (default: [web].host)")
    serve.add_argument(
        "--port", type=int, help="port to listen on, 0 for any free one (default: [web].port)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="answer with N processes on the one port (default 1); with N > 1 set [web] "
        "redis_url, or each process counts the per-IP limit alone",
    )
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(door: Door) -> int:
    settings, args = door.secret_settings(), door.args
    if args.workers != 1:
        return serve_workers(door, settings, args.workers)
    import uvicorn  # the web stack is imported only by the commands that serve it

    from newsletter.web import create_app
    from newsletter.web.metrics import metrics_app
    from newsletter.web.operator import operator_of
    from newsletter.web.server import EmbeddedServer, exit_quietly_on_stop_signals, uvicorn_config

    logging_options = _logging_options(door)
    with door.store() as store:
        transport = SmtpTransport(settings.smtp)
        sign = dkim_signer(settings.dkim, door.clock)
        app = create_app(settings, store, transport, door.clock, sign)
        config = uvicorn_config(
            settings, app, args.host, args.port, log_level="info", **logging_options
        )
        exit_quietly_on_stop_signals()
        operator = operator_of(app)
        if operator is None or operator.metrics is None:
            uvicorn.Server(config).run()
        else:
            metrics = metrics_app(operator.metrics, settings.metrics.token)
            scrape = uvicorn_config(
                settings, metrics, settings.metrics.host, settings.metrics.port, **logging_options
            )
            asyncio.run(_serve_with_metrics(uvicorn.Server(config), EmbeddedServer(scrape)))
    return 0


async def _serve_with_metrics(web: Any, scrape: Any) -> None:
    """The app and /metrics on its own listener; the app's server owns the signals, and the
    metrics listener stops when it does."""
    metrics = asyncio.create_task(scrape.serve())
    try:
        await web.serve()
    finally:
        scrape.should_exit = True
        await metrics


def serve_workers(door: Door, settings: Settings, count: int) -> int:
    """N worker processes on one port, the metrics listener (if on) in the parent."""
    check_workers(settings, count)
    if not settings.web.redis_url:
        limit = settings.web.ip_limit_per_hour
        log.warning(
            "--workers %d without [web] redis_url: each worker counts the per-IP limit alone, "
            "so a client may get up to %d x %d = %d sign-ups an hour",
            count, count, limit, count * limit,
        )  # fmt: skip
    shared = _share_metrics() if settings.metrics.enabled else None
    try:
        return _fork_workers(door, settings, count)
    finally:
        if shared is not None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
            shutil.rmtree(shared, ignore_errors=True)


def check_workers(settings: Settings, count: int) -> None:
    """What more than one process cannot serve, said before anything starts."""
    if count < 1:
        raise ConfigError("--workers", "(command line)", f"a whole number >= 1, got {count}")
    if count == 1:
        return
    if settings.admin.enabled:
        raise ConfigError(
            "--workers",
            "(command line)",
            "one process only while [admin] is on: admin sessions live in the process where "
            "the operator logged in, so another worker would send them back to the login; "
            "serve /admin from a one-worker `newsletter serve` with its own config, or switch "
            "[admin] off here",
        )
    url = parse_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and sqlite_path(url) is None:
        raise ConfigError(
            "--workers",
            "(command line)",
            "one process only with an in-memory store (each process would have its own): "
            "use a SQLite file or PostgreSQL in store.url",
        )


def _fork_workers(door: Door, settings: Settings, count: int) -> int:
    import uvicorn

    from newsletter.web import create_app
    from newsletter.web.metrics import Metrics, metrics_app
    from newsletter.web.prefork import Workers, bind, server_in_thread
    from newsletter.web.server import uvicorn_config

    _check_shared_metrics(settings)
    args, options = door.args, _logging_options(door)
    with door.store():
        pass  # created or migrated here, once, not by N workers at the same moment
    web = bind(uvicorn_config(settings, None, args.host, args.port, log_level="info", **options))
    scrape_socket = None
    if settings.metrics.enabled:
        metrics = settings.metrics
        scrape_socket = bind(uvicorn_config(settings, None, metrics.host, metrics.port, **options))

    def run() -> None:
        if scrape_socket is not None:
            scrape_socket.close()  # the parent's: a worker must not hold that port
        with door.store() as store:
            transport = SmtpTransport(settings.smtp)
            sign = dkim_signer(settings.dkim, door.clock)
            app = create_app(settings, store, transport, door.clock, sign)
            config = uvicorn_config(
                settings, app, args.host, args.port, log_level="info", **options
            )
            uvicorn.Server(config).run(sockets=[web])

    workers = Workers()
    try:
        workers.start(count, run)
    finally:
        web.close()  # the workers have it; the parent answers nothing itself
    if scrape_socket is None:
        return workers.wait()
    try:
        with door.store() as store:
            counts = Metrics(store, settings.name, door.clock)
            app = metrics_app(counts, settings.metrics.token)
            scrape = uvicorn_config(
                settings, app, settings.metrics.host, settings.metrics.port, **options
            )
            with server_in_thread(scrape, scrape_socket):
                return workers.wait()
    except BaseException:
        workers.stop()
        workers.wait()
        raise


def _share_metrics() -> str:
    """A fresh folder for the workers' counts, named before prometheus_client is imported."""
    folder = tempfile.mkdtemp(prefix="newsletter-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    return folder


def _check_shared_metrics(settings: Settings) -> None:
    """prometheus_client picks its kind of counter when it is first imported; imported earlier
    (the command called inside another program), each worker would count alone, unseen."""
    if not settings.metrics.enabled:
        return
    from prometheus_client import values

    if values.ValueClass is values.MutexValue:
        raise NewsletterError(
            "metrics across workers need prometheus_client imported after "
            "PROMETHEUS_MULTIPROC_DIR is set; run `newsletter serve --workers N` as its own process"
        )


def _logging_options(door: Door) -> dict[str, Any]:
    return {"log_config": None} if door.args.log_format == "json" else {}
