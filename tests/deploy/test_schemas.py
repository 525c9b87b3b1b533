"""Every overlay renders with the pinned kustomize and every object it renders is valid,
strictly, offline: built-in kinds against the Kubernetes schemas, Strimzi, KEDA and
Prometheus-operator objects against their vendored CRDs. A misspelt field fails."""

import copy
import hashlib
import re

import pytest

from tests.deploy import manifests as m
from tests.deploy import schemas


@pytest.mark.parametrize("k8s_version", schemas.KUBERNETES_VERSIONS)
def test_every_object_is_valid(objects, k8s_version):
    errors = []
    for obj in objects.all:
        try:
            schemas.validate(obj, k8s_version)
        except schemas.SchemaError as exc:
            errors.append(str(exc))
    assert not errors, f"{objects.overlay} against Kubernetes {k8s_version}:\n" + "\n".join(errors)


def test_every_custom_resource_has_a_vendored_crd(objects):
    kinds = {(o["apiVersion"], o["kind"]) for o in objects.all if "." in o["apiVersion"].split("/")[0]}
    builtin_groups = ("apps", "batch", "policy", "autoscaling", "networking.k8s.io", "rbac.authorization.k8s.io")
    custom = {k for k in kinds if k[0].split("/")[0] not in builtin_groups}
    assert custom <= set(schemas.vendored_crds()), custom - set(schemas.vendored_crds())


# (kind, a field path to an existing mapping, a misspelt key to add there)
MISSPELLINGS = [
    ("Deployment", ["spec", "template", "spec", "containers", 0], "imagePullPolcy"),
    ("Deployment", ["spec", "template", "spec", "securityContext"], "runAsNonroot"),
    ("NetworkPolicy", ["spec"], "podSelectr"),
    ("Ingress", ["spec"], "tsl"),
    ("KafkaTopic", ["spec"], "partition"),
    ("KafkaUser", ["spec", "authorization", "acls", 0], "operation"),  # v1 has only `operations`
    ("ScaledObject", ["spec"], "maxReplicas"),
    ("TriggerAuthentication", ["spec", "secretTargetRef", 0], "paramater"),
    ("ServiceMonitor", ["spec", "endpoints", 0], "intervall"),
    ("PrometheusRule", ["spec", "groups", 0, "rules", 0], "exp"),
]


@pytest.mark.parametrize(("kind", "path", "typo"), MISSPELLINGS, ids=[f"{k}.{t}" for k, _, t in MISSPELLINGS])
def test_a_misspelt_field_fails(kind, path, typo):
    obj = copy.deepcopy(m.Objects("prod").of(kind)[0])
    schemas.validate(obj, schemas.KUBERNETES_VERSIONS[-1])  # valid as rendered
    node = obj
    for key in path:
        node = node[key]
    node[typo] = node.get(typo.lower(), "x")
    with pytest.raises(schemas.SchemaError, match=re.escape(typo)):
        schemas.validate(obj, schemas.KUBERNETES_VERSIONS[-1])


def test_a_wrong_type_fails():
    topic = copy.deepcopy(m.Objects("prod").of("KafkaTopic")[0])
    topic["spec"]["partitions"] = "twelve"
    with pytest.raises(schemas.SchemaError, match="partitions"):
        schemas.validate(topic, schemas.KUBERNETES_VERSIONS[-1])


def test_vendored_crds_record_where_they_came_from():
    """deploy/crds/README.md names every vendored file with its upstream tag and sha256, so a
    changed schema cannot slip in unrecorded."""
    readme = (schemas.CRDS / "README.md").read_text()
    for path in sorted(schemas.CRDS.glob("*.yaml")) + sorted(schemas.CRDS.glob("*.json")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        row = next((line for line in readme.splitlines() if f"`{path.name}`" in line), None)
        assert row, f"deploy/crds/README.md does not list {path.name}"
        assert digest in row, f"{path.name} changed: record its new source and sha256 ({digest})"


def test_nothing_rendered_carries_a_secret_value(objects):
    assert not objects.of("Secret"), "Secrets are created out of band (deploy/k8s/secrets.template.yaml)"
