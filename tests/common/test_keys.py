"""Incident data keys on real PostgreSQL: one per incident and purpose, wrapped by the purpose's
KEK; services holding one purpose cannot open the other's; a re-send after a KEK rotation is
still a no-op (the fingerprint follows the incident's data key, not the first KEK); and after a
rotation and `panui keys rewrap` (interrupted and resumed) the old KEK can go."""

import io

import pytest
from sqlalchemy import select
from sqlmodel import Session

from services.cli import keys as keys_cli
from services.common import keystore
from services.common.crypto import (
    NOTICES,
    RECORDS,
    KeyDestroyed,
    KeyUnavailable,
    Sealer,
    SealError,
    Vault,
    envelope_key_id,
    generate_key_spec,
)
from services.common.db import make_engine, session_scope
from services.common.keystore import DatabaseKeySource, DataKey
from services.common.messages import IncidentKeyMessage, record_sealing_context
from services.common.outbox import OutboxMessage
from services.common.settings import ServiceSettings
from services.dispatch.settings import DispatchSettings
from services.intake import feeds
from services.intake.models import AffectedRecord
from services.intake.parsing import iter_feed
from services.intake.settings import IntakeSettings
from testkit.factories import affected_record, ndjson

pytestmark = pytest.mark.postgres

PERSONAL = {"nhi": "ZZZ0016", "given_names": "Aroha", "family_name": "Testperson"}
CTX = record_sealing_context("inc-1", "ag-1", "r1", 1)


@pytest.fixture
def engine(pg_database):  # noqa: ANN001, ANN201
    engine = make_engine(pg_database("intake"))
    yield engine
    engine.dispose()


def _vault(engine, **keks: str) -> Vault:  # noqa: ANN001
    return Vault({p: Sealer(spec) for p, spec in keks.items()}, DatabaseKeySource(engine))


def test_one_data_key_per_incident_and_purpose_announced_in_the_same_transaction(engine):
    spec = generate_key_spec("rec1")
    vault = _vault(engine, records=spec)
    a = vault.seal(PERSONAL, CTX, incident_id="inc-1", purpose=RECORDS)
    b = vault.seal(PERSONAL, CTX, incident_id="inc-1", purpose=RECORDS)
    other = vault.seal(PERSONAL, CTX, incident_id="inc-2", purpose=RECORDS)
    assert a.startswith("v2.") and "Aroha" not in a
    assert envelope_key_id(a) == envelope_key_id(b) != envelope_key_id(other)
    with Session(engine) as session:
        rows = session.scalars(select(DataKey)).all()
        announced = [IncidentKeyMessage.model_validate_json(m.payload)
                     for m in session.scalars(select(OutboxMessage)).all()]
    assert sorted(r.incident_id for r in rows) == ["inc-1", "inc-2"]
    assert {r.kek_id for r in rows} == {"rec1"}
    assert sorted((m.incident_id, m.key_id) for m in announced) == sorted(
        (r.incident_id, r.key_id) for r in rows)
    # A fresh process (empty cache) opens it from the store; another context does not open.
    fresh = _vault(engine, records=spec)
    assert fresh.open(a, CTX) == PERSONAL
    with pytest.raises(SealError):
        fresh.open(a, record_sealing_context("inc-1", "ag-1", "r1", 2))


def test_dispatch_holds_no_records_key_and_cannot_open_an_affected_record(engine, pg_database):
    records, notices = generate_key_spec("rec1"), generate_key_spec("not1")
    intake = _vault(engine, records=records)
    sealed = intake.seal(PERSONAL, CTX, incident_id="inc-1", purpose=RECORDS)
    # Dispatch's settings hold the notices purpose only, whatever else the environment has.
    settings = DispatchSettings(records_keys=records, notices_keys=notices)
    assert set(settings.keyring_specs()) == {NOTICES}
    dispatch_engine = make_engine(pg_database("dispatch"))
    try:
        dispatch = Vault({p: Sealer(s) for p, s in settings.keyring_specs().items()},
                         DatabaseKeySource(dispatch_engine))
        with pytest.raises(KeyUnavailable):  # its store never keeps records keys...
            dispatch.open(sealed, CTX)
        with Session(engine) as session:
            key = keystore.load(session, envelope_key_id(sealed)[1])
        with session_scope(dispatch_engine) as session:  # ...and given one, it cannot unwrap it
            keystore.store_received(session, key)
        with pytest.raises(SealError, match="holds no records key"):
            dispatch.open(sealed, CTX)
    finally:
        dispatch_engine.dispose()


