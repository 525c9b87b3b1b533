"""Dispatch's schema migrations (Alembic): `python -m services.dispatch migrate`. See
services/common/migrations.py; how to add one: docs/decisions.md ("Schema migrations")."""
