"""HTTP: an agency's reconciliation rows at dispatch — the notices naming it, their reference and
delivery status per channel (services/common/reconciliation.py), by an agency status ticket."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from services.common.deps import Context, IdPath, PageAfter, PageLimit, context
from services.common.errors import ErrorResponse
from services.common.reconciliation import (
    DispatchNoticePage,
    DispatchNoticeStatus,
    NoticeDelivery,
)
from services.dispatch.store import reconciliation

router = APIRouter(tags=["agency"], responses={c: {"model": ErrorResponse} for c in (401, 404, 422)})
AgencyTicket = Annotated[Context, Depends(context("agency-ticket"))]


@router.get("/v1/incidents/{incident_id}/reconciliation/notices", response_model=DispatchNoticePage,
            summary="Dispatch's part of your reconciliation: the notices naming your agency, their "
            "reference and each channel's delivery status")
async def reconciliation_notices(
    incident_id: IdPath, ctx: AgencyTicket,
    after: PageAfter = "",
    limit: PageLimit = 5000,
) -> DispatchNoticePage:
    agency_id = ctx.caller.agency_id
    outcomes, next_after = await ctx.db.run(reconciliation.notice_outcomes, incident_id, agency_id,
                                            after, limit)
    return DispatchNoticePage(incident_id=incident_id, agency_id=agency_id, next_after=next_after,
                              notices=[DispatchNoticeStatus(
                                  notice_id=o.notice_id, version=o.version, reference=o.reference,
                                  deliveries=[NoticeDelivery(channel=c, status=s) for c, s in o.deliveries])
                                  for o in outcomes])
