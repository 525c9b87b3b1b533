"""`panui token issue|revoke` and `panui audit` — named staff principals and the audit log.

`token issue --url <intake>` asks intake to issue a staff token (`POST /v1/tokens`, as a
coordinator: PANUI_TOKEN), which records the issuance in intake's audit log: a principal's name,
its roles, the incidents it covers (or all), an expiry. Without `--url` it mints the token
offline with the deployment's PANUI_TOKEN_SIGNING_KEY (the key the services verify with): for
bootstrap only (before any coordinator token exists), and recorded NOWHERE — it says so on
stderr. Either way it prints the token once (a bearer token: `Authorization: Bearer <token>`, also what
the coordinator console logs in with) and its id. `token revoke` revokes a token by its id in
every service given (`--url`, repeated), each of which keeps its own revocation list and records
the revocation in its audit log. `audit` prints a service's audit log (ids and names only).

Exit codes: 0 done; 1 a service refused or did not answer; 2 usage.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import httpx
import typer

from services.common import principals
from services.common.settings import ServiceSettings

token_app = typer.Typer(help="Named staff tokens (roles, incidents, expiry).", no_args_is_help=True)

DEFAULT_URLS = ["http://127.0.0.1:8001", "http://127.0.0.1:8002", "http://127.0.0.1:8003"]
TokenOption = Annotated[str, typer.Option(envvar="PANUI_TOKEN", help="A coordinator's bearer token.")]


def _parse_ttl(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
    except (ValueError, IndexError):
        raise typer.BadParameter("a duration like 900, 45m, 8h or 7d") from None


@token_app.command("issue")
def issue(
    name: Annotated[str, typer.Option(help="Who the token is for (shown in the audit log).")],
    role: Annotated[list[str], typer.Option(help=f"One of {', '.join(principals.ROLES)} (repeat).")],
    incident: Annotated[list[str] | None, typer.Option(
        help="An incident the token covers (repeat); none given: --all-incidents is needed.")] = None,
    all_incidents: Annotated[bool, typer.Option(help="Cover every incident.")] = False,
    ttl: Annotated[str, typer.Option(help="Lifetime (e.g. 8h, 7d; at most 30d).")] = "8h",
    url: Annotated[str | None, typer.Option(
        help="Intake's URL: issue it there, on record in its audit log (needs PANUI_TOKEN). "
             "Without it: minted offline, recorded nowhere (bootstrap only).")] = None,
    token: Annotated[str | None, typer.Option(envvar="PANUI_TOKEN",
                                              help="A coordinator's bearer token (with --url).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the token and its claims as JSON.")] = False,
) -> None:
    """Issue a staff token: through intake (--url, audited) or offline (PANUI_TOKEN_SIGNING_KEY)."""
    if bool(incident) == all_incidents:
        typer.echo("Give --incident (one or more) or --all-incidents.", err=True)
        raise typer.Exit(2)
    ttl_s = _parse_ttl(ttl)
    if url is not None:
        issued, claims = _issue_online(url, token, name, role, None if all_incidents else incident, ttl_s)
    else:
        issued, claims = _issue_offline(name, role, None if all_incidents else incident, ttl_s)
    if as_json:
        typer.echo(json.dumps({"token": issued, "claims": claims}))
        return
    expires = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(claims["exp"]))
    typer.echo(f"token id {claims['jti']} for {name} ({', '.join(claims['roles'])}; incidents "
               f"{', '.join(claims['incidents'])}), expires {expires}", err=True)
    typer.echo(issued)


def _issue_online(url: str, token: str | None, name: str, roles: list[str], incidents: list[str] | None,
                  ttl_s: int) -> tuple[str, dict]:
    if not token:
        typer.echo("PANUI_TOKEN (a coordinator's token) is needed to issue a token through --url.",
                   err=True)
        raise typer.Exit(2)
    body = {"name": name, "roles": roles, "incidents": incidents, "ttl_s": ttl_s}
    response = _call("POST", url, "/v1/tokens", token, 201, json=body)
    if response is None:
        raise typer.Exit(1)
    issued = response.json()
    return issued["token"], issued["claims"]


def _issue_offline(name: str, roles: list[str], incidents: list[str] | None,
                   ttl_s: int) -> tuple[str, dict]:
    key = ServiceSettings().token_signing_key.get_secret_value()
    if not key:
        typer.echo("PANUI_TOKEN_SIGNING_KEY is not set: it is the key the services verify tokens with.",
                   err=True)
        raise typer.Exit(2)
    try:
        issued, claims = principals.mint(key.encode(), name, roles, incidents, ttl_s, int(time.time()))
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo("warning: minted offline with the signing key: this issuance is in NO audit log. "
               "Use it to bootstrap only; then issue with --url <intake> (audited).", err=True)
    return issued, claims


@token_app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (jti), as `issue` printed it.")],
    token: TokenOption,
    url: Annotated[list[str] | None, typer.Option(help="A service to revoke it in (repeat).")] = None,
) -> None:
    """Revoke a staff token in every service (each keeps its own list)."""
    failed = False
    for base in url or DEFAULT_URLS:
        response = _call("POST", base, f"/v1/tokens/{token_id}/revocation", token, 200)
        if response is None:
            failed = True
            continue
        typer.echo(f"{base}: {'revoked' if response.json()['revoked'] else 'revoked already'}")
    if failed:
        raise typer.Exit(1)


def audit_command(
    token: TokenOption,
    url: Annotated[str, typer.Option(help="The service whose audit log to read.")] = DEFAULT_URLS[0],
    incident: Annotated[str | None, typer.Option(help="Only this incident's entries.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print a service's audit log: who did which privileged act, to what, when."""
    after = 0
    while True:
        params: dict = {"after_id": after, "limit": 1000}
        if incident:
            params["incident_id"] = incident
        response = _call("GET", url, "/v1/audit", token, 200, params=params)
        if response is None:
            raise typer.Exit(1)
        page = response.json()
        for entry in page["entries"]:
            if as_json:
                typer.echo(json.dumps(entry))
            else:
                typer.echo(f"{entry['at']}  {entry['actor_kind']}:{entry['actor']}  {entry['action']}  "
                           f"{entry['incident_id'] or '-'}  {' '.join(entry['object_ids'])}")
        if page["next_after_id"] is None:
            return
        after = page["next_after_id"]


def _call(method: str, base: str, path: str, token: str | None, expect: int,
          **kwargs) -> httpx.Response | None:
    """The service's answer if it is `expect`; None, said on stderr, if the service refused or
    did not answer (the caller decides whether to go on)."""
    try:
        response = httpx.request(method, f"{base.rstrip('/')}{path}",
                                 headers={"authorization": f"Bearer {token}"}, timeout=30, **kwargs)
    except httpx.HTTPError as exc:
        typer.echo(f"{base}: did not answer ({type(exc).__name__})", err=True)
        return None
    if response.status_code != expect:
        typer.echo(f"{base}: refused ({response.status_code} {_code(response)})", err=True)
        return None
    return response


def _code(response: httpx.Response) -> str:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return "no error body"
