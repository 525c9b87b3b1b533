"""The authorisation matrix: every endpoint of the three services × every kind of credential,
with the answer each must get — taken from the apps' route tables, so an endpoint added
without an entry in RULES fails here.

Credentials: none, a garbage token, the configured coordinator token, a Pānui token for each
staff role, an identity provider's token (RS256, a locally generated key) and one for another
audience, tokens scoped to this incident and to another one, expired, revoked and forged (another
signing key) staff tokens, the agency's key, another agency's key (enrolled elsewhere), a
revoked agency key, agency status tickets (minted by intake from an agency's key) for this incident
and for another one. Answers: 401 (no valid credential of a kind the route takes), 403 (a staff
role the route does not take, or a token for some incidents on a route for all), 404
incident.not_found (an incident outside the caller's reach, exactly as a missing one), and
"handled" (past authorisation: whatever the handler says). The receipt endpoint's signatures
(valid, invalid, replayed, signed for another provider) are in the last test; a receipt
about a delivery sent through another provider is refused in tests/dispatch/test_service.py.
"""

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from fastapi.routing import APIRoute

from services.common.db import make_engine, session_scope
from services.common.principals import ROLES
from services.dedupe.app import create_app as create_dedupe
from services.dedupe.models import IncidentState
from services.dedupe.settings import DedupeSettings
from services.dispatch.app import create_app as create_dispatch
from services.dispatch.providers.receipts import SIGNATURE_HEADER, sign
from services.dispatch.settings import DispatchSettings
from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from testkit import infra
from testkit.factories import incident_body
from testkit.staff import SIGNING_KEY, LocalIdp, token
from tests.conftest import COORDINATOR_TOKEN, running

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

RECEIPT_SECRETS = {"sms-primary": "p" * 40, "sms-secondary": "q" * 40, "smtp": "m" * 40}


@dataclass(frozen=True)
class Rule:
    kind: str  # "staff", "agency", "agency-ticket", "public", "receipt"
    roles: frozenset[str] = frozenset()
    every_incident: bool = True


def staff(*roles: str, every_incident: bool = True) -> Rule:
    return Rule("staff", frozenset(roles), every_incident)


