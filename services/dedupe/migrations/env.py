"""Alembic's environment for dedupe's migrations: only dedupe's tables, its own version table."""

from services.common.migrations import run_env
from services.dedupe.models import MODELS

run_env(MODELS)
