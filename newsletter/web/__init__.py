"""The web wing: the subscription app (Starlette) and how it is served (uvicorn)."""

from newsletter.web.app import create_app
from newsletter.web.context import WebStore

__all__ = ["WebStore", "create_app"]
