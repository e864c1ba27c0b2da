"""The operator's dashboard at /admin (see `pages.py`)."""

from newsletter.web.admin.pages import AdminContext, routes

__all__ = ["AdminContext", "routes"]
