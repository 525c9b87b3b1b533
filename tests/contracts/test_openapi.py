"""The committed OpenAPI documents are exactly what the three apps serve."""

import pytest

from services.cli import contracts


@pytest.fixture(scope="module")
def exported() -> dict[str, dict]:
    return contracts.openapi_documents()


@pytest.mark.parametrize("service", ["intake", "dedupe", "dispatch"])
def test_committed_openapi_matches_the_app(service, exported):
    committed = (contracts.CONTRACTS / "openapi" / f"{service}.json").read_text()
    assert committed == contracts.render(exported[service]), (
        f"contracts/openapi/{service}.json drifted from the app: run `make contracts`"
    )


@pytest.mark.parametrize("service", ["intake", "dedupe", "dispatch"])
def test_every_service_has_health_readiness_and_metrics(service, exported):
    assert {"/healthz", "/readyz", "/metrics"} <= set(exported[service]["paths"])
