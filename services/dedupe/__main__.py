"""`python -m services.dedupe`: serve dedupe (the default), or `migrate` its database first.
`python -m services.dedupe --help` lists the commands (services/common/entrypoint.py)."""

import sys

from services.common.entrypoint import main
from services.dedupe.models import MODELS
from services.dedupe.settings import DedupeSettings

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], app="services.dedupe.app:create_app", settings=DedupeSettings,
                  models=MODELS))
