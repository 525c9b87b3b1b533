"""deploy/k8s: every service is deployed with health and readiness probes, secrets from a
Secret (never inline), and a restricted security context."""

from pathlib import Path

import pytest
import yaml

K8S = Path(__file__).resolve().parents[1] / "deploy" / "k8s"


def _docs() -> list[dict]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        out.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return out


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


@pytest.mark.parametrize("service", ["intake", "dedupe", "dispatch"])
def test_service_deployment(service):
    deployment = next(d for d in _docs() if d["kind"] == "Deployment"
                      and d["metadata"]["name"] == f"panui-{service}")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-1] == f"services.{service}"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in container["env"]}
    for secret in ("DATABASE_URL", "PANUI_DATA_KEYS", "PANUI_COORDINATOR_TOKENS"):
        assert "secretKeyRef" in env[secret]["valueFrom"], f"{secret} must come from a Secret"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    if service == "dispatch":
        assert "secretKeyRef" in env["PANUI_RECEIPT_SECRET"]["valueFrom"]
