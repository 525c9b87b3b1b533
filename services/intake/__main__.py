"""`python -m services.intake`: serve intake (the default), or `migrate` its database first.
`python -m services.intake --help` lists the commands (services/common/entrypoint.py)."""

import sys

from services.common.entrypoint import main
from services.intake.models import MODELS
from services.intake.settings import IntakeSettings

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], app="services.intake.app:create_app", settings=IntakeSettings,
                  models=MODELS))
