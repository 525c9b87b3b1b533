"""Token buckets in the service's database, shared by all its replicas (services/common/
ratelimit.py has the in-process ones). One row per (limit, key): `tokens` banked at
`updated_at`, epoch seconds on the DATABASE's clock, so replicas whose clocks disagree still
agree on the refill.

`take` refills and takes in ONE statement (INSERT … ON CONFLICT DO UPDATE … RETURNING), the
same SQL on PostgreSQL and SQLite but for the clock expression: the row lock (PostgreSQL) or
the write lock (SQLite) makes concurrent takes from any replica queue on the row, so no two
see the same tokens. Under READ COMMITTED a waiter re-evaluates against the row its
predecessor left, with its own, possibly earlier, clock reading: the elapsed time is clamped
at 0 and `updated_at` never moves back, so tokens are never counted twice.

Keys are never personal data: callers pass a keyed digest (a client's address), an id (an
agency's) or a constant. Every service has the table (services/common/migrations.py's
SHARED_MODELS), like the outbox.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, Float, text
from sqlmodel import Field, Session, SQLModel


class RateBucket(SQLModel, table=True):
    __tablename__ = "rate_bucket"

    limit_name: str = Field(primary_key=True, max_length=32)
    key: str = Field(primary_key=True, max_length=128)  # a keyed digest, an id: never PII
    tokens: float = Field(sa_column=Column(Float, nullable=False))
    updated_at: float = Field(sa_column=Column(Float, nullable=False, index=True))
    granted: bool  # whether the last take got its tokens (what RETURNING reports)


@dataclass(frozen=True, slots=True)
class Limit:
    """`rate` tokens a second, up to `burst` banked, shared by every replica."""

    name: str
    rate: float
    burst: float

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")

    @property
    def full_after_s(self) -> float:
        """Seconds after which an untouched bucket is full again (limits nothing)."""
        return self.burst / self.rate


def _now(session: Session) -> str:
    """SQL for the database's clock in epoch seconds: the statement's wall clock on PostgreSQL
    (not the transaction's start), SQLite's 'now' (fixed within a statement)."""
    if session.get_bind().dialect.name == "postgresql":
        return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"
    return "((julianday('now') - 2440587.5) * 86400.0)"


# The old row's tokens refilled up to now (`excluded.updated_at` is this take's clock reading).
_REFILLED = ("CASE WHEN rate_bucket.tokens + :rate * (CASE WHEN excluded.updated_at > "
             "rate_bucket.updated_at THEN excluded.updated_at - rate_bucket.updated_at ELSE 0 END)"
             " > :burst THEN :burst ELSE rate_bucket.tokens + :rate * (CASE WHEN "
             "excluded.updated_at > rate_bucket.updated_at THEN excluded.updated_at - "
             "rate_bucket.updated_at ELSE 0 END) END")


def take(session: Session, limit: Limit, key: str, tokens: float = 1) -> float:
    """Take `tokens` from `limit`'s bucket for `key` and return 0.0, or take nothing and return
    the seconds until they would be there. One round trip; commit soon after (the row stays
    locked until then)."""
    if tokens > limit.burst:
        raise ValueError("cannot take more tokens than the burst size")
    now = _now(session)
    row = session.execute(
        text(
            f"""
            INSERT INTO rate_bucket (limit_name, key, tokens, updated_at, granted)
            VALUES (:name, :key, :burst - :cost, {now}, TRUE)
            ON CONFLICT (limit_name, key) DO UPDATE SET
                tokens = CASE WHEN {_REFILLED} >= :cost THEN {_REFILLED} - :cost
                              ELSE {_REFILLED} END,
                granted = CASE WHEN {_REFILLED} >= :cost THEN TRUE ELSE FALSE END,
                updated_at = CASE WHEN excluded.updated_at > rate_bucket.updated_at
                                  THEN excluded.updated_at ELSE rate_bucket.updated_at END
            RETURNING tokens, granted
            """  # noqa: S608 - only the fixed clock and refill expressions are interpolated
        ),
        {"name": limit.name, "key": key, "rate": limit.rate, "burst": float(limit.burst),
         "cost": float(tokens)},
    ).one()
    left, granted = float(row[0]), bool(row[1])
    return 0.0 if granted else max((tokens - left) / limit.rate, 1e-6)


def forget_full(session: Session, limits: list[Limit]) -> int:
    """Delete the buckets that have refilled (they limit nothing: a new row starts full); how
    many. Keeps the table to the clients seen in the last burst/rate seconds."""
    now = _now(session)
    gone = 0
    for limit in limits:
        gone += session.execute(
            text(f"DELETE FROM rate_bucket WHERE limit_name = :name"  # noqa: S608
                 f" AND updated_at < {now} - :full"),
            {"name": limit.name, "full": limit.full_after_s},
        ).rowcount
    return gone
