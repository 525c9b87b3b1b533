"""dispatch_sender: each running sender's lease, on the DATABASE's clock (`now()`), so replicas
whose clocks disagree still agree on whose lease has lapsed.

A sender renews its lease by heartbeat (and in every claim). Its claims ('sending' rows with
`lease_owner` = it) are never recovered while the lease holds, however long a send or the
recording of its answer takes. Once the lease has lapsed another sender recovers them
(store/deliveries.expire_leases) — but only if that sender was itself alive to see the lapse
(`alive_since` ≤ the lapsed `lease_until`), or has been alive for a whole lease since: after a
database outage every lease has lapsed at once, and this gives each owner one lease of time to
reconnect and write the answers it holds before anyone else may send its deliveries again.
A sender that stops gives its lease up (`retire`): it holds nothing any more, so its claims are
recovered at once by any live sender, a newcomer included.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, text
from sqlmodel import Session


def db_now(session: Session) -> str:
    """SQL for the database's current time in epoch seconds (transaction time on PostgreSQL)."""
    if session.get_bind().dialect.name == "postgresql":
        return "CAST(EXTRACT(EPOCH FROM now()) AS DOUBLE PRECISION)"
    return "((julianday('now') - 2440587.5) * 86400.0)"


@dataclass(frozen=True, slots=True)
class Lease:
    owner: str
    lease_until: float  # epoch seconds, database clock
    alive_since: float
    now: float  # the database's clock when it was renewed


def renew(session: Session, owner: str, lease_s: float) -> Lease:
    """Start or extend `owner`'s lease to the database's now + `lease_s`. A lease that had
    lapsed starts a new run of liveness (`alive_since` = now)."""
    now = db_now(session)
    row = session.execute(
        text(
            f"""
            INSERT INTO dispatch_sender (owner, started_at, alive_since, lease_until, heartbeat_at)
            VALUES (:owner, {now}, {now}, {now} + :lease, {now})
            ON CONFLICT (owner) DO UPDATE SET
                alive_since = CASE WHEN dispatch_sender.lease_until < excluded.heartbeat_at
                                   THEN excluded.heartbeat_at ELSE dispatch_sender.alive_since END,
                lease_until = excluded.lease_until,
                heartbeat_at = excluded.heartbeat_at
            RETURNING lease_until, alive_since, heartbeat_at
            """  # noqa: S608 - only the fixed clock expression is interpolated
        ),
        {"owner": owner, "lease": lease_s},
    ).one()
    return Lease(owner, float(row[0]), float(row[1]), float(row[2]))


def retire(session: Session, owner: str) -> None:
    """A sender stopping: forget it if it holds no claims, else let its lease lapse now, so the
    claims it abandons are recovered without waiting out the lease."""
    now = db_now(session)
    # lease_until below heartbeat_at marks a lease given up (a renewal always sets it above):
    # nothing is held in memory any more, so anyone may recover at once (lapsed_owners).
    session.execute(
        text(f"UPDATE dispatch_sender SET lease_until = {now} - 0.001, heartbeat_at = {now}"  # noqa: S608
             " WHERE owner = :owner"),
        {"owner": owner},
    )
    forget_idle(session, [owner])


def lapsed_owners(session: Session, me: str, lease_s: float) -> list[str]:
    """Owners whose claims `me` may recover now (see the module docstring), locked until the
    transaction ends so their heartbeat cannot renew in between. Empty unless `me` holds a
    lease itself: a sender that is not alive recovers nobody."""
    now = db_now(session)
    postgres = session.get_bind().dialect.name == "postgresql"
    rows = session.execute(
        text(
            f"""
            SELECT s.owner FROM dispatch_sender s
            WHERE s.owner <> :me AND s.lease_until < {now}
              AND EXISTS (SELECT 1 FROM dispatch_sender m
                          WHERE m.owner = :me AND m.lease_until >= {now}
                            AND (s.lease_until < s.heartbeat_at
                                 OR m.alive_since <= s.lease_until
                                 OR m.alive_since + :lease <= {now}))
            {"FOR UPDATE OF s SKIP LOCKED" if postgres else ""}
            """  # noqa: S608 - fixed SQL only
        ),
        {"me": me, "lease": lease_s},
    ).scalars()
    return list(rows)


def forget_idle(session: Session, owners: list[str]) -> None:
    """Drop the rows of these owners once they hold no claims."""
    if owners:
        session.execute(
            text(
                "DELETE FROM dispatch_sender WHERE owner IN :owners AND NOT EXISTS ("
                " SELECT 1 FROM delivery WHERE status = 'sending'"
                " AND delivery.lease_owner = dispatch_sender.owner)"
            ).bindparams(bindparam("owners", expanding=True)),
            {"owners": owners},
        )

