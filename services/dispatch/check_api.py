"""HTTP: "is this notice genuine?" — public, no credential, rate-limited (genuine.py).

`POST /v1/notice-checks` (JSON) and the page people reach by typing the address their notice
gives: `GET /check` (the form) and `POST /check` (the form's answer). The page has no links and
no scripts; it is served at the address the notice prints (docs/decisions.md, "Is this notice
genuine?"). Both answers are the same for a wrong date of birth and an unknown reference.
"""

from __future__ import annotations

import html
from datetime import date
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.common.db import DatabaseError
from services.common.deps import PublicContext
from services.common.errors import ApiError, ErrorResponse
from services.common.inbound import body_limit
from services.dispatch import genuine
from services.dispatch.genuine import CheckLimits
from services.dispatch.schemas import NoticeCheck, NoticeCheckResult

router = APIRouter(tags=["public"])

ADVICE_CONFIRMED = ("This notice is genuine. If a message about it asks for passwords, payment "
                    "or codes, it is a scam.")
ADVICE_NOT_CONFIRMED = (
    "We could not confirm this. Check the reference and your date of birth and try again. If it "
    "still does not match, do not reply to the message and do not call any number in it: call "
    "the number on the official website instead.")


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _refuse_when_limited(ctx, request: Request) -> None:  # noqa: ANN001
    """The first line in this process, then the limits shared by every replica (in the
    database, in a transaction of their own: the tokens stay taken whatever the check does).
    The database away: the check could not answer anyway, and the limits are not skipped —
    503, fail closed (docs/decisions.md)."""
    limits: CheckLimits = ctx.runtime.check_limits
    client = _client(request)
    wait = limits.wait_time(client)
    if wait == 0:
        try:
            wait = await ctx.db.run(limits.take, limits.client_key(client))
        except DatabaseError as exc:
            raise ApiError(503, "check.unavailable", "The check is not available just now. Try "
                           "again in a few minutes.", headers={"Retry-After": "30"}) from exc
    if wait > 0:
        raise ApiError(429, "check.rate_limited", "Too many checks. Wait a minute and try again.",
                       headers={"Retry-After": str(max(1, int(wait + 0.999)))})


async def _check(ctx, reference: str, date_of_birth: date) -> genuine.Confirmed | None:  # noqa: ANN001
    return await ctx.db.run(genuine.check, ctx.runtime.sealer, reference, date_of_birth)


def _result(answer: genuine.Confirmed | None) -> NoticeCheckResult:
    if answer is None:
        return NoticeCheckResult(result="not-confirmed", notice=None, advice=ADVICE_NOT_CONFIRMED)
    return NoticeCheckResult(result="confirmed", advice=ADVICE_CONFIRMED, notice={
        "incident_title": answer.incident_title, "sender_name": answer.sender_name,
        "breach_description": answer.breach_description, "agencies": answer.agencies,
        "contact": answer.contact, "version": answer.version})


@router.post(
    "/v1/notice-checks",
    summary="Is this notice genuine? (public: no credential; rate-limited per client and overall)",
    dependencies=[body_limit("check_max_bytes")],
    responses={429: {"model": ErrorResponse, "description": "too many checks; see Retry-After"},
               503: {"model": ErrorResponse, "description": "the check cannot answer now (its "
                     "database is away); see Retry-After"},
               422: {"model": ErrorResponse}},
)
async def notice_check(body: NoticeCheck, request: Request, ctx: PublicContext) -> NoticeCheckResult:
    await _refuse_when_limited(ctx, request)
    return _result(await _check(ctx, body.reference, body.date_of_birth))


# ----------------------------------------------------------------------------------- the page

_PAGE = """<!doctype html>
<html lang="en-NZ"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Check a privacy breach notice</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:1rem auto;padding:0 1rem;
line-height:1.5}}label{{display:block;margin-top:1rem;font-weight:bold}}
input{{font-size:1.1rem;padding:.3rem}}button{{margin-top:1rem;font-size:1.1rem;padding:.4rem 1rem}}
.answer{{border-left:.4rem solid #1d70b8;padding:.5rem 1rem;margin:1rem 0}}</style>
</head><body><main>
<h1>Check a privacy breach notice</h1>
{answer}
<p>Type the reference from your notice and your date of birth. We will never ask for passwords,
payment or codes.</p>
<form method="post" action="/check">
<label for="reference">Reference (for example PAN-7K3Q-9XWD-M2TR)</label>
<input id="reference" name="reference" autocomplete="off" maxlength="40" required>
<fieldset><legend>Date of birth</legend>
<label for="day">Day</label>
<input id="day" name="day" inputmode="numeric" maxlength="2" size="2" required>
<label for="month">Month</label>
<input id="month" name="month" inputmode="numeric" maxlength="2" size="2" required>
<label for="year">Year</label>
<input id="year" name="year" inputmode="numeric" maxlength="4" size="4" required>
</fieldset>
<button type="submit">Check</button>
</form>
</main></body></html>
"""


def _answer_html(result: NoticeCheckResult | None, problem: str | None = None) -> str:
    e = html.escape
    if problem:
        return f'<div class="answer" role="alert"><p>{e(problem)}</p></div>'
    if result is None:
        return ""
    if result.notice is None:
        return f'<div class="answer" role="alert"><h2>Not confirmed</h2><p>{e(result.advice)}</p></div>'
    n = result.notice
    agencies = "".join(
        f"<li>{e(a.name)}: {e(', '.join(a.data_categories) or 'not stated')}</li>" for a in n.agencies)
    hours = f" ({e(n.contact.hours)})" if n.contact.hours else ""
    return (f'<div class="answer" role="status"><h2>This notice is genuine</h2>'
            f"<p>{e(result.advice)}</p><h3>{e(n.incident_title)}</h3>"
            f"<p>From {e(n.sender_name)}. {e(n.breach_description)}</p>"
            f"<p>The information involved:</p><ul>{agencies}</ul>"
            f"<p>Questions: {e(n.contact.organisation)}, call {e(n.contact.phone)}{hours}, or type "
            f"{e(n.contact.web_address)} into your browser.</p></div>")


def _page(answer: str, status: int = 200, headers: dict | None = None) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(answer=answer), status_code=status,
                        headers={"Cache-Control": "no-store", **(headers or {})})


@router.get("/check", response_class=HTMLResponse, summary="The check page (public)")
async def check_page() -> HTMLResponse:
    return _page("")


def _typed_date(form: dict[str, list[str]]) -> date | None:
    try:
        return date(int(form["year"][0]), int(form["month"][0]), int(form["day"][0]))
    except (KeyError, IndexError, ValueError):
        return None


@router.post(
    "/check", response_class=HTMLResponse, dependencies=[body_limit("check_max_bytes")],
    summary="The check page's answer (public; rate-limited per client and overall)",
    responses={400: {"description": "the form was not filled in", "content": {"text/html": {}}},
               429: {"description": "too many checks", "content": {"text/html": {}}},
               503: {"description": "the check cannot answer now", "content": {"text/html": {}}}},
)
async def check_form(request: Request, ctx: PublicContext) -> HTMLResponse:
    try:
        await _refuse_when_limited(ctx, request)
    except ApiError as limited:
        return _page(_answer_html(None, limited.message), limited.status, limited.headers)
    form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=8)
    reference = (form.get("reference") or [""])[0]
    born = _typed_date(form)
    if not reference or len(reference) > 40 or born is None:
        return _page(_answer_html(None, "Type the reference and a real date of birth."), 400)
    return _page(_answer_html(_result(await _check(ctx, reference, born))))
