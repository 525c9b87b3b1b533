"""Receipt nonces: each signed receipt is taken once (replays are refused)."""

from __future__ import annotations

from sqlalchemy import delete
from sqlmodel import Session

from services.dispatch.models import ReceiptNonce

NT = ReceiptNonce.__table__


def claim_nonce(session: Session, provider: str, nonce: str, now: float, keep_s: float) -> bool:
    """Record the nonce; False if this provider's receipt with it was taken already. Nonces
    older than `keep_s` are forgotten (their signatures are stale by then anyway)."""
    session.execute(delete(NT).where(NT.c.seen_at < now - keep_s))
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    taken = session.execute(insert(NT).values(provider=provider, nonce=nonce, seen_at=now)
                            .on_conflict_do_nothing(index_elements=["provider", "nonce"])
                            .returning(NT.c.nonce)).first()
    return taken is not None