def test_production_refuses_a_shared_or_development_keyring():
    good = {"environment": "production", "database_url": "postgresql://db.internal/x",
            "kafka_bootstrap_servers": "kafka.internal:9093"}
    shared = generate_key_spec("site1")
    from services.dedupe.settings import DedupeSettings
    problems = DedupeSettings(**good, records_keys=shared, notices_keys=shared).production_problems()
    assert any("PANUI_NOTICES_KEYS: the same keyring" in p for p in problems)
    problems = IntakeSettings(**good, data_keys=shared).production_problems()
    assert any(p.startswith("PANUI_RECORDS_KEYS: no keyring") for p in problems)
    problems = IntakeSettings(**good, records_keys=generate_key_spec("dev1")).production_problems()
    assert any("PANUI_RECORDS_KEYS: a development keyring" in p for p in problems)
    assert not [p for p in IntakeSettings(**good, records_keys=shared).production_problems()
                if "RECORDS_KEYS" in p or "DATA_KEYS" in p]


def _ingest(engine, vault, records: list[dict]) -> feeds.FeedOutcome:  # noqa: ANN001
    with session_scope(engine) as session:
        return feeds.ingest_feed(
            session, vault, incident_id="inc-1", agency_id="ag-1", fmt="ndjson",
            items=iter_feed(io.BytesIO(ndjson(records)), "ndjson"), idempotency_key=None,
            chunk_size=1000, max_records=1000, receipt_problem_limit=20)


def test_an_unchanged_resend_after_a_kek_rotation_is_a_no_op(engine):
    old, new = generate_key_spec("old"), generate_key_spec("new")
    records = [affected_record("r1"), affected_record("r2", nhi="ZZZ0017")]
    vault = _vault(engine, records=old)
    vault.ensure("inc-1", RECORDS)
    assert _ingest(engine, vault, records).feed.accepted == 2
    rotated = _vault(engine, records=f"{new},{old}")  # the new KEK first: a restart after rotation
    again = _ingest(engine, rotated, records)
    assert (again.feed.accepted, again.feed.unchanged) == (0, 2)
    changed = _ingest(engine, rotated, [affected_record("r1", given_names="Changed")])
    assert (changed.feed.accepted, changed.feed.unchanged) == (1, 0)
    with Session(engine) as session:
        assert sorted(session.execute(select(AffectedRecord.source_record_id,
                                             AffectedRecord.version)).all()) == [
            ("r1", 1), ("r1", 2), ("r2", 1)]


def test_rewrap_is_resumable_and_then_the_old_kek_can_be_removed(engine):
    old, new = generate_key_spec("old"), generate_key_spec("new")
    vault = _vault(engine, records=old)
    sealed = {f"inc-{i}": vault.seal(PERSONAL, CTX, incident_id=f"inc-{i}", purpose=RECORDS)
              for i in range(5)}
    settings = IntakeSettings(database_url=engine.url.render_as_string(hide_password=False),
                              records_keys=f"{new},{old}")

    class Interrupted(Exception):
        pass

    def stop_after_first(_purpose: str, _n: int) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        keys_cli.rewrap(settings, batch_size=2, on_batch=stop_after_first)
    assert keys_cli.status(settings)[RECORDS] == {"new": 2, "old": 3}
    assert keys_cli.rewrap(settings, batch_size=2) == {RECORDS: 3}  # the rest, nothing twice
    assert keys_cli.status(settings)[RECORDS] == {"new": 5}
    assert keys_cli.rewrap(settings, batch_size=2) == {RECORDS: 0}
    only_new = _vault(engine, records=new)  # the old KEK removed from the keyring
    for sealed_value in sealed.values():
        assert only_new.open(sealed_value, CTX) == PERSONAL
    with pytest.raises(SealError):  # and the old KEK alone no longer unwraps anything
        _vault(engine, records=old).open(sealed["inc-0"], CTX)


def test_a_destroyed_key_never_opens_again(engine):
    vault = _vault(engine, records=generate_key_spec("rec1"))
    sealed = vault.seal(PERSONAL, CTX, incident_id="inc-1", purpose=RECORDS)
    with session_scope(engine) as session:
        assert keystore.destroy_incident(session, "inc-1") == [envelope_key_id(sealed)[1]]
    vault.forget("inc-1")
    with pytest.raises(KeyDestroyed):
        vault.open(sealed, CTX)
    with pytest.raises(KeyDestroyed):  # nor is a new key made for a purged incident
        vault.seal(PERSONAL, CTX, incident_id="inc-1", purpose=RECORDS)


def test_services_settings_name_their_purposes():
    assert ServiceSettings.key_purposes == ()
    assert IntakeSettings.key_purposes == (RECORDS,)
    assert DispatchSettings.key_purposes == (NOTICES,)
