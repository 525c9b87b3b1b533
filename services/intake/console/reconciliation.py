"""Agency reconciliation for the coordinator's console: what became of one agency's records —
in counts, a page of rows by source_record_id, or the whole CSV — the very rows `panui feed
status` gives the agency itself (services/common/reconciliation.py: the same `merge_pages` over
the same three parts, the same `write_status_csv`).

Dedupe and dispatch answer reconciliation rows only to an agency status ticket, so intake,
which mints those, mints one for the agency the coordinator asks about (one incident, a few
minutes, never shown to the browser) and audits it as `reconciliation.view` by the coordinator,
naming the agency and the view. Intake's own part is read from its store. The rows carry the
agency's source_record_ids, outcomes and notice references — nothing personal, nothing about
another agency but a count — and only a coordinator may ask (an agency asks through its own
key, for its own rows only).

The merge pulls pages as it goes (sync, in a worker thread), each page fetched on the event
loop: memory stays about a page per part whatever the agency's size. A service that does not
answer is a 502 `console.upstream_unavailable`; one that has not had the incident yet (it
travels on Kafka), a 409 `reconciliation.not_ready`; one that refuses otherwise, a 502
`reconciliation.upstream_refused`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from services.common.deps import CoordinatorContext, IdPath, PageAfter, page_response
from services.common.errors import ApiError, ErrorResponse
from services.common.reconciliation import (
    PAGE_LIMIT_MAX,
    DedupeRecordPage,
    DispatchNoticeList,
    DispatchNoticeStatus,
    IntakeRecordStatus,
    OutOfOrder,
    ReconciliationSummary,
    StatusRow,
    StatusRowPage,
    merge_pages,
    status_csv,
    summarise,
)
from services.intake import store
from services.intake.api import issue_status_ticket
from services.intake.console.upstream import ask_part

router = APIRouter(prefix="/v1/incidents", tags=["console"],
                   responses={c: {"model": ErrorResponse} for c in (401, 404, 409, 502)})

PAGE = 5000  # what each part is asked for at a time (as `panui feed status` asks)
RowLimit = Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)]


class _Parts:
    """One agency's reconciliation rows, pulled by `merge_pages` from a worker thread: intake's
    part from its own store, dedupe's and dispatch's over HTTP with the ticket, each call run
    on the event loop the route is on."""

    def __init__(self, ctx: CoordinatorContext, request: Request, incident_id: str, agency_id: str,
                 ticket: str):
        self.ctx, self.incident_id, self.agency_id = ctx, incident_id, agency_id
        self.loop = asyncio.get_running_loop()
        self.headers = {"authorization": f"Bearer {ticket}",
                        "x-request-id": getattr(request.state, "request_id", "")}
        self.path = f"/v1/incidents/{incident_id}/reconciliation"

    def _wait(self, call: Coroutine[Any, Any, Any]) -> Any:  # noqa: ANN401 - whatever call gives
        return asyncio.run_coroutine_threadsafe(call, self.loop).result()

    async def _ask(self, service: str, method: str, path: str, **kwargs: Any) -> bytes:  # noqa: ANN401
        return await ask_part(self.ctx.runtime.upstreams[service], service, method, path,
                              area="reconciliation", part="its part", headers=self.headers, **kwargs)

    def _intake_pages(self, after: str, size: int) -> Iterator[list[IntakeRecordStatus]]:
        while after is not None:
            outcomes, after = self._wait(self.ctx.db.run(
                store.record_outcomes, self.incident_id, self.agency_id, after, size))
            yield [IntakeRecordStatus(**o._asdict()) for o in outcomes]

    def _dedupe_pages(self, after: str, size: int) -> Iterator[list]:
        while after is not None:
            page = DedupeRecordPage.model_validate_json(self._wait(self._ask(
                "dedupe", "GET", f"{self.path}/records", params={"after": after, "limit": size})))
            after = page.next_after
            yield page.records

    def _notices_of(self, notice_ids: list[str]) -> list[DispatchNoticeStatus]:
        return DispatchNoticeList.model_validate_json(self._wait(self._ask(
            "dispatch", "POST", f"{self.path}/notices/lookup", json={"notice_ids": notice_ids}))).notices

    def rows(self, after: str = "", size: int = PAGE) -> Iterator[StatusRow]:
        """The agency's rows after `after`, in source_record_id (code point) order."""
        try:
            yield from merge_pages(self._intake_pages(after, size), self._dedupe_pages(after, size),
                                   self._notices_of)
        except OutOfOrder as exc:
            raise ApiError(502, "reconciliation.out_of_order", str(exc)) from None


async def _parts(ctx: CoordinatorContext, request: Request, incident_id: str, agency_id: str,
                 view: str) -> _Parts:
    if await ctx.db.run(store.agency_access, incident_id, agency_id) is not store.Access.OK:
        raise ApiError(404, "agency.not_enrolled", "No such agency in this incident.")
    ticket, _ = await issue_status_ticket(ctx, incident_id, agency_id, "reconciliation.view",
                                          agency_id, view)
    return _Parts(ctx, request, incident_id, agency_id, ticket)


@router.get("/{incident_id}/agencies/{agency_id}/reconciliation", response_model=ReconciliationSummary,
            summary="An agency's reconciliation in counts: records by outcome, merged, and notified "
            "by channel and delivery status")
async def agency_reconciliation(incident_id: IdPath, agency_id: IdPath, request: Request,
                                ctx: CoordinatorContext) -> ReconciliationSummary:
    parts = await _parts(ctx, request, incident_id, agency_id, "summary")
    return await asyncio.to_thread(lambda: summarise(incident_id, agency_id, parts.rows()))


@router.get("/{incident_id}/agencies/{agency_id}/reconciliation/records", response_model=StatusRowPage,
            summary="A page of an agency's reconciliation rows, by source_record_id (what its "
            "`panui feed status` CSV holds)")
async def agency_reconciliation_records(incident_id: IdPath, agency_id: IdPath, request: Request,
                                        ctx: CoordinatorContext, after: PageAfter = "",
                                        limit: RowLimit = 100) -> Response:
    parts = await _parts(ctx, request, incident_id, agency_id, "records")
    rows = await asyncio.to_thread(lambda: list(itertools.islice(parts.rows(after, limit), limit + 1)))
    page, more = rows[:limit], len(rows) > limit
    return page_response(StatusRowPage(incident_id=incident_id, agency_id=agency_id, rows=page,
                                       next_after=page[-1].source_record_id if more else None))


@router.get("/{incident_id}/agencies/{agency_id}/reconciliation.csv", response_class=Response,
            summary="An agency's reconciliation as the CSV it downloads itself (formula-safe)")
async def agency_reconciliation_csv(incident_id: IdPath, agency_id: IdPath, request: Request,
                                    ctx: CoordinatorContext) -> Response:
    parts = await _parts(ctx, request, incident_id, agency_id, "csv")
    body = await asyncio.to_thread(lambda: status_csv(parts.rows()))
    return Response(body, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{incident_id}-{agency_id}-status.csv"',
        "Cache-Control": "no-store"})
