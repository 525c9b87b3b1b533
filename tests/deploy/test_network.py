"""Who may talk to whom. The Ingress exposes exactly the apps' public routes (agency,
coordinator, receipts — read from the apps' route tables), never /healthz, /readyz, /metrics
or the docs (the coordinator console's page, /console, is); the receipt webhook has a host of
its own. NetworkPolicies deny by default, let in only the ingress controller and Prometheus,
and let each service out only to Kafka, its own database and the gateways its settings name —
plus the one call between services: the console's pass-through, intake → dedupe and dispatch
(their HTTP port, from intake's pods only)."""

import ipaddress
from urllib.parse import urlsplit

import pytest

from tests.deploy import manifests as m

SERVICES = m.services()
# "staff": the audit log and token revocation, for signed-in staff (roles checked per route).
# "console": intake's pass-through for the console and its combined Commissioner's report
# (staff token required, like "coordinator"; tagged apart so the fuzz test of intake alone
# does not send it to services it lacks).
# "call centre": staff with that role (lookups, scripted answers). "public": the notice check,
# unauthenticated and rate-limited, on a host of its own (test below).
PUBLIC_TAGS = {"agency", "coordinator", "receipts", "staff", "console", "call centre", "public"}
POSTGRES_PORT = 5432  # DATABASE_URL is a secret: the policy assumes PostgreSQL's port


def _matches(path: str, path_type: str, route: str) -> bool:
    """Kubernetes Ingress path semantics: Prefix matches whole path elements."""
    if path_type == "Exact":
        return route == path
    prefix = path.rstrip("/")
    return route == prefix or route.startswith(prefix + "/") or prefix == ""


def _service_of(objects, service_name: str) -> str:
    service = objects.get("Service", service_name)
    selector = service["spec"]["selector"]
    for name in SERVICES:
        if objects.deployment(name)["spec"]["selector"]["matchLabels"] == selector:
            return name
    raise AssertionError(f"Service {service_name} selects no Pānui Deployment")


def _exposure(objects, service_facts):
    """[(ingress, host, service, route)] for every app route some Ingress path reaches."""
    out = []
    for ingress in objects.of("Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["pathType"] in ("Prefix", "Exact"), "no controller-specific paths"
                backend = path["backend"]["service"]
                service = _service_of(objects, backend["name"])
                ports = [p["name"] for p in objects.get("Service", backend["name"])["spec"]["ports"]]
                assert backend["port"]["name"] in ports
                reached = [r for r in service_facts(objects, service).routes
                           if _matches(path["path"], path["pathType"], r.path)]
                assert reached, f"{rule['host']}{path['path']} reaches no route of {service}"
                out += [(ingress["metadata"]["name"], rule["host"], service, r) for r in reached]
    return out


def test_ingress_exposes_only_public_routes(objects, service_facts):
    for _ingress, host, service, route in _exposure(objects, service_facts):
        assert route.tags and route.tags <= PUBLIC_TAGS, f"{host}{route.path} ({service}, {sorted(route.tags)}) exposed"


def test_every_public_route_is_reachable(objects, service_facts):
    exposed = {(service, route.path) for _i, _h, service, route in _exposure(objects, service_facts)}
    for service in SERVICES:
        for route in service_facts(objects, service).routes:
            if route.tags & PUBLIC_TAGS:
                assert (service, route.path) in exposed, f"{service} {route.path} is not reachable"


def test_receipts_have_a_host_of_their_own(objects, service_facts):
    hosts: dict[str, set[str]] = {}
    for _ingress, host, _service, route in _exposure(objects, service_facts):
        hosts.setdefault(host, set()).update(route.tags)
    receipt_hosts = [h for h, tags in hosts.items() if "receipts" in tags]
    assert receipt_hosts and all(hosts[h] == {"receipts"} for h in receipt_hosts), hosts


def test_the_public_notice_check_has_a_host_of_its_own(objects, service_facts):
    """People type this address: nothing staff-facing answers beside it, and it is routed."""
    hosts: dict[str, set[str]] = {}
    for _ingress, host, _service, route in _exposure(objects, service_facts):
        hosts.setdefault(host, set()).update(route.tags)
    check_hosts = [h for h, tags in hosts.items() if "public" in tags]
    assert check_hosts and all(hosts[h] == {"public"} for h in check_hosts), hosts


def test_ingress_is_tls_only(objects):
    for ingress in objects.of("Ingress"):
        covered = {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]}
        assert all(tls.get("secretName") for tls in ingress["spec"]["tls"])
        assert {r["host"] for r in ingress["spec"]["rules"]} <= covered, ingress["metadata"]["name"]
        assert ingress["spec"].get("ingressClassName")


