"""SMS sends cut off by the sender's send deadline must not use up the gateway's connections.

`make chaos` at 20k records (session 7): 178 of 2,482 SMS sent when the settle ran out, email
flowing to the end. On a loaded box the sender's deadline (`asyncio.timeout(send_deadline_s)`)
cut httpx requests at every stage; a cut in connection set-up or hand-over leaves the connection
counted as in use in httpcore's pool for good, so after enough cuts every SMS ended in
pool-timeout ("unsent", retried later — forever) while nothing was logged. The provider is
built as dispatch builds it (providers/factory.py) against the real local SMS gateway."""

import asyncio
import random
import time

import pytest

from services.common.messages import DeliveryStatus as S
from services.dispatch.delivery_state import reference_for
from services.dispatch.providers.base import SmsMessage
from services.dispatch.providers.factory import build_sms_provider
from services.dispatch.settings import DispatchSettings
from services.gateways.sms_server import SmsGateway

pytestmark = pytest.mark.slow  # ~30 s: a 20 s storm of cut sends


def _sms(n: int) -> SmsMessage:
    return SmsMessage(reference_for(f"NOTICE-{n:05d}", "sms"), f"+6421{n:07d}",
                      "Example Health: notice emailed. Ref PAN-TEST")


async def _busy_loop(stop: asyncio.Event) -> None:
    """A loaded event loop: callbacks run late (rendering, decoding, the GIL held by threads)."""
    rng = random.Random(7)
    while not stop.is_set():
        time.sleep(rng.choice((0.0, 0.002, 0.01, 0.03)))  # noqa: ASYNC251 - blocking on purpose
        await asyncio.sleep(0.002)


async def test_sends_cut_by_the_deadline_leave_every_connection_usable():
    async with SmsGateway(callback_secret="x") as gw:  # noqa: S106 - test gateway
        settings = DispatchSettings(sms_primary_url=gw.url, sms_http_connections=4,
                                    sms_timeout_s=2.0, receipt_callback_base_url="")
        sms = build_sms_provider(settings)
        rng = random.Random(11)
        cut = 0

        async def send_within(message: SmsMessage, deadline: float) -> None:
            nonlocal cut
            try:
                async with asyncio.timeout(deadline):  # as the sender's send deadline cuts it
                    await sms.send(message)
            except TimeoutError:
                cut += 1

        stop = asyncio.Event()
        busy = asyncio.create_task(_busy_loop(stop))
        try:
            n, until = 0, time.monotonic() + 20
            while time.monotonic() < until:  # rounds of sends, each cut somewhere along its way
                deadlines = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
                await asyncio.gather(*(send_within(_sms(n + k), rng.choice(deadlines))
                                       for k in range(40)))
                n += 40
        finally:
            stop.set()
            await busy
        assert cut > 500, f"only {cut} sends were cut: the scenario proved nothing"

        # The load is over and the gateway answers at once: every SMS must go out now.
        results = [await sms.send(_sms(100_000 + k)) for k in range(12)]
        await sms.close()
        details = [r.detail for r in results]
        assert [r.status for r in results] == [S.SENT] * 12, details
