"""Every SMS receipt lost (issue 10): the status lookup still settles each SMS, and every one
the carrier rejected falls back to email exactly once.

A real dispatch process, the real local SMS and SMTP gateways, real Kafka and PostgreSQL. 200
people `sms_else_email`, every other one on a number the carrier rejects; the SMS gateway
records each carrier outcome but drops every receipt callback (`drop_receipts`: a provider
that gave up retrying them while dispatch was down). Before the status lookup: every SMS stays
`sent` and no rejected one ever falls back — those people get nothing. The outcome is read
from the gateways' own logs (what each took, per person per channel) and the delivery rows.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import psycopg
import pytest

from services.common.crypto import Sealer
from services.gateways.sms_server import SmsGateway
from services.gateways.smtp_server import SmtpGateway
from testkit.infra import free_port
from testkit.notices import incident_message, notice_message, person

from .reconcile import Reconciliation
from .stack import (
    RECEIPT_SECRET,
    REPO,
    dispatch_settings,
    healthy,
    publish_to_dispatch,
    subprocess_env,
    until,
)

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.postgres]

PEOPLE = 200


def _deliveries(db_url: str) -> dict[tuple[str, str], str]:
    with psycopg.connect(db_url) as conn:
        return {
            (n, c): s
            for n, c, s in conn.execute("SELECT notice_id, channel, status FROM delivery ORDER BY id")
        }


async def test_with_every_sms_receipt_lost_each_rejected_sms_falls_back_to_email_once(
    service_env, pg_database, tmp_path
):
    maildir, sms_log = tmp_path / "maildir", tmp_path / "sms-primary.jsonl"
    db = pg_database("dispatch")
    async with (
        SmtpGateway(maildir=maildir, webhook_secret=RECEIPT_SECRET) as smtp,
        SmsGateway(callback_secret=RECEIPT_SECRET, message_log=sms_log) as sms,
    ):
        # Asked about 2 s after the gateway took it, again every 2 s while not final, 40 per
        # pass (so the 200 take several passes: the work per pass is bounded).
        settings = dispatch_settings(
            service_env,
            db,
            port=free_port(),
            smtp_port=smtp.port,
            sms_url=sms.url,
            quiet_hours_enabled=False,
            status_lookup_after_s=2.0,
            status_lookup_interval_s=2.0,
            status_lookup_period_s=0.5,
            status_lookup_batch=40,
        )
        sealer = Sealer(settings.data_keys.get_secret_value())
        people = {n: person(n) for n in range(1, PEOPLE + 1)}
        rejected = {n for n in people if n % 2}
        for n in rejected:
            sms.set_outcome(people[n]["mobile"], "failed")
        sms.behaviour.drop_receipts = True  # every receipt lost
        notices = {n: notice_message(sealer, n, people[n]) for n in people}
        want = {
            (notices[n].notice_id, "sms"): "permanent-failure" if n in rejected else "delivered"
            for n in people
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.dispatch"],
            cwd=REPO,  # noqa: S603
            env=subprocess_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await until(lambda: healthy(settings.port), "dispatch up", timeout=180)
            await publish_to_dispatch(settings, incident_message(mode="sms_else_email"), notices.values())

            def settled() -> bool:
                rows = _deliveries(db)
                return all(rows.get(k) == s for k, s in want.items()) and all(
                    rows.get((notices[n].notice_id, "email")) in {"sent", "delivered"} for n in rejected
                )

            try:
                await until(settled, "every SMS settled, every rejected one fallen back", timeout=240)
            except AssertionError:
                rows = _deliveries(db)
                by = Counter((c, s) for (_, c), s in rows.items())
                raise AssertionError(
                    f"not settled: deliveries by (channel, status) "
                    f"{dict(by)}; gateway status lookups "
                    f"{sms.status_lookups}"
                ) from None
        finally:
            proc.kill()
            proc.wait(timeout=10)
        # No receipt ever reached dispatch: what settled them was the lookup.
        assert len(sms.receipts_sent) == PEOPLE
        assert all(r.get("dropped") and r["http_status"] is None for r in sms.receipts_sent)
        assert sms.status_lookups >= PEOPLE
    # From the gateways' own logs: one SMS each, one email for each rejected one, no more.
    recon = Reconciliation.of(
        {notices[n].person_id: {"sms": 1, "email": int(n in rejected)} for n in people},
        {notice.notice_id: notice.person_id for notice in notices.values()},
        maildir=maildir,
        sms_logs=[sms_log],
    )
    recon.assert_exact()
