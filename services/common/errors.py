"""One error shape for every HTTP API: {"error": {"code": "...", "message": "...", ...}}.

Codes are stable and machine-readable; messages are for humans and never echo personal data.
"""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

# The framework's own refusals (a body that is not JSON, no such route, a method the route does
# not take), in the project's error shape.
_HTTP_CODES = {400: "request.invalid", 404: "route.not_found", 405: "method.not_allowed"}


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None,
                 details: list[dict] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.details = details


def error_body(code: str, message: str, details: list[dict] | None = None) -> dict:
    error: dict = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"error": error}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.details), exc.status, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "request.refused")
        message = "The request body is not valid JSON." if exc.status_code == 400 else (
            "No such endpoint." if exc.status_code == 404 else str(exc.detail)[:200])
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette's Allow names the first route on the path only; a path served by
            # several routes (GET and POST apart) takes all of theirs.
            headers["Allow"] = ", ".join(_allowed_methods(_request))
        return JSONResponse(error_body(code, message), exc.status_code, headers or None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Location and reason only: the offending input may be personal data.
        details = [{"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": e.get("msg")}
                   for e in exc.errors()]
        return JSONResponse(error_body("request.invalid", "The request is not valid.", details), 422)


def _allowed_methods(request: Request) -> list[str]:
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)
