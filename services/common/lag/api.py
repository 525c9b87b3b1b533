"""`GET /v1/ops/lag`: every consumer group's lag and status in Burrow's shape (see burrow.py).

A factory rather than a module-level router: the monitor is handed in explicitly by the service
that runs it (the front door), and so is who may call — the coordinator by default, an ops role
later — without the route reaching into app state.

    app.include_router(lag_router(monitor))
    app.include_router(lag_router(monitor, dependencies=[Depends(context("coordinator"))]))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Query, params

from services.common.deps import context
from services.common.errors import ApiError, ErrorResponse
from services.common.lag.burrow import LagResponse, lag_response
from services.common.lag.monitor import LagMonitor
from services.common.lag.sampler import LagUnavailable


def lag_router(monitor: LagMonitor, *, dependencies: Sequence[params.Depends] | None = None,
               max_age_s: float | None = None) -> APIRouter:
    """The router for `/v1/ops/lag`. `dependencies` decide who may call (default: a
    coordinator token); `max_age_s` how old a report may be before a request samples anew
    (default: the monitor's interval)."""
    chosen = list(dependencies) if dependencies is not None else [Depends(context("coordinator"))]
    # Tagged as the coordinator's (who may call it today): "ops" marks the unauthenticated
    # probe routes that the ingress never exposes.
    router = APIRouter(tags=["coordinator"], dependencies=chosen)

    @router.get(
        "/v1/ops/lag", summary="Consumer group lag and status (Burrow's shape)",
        responses={401: {"model": ErrorResponse}, 503: {"model": ErrorResponse}})
    async def consumer_lag(
        # A list, never null: a query string has no null (an anyOf with null made schema-valid
        # requests look invalid to the fuzzer). Empty: every group.
        group: Annotated[list[str], Query(
            description="Only these groups (full id, or the name without the deployment prefix)",
            max_length=50)] = [],  # noqa: B006 - FastAPI copies query defaults
    ) -> LagResponse:
        try:
            report = await monitor.report(max_age_s)
        except LagUnavailable:
            raise ApiError(503, "kafka.unavailable",
                           "Kafka did not answer; consumer lag is not known right now.") from None
        return lag_response(report, group, monitor.sampler.prefix)

    return router
