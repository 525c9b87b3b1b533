"""The one dependency through which every route gets what it needs: a `Context` with the
service's runtime, its database and the authenticated caller.

    @router.get("/v1/incidents/{incident_id}/progress")
    async def progress(incident_id: IdPath, ctx: CoordinatorContext) -> Progress:
        return await ctx.db.run(store.progress, incident_id)

Who may call is declared by the dependency (`context("coordinator")`, `context("agency")`,
`context()` for unauthenticated callers such as signed provider receipts); the runtime
authenticates the bearer token (`ServiceRuntime.authenticate`). Routes never reach into
`request.app.state` themselves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Generic, Literal, TypeVar

from fastapi import Depends, Path, Request

from services.common.auth import bearer_token
from services.common.errors import ApiError
from services.common.ids import ID_MAX_LENGTH, ID_PATTERN

if TYPE_CHECKING:
    from services.common.db import Database
    from services.common.runtime import ServiceRuntime

CallerKind = Literal["coordinator", "agency"]
R = TypeVar("R", bound="ServiceRuntime")

IdPath = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: a coordinator, or an agency (by its id, never from the request body)."""

    kind: CallerKind
    principal: str  # the agency id, or the coordinator principal's name
    roles: frozenset[str] = field(default_factory=frozenset)

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


_INVALID = {
    "coordinator": "The coordinator token is not valid.",
    "agency": "The API key is not valid or has been revoked.",
}


CALLER_STATE = "panui_caller"  # request.state key: the caller services/common/inbound.py found


def invalid_message(kind: str) -> str:
    return _INVALID[kind]


def get_runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


def context(*allowed: CallerKind) -> Callable[[Request], Awaitable[Context]]:
    """A dependency giving a Context whose caller is one of `allowed` (none: anyone)."""

    async def dependency(request: Request) -> Context:
        runtime = get_runtime(request)
        if not allowed:
            return Context(runtime)
        # Authenticated already, before the body was read (services/common/inbound.py)?
        caller = getattr(request.state, CALLER_STATE, None)
        if caller is None:
            caller = await runtime.authenticate(bearer_token(request))
        if caller is None or caller.kind not in allowed:
            raise ApiError(401, "auth.invalid", _INVALID[allowed[0]],
                           headers={"WWW-Authenticate": "Bearer"})
        return Context(runtime, caller)

    dependency.callers = allowed  # type: ignore[attr-defined]  # read by services/common/inbound.py
    dependency.__name__ = f"context_{'_'.join(allowed) or 'public'}"
    return dependency


PublicContext = Annotated[Context, Depends(context())]
CoordinatorContext = Annotated[Context, Depends(context("coordinator"))]
