"""The Deployments run what the code says: its entry points, port and probe routes, a shutdown
grace that covers the apps' own drain times, memory from the measured peaks, scratch space
where the code writes temp files, and the restricted security context."""

import importlib.util

import pytest

from tests.deploy import manifests as m

SERVICES = m.services()


def _pod(objects, service):
    return objects.deployment(service)["spec"]["template"]["spec"]


def _quantity_mib(q: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    for unit, factor in units.items():
        if q.endswith(unit):
            return float(q[: -len(unit)]) * factor
    return float(q) / 2**20


def test_every_service_has_a_deployment(objects):
    running = {m.main_container(d)["name"] for d in objects.of("Deployment")}
    assert running == set(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_entry_points_are_the_local_ones(objects, service):
    pod = _pod(objects, service)
    assert m.main_container(objects.deployment(service))["command"] == ["python", "-m", f"services.{service}"]
    migrate = [c for c in pod.get("initContainers", []) if c["name"] == "migrate"]
    assert migrate, f"{service}: migrations must run before the app starts (init container)"
    assert migrate[0]["command"] == ["python", "-m", f"services.{service}", "migrate"]
    assert "secretKeyRef" in objects.container_env(migrate[0])["DATABASE_URL"]
    for container in pod["containers"] + pod.get("initContainers", []):
        module = container["command"][2]
        spec = importlib.util.find_spec(module)
        assert spec and spec.submodule_search_locations, f"{module} is not a package"
        assert importlib.util.find_spec(f"{module}.__main__"), f"python -m {module} has no __main__"


@pytest.mark.parametrize("service", SERVICES)
def test_port_and_probes_are_the_apps(objects, service_facts, service):
    facts = service_facts(objects, service)
    container = m.main_container(objects.deployment(service))
    assert container["ports"] == [{"name": "http", "containerPort": facts.port, "protocol": "TCP"}]
    get_routes = {r.path for r in facts.routes if "GET" in r.methods and "ops" in r.tags}
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    for kind, probe in probes.items():
        assert probe["port"] == "http", kind
        assert probe["path"] in get_routes, f"{service} {kind}: {probe['path']} is not one of its ops routes"
    # Liveness means "the process is up"; readiness "database, Kafka and workers are fine":
    # restarting a pod because Kafka is away would only add a rebuild to the outage.
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert container["readinessProbe"]["timeoutSeconds"] > m.readiness_wait_seconds()
    service_obj = objects.get("Service", objects.deployment(service)["metadata"]["name"])
    assert [p["targetPort"] for p in service_obj["spec"]["ports"]] == ["http"]


def test_dedupe_gets_time_to_rebuild_before_liveness_counts(objects):
    probe = m.main_container(objects.deployment("dedupe"))["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 600


@pytest.mark.parametrize("service", SERVICES)
def test_grace_period_covers_the_drain(objects, service_facts, service):
    """SIGTERM → preStop sleep, then every consumer finishes its batch in hand (one after the
    other), the sender its sends in flight, the outbox relay its last batch."""
    pod = _pod(objects, service)
    facts = service_facts(objects, service)
    pre_stop = m.main_container(objects.deployment(service))["lifecycle"]["preStop"]["sleep"]["seconds"]
    needed = pre_stop + facts.stop_seconds
    assert pod["terminationGracePeriodSeconds"] >= needed, f"{service} needs {needed} s to stop"


@pytest.mark.parametrize("service", SERVICES)
def test_memory_from_the_measured_peaks(objects, service):
    """Limits ≥ 1.2 × the peak RSS docs/benchmarks.md reports + memory-backed scratch (tmpfs
    pages count against the pod's limit). In production, request = limit: never overcommitted."""
    peak_mib = m.measured_peak_rss_mb()[service] * 1e6 / 2**20
    pod = _pod(objects, service)
    container = m.main_container(objects.deployment(service))
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]), service
    scratch = sum(_quantity_mib(v["emptyDir"]["sizeLimit"]) for v in pod.get("volumes", [])
                  if v.get("emptyDir", {}).get("medium") == "Memory")
    limit = _quantity_mib(resources["limits"]["memory"])
    assert limit >= 1.2 * peak_mib + scratch, f"{service}: {limit} MiB < 1.2 × {peak_mib:.0f} + {scratch}"
    if objects.shared_config["PANUI_ENVIRONMENT"] == "production":
        assert resources["requests"]["memory"] == resources["limits"]["memory"], service


@pytest.mark.parametrize("service", SERVICES)
def test_scratch_space_is_memory_backed(objects, service):
    """The root filesystem is read-only; TMPDIR (or /tmp) is a memory-backed emptyDir, so temp
    files (intake spools big request bodies) never touch the node's disk."""
    pod = _pod(objects, service)
    container = m.main_container(objects.deployment(service))
    env = objects.container_env(container)
    tmpdir = env.get("TMPDIR", {}).get("value", "/tmp")  # noqa: S108 - the container's, not ours
    if m.uses_tempfiles(service):
        assert "TMPDIR" in env, f"{service} writes temp files: say where (TMPDIR)"
    mount = next((v for v in container.get("volumeMounts", []) if v["mountPath"] == tmpdir), None)
    assert mount, f"{service}: nothing writable at {tmpdir}"
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["emptyDir"]["medium"] == "Memory"
    settings = m.settings_class(service)
    if "max_request_bytes" in settings.model_fields:  # one whole request body must fit
        size = int(env.get("PANUI_MAX_REQUEST_BYTES", {}).get("value")
                   or settings.model_fields["max_request_bytes"].default)
        assert _quantity_mib(volume["emptyDir"]["sizeLimit"]) * 2**20 >= size


@pytest.mark.parametrize("service", SERVICES)
def test_restricted_security_context(objects, service):
    deployment = objects.deployment(service)
    pod = _pod(objects, service)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    assert not any("hostPath" in v for v in pod.get("volumes", []))
    for container in pod["containers"] + pod.get("initContainers", []):
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, container["name"]
        assert sc["allowPrivilegeEscalation"] is False, container["name"]
        assert sc["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert container["image"] == m.main_container(deployment)["image"], "one image for all"
        assert not container["image"].endswith(":latest") and ":" in container["image"]
        assert "resources" in container and "limits" in container["resources"], container["name"]


@pytest.mark.parametrize("service", SERVICES)
def test_spread_and_disruption_budget(objects, service):
    deployment = objects.deployment(service)
    labels = deployment["spec"]["selector"]["matchLabels"]
    spread = _pod(objects, service)["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert all(c["labelSelector"]["matchLabels"] == labels for c in spread)
    pdbs = [p for p in objects.of("PodDisruptionBudget") if p["spec"]["selector"]["matchLabels"] == labels]
    assert len(pdbs) == 1, f"{service}: one PodDisruptionBudget"
    assert pdbs[0]["spec"].get("maxUnavailable") == 1


@pytest.mark.parametrize("service", SERVICES)
def test_one_autoscaler_owns_the_replica_count(objects, service_facts, service):
    """Consumers scale on their group's lag (KEDA), the rest on CPU; the Deployment leaves
    `replicas` to the autoscaler (an apply would otherwise reset it)."""
    deployment = objects.deployment(service)
    name = deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"], f"{name}: replicas belong to the autoscaler"
    hpas = [h for h in objects.of("HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == name]
    scaled = [s for s in objects.of("ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == name]
    assert len(hpas) + len(scaled) == 1, f"{name}: exactly one autoscaler"
    if service_facts(objects, service).groups:
        assert scaled, f"{name} consumes a group: scale it on the group's lag"
    else:
        assert hpas and hpas[0]["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    low = hpas[0]["spec"]["minReplicas"] if hpas else scaled[0]["spec"]["minReplicaCount"]
    if objects.shared_config["PANUI_ENVIRONMENT"] == "production":
        assert low >= 2, f"{name}: at least two replicas in production"


def test_dispatch_rehearses_on_simulated_gateways_beside_it(objects):
    """Dry-run incidents go only to simulated gateways on the pod's loopback (the settings refuse
    anything else): the pod must run them, where the settings point, keeping nothing personal
    and reachable from nowhere else."""
    pod = _pod(objects, "dispatch")
    env = objects.container_env(m.main_container(objects.deployment("dispatch")))
    fields = m.settings_class("dispatch").model_fields
    smtp_port = env.get("PANUI_DRY_RUN_SMTP_PORT", {}).get("value") or fields["dry_run_smtp_port"].default
    sms_url = env.get("PANUI_DRY_RUN_SMS_URL", {}).get("value") or fields["dry_run_sms_url"].default
    sidecars = {c["name"]: c for c in pod.get("initContainers", []) if c.get("restartPolicy") == "Always"}
    smtp, sms = sidecars["dry-run-smtp"]["command"], sidecars["dry-run-sms"]["command"]
    assert smtp[:4] == ["python", "-m", "services.gateways", "smtp"]
    assert sms[:4] == ["python", "-m", "services.gateways", "sms"]
    for command, option in ((smtp, "--count-only"), (sms, "--digests-only")):
        assert command[command.index("--host") + 1] == "127.0.0.1" and option in command
    assert smtp[smtp.index("--port") + 1] == str(smtp_port)
    assert sms_url == f"http://127.0.0.1:{sms[sms.index('--port') + 1]}"
    assert smtp[smtp.index("--bounce-webhook-url") + 1] == ""  # no shared receipt secret
    assert all("ports" not in c for c in sidecars.values())
