"""Intake's schema migrations (Alembic): `python -m services.intake migrate`. See
services/common/migrations.py; how to add one: docs/decisions.md ("Schema migrations")."""
