"""Alembic's environment for dispatch's migrations: only dispatch's tables, its own version table."""

from services.common.migrations import run_env
from services.dispatch.models import MODELS

run_env(MODELS)
