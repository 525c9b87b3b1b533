"""A burst of SMS delivery receipts queued past the signature tolerance (issue 10, the chaos
20k run): every receipt ends applied, and every failed SMS falls back to email.

A real dispatch process and the real local SMS gateway. The gateway holds every receipt until
all the SMS are recorded `sent`, then posts them all at once (50 connections, 5 tries with
fresh signatures, here 1 s per try), as after a batch of sends on a loaded box. The signature
tolerance is made 2 s for the test (`receipt_tolerance_s`) so the queue outlives it. Before:
receipts were signed before they had a connection, so a receipt that waited for one was stale
when sent — refused 401 on every try until the gateway gave up, the delivery left `sent`, a
failed one never fell back. The outcome is read from the gateway's own log of
its tries and from the delivery rows, not from timings.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict

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

pytestmark = pytest.mark.slow

PEOPLE = 600
TOLERANCE_S = 2


def _deliveries(db_url: str) -> dict[tuple[str, str], str]:
    with psycopg.connect(db_url) as conn:
        return {(n, c): s for n, c, s in conn.execute(
            "SELECT notice_id, channel, status FROM delivery ORDER BY id")}


def _final_tries(gw: SmsGateway) -> dict[str, int | None]:
    """message id -> the HTTP status of its last receipt try, once the gateway stopped trying
    (answered 2xx, or every try used)."""
    tries: dict[str, list[int | None]] = defaultdict(list)
    for sent in gw.receipts_sent:
        tries[sent["id"]].append(sent["http_status"])
    return {i: t[-1] for i, t in tries.items()
            if (t[-1] is not None and t[-1] < 300) or len(t) >= gw.receipt_attempts}


async def test_a_burst_of_receipts_past_the_signature_tolerance_is_applied_and_failed_ones_fall_back(
    service_env, pg_database, tmp_path
):
    maildir, sms_log = tmp_path / "maildir", tmp_path / "sms-primary.jsonl"
    db = pg_database("dispatch")
    async with SmtpGateway(maildir=maildir, webhook_secret=RECEIPT_SECRET) as smtp, \
            SmsGateway(callback_secret=RECEIPT_SECRET, message_log=sms_log) as sms:
        settings = dispatch_settings(service_env, db, port=free_port(), smtp_port=smtp.port,
                                     sms_url=sms.url, quiet_hours_enabled=False,
                                     sms_timeout_s=30.0, retry_max_attempts=60)
        sealer = Sealer(settings.data_keys.get_secret_value())
        people = {n: person(n) for n in range(1, PEOPLE + 1)}
        failing = {n for n in people if n % 2}  # every other number: the carrier rejects it
        for n in failing:
            sms.set_outcome(people[n]["mobile"], "failed")
        notices = {n: notice_message(sealer, n, people[n]) for n in people}
        sms.behaviour.hold_receipts = True
        # Its receipt tries give up after 1 s (15 s by default): on this small burst, what a
        # loaded box does to a bigger one — tries abandoned while dispatch is still at them.
        sms.receipt_timeout_s = 1.0
        env = {**subprocess_env(settings), "PANUI_RECEIPT_TOLERANCE_S": str(TOLERANCE_S)}
        proc = subprocess.Popen([sys.executable, "-m", "services.dispatch"], cwd=REPO,  # noqa: S603
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            await until(lambda: healthy(settings.port), "dispatch up", timeout=180)
            await publish_to_dispatch(settings, incident_message(mode="sms_else_email"), notices.values())
            sms_rows = {(notices[n].notice_id, "sms") for n in people}
            await until(lambda: all(_deliveries(db).get(k) == "sent" for k in sms_rows),
                         "every SMS recorded sent", timeout=300)
            sms.behaviour.hold_receipts = False  # the burst
            await until(lambda: len(_final_tries(sms)) == PEOPLE,
                         "the gateway done with every receipt", timeout=600)
            final = _final_tries(sms)
            unanswered = {i: code for i, code in final.items() if code is None or code >= 300}
            by_code: dict[int | None, int] = defaultdict(int)
            for sent in sms.receipts_sent:
                by_code[sent["http_status"]] += 1
            # The gateway's own log: each receipt's last try was taken.
            assert not unanswered, (f"{len(unanswered)} of {PEOPLE} receipts given up by the "
                                    f"gateway; tries by answer: {dict(by_code)}")
            # ... and it was applied: delivered, or failed and fallen back to email.
            want = {}
            for n in people:
                notice_id = notices[n].notice_id
                want[(notice_id, "sms")] = "permanent-failure" if n in failing else "delivered"
            await until(lambda: _fallen_back(db, notices, failing, want),
                         "failed SMS fallen back to email", timeout=300)
        finally:
            proc.kill()
            proc.wait(timeout=10)
        recon = Reconciliation.of(
            {notices[n].person_id: {"sms": 1, "email": int(n in failing)} for n in people},
            {notice.notice_id: notice.person_id for notice in notices.values()},
            maildir=maildir, sms_logs=[sms_log])
        recon.assert_exact()


def _fallen_back(db: str, notices: dict, failing: set[int], want: dict) -> bool:
    rows = _deliveries(db)
    if any(rows.get(k) != status for k, status in want.items()):
        return False
    return all(rows.get((notices[n].notice_id, "email")) in {"sent", "delivered"} for n in failing)




