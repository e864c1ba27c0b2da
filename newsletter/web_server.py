"""One uvicorn configuration for `newsletter serve` and `newsletter run`.

Client IPs (rate limits, consent records) come from proxy headers, trusted only from the
addresses in FORWARDED_ALLOW_IPS (uvicorn's default: 127.0.0.1, a proxy on the same host).
"""

from __future__ import annotations

from typing import Any

import uvicorn

from .config import Settings

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
