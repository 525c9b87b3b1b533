"""`panui keys`: rotating a purpose's key-encryption key (KEK) in one service's database.

Rotation: put the new `kid:key` first in the purpose's keyring (PANUI_RECORDS_KEYS /
PANUI_NOTICES_KEYS) of every service holding it, keeping the old one after it, and restart;
then run `panui keys rewrap --service <name>` against each of those services' databases (same
environment as the service). It re-wraps every incident data key still under another KEK, in
batches, each committed on its own: interrupted, it is simply run again (what is left is exactly
what is still under an old KEK). The data keys themselves, and so every sealed value in rows,
outbox and Kafka, stay as they are. When `panui keys status` shows nothing under the old KEK in
every service, remove it from the keyrings and restart.
"""

from collections import Counter

import typer
from sqlalchemy import func, select
from sqlmodel import Session

from services.common import keystore
from services.common.crypto import Sealer
from services.common.db import make_engine
from services.common.settings import ServiceSettings

keys_app = typer.Typer(help="Key-encryption keys: status and re-wrapping after a rotation.",
                       no_args_is_help=True)
SERVICES = ("intake", "dedupe", "dispatch")


def _settings(service: str) -> ServiceSettings:
    if service == "intake":
        from services.intake.settings import IntakeSettings
        return IntakeSettings()
    if service == "dedupe":
        from services.dedupe.settings import DedupeSettings
        return DedupeSettings()
    if service == "dispatch":
        from services.dispatch.settings import DispatchSettings
        return DispatchSettings()
    raise typer.BadParameter(f"service must be one of {', '.join(SERVICES)}")


def status(settings: ServiceSettings) -> dict[str, Counter]:
    """purpose → live data keys per KEK id (destroyed keys are not counted)."""
    engine = make_engine(settings.resolved_database_url())
    t = keystore.DataKey
    try:
        with Session(engine) as session:
            rows = session.execute(select(t.purpose, t.kek_id, func.count()).where(
                t.wrapped.is_not(None)).group_by(t.purpose, t.kek_id)).all()
    finally:
        engine.dispose()
    counts: dict[str, Counter] = {}
    for purpose, kek_id, n in rows:
        counts.setdefault(purpose, Counter())[kek_id] = n
    return counts


def rewrap(settings: ServiceSettings, batch_size: int = 500,
           on_batch=None) -> dict[str, int]:  # noqa: ANN001
    """Re-wrap every live data key of the service's purposes under the purpose's active KEK;
    purpose → how many were re-wrapped. One transaction per batch (resumable)."""
    engine = make_engine(settings.resolved_database_url())
    done: dict[str, int] = {}
    try:
        for purpose, spec in settings.keyring_specs().items():
            kek = Sealer(spec)
            done[purpose] = 0
            while True:
                with Session(engine) as session, session.begin():
                    n = keystore.rewrap_batch(session, kek, purpose, batch_size)
                done[purpose] += n
                if on_batch is not None and n:
                    on_batch(purpose, done[purpose])
                if n < batch_size:
                    break
    finally:
        engine.dispose()
    return done


@keys_app.command("status")
def status_command(service: str = typer.Option(..., help="intake, dedupe or dispatch")) -> None:
    """Live data keys per purpose and KEK id in the service's database (no key material)."""
    counts = status(_settings(service))
    if not counts:
        typer.echo("no live data keys")
    for purpose, per_kek in sorted(counts.items()):
        for kek_id, n in sorted(per_kek.items()):
            typer.echo(f"{purpose}\t{kek_id}\t{n}")


@keys_app.command("rewrap")
def rewrap_command(service: str = typer.Option(..., help="intake, dedupe or dispatch"),
                   batch_size: int = typer.Option(500, min=1)) -> None:
    """Re-wrap the service's incident data keys under the first KEK of each keyring."""
    settings = _settings(service)
    try:
        done = rewrap(settings, batch_size,
                      lambda purpose, n: typer.echo(f"{purpose}: {n} re-wrapped so far"))
    except ValueError as exc:  # a keyring that cannot unwrap a stored key: say which, no value
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    for purpose, n in done.items():
        active = Sealer(settings.keyring_specs()[purpose]).active_id
        typer.echo(f"{purpose}: {n} data keys re-wrapped under {active}")