# --- NetworkPolicies -------------------------------------------------------------------------

def _selects(policy: dict, labels: dict) -> bool:
    selector = policy["spec"]["podSelector"]
    assert "matchExpressions" not in selector, "only matchLabels selectors are evaluated here"
    return selector.get("matchLabels", {}).items() <= labels.items()


def _peer(peer: dict) -> tuple:
    if "ipBlock" in peer:
        return ("ip", peer["ipBlock"]["cidr"])
    if "namespaceSelector" not in peer:  # a pod in this namespace: the console's pass-through
        assert set(peer) == {"podSelector"}, peer
        return ("local", tuple(sorted(peer["podSelector"]["matchLabels"].items())))
    return ("pods", tuple(sorted(peer["namespaceSelector"].get("matchLabels", {}).items())),
            tuple(sorted(peer.get("podSelector", {}).get("matchLabels", {}).items())))


def _rules(objects, labels: dict, direction: str) -> set[tuple]:
    """{(peer, protocol, port)} the policies selecting these pod labels allow, DNS aside."""
    allowed = set()
    key = {"Ingress": "from", "Egress": "to"}[direction]
    for policy in objects.of("NetworkPolicy"):
        if policy["metadata"]["name"] == "allow-dns" or not _selects(policy, labels):
            continue
        for rule in policy["spec"].get(direction.lower(), []):
            assert rule.get(key) and rule.get("ports"), f"{policy['metadata']['name']}: no open-ended rules"
            allowed |= {(_peer(p), port["protocol"], port["port"]) for p in rule[key] for port in rule["ports"]}
    return allowed


