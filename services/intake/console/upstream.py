"""The console's answers made of dedupe's and dispatch's parts (the Commissioner's report, an
agency's reconciliation) ask those services the same way and read their refusals the same way:
no answer is a 502 `console.upstream_unavailable`; a 404 — the incident is made at intake and
has not yet reached the service on Kafka — a 409 `<area>.not_ready`; any other refusal a 502
`<area>.upstream_refused`. (The pass-through in console/api.py returns what comes back as it is.)"""

from typing import Any

import httpx

from services.common.errors import ApiError


async def ask_part(client: httpx.AsyncClient, service: str, method: str, path: str, *, area: str,
                   part: str, **kwargs: Any) -> bytes:  # noqa: ANN401 - httpx's request options
    """The body of `service`'s 200 answer to `method path`; `part` names it in a refusal."""
    try:
        answer = await client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise ApiError(502, "console.upstream_unavailable",
                       f"{service} did not answer ({type(exc).__name__}).") from None
    if answer.status_code == 404:
        raise ApiError(409, f"{area}.not_ready",
                       f"{service} does not know this incident yet; try again in a moment.")
    if answer.status_code != 200:
        raise ApiError(502, f"{area}.upstream_refused",
                       f"{service} answered HTTP {answer.status_code} for {part}.")
    return answer.content
