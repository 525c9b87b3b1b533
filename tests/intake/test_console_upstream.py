"""How the console reads dedupe's and dispatch's answers to its report and reconciliation
(services/intake/console/upstream.py): the same codes for both, each refusal a clear error."""

import httpx
import pytest

from services.common.errors import ApiError
from services.intake.console.upstream import ask_part


def _service(status: int, body: bytes = b"{}") -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url="http://dedupe.test", transport=httpx.MockTransport(
        lambda request: httpx.Response(status, content=body)))


async def test_a_200_answer_is_its_body():
    async with _service(200, b'{"ok": true}') as client:
        assert await ask_part(client, "dedupe", "GET", "/v1/x", area="report",
                              part="its part") == b'{"ok": true}'


@pytest.mark.parametrize(("status", "code", "http"), [
    (404, "reconciliation.not_ready", 409),  # made at intake, not yet arrived there on Kafka
    (500, "reconciliation.upstream_refused", 502),
    (403, "reconciliation.upstream_refused", 502),
])
async def test_a_refusal_is_named_by_area(status, code, http):
    async with _service(status) as client:
        with pytest.raises(ApiError) as caught:
            await ask_part(client, "dedupe", "GET", "/v1/x", area="reconciliation", part="its part")
    assert (caught.value.status, caught.value.code) == (http, code)


async def test_no_answer_is_upstream_unavailable():
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9") as client:
        with pytest.raises(ApiError) as caught:
            await ask_part(client, "dispatch", "GET", "/v1/x", area="report",
                           part="its part of the report")
    assert (caught.value.status, caught.value.code) == (502, "console.upstream_unavailable")
    assert "dispatch did not answer" in str(caught.value.message)
