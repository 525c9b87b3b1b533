"""The one dependency through which every route gets what it needs: a `Context` with the
service's runtime, its database and the authenticated caller.

    @router.get("/v1/incidents/{incident_id}/progress")
    async def progress(incident_id: IdPath, ctx: CoordinatorContext) -> Progress:
        return await ctx.db.run(store.progress, incident_id)

Who may call is declared by the dependency: staff roles (`staff("coordinator", "reviewer")`,
`CoordinatorContext`), agencies by their API key (`context("agency")`, intake) or by a status
ticket intake minted for one incident (`context("agency-ticket")`, dedupe's and dispatch's
reconciliation routes), or anyone (`context()`, for callers
such as signed provider receipts). The runtime authenticates the bearer token
(`ServiceRuntime.authenticate`); `refusal` decides 401/403/404 from the caller's kind, roles and
incident scope. Routes never reach into `request.app.state` themselves. A privileged act is
written with its audit entry in one transaction: `await ctx.audited(act_of, store_fn, *args)`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Generic, Literal, TypeVar

from fastapi import Depends, Path, Query, Request, Response
from pydantic import BaseModel

from services.common import audit
from services.common.audit import Act
from services.common.auth import bearer_token
from services.common.errors import ApiError
from services.common.ids import ID_MAX_LENGTH, ID_PATTERN
from services.common.principals import ROLES
from services.common.reconciliation import PAGE_LIMIT_MAX

if TYPE_CHECKING:
    from services.common.db import Database
    from services.common.runtime import ServiceRuntime

CallerKind = Literal["coordinator", "agency"]
R = TypeVar("R", bound="ServiceRuntime")
T = TypeVar("T")

IdPath = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
# The cursor paging each service's reconciliation part takes (services/common/reconciliation.py).
PageAfter = Annotated[str, Query(max_length=128, description="the previous page's next_after")]
PageLimit = Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)]


def page_response(page: BaseModel) -> Response:
    """A page of up to 10,000 rows serialised once by pydantic: returning the model would have
    FastAPI dump it, validate it again and encode it (~10x the time). The route still declares
    it as `response_model` for the OpenAPI document."""
    return Response(page.model_dump_json(), media_type="application/json")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: a coordinator, or an agency (by its id, never from the request body)."""

    kind: CallerKind
    principal: str  # the agency id, or the coordinator principal's name
    roles: frozenset[str] = field(default_factory=frozenset)
    incidents: frozenset[str] | None = None  # a staff token's incidents; None: every incident
    token_id: str | None = None  # a named staff token's id (what revocation names)
    ticket: bool = False  # an agency status ticket, not the agency's API key (principals.py)

    @property
    def agency_id(self) -> str:
        if self.kind != "agency":
            raise AttributeError("only an agency caller has an agency id")
        return self.principal


@dataclass(frozen=True, slots=True)
class Context(Generic[R]):
    runtime: R
    caller: Caller | None = None

    @property
    def db(self) -> Database:
        return self.runtime.db

    def act(self, action: str, incident_id: str | None = None, *object_ids: str) -> Act:
        """The privileged act the caller is doing, for the audit log."""
        return Act(self.caller.principal, self.caller.kind, action, incident_id, object_ids)

    async def audited(self, act_of: Callable[[T], Act | None], fn: Callable[..., T], *args) -> T:
        """`await ctx.db.run(fn, *args)`, recording `act_of(result)` (unless None: nothing
        happened) in the audit log in the same transaction."""

        def work(session):  # noqa: ANN001, ANN202
            result = fn(session, *args)
            if (act := act_of(result)) is not None:
                audit.record(session, act)
            return result

        return await self.db.run(work)


_INVALID = {
    "coordinator": "The coordinator token is not valid.",
    "agency": "The API key is not valid or has been revoked.",
}
STAFF_ROLES = frozenset(ROLES)

CALLER_STATE = "panui_caller"  # request.state key: the caller services/common/inbound.py found


def invalid_message(kind: str) -> str:
    return _INVALID["agency" if kind == "agency" else "coordinator"]


def get_runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


@dataclass(frozen=True, slots=True)
class Access:
    """Who may call a route: agencies and/or staff holding one of `roles`. `every_incident`:
    a route without an incident in its path needs a token for every incident."""

    agency: bool
    roles: frozenset[str]
    every_incident: bool = True
    agency_ticket: bool = False


def refusal(caller: Caller | None, access: Access, path_params: dict) -> ApiError | None:
    """Why `caller` may not call a route with these path parameters, or None.
    401: no valid credential, or the wrong kind (an agency key on a staff route);
    403: a staff principal without the role, or scoped to some incidents on a route for all;
    404: an incident outside the principal's scope, exactly as a missing one (no oracle)."""
    kind = "agency" if access.agency or access.agency_ticket else "coordinator"
    unauthenticated = ApiError(401, "auth.invalid", invalid_message(kind),
                               headers={"WWW-Authenticate": "Bearer"})
    if caller is None:
        return unauthenticated
    if caller.kind == "agency":
        if not (access.agency_ticket if caller.ticket else access.agency):
            return unauthenticated  # a ticket is no API key, and a key no ticket
        if caller.incidents is not None and path_params.get("incident_id") not in caller.incidents:
            return ApiError(404, "incident.not_found", "No such incident.")
        return None
    if not access.roles:
        return unauthenticated
    if not caller.roles & access.roles:
        return ApiError(403, "auth.forbidden", "Your role may not do this.")
    incident_id = path_params.get("incident_id")
    if caller.incidents is not None:
        if incident_id is not None and incident_id not in caller.incidents:
            return ApiError(404, "incident.not_found", "No such incident.")
        if incident_id is None and access.every_incident:
            return ApiError(403, "auth.forbidden", "This needs a token for every incident.")
    return None


def context(*allowed: str, every_incident: bool = True) -> Callable[[Request], Awaitable[Context]]:
    """A dependency giving a Context whose caller is one of `allowed` — "agency" and/or staff
    roles (principals.ROLES) — or anyone when none is given."""
    unknown = set(allowed) - STAFF_ROLES - {"agency", "agency-ticket"}
    if unknown:
        raise ValueError(f"unknown callers {sorted(unknown)}")
    access = Access("agency" in allowed, frozenset(allowed) & STAFF_ROLES, every_incident,
                    agency_ticket="agency-ticket" in allowed)

    async def dependency(request: Request) -> Context:
        runtime = get_runtime(request)
        if not allowed:
            return Context(runtime)
        # Authenticated already, before the body was read (services/common/inbound.py)?
        caller = getattr(request.state, CALLER_STATE, None)
        if caller is None:
            caller = await runtime.authenticate(bearer_token(request))
        if (refused := refusal(caller, access, dict(request.path_params))) is not None:
            raise refused
        return Context(runtime, caller)

    dependency.access = access if allowed else None  # type: ignore[attr-defined]  # inbound.py
    dependency.__name__ = f"context_{'_'.join(allowed) or 'public'}".replace("-", "_")
    return dependency


def staff(*roles: str, every_incident: bool = True) -> type[Context]:
    """`ctx: staff("coordinator", "reviewer")`: a route staff with one of these roles may call."""
    return Annotated[Context, Depends(context(*roles, every_incident=every_incident))]  # type: ignore[return-value]


PublicContext = Annotated[Context, Depends(context())]
CoordinatorContext = staff("coordinator")
# Every staff role may read progress and summaries.
AnyStaffContext = staff(*ROLES)