AGENCY, PUBLIC, RECEIPT = Rule("agency"), Rule("public"), Rule("receipt")
TICKET = Rule("agency-ticket")  # dedupe's and dispatch's reconciliation rows: a ticket, no key
COMMON = {
    ("GET", "/healthz"): PUBLIC, ("GET", "/readyz"): PUBLIC, ("GET", "/metrics"): PUBLIC,
    ("GET", "/v1/audit"): staff("coordinator", "ops", every_incident=False),
    ("POST", "/v1/tokens/{token_id}/revocation"): staff("coordinator"),
}
RULES = {
    "intake": {
        **COMMON,
        ("POST", "/v1/incidents"): staff("coordinator"),
        ("GET", "/v1/incidents/{incident_id}"): staff(*ROLES),
        ("POST", "/v1/incidents/{incident_id}/agencies"): staff("coordinator"),
        ("POST", "/v1/agencies/{agency_id}/keys"): staff("coordinator"),
        ("DELETE", "/v1/agencies/{agency_id}/keys/{key_id}"): staff("coordinator"),
        ("POST", "/v1/incidents/{incident_id}/feeds"): AGENCY,
        ("GET", "/v1/incidents/{incident_id}/feeds/{feed_id}"): AGENCY,
        ("GET", "/v1/incidents/{incident_id}/feeds/{feed_id}/problems"): AGENCY,
        ("POST", "/v1/incidents/{incident_id}/completion"): AGENCY,
        ("DELETE", "/v1/incidents/{incident_id}/records/{source_record_id}"): AGENCY,
        # Issue 14: the incident list, consumer lag and the console's pass-through (the
        # coordinator's today; the service behind checks the forwarded token again).
        ("GET", "/v1/incidents"): staff("coordinator"),
        ("GET", "/v1/ops/lag"): staff("coordinator"),
        # Issue 16: the call centre's console page reaches dispatch's lookup through it.
        ("GET", "/v1/console/{service}/{path:path}"): staff("coordinator", "call-centre"),
        ("POST", "/v1/console/{service}/{path:path}"): staff("coordinator", "call-centre"),
        # Issue 17: approving the te reo templates previewed.
        ("POST", "/v1/incidents/{incident_id}/templates-mi/approval"): staff("coordinator"),
        # Issue 18: closing an incident (purged everywhere after the retention period).
        ("POST", "/v1/incidents/{incident_id}/close"): staff("coordinator"),
        # Issue 16: intake's part of the Privacy Commissioner's report.
        ("GET", "/v1/incidents/{incident_id}/report"): staff("coordinator"),
        # Issue 16: the three services' parts combined, for the console (JSON, CSV, PDF).
        ("GET", "/v1/incidents/{incident_id}/commissioner-report"): staff("coordinator"),
        ("GET", "/v1/incidents/{incident_id}/commissioner-report.csv"): staff("coordinator"),
        ("GET", "/v1/incidents/{incident_id}/commissioner-report.pdf"): staff("coordinator"),
        # Issuing a staff token, audited (a scoped coordinator within its own incidents).
        ("POST", "/v1/tokens"): staff("coordinator", every_incident=False),
        # Issue 14: editing an incident's content from the console.
        ("PUT", "/v1/incidents/{incident_id}/content"): staff("coordinator"),
        # Issue 16: agency reconciliation — intake's part, and the ticket for the others'.
        ("GET", "/v1/incidents/{incident_id}/reconciliation/records"): AGENCY,
        ("POST", "/v1/incidents/{incident_id}/status-ticket"): AGENCY,
        # Issue 16: an agency's reconciliation on the coordinator's console (counts, a page of
        # rows, the agency's CSV): the coordinator's alone — an agency sees only its own rows,
        # through the routes above, never another agency's.
        ("GET", "/v1/incidents/{incident_id}/agencies/{agency_id}/reconciliation"): staff("coordinator"),
        ("GET", "/v1/incidents/{incident_id}/agencies/{agency_id}/reconciliation/records"):
            staff("coordinator"),
        ("GET", "/v1/incidents/{incident_id}/agencies/{agency_id}/reconciliation.csv"):
            staff("coordinator"),
    },
    "dedupe": {
        **COMMON,
        ("GET", "/v1/incidents/{incident_id}/progress"): staff(*ROLES),
        ("GET", "/v1/incidents/{incident_id}/reviews"): staff("coordinator", "reviewer"),
        ("POST", "/v1/incidents/{incident_id}/reviews/{review_id}/decision"):
            staff("coordinator", "reviewer"),
        ("POST", "/v1/incidents/{incident_id}/release"): staff("coordinator"),
        # Issue 16: each service's part of the Privacy Commissioner's report.
        ("GET", "/v1/incidents/{incident_id}/report"): staff("coordinator"),
        # Issue 14: the audited reveal of a review pair's masked values.
        ("POST", "/v1/incidents/{incident_id}/reviews/{review_id}/reveal"):
            staff("coordinator", "reviewer"),
        # Issue 16: an agency's own reconciliation rows.
        ("GET", "/v1/incidents/{incident_id}/reconciliation/records"): TICKET,
    },
    "dispatch": {
        **COMMON,
        ("POST", "/v1/receipts/{provider}"): RECEIPT,
        ("GET", "/v1/incidents/{incident_id}/deliveries/summary"): staff(*ROLES),
        ("GET", "/v1/incidents/{incident_id}/unreachable.csv"): staff("coordinator", "call-centre"),
        # Issue 17: the notice preview, and the letters' mail-out (names and addresses).
        ("GET", "/v1/incidents/{incident_id}/notice-preview"): staff("coordinator"),
        ("POST", "/v1/incidents/{incident_id}/mailouts"): staff("coordinator"),
        ("GET", "/v1/incidents/{incident_id}/mailouts"): staff("coordinator"),
        ("GET", "/v1/incidents/{incident_id}/mailouts/{batch_id}"): staff("coordinator"),
        ("GET", "/v1/incidents/{incident_id}/mailouts/{batch_id}/letters.pdf"): staff("coordinator"),
        ("GET", "/v1/incidents/{incident_id}/mailouts/{batch_id}/manifest.csv"):
            staff("coordinator"),
        ("POST", "/v1/incidents/{incident_id}/mailouts/{batch_id}/posted"): staff("coordinator"),
        ("POST", "/v1/incidents/{incident_id}/returned-mail"): staff("coordinator"),
        # Issue 16: "is this notice genuine?" — public (rate-limited), the API and its page.
        ("POST", "/v1/notice-checks"): PUBLIC,
        ("GET", "/check"): PUBLIC,
        ("POST", "/check"): PUBLIC,
        # Issue 16: the call centre's notice lookup (names, what was sent) and its scripts.
        ("POST", "/v1/incidents/{incident_id}/notice-lookups"): staff("call-centre", "coordinator"),
        ("GET", "/v1/call-centre/answers"): staff("call-centre", "coordinator", every_incident=False),
        ("GET", "/v1/incidents/{incident_id}/report"): staff("coordinator"),
        # Issue 14: any stored notice rendered as sent (personal data: audited).
        ("GET", "/v1/incidents/{incident_id}/notices/{reference}/preview"): staff("coordinator"),
        # Issue 16: an agency's own reconciliation rows.
        ("GET", "/v1/incidents/{incident_id}/reconciliation/notices"): TICKET,
        ("POST", "/v1/incidents/{incident_id}/reconciliation/notices/lookup"): TICKET,
    },
}

