"""`/v1/console/{dedupe|dispatch}/v1/...`: the console's way to dedupe's and dispatch's
coordinator APIs through intake (the page's only origin), forwarding the caller's bearer token.

Only a coordinator or the call centre may pass (checked here before anything is forwarded;
the service behind checks the forwarded token again, route by route — so a call-centre token
reaches only what dispatch and dedupe let the call centre do: the notice lookup, the
scripted answers, progress and summaries), only GET and POST, only paths under the service's
/v1/, with the query string and a JSON body of at most `console_max_body_bytes`. What comes
back is returned unchanged — status, body and content type (the unreachable CSV keeps its
attachment headers) — and an unreachable service is a 502 `console.upstream_unavailable`.
"""

import re
from typing import Annotated

import httpx
from fastapi import APIRouter, Path, Request, Response

from services.common.deps import staff
from services.common.errors import ApiError, ErrorResponse
from services.common.inbound import body_limit

router = APIRouter(prefix="/v1/console", tags=["console"],
                   responses={c: {"model": ErrorResponse} for c in (401, 404, 502)})

_PATH = re.compile(r"v1/[A-Za-z0-9._~/-]{1,500}")  # no "..", no scheme, no host
_PASSED_HEADERS = ("content-type", "content-disposition", "cache-control")

# The console's two kinds of user: the coordinator, and the call centre (its lookup page).
ConsoleContext = staff("coordinator", "call-centre")
Upstream = Annotated[str, Path(pattern="^(dedupe|dispatch)$", description="dedupe or dispatch")]


async def _forward(ctx: ConsoleContext, request: Request, service: str, path: str) -> Response:
    if not _PATH.fullmatch(path) or ".." in path.split("/"):
        raise ApiError(404, "console.path_unknown", "Only the services' /v1/ APIs can be reached.")
    client: httpx.AsyncClient = ctx.runtime.upstreams[service]
    body = await request.body() if request.method == "POST" else None
    headers = {"authorization": request.headers.get("authorization", ""),
               "x-request-id": getattr(request.state, "request_id", "")}
    if body:
        headers["content-type"] = request.headers.get("content-type", "application/json")
    try:
        answer = await client.request(request.method, f"/{path}", params=request.query_params,
                                      content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise ApiError(502, "console.upstream_unavailable",
                       f"{service} did not answer ({type(exc).__name__}).") from None
    passed = {k: v for k, v in answer.headers.items() if k.lower() in _PASSED_HEADERS}
    return Response(answer.content, status_code=answer.status_code, headers=passed)


@router.get("/{service}/{path:path}", summary="GET a dedupe or dispatch coordinator API",
            response_class=Response)
async def console_get(service: Upstream, path: str, request: Request,
                      ctx: ConsoleContext) -> Response:
    return await _forward(ctx, request, service, path)


@router.post("/{service}/{path:path}", summary="POST to a dedupe or dispatch coordinator API",
             response_class=Response, dependencies=[body_limit("console_max_body_bytes")])
async def console_post(service: Upstream, path: str, request: Request,
                       ctx: ConsoleContext) -> Response:
    return await _forward(ctx, request, service, path)


# The query string goes to the service behind, which refuses parameters it does not take
# (services/common/inbound.py); intake does not know them.
console_get.forwards_query = True  # type: ignore[attr-defined]
console_post.forwards_query = True  # type: ignore[attr-defined]
