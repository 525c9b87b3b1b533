"""Client CPU of dispatch's database work per notice, without Kafka or gateways: store the
notices (record_notices), claim them (tracking.claim, as the sender does), record "sent" for
each (record_results), in batches as the service does them, on the local PostgreSQL.

    .venv/bin/python -m benchmarks.dispatch.store_path [--notices 5000] [--batch 500]

CPU is this process's (time.process_time): the client side the service pays, not the
server's. Run it beside another checkout's copy (PYTHONPATH) to compare two versions alike.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from benchmarks import support
from services.common.crypto import Sealer, generate_key_spec
from services.common.db import make_engine, session_scope
from services.common.messages import DeliveryStatus
from services.dispatch import tracking
from services.dispatch.incidents import IncidentBook
from services.dispatch.policy import RetryPolicy
from services.dispatch.store import incidents
from services.dispatch.tracking import SendOutcome
from testkit.notices import incident_message, notice_message, person


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notices", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args(argv)
    name, url = support.create_database("bench_store_path", "dispatch")
    engine = make_engine(url)
    sealer = Sealer(generate_key_spec("bench-store"))
    book = IncidentBook()
    now = datetime.now(UTC)
    retry = RetryPolicy()
    message = incident_message("bench-incident")
    try:
        with session_scope(engine) as session:
            incidents.upsert_incident(session, message, message.to_bytes())
        book.remember(message)
        notices = [notice_message(sealer, i, person(i, email=bool(i % 4), mobile=not i % 4,
                                                    address=False), incident_id="bench-incident")
                   for i in range(args.notices)]
        spent = {"store": 0.0, "claim": 0.0, "record": 0.0}
        for start in range(0, len(notices), args.batch):
            batch = notices[start:start + args.batch]
            cpu = time.process_time()
            with session_scope(engine) as session:
                tracking.record_notices(session, book, [(n, n.to_bytes()) for n in batch], None, now)
            spent["store"] += time.process_time() - cpu
            cpu = time.process_time()
            with session_scope(engine) as session:
                claimed = tracking.claim(session, "bench", 60.0, now,
                                         {"email": args.batch, "sms": args.batch})
            spent["claim"] += time.process_time() - cpu
            cpu = time.process_time()
            outcomes = [SendOutcome(c.id, c.attempt, DeliveryStatus.SENT, "gw", "ref", "smtp-250",
                                    channel=c.channel) for c in claimed]
            with session_scope(engine) as session:
                tracking.record_results(session, book, outcomes, retry, None, now, "bench")
            spent["record"] += time.process_time() - cpu
    finally:
        engine.dispose()
        support.drop_database(name)
    n = len(notices)
    print(f"dispatch store path, {n:,} notices in batches of {args.batch} (client CPU per notice):")
    for step, seconds in spent.items():
        print(f"  {step:<8} {seconds / n * 1000:6.3f} ms")
    print(f"  {'total':<8} {sum(spent.values()) / n * 1000:6.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
