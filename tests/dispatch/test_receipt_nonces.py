"""Receipt nonces are taken once per provider, in the database (so across restarts and worker
processes), and forgotten once their signatures are stale."""

import pytest

from services.common.db import make_engine, session_scope
from services.dispatch.store.receipts import claim_nonce

pytestmark = [pytest.mark.postgres]

NONCE = "n0nce-0123456789abcdef"


def test_a_nonce_is_taken_once_per_provider_until_forgotten(pg_database):  # noqa: ANN001
    engine = make_engine(pg_database("dispatch"))
    try:
        def claim(provider: str, now: float) -> bool:
            with session_scope(engine) as session:
                return claim_nonce(session, provider, NONCE, now, keep_s=600)

        assert claim("sms-primary", 1000.0) is True
        assert claim("sms-primary", 1001.0) is False  # a replay, even from another "worker"
        assert claim("smtp", 1001.0) is True  # another provider's nonce space
        assert claim("sms-primary", 1500.0) is False
        assert claim("sms-primary", 1700.0) is True  # forgotten after keep_s
    finally:
        engine.dispose()
