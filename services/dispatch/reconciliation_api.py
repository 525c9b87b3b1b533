"""HTTP: an agency's reconciliation rows at dispatch — the notices naming it, their reference and
delivery status per channel (services/common/reconciliation.py), by an agency status ticket."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from services.common.deps import Context, IdPath, PageAfter, PageLimit, context, page_response
from services.common.errors import ErrorResponse
from services.common.reconciliation import (
    DispatchNoticeList,
    DispatchNoticeLookup,
    DispatchNoticePage,
    DispatchNoticeStatus,
    NoticeDelivery,
)
from services.dispatch.store import reconciliation
from services.dispatch.store.reconciliation import NoticeOutcome

router = APIRouter(tags=["agency"], responses={c: {"model": ErrorResponse} for c in (401, 404, 422)})
AgencyTicket = Annotated[Context, Depends(context("agency-ticket"))]


@router.get("/v1/incidents/{incident_id}/reconciliation/notices", response_model=DispatchNoticePage,
            summary="Dispatch's part of your reconciliation: the notices naming your agency, their "
            "reference and each channel's delivery status")
async def reconciliation_notices(
    incident_id: IdPath, ctx: AgencyTicket,
    after: PageAfter = "",
    limit: PageLimit = 5000,
) -> Response:
    agency_id = ctx.caller.agency_id
    outcomes, next_after = await ctx.db.run(reconciliation.notice_outcomes, incident_id, agency_id,
                                            after, limit)
    return page_response(DispatchNoticePage(incident_id=incident_id, agency_id=agency_id,
                                            next_after=next_after, notices=_statuses(outcomes)))


@router.post("/v1/incidents/{incident_id}/reconciliation/notices/lookup",
             response_model=DispatchNoticeList,
             summary="The same for the notices you name (ids from dedupe's part): those naming your "
             "agency; others are left out as if there were none")
async def reconciliation_notice_lookup(
    incident_id: IdPath, ctx: AgencyTicket, body: DispatchNoticeLookup,
) -> Response:
    # A query, not a change: POST only because up to 10,000 ids do not fit in a URL.
    agency_id = ctx.caller.agency_id
    outcomes = await ctx.db.run(reconciliation.notices_by_id, incident_id, agency_id, body.notice_ids)
    return page_response(DispatchNoticeList(incident_id=incident_id, agency_id=agency_id,
                                            notices=_statuses(outcomes)))


def _statuses(outcomes: list[NoticeOutcome]) -> list[DispatchNoticeStatus]:
    return [DispatchNoticeStatus(notice_id=o.notice_id, version=o.version, reference=o.reference,
                                 deliveries=[NoticeDelivery(channel=c, status=s) for c, s in o.deliveries])
            for o in outcomes]
