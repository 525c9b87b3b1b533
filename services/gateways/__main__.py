"""`python -m services.gateways smtp|sms [options]`: the local simulated gateways (development,
tests, and a dispatch pod's dry-run sidecars: rehearsals are sent to them, never to a provider)."""

import sys

from services.gateways import sms_server, smtp_server

GATEWAYS = {"smtp": smtp_server.main, "sms": sms_server.main}


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in GATEWAYS:
        sys.exit(f"usage: python -m services.gateways {{{'|'.join(GATEWAYS)}}} [options]")
    GATEWAYS[argv[0]](argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
