"""Synthetic test data only: NHIs in the reserved Z test range, example.nz emails,
obviously fictitious names and numbers."""

import json

INCIDENT_CONTENT = {
    "sender_name": "Pānui Test Coordination Office",
    "breach_description": "A test patient portal was accessed without authorisation.",
    "suspected_holder_statement": "We have identified a group we suspect holds the information.",
    "steps_taken": "The portal was taken offline and the access was contained.",
    "mitigation_advice": ["Be wary of messages that mention your health information."],
    "privacy_commissioner_notified": True,
    "contact": {"organisation": "Test Breach Line", "phone": "0800 000 000",
                "web_address": "breach.example.nz"},
}


def incident_body(incident_id: str, agencies: list[tuple[str, str]], **extra) -> dict:
    return {
        "incident_id": incident_id,
        "title": "Test portal breach",
        "content": INCIDENT_CONTENT,
        "expected_agencies": [{"agency_id": a, "name": n} for a, n in agencies],
        **extra,
    }


def affected_record(source_record_id: str, **fields) -> dict:
    record = {
        "source_record_id": source_record_id,
        "nhi": "ZZZ0016",
        "given_names": "Aroha",
        "family_name": "Testperson",
        "date_of_birth": "1980-04-12",
        "email": "aroha.testperson@example.nz",
        "mobile": "+64211234567",
        "data_categories": ["clinical_notes"],
        "document_count": 2,
    }
    record.update(fields)
    return {k: v for k, v in record.items() if v is not None}


def ndjson(records: list[dict]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def synthetic_nhi(n: int) -> str:
    """The n-th valid NHI in the reserved test range (old format ZZZ/ZZY… + 4 digits + check)."""
    from services.common.nhi import is_valid_nhi

    found = -1
    for prefix in ("ZZZ", "ZZY", "ZZX", "ZZW"):
        for body in range(1000):
            for check in range(10):
                candidate = f"{prefix}{body:03d}{check}"
                if is_valid_nhi(candidate):
                    found += 1
                    if found == n:
                        return candidate
                    break
    raise ValueError("n too large for the test range helper")


def synthetic_person(i: int) -> dict:
    """A distinct synthetic person: no two share NHI, name, date of birth or contacts."""
    given = ["Aroha", "Hemi", "Mere", "Tama", "Sione", "Mele", "Wei", "Priya", "Jack", "Olivia"]
    family = ["Ngata", "Tipene", "Fonoti", "Chen", "Patel", "Smith", "Walker", "Kaur", "Rangi", "Lee"]
    return {
        "nhi": synthetic_nhi(i),
        "given_names": given[i % 10],
        "family_name": f"{family[(i // 10) % 10]}-Test{i // 100}",
        "date_of_birth": f"{1940 + i % 60}-{1 + i % 12:02d}-{1 + i % 28:02d}",
        "email": f"person{i}@example.nz",
        "mobile": f"+64215{i:06d}",
    }
