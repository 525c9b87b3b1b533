"""Wait until Kafka or PostgreSQL really answers (an open port is not enough).

    python scripts/wait_ready.py kafka 127.0.0.1:9092 [--timeout 60]
    python scripts/wait_ready.py postgres postgresql://user:pw@127.0.0.1:5432/postgres
"""

import argparse
import asyncio
import logging
import sys
import time


async def kafka_ready(bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    from services.common.kafka_client import options_for

    # TLS and SCRAM as the services would use them (PANUI_KAFKA_* in the environment).
    admin = AIOKafkaAdminClient(**options_for(bootstrap), request_timeout_ms=3000)
    try:
        await admin.start()
        await admin.list_topics()
    finally:
        await admin.close()


def postgres_ready(url: str) -> None:
    import psycopg

    with psycopg.connect(url, connect_timeout=3) as conn:
        conn.execute("SELECT 1")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["kafka", "postgres"])
    parser.add_argument("target")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    # Refused connections are expected while the server starts; report only the final outcome.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    deadline = time.monotonic() + args.timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if args.kind == "kafka":
                asyncio.run(kafka_ready(args.target))
            else:
                postgres_ready(args.target)
            return 0
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = exc
            time.sleep(0.5)
    print(f"{args.kind} not ready after {args.timeout:.0f}s: {last_error!r}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
