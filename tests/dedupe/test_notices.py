"""Building a person's notice from their records (notices.py): no database, no Kafka."""

from datetime import UTC, datetime, timedelta

from services.common.crypto import Sealer, generate_key_spec
from services.common.ids import notice_id
from services.common.messages import SealedRecipient, notice_sealing_context, record_sealing_context
from services.common.references import legacy_reference
from services.dedupe.notices import NoticeRecord, build_notice, merge_recipient

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
SEALER = Sealer(generate_key_spec("notices-test"))


def record(agency_id: str, source_record_id: str, updated_at: datetime, categories=("clinical_notes",),  # noqa: ANN001
           documents: int | None = 1, language: str = "en", version: int = 1, **personal) -> NoticeRecord:
    sealed = SEALER.seal(personal, record_sealing_context("inc-1", agency_id, source_record_id,
                                                          version))
    return NoticeRecord("inc-1", agency_id, source_record_id, version, sealed, list(categories),
                        documents, language, updated_at)


def test_the_freshest_contact_details_win_field_by_field():
    assert merge_recipient([
        {"given_names": "Aroha", "email": "new@example.nz"},
        {"given_names": "A", "email": "old@example.nz", "mobile": "+64211234567"},
    ]) == {"given_names": "Aroha", "email": "new@example.nz", "mobile": "+64211234567"}


def test_one_notice_names_every_agency_with_its_categories_and_documents():
    records = [
        record("lab", "lab-9", T0, categories=("lab_results",), documents=3,
               given_names="Aroha", family_name="Testperson", mobile="+64211234567"),
        record("gp", "gp-1", T0 + timedelta(minutes=5), language="mi", given_names="Aroha",
               family_name="Testperson", email="aroha.testperson@example.nz"),
        record("gp", "gp-2", T0 - timedelta(minutes=5), categories=("prescriptions",)),
    ]
    notice = build_notice(SEALER, "inc-1", "P-1", 2, records,
                          {"gp": "Kōwhai Medical Centre"}, created_at=T0)
    assert (notice.notice_id, notice.person_id, notice.version) == (notice_id("inc-1", "P-1", 2),
                                                                   "P-1", 2)
    assert notice.created_at == T0
    assert [(a.agency_id, a.name, a.data_categories, a.document_count) for a in notice.agencies] == [
        ("gp", "Kōwhai Medical Centre", ["clinical_notes", "prescriptions"], 2),
        ("lab", "lab", ["lab_results"], 3),  # an agency without a known name keeps its id
    ]
    assert notice.preferred_language == "mi"  # the most recent record's
    assert notice.channels == ["email", "sms"]
    assert notice.has_representative is False
    sealed = SealedRecipient.model_validate(
        SEALER.open(notice.sealed, notice_sealing_context(notice.notice_id)))
    assert sealed.recipient.email == "aroha.testperson@example.nz"
    assert sealed.recipient.mobile == "+64211234567"


def test_an_agency_that_gave_no_count_for_a_record_has_an_unknown_count_not_a_partial_sum():
    records = [
        record("gp", "gp-1", T0, documents=4, given_names="Aroha", email="a@example.nz"),
        record("gp", "gp-2", T0, documents=None),
        record("lab", "lab-1", T0, documents=None),
        record("xray", "x-1", T0, documents=0),
    ]
    notice = build_notice(SEALER, "inc-1", "P-1", 1, records, {}, created_at=T0)
    assert {a.agency_id: a.document_count for a in notice.agencies} == {
        "gp": None, "lab": None, "xray": 0}
    # ... and it travels as null in the contract, not as 0
    assert '"document_count":null' in notice.model_dump_json()


def test_a_notice_with_a_representative_goes_on_the_representatives_channels():
    rep = {"name": "Parent Testrep", "relationship": "parent", "mobile": "+64210009999"}
    child = record("gp", "gp-1", T0, given_names="Tama", email="tama@example.nz",
                   address={"line1": "1 Test St", "city": "Testville"},
                   hold={"reason": "representative", "representative": rep})
    notice = build_notice(SEALER, "inc-1", "P-1", 1, [child], {}, created_at=T0)
    assert notice.has_representative is True
    assert notice.channels == ["sms"]  # the parent's mobile; not the child's email or address
    nothing = dict(rep, mobile=None, email=None)
    child = record("gp", "gp-1", T0, given_names="Tama", email="tama@example.nz",
                   hold={"reason": "representative", "representative": nothing})
    assert build_notice(SEALER, "inc-1", "P-1", 1, [child], {}, created_at=T0).channels == []


def test_in_one_batch_a_resent_version_goes_before_a_first_version_whatever_the_row_order():
    # Stored by one batch, so updated_at ties: the lab's first version still has the old
    # address, the GP's re-sent version the corrected one.
    lab = record("lab", "lab-1", T0, given_names="Aroha", email="old@example.nz")
    resent = record("gp", "gp-1", T0, version=2, given_names="Aroha", email="new@example.nz")
    for rows in ([lab, resent], [resent, lab]):
        notice = build_notice(SEALER, "inc-1", "P-1", 1, rows, {}, created_at=T0)
        sealed = SealedRecipient.model_validate(
            SEALER.open(notice.sealed, notice_sealing_context(notice.notice_id)))
        assert sealed.recipient.email == "new@example.nz"


def test_a_representative_from_a_hold_is_carried_sealed():
    hold = {"reason": "representative", "representative": {"name": "Test Whānau Contact",
                                                            "email": "whanau@example.nz"}}
    notice = build_notice(SEALER, "inc-1", "P-1", 1,
                          [record("gp", "gp-1", T0, hold=hold, address={"line1": "1 Test Street"})],
                          {}, created_at=T0)
    assert notice.has_representative is True
    # The representative's email (issue 17 review): it was ["postal"], the child's own address,
    # on which dispatch then had no representative's address to post to.
    assert notice.channels == ["email"]
    sealed = SealedRecipient.model_validate(
        SEALER.open(notice.sealed, notice_sealing_context(notice.notice_id)))
    assert sealed.representative.email == "whanau@example.nz"


def test_the_notice_carries_a_keyed_reference_and_digests_of_the_persons_dates_of_birth():
    records = [record("gp", "gp-1", T0, given_names="Aroha", date_of_birth="1980-04-12",
                      email="a@example.nz"),
               record("lab", "lab-1", T0 - timedelta(minutes=1), date_of_birth="1980-12-04"),
               record("xray", "x-1", T0 - timedelta(minutes=2), date_of_birth="1980-04-12")]
    notice = build_notice(SEALER, "inc-1", "P-1", 1, records, {}, created_at=T0)
    again = build_notice(SEALER, "inc-1", "P-1", 1, list(reversed(records)), {}, created_at=T0)
    assert notice.reference_code == again.reference_code  # deterministic under the key
    assert notice.dob_checks == again.dob_checks and len(notice.dob_checks) == 2  # distinct dates
    # Keyed (another key gives another reference: tests/dispatch/test_genuine.py), not the
    # unkeyed code anyone could compute from the notice id.
    assert notice.reference_code != legacy_reference(notice.notice_id)
    wire = notice.model_dump_json()
    assert "1980-04-12" not in wire and "1980-12-04" not in wire
    assert len(notice.reference_code) == len("PAN-XXXX-XXXX-XXXX")
