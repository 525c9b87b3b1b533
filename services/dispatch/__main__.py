"""`python -m services.dispatch`: serve dispatch (the default), or `migrate` its database first.
`python -m services.dispatch --help` lists the commands (services/common/entrypoint.py)."""

import sys

from services.common.entrypoint import main
from services.dispatch.models import MODELS
from services.dispatch.settings import DispatchSettings

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], app="services.dispatch.app:create_app", settings=DispatchSettings,
                  models=MODELS))
