"""Alembic's environment for intake's migrations: only intake's tables, its own version table."""

from services.common.migrations import run_env
from services.intake.models import MODELS

run_env(MODELS)