BAD_CREDENTIALS = ("none", "garbage", "expired", "revoked", "forged", "idp-other-audience")
AGENCY_CREDENTIALS = ("agency", "other-agency", "revoked-agency", "agency-ticket",
                      "other-agency-ticket")


def expected(rule: Rule, credential: str, path: str) -> str:
    """The answer `credential` must get from a route with `rule` (see the module docstring)."""
    if rule.kind == "public":
        return "handled"
    if rule.kind == "receipt":
        return "unauthenticated"  # a bearer token is no signature
    if credential in BAD_CREDENTIALS or credential == "revoked-agency":
        return "unauthenticated"
    if rule.kind == "agency":  # a ticket is no API key
        return {"agency": "handled", "other-agency": "hidden"}.get(credential, "unauthenticated")
    if rule.kind == "agency-ticket":  # and an API key no ticket
        return {"agency-ticket": "handled", "other-agency-ticket": "hidden"}.get(
            credential, "unauthenticated")
    if credential in AGENCY_CREDENTIALS:
        return "unauthenticated"
    role = credential.removeprefix("role:") if credential.startswith("role:") else "coordinator"
    if role not in rule.roles:
        return "forbidden"
    scoped = credential.startswith("scoped-")
    if scoped and "{incident_id}" not in path:
        return "forbidden" if rule.every_incident else "handled"
    return "hidden" if credential == "scoped-elsewhere" else "handled"


def classify(response: httpx.Response) -> str:
    if response.status_code == 401:
        return "unauthenticated"
    if response.status_code == 403:
        return "forbidden"
    if response.status_code == 404 and response.headers.get("content-type", "").startswith(
            "application/json") and response.json().get("error", {}).get("code") == "incident.not_found":
        return "hidden"
    return "handled"


@dataclass
class Deployment:
    clients: dict[str, httpx.AsyncClient]
    credentials: dict[str, str | None]
    params: dict[str, str]


