"""Alembic's script directory for the store: `env.py` and one file per revision in `versions/`."""
