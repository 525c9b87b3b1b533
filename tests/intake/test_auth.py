"""Agency API keys (pure) and the intake runtime that recognises them besides coordinator
tokens (on the real PostgreSQL, without HTTP or Kafka)."""

import hashlib

import pytest

from services.common.crypto import generate_key_spec
from services.common.db import session_scope
from services.common.deps import Caller
from services.intake import auth, store
from services.intake.runtime import IntakeRuntime
from services.intake.settings import IntakeSettings
from tests.conftest import COORDINATOR_TOKEN


def test_a_minted_key_is_shown_once_and_kept_as_a_hash():
    key = auth.mint_key("ag-1")
    key_id, _, secret = key.api_key.removeprefix("pk_").partition(".")
    assert key.api_key.startswith("pk_") and key_id == key.key_id and len(secret) >= 32
    assert key.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in key.secret_sha256
    assert auth.mint_key("ag-1").key_id != key.key_id


def test_a_presented_key_matches_only_its_own_hash():
    key = auth.mint_key("ag-1")
    presented = auth.parse_key(key.api_key)
    assert presented is not None and presented.key_id == key.key_id
    assert auth.secret_matches(presented, key.secret_sha256)
    assert not auth.secret_matches(presented, auth.mint_key("ag-1").secret_sha256)
    tampered = auth.parse_key(key.api_key + "x")
    assert not auth.secret_matches(tampered, key.secret_sha256)


@pytest.mark.parametrize("token", ["nonsense", "pk_nodot", "Pk_abc.def", COORDINATOR_TOKEN])
def test_tokens_not_shaped_like_an_agency_key_are_not_parsed(token):
    assert auth.parse_key(token) is None


@pytest.mark.postgres
async def test_runtime_authenticates_coordinators_and_live_agency_keys(pg_database):
    url = pg_database("intake")
    runtime = IntakeRuntime(IntakeSettings(database_url=url, data_keys=generate_key_spec("t"),
                                           coordinator_tokens=COORDINATOR_TOKEN))
    try:
        key, other = auth.mint_key("ag-1"), auth.mint_key("ag-1")
        with session_scope(runtime.engine) as session:
            store.save_agency(session, "ag-1", "Agency 1")
            session.flush()
            for k in (key, other):
                store.add_api_key(session, "ag-1", k.key_id, k.secret_sha256)

        # The configured token is the bootstrap principal: coordinator of every incident.
        assert await runtime.authenticate(COORDINATOR_TOKEN) == Caller(
            "coordinator", "configured", frozenset({"coordinator"}), None, None)
        assert await runtime.authenticate(key.api_key) == Caller("agency", "ag-1")
        forged = f"pk_{key.key_id}.{other.api_key.partition('.')[2]}"  # a real secret, another key's
        for token in (forged, "pk_0000000000000000.nope", "not-a-token", key.api_key[:-1]):
            assert await runtime.authenticate(token) is None, token

        await runtime.db.run(store.revoke_api_key, "ag-1", key.key_id)
        assert await runtime.authenticate(key.api_key) is None  # revoked: refused at once
        assert await runtime.authenticate(other.api_key) == Caller("agency", "ag-1")
    finally:
        runtime.engine.dispose()