def test_default_deny_and_dns(objects):
    deny = objects.get("NetworkPolicy", "default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = objects.get("NetworkPolicy", "allow-dns")["spec"]
    assert dns["podSelector"] == {} and dns["policyTypes"] == ["Egress"]
    assert {p["port"] for rule in dns["egress"] for p in rule["ports"]} == {53}
    assert all(peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
               for rule in dns["egress"] for peer in rule["to"])


def _gateway_ports(objects, service) -> set[int]:
    """The ports of the gateways the service's settings name (SMTP relay, SMS providers)."""
    cls = m.settings_class(service)
    names = m.env_names(cls)
    env = {names[k]: v["value"] for k, v in objects.container_env(m.main_container(objects.deployment(service))).items()
           if k in names and "value" in v}

    def value(field: str):  # noqa: ANN202
        return env.get(field, cls.model_fields[field].default)

    ports = set()
    if "smtp_host" in cls.model_fields:
        ports.add(int(value("smtp_port")))
    for field in ("sms_primary_url", "sms_secondary_url"):
        if field in cls.model_fields and value(field):
            url = urlsplit(value(field))
            ports.add(url.port or {"https": 443, "http": 80}[url.scheme])
    return ports


@pytest.mark.parametrize("service", SERVICES)
def test_egress_is_kafka_its_database_and_its_gateways(objects, service):
    labels = objects.deployment(service)["spec"]["template"]["metadata"]["labels"]
    egress = _rules(objects, labels, "Egress")
    host, port = objects.shared_config["KAFKA_BOOTSTRAP_SERVERS"].split(",")[0].rsplit(":", 1)
    namespace = host.split(".")[1]
    cluster = objects.of("KafkaUser")[0]["metadata"]["labels"]["strimzi.io/cluster"]
    kafka = ("pods", (("kubernetes.io/metadata.name", namespace),),
             (("strimzi.io/cluster", cluster), ("strimzi.io/kind", "Kafka")))
    assert (kafka, "TCP", int(port)) in egress, f"{service} cannot reach the Kafka brokers"
    database = [r for r in egress if r[2] == POSTGRES_PORT]
    assert len(database) == 1, f"{service}: one database"
    gateways = {r for r in egress if r[0] != kafka and r[2] != POSTGRES_PORT and r[0][0] != "local"}
    assert {r[2] for r in gateways} == _gateway_ports(objects, service), f"{service}: {sorted(gateways)}"
    assert all(r[0][0] == "ip" for r in gateways)


def test_each_service_has_its_own_database(objects):
    peers = []
    for service in SERVICES:
        labels = objects.deployment(service)["spec"]["template"]["metadata"]["labels"]
        peers += [r[0] for r in _rules(objects, labels, "Egress") if r[2] == POSTGRES_PORT]
    assert len(set(peers)) == len(SERVICES), "three databases (possibly one server: then say so here)"


@pytest.mark.parametrize("service", SERVICES)
def test_ingress_only_from_the_controller_and_prometheus(objects, service_facts, service):
    deployment = objects.deployment(service)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    port = service_facts(objects, service).port
    ingress = {r for r in _rules(objects, labels, "Ingress") if r[0][0] != "local"}  # see below
    assert {(proto, p) for _peer_, proto, p in ingress} == {("TCP", port)}
    peers = {r[0] for r in ingress}
    prometheus = {p for p in peers if ("app.kubernetes.io/name", "prometheus") in p[2]}
    assert len(prometheus) == 1, f"{service}: Prometheus scrapes it"
    controller = peers - prometheus
    backend = any(_service_of(objects, path["backend"]["service"]["name"]) == service
                  for ing in objects.of("Ingress") for rule in ing["spec"]["rules"] for path in rule["http"]["paths"])
    assert bool(controller) == backend, f"{service}: the ingress controller reaches it iff an Ingress routes to it"
    assert len(controller) <= 1


def test_one_ingress_controller(objects):
    peers = set()
    for service in SERVICES:
        labels = objects.deployment(service)["spec"]["template"]["metadata"]["labels"]
        peers |= {r[0] for r in _rules(objects, labels, "Ingress")
                  if r[0][0] != "local" and ("app.kubernetes.io/name", "prometheus") not in r[0][2]}
    assert len(peers) == 1, f"every service trusts the same ingress controller, not {sorted(peers)}"


def _labels(objects, service: str) -> tuple:
    return tuple(sorted(objects.deployment(service)["spec"]["template"]["metadata"]["labels"].items()))


def _selected(objects, local_peer: tuple) -> set[str]:
    """The Pānui services whose pods an in-namespace peer's podSelector selects."""
    return {s for s in SERVICES if set(local_peer[1]) <= set(_labels(objects, s))}


def test_the_console_pass_through_is_the_only_call_between_services(objects, service_facts):
    """Intake's console pass-through (PANUI_DEDUPE_URL, PANUI_DISPATCH_URL) reaches dedupe's and
    dispatch's pods on their HTTP port, allowed out of intake and into them from intake alone;
    no other service calls another."""
    intake_env = objects.container_env(m.main_container(objects.deployment("intake")))
    for target in ("dedupe", "dispatch"):
        url = urlsplit(intake_env[f"PANUI_{target.upper()}_URL"]["value"])
        service = objects.get("Service", url.hostname.split(".")[0])
        assert _service_of(objects, service["metadata"]["name"]) == target
        assert (url.port or 80) in {p["port"] for p in service["spec"]["ports"]}
    for service in SERVICES:
        labels = objects.deployment(service)["spec"]["template"]["metadata"]["labels"]
        out = {(frozenset(_selected(objects, r[0])), r[2])
               for r in _rules(objects, labels, "Egress") if r[0][0] == "local"}
        inn = {(frozenset(_selected(objects, r[0])), r[2])
               for r in _rules(objects, labels, "Ingress") if r[0][0] == "local"}
        if service == "intake":
            assert out == {(frozenset({t}), service_facts(objects, t).port)
                           for t in ("dedupe", "dispatch")}, out
            assert inn == set()
        else:
            assert out == set(), f"{service} calls another service"
            assert inn == {(frozenset({"intake"}), service_facts(objects, service).port)}, inn


def test_the_console_page_is_routed(objects, service_facts):
    """/console (the page; its API calls go to intake's /v1/console pass-through) on intake's host."""
    reached = {(service, route.path) for _i, _h, service, route in _exposure(objects, service_facts)}
    assert ("intake", "/console") in reached
    assert any(s == "intake" and path.startswith("/v1/console/") for s, path in reached)


def test_dispatch_believes_forwarded_for_only_from_a_bounded_range(objects):
    """Behind the ingress the per-client limit of the notice check needs the controller's
    X-Forwarded-For; believing it from everyone ("*", 0.0.0.0/0) would let any client dodge
    the limit by naming a new address each time (tests/dispatch/test_genuine.py)."""
    env = m.synthetic_env(objects, m.main_container(objects.deployment("dispatch")))
    ranges = [r.strip() for r in env.get("FORWARDED_ALLOW_IPS", "").split(",") if r.strip()]
    assert ranges, f"{objects.overlay}: dispatch sets no FORWARDED_ALLOW_IPS"
    for text in ranges:
        network = ipaddress.ip_network(text, strict=True)  # an address or a range, never "*"
        assert network.prefixlen >= 8 and network.is_private, text
