"""`panui incident close` — the coordinator closes an incident: intake takes no more feeds for
it, and after the retention period (PANUI_PURGE_AFTER_S in intake) every service purges it.

The coordinator token is read from PANUI_COORDINATOR_TOKEN. Exit codes: 0 closed (or closed
before: the first close stands); 1 intake refused (no such incident, bad token); 2 usage.
"""

import os

import httpx
import typer

incident_app = typer.Typer(help="Coordinator: an incident's lifecycle.", no_args_is_help=True)
TOKEN_ENV = "PANUI_COORDINATOR_TOKEN"  # noqa: S105 - the variable's name, not a secret


@incident_app.command("close")
def close(
    incident: str = typer.Argument(..., help="Incident id"),
    url: str = typer.Option("http://127.0.0.1:8001", "--url", help="Intake base URL"),
) -> None:
    """Close INCIDENT; prints when it was closed and when it will be purged."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        typer.echo(f"error: set {TOKEN_ENV} to a coordinator token", err=True)
        raise typer.Exit(2)
    try:
        response = httpx.post(f"{url.rstrip('/')}/v1/incidents/{incident}/close",
                              headers={"authorization": f"Bearer {token}",
                                       "user-agent": "panui-cli"}, timeout=30)
    except httpx.TransportError as exc:
        typer.echo(f"error: intake unreachable ({type(exc).__name__})", err=True)
        raise typer.Exit(1) from None
    if response.status_code != 200:
        try:
            error = response.json()["error"]
            text = f"{error['code']}: {error['message']}"
        except Exception:  # noqa: BLE001 - not our error shape
            text = "unexpected answer"
        typer.echo(f"error: intake answered {response.status_code} {text}", err=True)
        raise typer.Exit(1)
    body = response.json()
    typer.echo(f"{body['incident_id']}: closed at {body['closed_at']}; "
               f"purged after {body['purge_after']}")
