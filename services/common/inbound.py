"""Input before body: an ASGI middleware that decides about a request before the app reads a
byte of its body.

For the route a request is for, in this order:
1. authentication and authorisation — the callers the route's `context(...)` dependency
   allows (`deps.refusal`): a missing or bad bearer token is a 401, a staff role the route does
   not take a 403, with the body unread (FastAPI would otherwise parse a JSON body, of
   any size, before it runs the dependency);
2. strict query strings: a query parameter the route does not take is a 422;
3. the route's body limit (`body_limit("setting")` in its dependencies, else the service's
   `max_body_bytes`): 413 from Content-Length before reading, and 413 while streaming as soon
   as a chunked body passes it (the app then sees a disconnect and stops reading).

The authenticated caller is kept in the request's state, so the route's dependency does not
look it up again. Errors have the project's body `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fastapi import Depends
from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.auth import bearer_token
from services.common.deps import CALLER_STATE, Access, refusal
from services.common.errors import ApiError, error_body

if TYPE_CHECKING:
    from services.common.runtime import ServiceRuntime

def body_limit(setting: str, code: str = "request.too_large") -> Any:
    """A route's body limit, read from the service's setting `setting` (bytes), and the error
    code of its 413: `@router.post(..., dependencies=[body_limit("max_request_bytes")])`."""

    async def declared() -> None:
        return None

    declared.body_limit_setting = setting  # type: ignore[attr-defined]
    declared.body_limit_code = code  # type: ignore[attr-defined]
    declared.__name__ = f"body_limit_{setting}"
    return Depends(declared)


class BodyTooLarge(Exception):
    """Raised to the app from `receive` once the streamed body passed the route's limit."""


def too_large(limit: int, code: str = "request.too_large") -> ApiError:
    return ApiError(413, code, f"A request to this endpoint may carry at most {limit} bytes.")


class _RouteRules:
    __slots__ = ("access", "limit_code", "limit_setting", "query")

    def __init__(self, access: Access | None, limit_setting: str | None,
                 limit_code: str = "request.too_large", query: frozenset[str] | None = None):
        self.access = access  # None: public
        self.query = query  # the query parameters the route takes; None: not checked
        self.limit_setting = limit_setting
        self.limit_code = limit_code


def _rules(route: Any) -> _RouteRules:
    access: Access | None = None
    setting: str | None = None
    code = "request.too_large"
    top = getattr(route, "dependant", None)
    query = {q.alias for q in top.query_params} if top is not None else None
    stack = list(getattr(top, "dependencies", []))
    while stack:
        dependant = stack.pop()
        query |= {q.alias for q in dependant.query_params}
        call = dependant.call
        access = getattr(call, "access", None) or access
        if getattr(call, "body_limit_setting", None):
            setting, code = call.body_limit_setting, call.body_limit_code
        stack.extend(dependant.dependencies)
    if getattr(getattr(route, "endpoint", None), "forwards_query", False):
        query = None  # a pass-through: the service it forwards to checks its own parameters
    return _RouteRules(access, setting, code, frozenset(query) if query is not None else None)


def document(routes: Iterable[BaseRoute]) -> None:
    """Put the answers the guard gives into each route's OpenAPI responses (before the routers
    are included): 401 where a caller is required, 403 where staff roles are, 404 where an
    incident in the path may be outside a token's scope, 400 and 413 where a body may come."""
    from services.common.errors import ErrorResponse

    for route in routes:
        responses = getattr(route, "responses", None)
        if responses is None:
            continue
        rules = _rules(route)
        wanted = [401] if rules.access else []
        if rules.access and rules.access.roles:
            wanted.append(403)
            if "{incident_id}" in getattr(route, "path", ""):
                wanted.append(404)
        if set(getattr(route, "methods", ())) & {"POST", "PUT", "PATCH"}:
            wanted += [400, 413]
        for status in wanted:
            responses.setdefault(status, {"model": ErrorResponse})


class InboundGuard:
    def __init__(self, app: ASGIApp, runtime: ServiceRuntime, routes: Iterable[BaseRoute]):
        self.app = app
        self.runtime = runtime
        # The service's own routes with what each demands (the routers' routes: the app's
        # router holds them wrapped, its matching is not public).
        self._routes = [(route, _rules(route)) for route in routes]

    def _route_rules(self, scope: Scope) -> tuple[_RouteRules, dict]:
        for route, rules in self._routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return rules, child.get("path_params", {})
        return _RouteRules(None, None), {}  # the app answers 404/405

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rules, path_params = self._route_rules(scope)
        settings = self.runtime.settings
        limit = int(getattr(settings, rules.limit_setting) if rules.limit_setting
                    else settings.max_body_bytes)
        try:
            if rules.access:
                await self._authenticate(scope, rules.access, path_params)
            request = Request(scope)
            if rules.query is not None and (unknown := set(request.query_params) - rules.query):
                # Strict: a misspelt parameter is an error, not silently the default.
                raise ApiError(422, "request.invalid", "Unknown query parameter(s).",
                               details=[{"loc": ["query", name[:64]], "type": "extra_forbidden",
                                         "msg": "Unknown query parameter"} for name in sorted(unknown)[:10]])
            declared = request.headers.get("content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                raise too_large(limit, rules.limit_code) if declared.isdigit() else ApiError(
                    400, "request.invalid", "Content-Length is not a number.")
        except ApiError as refused:
            await _respond(refused, scope, receive, send)
            return
        await self._limited(scope, receive, send, limit, rules.limit_code)

    async def _authenticate(self, scope: Scope, access: Access, path_params: dict) -> None:
        caller = await self.runtime.authenticate(bearer_token(Request(scope)))
        if (refused := refusal(caller, access, path_params)) is not None:
            raise refused
        scope.setdefault("state", {})[CALLER_STATE] = caller

    async def _limited(self, scope: Scope, receive: Receive, send: Send, limit: int,
                       code: str) -> None:
        received = 0
        refused = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        await _respond(too_large(limit, code), scope, None, send)
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 is the answer; whatever the app says after it is dropped
            started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not refused:
                raise


async def _respond(error: ApiError, scope: Scope, receive: Receive | None, send: Send) -> None:
    response = JSONResponse(error_body(error.code, error.message), error.status, error.headers)

    async def nothing() -> Message:
        return {"type": "http.disconnect"}

    await response(scope, receive or nothing, send)