@pytest.fixture(scope="module")
async def deployment(pg_admin_url, kafka_bootstrap, data_keys, tmp_path_factory):  # noqa: ANN001, ANN201
    idp = LocalIdp(tmp_path_factory.mktemp("idp"))
    prefix = f"test-{uuid.uuid4().hex[:10]}."
    common = {"kafka_bootstrap_servers": kafka_bootstrap, "topic_prefix": prefix, "data_keys": data_keys,
              "coordinator_tokens": COORDINATOR_TOKEN, "token_signing_key": SIGNING_KEY,
              "outbox_poll_interval_s": 0.05, **idp.settings()}
    databases = {s: infra.create_database(pg_admin_url, service=s) for s in RULES}
    incident, elsewhere = f"inc-m-{uuid.uuid4().hex[:6]}", f"inc-o-{uuid.uuid4().hex[:6]}"
    engine = make_engine(databases["dedupe"][1])
    with session_scope(engine) as session:
        session.add(IncidentState(
            incident_id=incident, revision=1, agency_names={"ag": "Test Agency"},
            expected_agency_ids=["ag"], completed={}, partition=0,
            release_policy={"hold_deadline": "2099-12-01T00:00:00Z", "settle_window_seconds": 0}))
    engine.dispose()
    apps = {
        "intake": create_intake(IntakeSettings(**common, database_url=databases["intake"][1],
                                               agency_requests_per_minute=1_000_000)),
        "dedupe": create_dedupe(DedupeSettings(**common, database_url=databases["dedupe"][1])),
        "dispatch": create_dispatch(DispatchSettings(
            **common, database_url=databases["dispatch"][1], receipt_callback_base_url="",
            receipt_secrets=",".join(f"{p}={s}" for p, s in RECEIPT_SECRETS.items()))),
    }
    try:
        async with running(apps["intake"]) as intake, running(apps["dedupe"]) as dedupe, \
                running(apps["dispatch"]) as dispatch:
            clients = {"intake": intake, "dedupe": dedupe, "dispatch": dispatch}
            configured = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}
            made = await intake.post("/v1/incidents", headers=configured,
                                     json=incident_body(incident, [("ag-m-1", "Agency One")]))
            other = await intake.post("/v1/incidents", headers=configured,
                                      json=incident_body(elsewhere, [("ag-o-1", "Agency Two")]))
            assert made.status_code == other.status_code == 201, (made.text, other.text)
            agency_key = made.json()["issued_keys"][0]["api_key"]
            gone = (await intake.post(f"/v1/incidents/{incident}/agencies", headers=configured,
                                      json={"agency_id": "ag-m-2", "name": "Agency Three"})).json()
            assert (await intake.delete(f"/v1/agencies/ag-m-2/keys/{gone['key_id']}",
                                        headers=configured)).status_code == 204
            feed = await intake.post(f"/v1/incidents/{incident}/feeds",
                                     content=b'{"source_record_id": "m-1", "nhi": "ZZZ0016"}\n',
                                     headers={"authorization": f"Bearer {agency_key}",
                                              "content-type": "application/x-ndjson"})
            assert feed.status_code == 202, feed.text
            tickets = []
            for inc, key in ((incident, agency_key), (elsewhere, other.json()["issued_keys"][0]["api_key"])):
                minted = await intake.post(f"/v1/incidents/{inc}/status-ticket",
                                           headers={"authorization": f"Bearer {key}"})
                assert minted.status_code == 201, minted.text
                tickets.append(minted.json()["ticket"])
            revoked, revoked_id = token(["coordinator"])
            for client in clients.values():
                answer = await client.post(f"/v1/tokens/{revoked_id}/revocation", headers=configured)
                assert answer.status_code == 200 and answer.json()["revoked"] is True
            credentials = {
                "none": None, "garbage": "not-a-token",
                "configured": COORDINATOR_TOKEN,
                **{f"role:{r}": token([r])[0] for r in ROLES},
                "idp-coordinator": idp.token(["coordinator"]),
                "idp-other-audience": idp.token(["coordinator"], audience="another-service"),
                "scoped-here": token(["coordinator"], [incident])[0],
                "scoped-elsewhere": token(["coordinator"], [elsewhere])[0],
                "expired": token(["coordinator"], ttl_s=60, now=int(time.time()) - 3600)[0],
                "revoked": revoked,
                "forged": token(["coordinator"], key="another-signing-key-" + "x" * 20)[0],
                "agency": agency_key,
                "other-agency": other.json()["issued_keys"][0]["api_key"],
                "revoked-agency": gone["api_key"],
                "agency-ticket": tickets[0], "other-agency-ticket": tickets[1],
            }
            params = {"incident_id": incident, "feed_id": feed.json()["feed_id"],
                      "agency_id": "ag-nobody", "key_id": "k-nobody", "review_id": "rev-nobody",
                      "source_record_id": "src-nobody", "token_id": "tok-nobody", "batch_id": "mob-nobody",
                      "reference": "ntc-nobody",
                      "provider": "sms-primary", "service": "dedupe",
                      "path": f"v1/incidents/{incident}/progress"}
            yield Deployment(clients, credentials, params)
    finally:
        await infra.delete_topics_with_prefix(kafka_bootstrap, prefix)
        for name, _ in databases.values():
            infra.drop_database(pg_admin_url, name)


