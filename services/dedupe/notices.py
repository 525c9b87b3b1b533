"""Building the one notice for a person from the records resolved to them."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from services.common import references
from services.common.crypto import NOTICES, Sealer
from services.common.ids import notice_id as make_notice_id
from services.common.messages import (
    NoticeAgency,
    NoticeCorrection,
    NoticeMessage,
    notice_sealing_context,
    record_sealing_context,
)
from services.dedupe.conflicts import Route

_CONTACT_FIELDS = ("given_names", "family_name", "email", "mobile", "address")


@dataclass(frozen=True, slots=True)
class NoticeRecord:
    """A live record of the person, as stored: personal fields still sealed."""

    incident_id: str
    agency_id: str
    source_record_id: str
    record_version: int
    sealed: str
    data_categories: list[str]
    document_count: int | None
    preferred_language: str
    updated_at: datetime


def open_record(sealer: Sealer, record: NoticeRecord) -> dict:
    return sealer.open(
        record.sealed,
        record_sealing_context(
            record.incident_id, record.agency_id, record.source_record_id, record.record_version
        ),
    )


def merge_recipient(personal_fields: list[dict], excluded: frozenset[str] = frozenset(),
                    chosen: dict[str, dict] | None = None) -> dict:
    """The recipient's name and channels: the first value seen for each field, most recent
    record first, so the freshest contact details are used — except a contact contested
    between agencies (`excluded`: left out) or confirmed by a coordinator (`chosen`: field →
    the personal fields of the record whose value to use), conflicts.py."""
    recipient: dict = {}
    for name, fields in (chosen or {}).items():
        if fields.get(name):
            recipient[name] = fields[name]
    for fields in personal_fields:
        for name in _CONTACT_FIELDS:
            if fields.get(name) and name not in recipient and name not in excluded:
                recipient[name] = fields[name]
    return recipient


def build_notice(
    sealer: Sealer,
    incident_id: str,
    person_id: str,
    version: int,
    records: list[NoticeRecord],
    agency_names: dict[str, str],
    created_at: datetime,
    route: Route | None = None,
    correction: NoticeCorrection | None = None,
) -> NoticeMessage:
    # Freshest first. Records stored by one batch share updated_at: a re-sent version (a
    # correction) then goes before a first version, and the rest in a fixed order, so the
    # contact chosen never depends on row order. Records left out (`route.withheld`: a hold
    # conflict released) are neither named nor used.
    route = route or Route()
    records = sorted((r for r in records if (r.agency_id, r.source_record_id) not in route.withheld),
                     key=lambda r: (r.updated_at, r.record_version, r.agency_id,
                                    r.source_record_id), reverse=True)
    personal = [open_record(sealer, r) for r in records]
    by_key = {(r.agency_id, r.source_record_id): p for r, p in zip(records, personal, strict=True)}
    recipient = merge_recipient(personal, route.excluded, {
        name: by_key[key] for name, key in route.chosen.items() if key in by_key})
    representative = next((p["hold"]["representative"] for p in personal
                           if (p.get("hold") or {}).get("representative")), None)

    agencies = notice_agencies(records, agency_names)
    # The channels of whoever the notice goes to: a representative (an under-16's parent, s 116)
    # is reached on their own contacts, never the person's (a representative has no postal
    # address in the contract, so no letter).
    addressee = representative if representative is not None else recipient
    channels = [c for c, f in (("email", "email"), ("sms", "mobile"), ("postal", "address"))
                if addressee.get(f)]
    notice_id = make_notice_id(incident_id, person_id, version)
    sealed = sealer.seal(
        {"recipient": recipient, "representative": representative},
        notice_sealing_context(notice_id), incident_id=incident_id, purpose=NOTICES,
    )
    # The reference and the date-of-birth checks are keyed by the data key that sealed the
    # recipient: dispatch holds it too, and the purge destroys it (services/common/references.py).
    reference, dob_checks = references.notice_checks(
        sealer, notice_id, sealed, [p.get("date_of_birth") for p in personal])
    return NoticeMessage(
        notice_id=notice_id,
        incident_id=incident_id,
        person_id=person_id,
        version=version,
        created_at=created_at,
        preferred_language=records[0].preferred_language,  # type: ignore[arg-type]
        channels=channels,  # type: ignore[arg-type]
        has_representative=representative is not None,
        agencies=agencies,
        sealed=sealed,
        reference_code=reference,
        dob_checks=dob_checks,
        correction=correction,
    )


def notice_agencies(records: list[NoticeRecord], agency_names: dict[str, str]
                    ) -> list[NoticeAgency]:
    """What a notice says of each agency: the categories and documents of its records."""
    categories: dict[str, set[str]] = defaultdict(set)
    # An agency's count is known only if every one of its records gave one: a partial sum
    # would read as the whole number.
    documents: dict[str, int | None] = defaultdict(int)
    for record in records:
        categories[record.agency_id].update(record.data_categories)
        known = documents[record.agency_id]
        documents[record.agency_id] = (
            None if known is None or record.document_count is None
            else known + record.document_count
        )
    return [
        NoticeAgency(
            agency_id=agency_id,
            name=agency_names.get(agency_id, agency_id),
            data_categories=sorted(categories[agency_id]),
            document_count=documents[agency_id],
        )
        for agency_id in sorted(categories)
    ]
