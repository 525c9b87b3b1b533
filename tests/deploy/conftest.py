"""Fixtures for tests/deploy: each overlay rendered once, each service's facts read once."""

import pytest

from tests.deploy import manifests as m


@pytest.fixture(scope="session", params=m.OVERLAYS)
def objects(request) -> m.Objects:
    return m.Objects(request.param)


@pytest.fixture(scope="session")
def service_facts(tmp_path_factory):
    """facts(overlay, service): what the service's code does, built from that overlay's env."""
    cache: dict[tuple[str, str], m.ServiceFacts] = {}

    def get(objects: m.Objects, service: str) -> m.ServiceFacts:
        key = (objects.overlay, service)
        if key not in cache:
            env = m.synthetic_env(objects, m.main_container(objects.deployment(service)))
            cache[key] = m.facts(service, env, tmp_path_factory.mktemp(f"{objects.overlay}-{service}"))
        return cache[key]

    return get
