"""The store wing: `ports.Store` on SQLite or PostgreSQL (SQLAlchemy Core), with its migrations."""

from newsletter.store.sql import SqlStore, open_store

__all__ = ["SqlStore", "open_store"]