def routes(app) -> set[tuple[str, str]]:  # noqa: ANN001
    """(method, path) of every API route the app serves, routers included (FastAPI keeps an
    included router whole, as `original_router`; none here is included under a prefix)."""
    found, stack = set(), list(app.routes)
    while stack:
        route = stack.pop()
        if hasattr(route, "original_router"):
            stack.extend(route.original_router.routes)
        elif isinstance(route, APIRoute):
            found |= {(method, route.path) for method in route.methods}
    return found


@pytest.mark.parametrize("service", list(RULES))
def test_every_endpoint_has_an_entry(service):
    make, settings = {"intake": (create_intake, IntakeSettings), "dedupe": (create_dedupe, DedupeSettings),
                      "dispatch": (create_dispatch, DispatchSettings)}[service]
    app = make(settings(data_keys="k:" + "A" * 43 + "="))
    assert routes(app) == set(RULES[service]), "a new endpoint needs its line in RULES"


@pytest.mark.parametrize("service", list(RULES))
async def test_every_endpoint_answers_every_credential_rightly(deployment, service):
    client = deployment.clients[service]
    wrong = []
    for (method, path), rule in sorted(RULES[service].items()):
        url = path.replace("{path:path}", "{path}").format(**deployment.params)
        for credential, value in deployment.credentials.items():
            headers = {"authorization": f"Bearer {value}"} if value else {}
            if path.endswith("/feeds"):
                body = {"content": b'{"source_record_id": "m-2"}\n',
                        "headers": {**headers, "content-type": "application/x-ndjson"}}
            elif method == "POST":
                body = {"json": {}, "headers": headers}
            else:
                body = {"headers": headers}
            response = await client.request(method, url, **body)
            answer, want = classify(response), expected(rule, credential, path)
            if answer != want:
                wrong.append(f"{method} {path} as {credential}: {response.status_code} ({answer}), "
                             f"expected {want}")
            if answer == "unauthenticated" and rule.kind == "staff":
                assert response.headers.get("www-authenticate") == "Bearer"
    assert not wrong, "\n".join(wrong)


async def test_receipt_signatures(deployment):
    client = deployment.clients["dispatch"]
    body = b'{"id": "gw-1", "reference": "ntc-nobody:sms", "status": "delivered"}'

    def post(provider: str, header: str) -> object:
        return client.post(f"/v1/receipts/{provider}", content=body,
                           headers={SIGNATURE_HEADER: header, "content-type": "application/json"})

    valid = sign(body, RECEIPT_SECRETS["sms-primary"], "sms-primary")
    first = await post("sms-primary", valid)
    replayed = await post("sms-primary", valid)
    invalid = await post("sms-primary", sign(body, "not-the-secret-" + "z" * 30, "sms-primary"))
    # Another provider's endpoint: with the signature for sms-primary, and with a signature
    # naming smtp but made with sms-primary's secret (each provider has its own).
    moved = await post("smtp", valid)
    borrowed = await post("smtp", sign(body, RECEIPT_SECRETS["sms-primary"], "smtp"))
    own = await post("smtp", sign(body, RECEIPT_SECRETS["smtp"], "smtp"))
    stale = await post("sms-primary", sign(body, RECEIPT_SECRETS["sms-primary"], "sms-primary",
                                           timestamp=int(datetime.now(UTC).timestamp()) - 3600))
    # Past the signature: no delivery has that reference.
    assert (first.status_code, first.json()["error"]["code"]) == (404, "receipt.reference_unknown")
    assert (replayed.status_code, replayed.json()["error"]["code"]) == (409, "receipt.replayed")
    for refused in (invalid, moved, borrowed, stale):
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "receipt.signature_invalid"
    assert own.status_code == 404  # smtp's own secret and name: accepted, unknown reference
