"""Structured access logs: one JSON line per request with a request id, the method, the route
template, the status and the duration — never the raw path (it holds ids), the query string
or a body. The id comes from the caller's X-Request-ID when it is a plain token (so a proxy's
id follows the request), else is made here; it is sent back on the response."""

import logging
import re
import secrets

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")  # anything else could smuggle data into logs

log = logging.getLogger("panui.access")
_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})  # every few seconds: debug only


def request_id(presented: str | None) -> str:
    if presented and _SAFE_ID.fullmatch(presented):
        return presented
    return secrets.token_hex(8)


def log_request(service: str, request_id: str, method: str, route: str, status: int,
                elapsed_s: float) -> None:
    level = logging.DEBUG if route in _PROBES else logging.INFO
    log.log(level, "request", extra={"service": service, "request_id": request_id, "method": method,
                               "route": route, "status": status,
                               "duration_ms": round(elapsed_s * 1000, 1)})
