"""Synthetic data and real local gateways over loopback (free ports)."""

from __future__ import annotations

import copy

import pytest

from services.gateways.sms_server import SmsGateway
from services.gateways.smtp_server import SmtpGateway

INCIDENT = {
    "incident_id": "INC-TEST-1",
    "title": "Example portal breach",
    "breach_description": "On 2 March 2026 an unauthorised party copied records from the patient portal.",
    "suspected_holder_statement": "We have identified a group we suspect holds the information.",
    "steps_taken": "We closed the portal, reset all access and are working with police.",
    "mitigation_advice": [
        "Be wary of calls, texts or emails about this breach.",
        "Tell us if anyone contacts you with your information.",
    ],
    "privacy_commissioner_notified": True,
    "privacy_commissioner_notified_date": "2026-03-04",
    "contact": {
        "name": "Example Helpline",
        "phone": "0800 000 111",
        "web_address": "https://panui.example.nz/check",
        "hours": "8am-8pm every day",
    },
    "sender_name": "Example Health",
    "sms_segment_budget": 3,
}


def make_notice(n: int = 1, **overrides) -> dict:
    notice = {
        "notice_id": f"NOTICE-{n:04d}",
        "incident_id": "INC-TEST-1",
        "person_id": f"ZZZ00{n:02d}",
        "version": 1,
        "recipient": {
            "given_names": f"Testperson{n}",
            "family_name": f"Fakename{n}",
            "email": f"person{n}@example.nz",
            "mobile": f"+642100000{n:02d}",
            "address": {
                "line1": f"{n} Test Street",
                "suburb": "Testsuburb",
                "city": "Testville",
                "postcode": f"90{n:02d}",
            },
        },
        "preferred_language": "en",
        "agencies": [
            {
                "agency_id": "AG-1",
                "name": "Example Medical Centre",
                "data_categories": ["clinical_notes", "lab_results"],
                "document_count": 12,
            },
            {
                "agency_id": "AG-2",
                "name": "Sample Pharmacy",
                "data_categories": ["prescriptions", "exotic_thing"],
                "document_count": 1,
            },
        ],
    }
    for key, value in overrides.items():
        notice[key] = value
    return notice


@pytest.fixture
def incident() -> dict:
    return copy.deepcopy(INCIDENT)


@pytest.fixture
async def smtp_gw():
    async with SmtpGateway() as gw:
        yield gw


@pytest.fixture
async def sms_gw():
    async with SmsGateway(callback_secret="test-secret") as gw:
        yield gw


@pytest.fixture
def dispatch_engine(pg_database):
    """An engine on a fresh PostgreSQL database holding dispatch's tables (and the outbox)."""

    from services.common.db import make_engine

    engine = make_engine(pg_database("dispatch"))
    yield engine
    engine.dispose()
