"""The staff endpoints every service has: its audit log, and revoking a staff token; and the
one intake mounts alone: issuing a staff token, on record.

A token is revoked in each service that should refuse it (`panui token revoke` calls all three):
the services share no database. A token is issued in one place (intake, the front door the
console and the ingress already reach), so its issuance is in one audit log: who issued it, to
whom, which roles, which incidents, how long, its id — never the token itself.
"""

import time
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from services.common import audit, principals
from services.common.deps import CoordinatorContext, IdPath, staff
from services.common.errors import ApiError, ErrorResponse
from services.common.ids import Id

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


# --- issuing a staff token (intake) -------------------------------------------------------------

issuance_router = APIRouter(prefix="/v1", tags=["staff"],
                            responses={c: {"model": ErrorResponse} for c in (401, 403, 409, 422)})

# A coordinator scoped to some incidents may issue tokens for those incidents only.
TokenIssuer = staff("coordinator", every_incident=False)


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Id  # who the token is for (the audit log's actor when it is used)
    roles: list[Literal[principals.ROLES]] = Field(min_length=1, max_length=len(principals.ROLES))
    incidents: list[Id] | None = Field(default=None, min_length=1, max_length=100)  # None: every one
    ttl_s: int = Field(ge=1, le=principals.MAX_TTL_S)


class TokenClaims(BaseModel):
    iss: str
    sub: str
    roles: list[str]
    incidents: list[str]  # ["*"]: every incident
    iat: int
    exp: int
    jti: str  # the token id, what revocation names


class IssuedToken(BaseModel):
    token: str  # shown once; not stored anywhere
    claims: TokenClaims


def token_issue_act(principal: str, claims: dict) -> audit.Act:
    """The audit entry of an issued token: ids and names, never the token. One incident: its id
    (so a coordinator scoped to it reads the entry); several or all: listed in object_ids."""
    scope = claims["incidents"]
    return audit.Act(principal, "coordinator", "token.issue",
                     scope[0] if len(scope) == 1 and scope[0] != principals.ALL_INCIDENTS else None,
                     (claims["jti"], f"principal:{claims['sub']}",
                      *(f"role:{r}" for r in claims["roles"]),
                      *(f"incident:{i}" for i in scope), f"ttl_s:{claims['exp'] - claims['iat']}"))


@issuance_router.post("/tokens", status_code=201, response_model=IssuedToken,
                      summary="Issue a named staff token (recorded in the audit log)")
async def issue_token(body: TokenRequest, ctx: TokenIssuer) -> IssuedToken:
    key = ctx.runtime.settings.token_signing_key.get_secret_value()
    if not key:
        raise ApiError(409, "token.no_signing_key",
                       "This deployment has no PANUI_TOKEN_SIGNING_KEY: it cannot issue tokens.")
    scope = ctx.caller.incidents
    if scope is not None and (body.incidents is None or not set(body.incidents) <= scope):
        # No escalation: never beyond the issuer's own incidents (whether they exist or not).
        raise ApiError(403, "auth.forbidden", "A token may cover only incidents your own covers.")
    token, claims = principals.mint(key.encode(), body.name, body.roles, body.incidents, body.ttl_s,
                                    int(time.time()))

    def record(session) -> None:  # noqa: ANN001 - the audit entry alone is the transaction
        audit.record(session, token_issue_act(ctx.caller.principal, claims))

    await ctx.db.run(record)
    return IssuedToken(token=token, claims=TokenClaims.model_validate(claims))
