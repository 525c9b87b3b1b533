"""The staff endpoints every service has: its audit log, and revoking a staff token.

A token is revoked in each service that should refuse it (`panui token revoke` calls all three):
the services share no database.
"""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from services.common import audit
from services.common.deps import CoordinatorContext, IdPath, staff
from services.common.errors import ErrorResponse

router = APIRouter(prefix="/v1", tags=["staff"],
                   responses={c: {"model": ErrorResponse} for c in (401, 403, 422)})

AuditReader = staff("coordinator", "ops", every_incident=False)


class AuditEntryView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    at: datetime
    actor: str
    actor_kind: str
    action: str
    incident_id: str | None
    object_ids: list[str]


class AuditPage(BaseModel):
    entries: list[AuditEntryView]
    next_after_id: int | None  # pass as after_id for the next page; None: no more now


class Revocation(BaseModel):
    token_id: str
    revoked: bool  # False: it was revoked already


@router.get("/audit", response_model=AuditPage,
            summary="The audit log: every privileged act (who, what, which incident, when)")
async def audit_log(ctx: AuditReader,
                    incident_id: Annotated[str | None, Query(min_length=1, max_length=128,
                                                             pattern=r"^[A-Za-z0-9._:\-]+$")] = None,
                    after_id: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> AuditPage:
    # A principal scoped to some incidents sees only their entries.
    rows = await ctx.db.run(audit.entries, ctx.caller.incidents, incident_id, after_id, limit)
    entries = [AuditEntryView.model_validate(r) for r in rows]
    return AuditPage(entries=entries, next_after_id=entries[-1].id if len(entries) == limit else None)


@router.post("/tokens/{token_id}/revocation", response_model=Revocation,
             summary="Revoke a staff token (by its id, `jti`) in this service")
async def revoke(token_id: IdPath, ctx: CoordinatorContext) -> Revocation:
    revoked = await ctx.audited(lambda done: ctx.act("token.revoke", None, token_id) if done else None,
                                audit.revoke_token, token_id, ctx.caller.principal)
    return Revocation(token_id=token_id, revoked=revoked)
