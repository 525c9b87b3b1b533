"""Receipt nonces: each signed receipt is taken once (replays are refused)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete
from sqlmodel import Session

from services.dispatch.models import ReceiptNonce

NT = ReceiptNonce.__table__


def claim_nonce(session: Session, provider: str, nonce: str, now: float, keep_s: float) -> bool:
    """Record the nonce; False if this provider's receipt with it was taken already. Nonces
    older than `keep_s` are forgotten (their signatures are stale by then anyway)."""
    return (provider, nonce) in claim_nonces(session, [(provider, nonce)], now, keep_s)


def claim_nonces(session: Session, wanted: Sequence[tuple[str, str]], now: float,
                 keep_s: float) -> set[tuple[str, str]]:
    """claim_nonce for a batch of (provider, nonce) in two statements: the ones taken now (a
    pair given twice is taken once; the caller decides which of the two it was)."""
    session.execute(delete(NT).where(NT.c.seen_at < now - keep_s))
    fresh = list(dict.fromkeys(wanted))
    if not fresh:
        return set()
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    rows = session.execute(
        insert(NT).values([{"provider": p, "nonce": n, "seen_at": now} for p, n in fresh])
        .on_conflict_do_nothing(index_elements=["provider", "nonce"])
        .returning(NT.c.provider, NT.c.nonce))
    return {(p, n) for p, n in rows}

