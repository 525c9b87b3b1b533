"""Dedupe's schema migrations (Alembic): `python -m services.dedupe migrate`. See
services/common/migrations.py; how to add one: docs/decisions.md ("Schema migrations")."""
