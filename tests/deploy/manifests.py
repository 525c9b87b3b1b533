"""What tests/deploy compares: the rendered overlays (real kustomize, pinned and built by
deploy/tools/install.sh) and the facts the code states about itself — its services, settings,
routes, consumer groups, topics and shutdown graces — so the manifests are checked against the
code, not against a copy of it."""

import ast
import asyncio
import functools
import importlib
import inspect
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import SecretStr
from starlette.routing import Mount

from services.common.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
SERVICES_DIR = ROOT / "services"


# --- tools ---------------------------------------------------------------------------------

@functools.cache
def tool(name: str) -> Path:
    """The pinned tool, built once into var/tools by the project's own installer."""
    out = subprocess.run([str(DEPLOY / "tools" / "install.sh"), name], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"deploy/tools/install.sh {name} failed:\n{out.stderr[-4000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


@functools.cache
def _rendered(overlay: str) -> tuple[dict, ...]:
    out = subprocess.run([str(tool("kustomize")), "build", str(K8S / "overlays" / overlay)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"kustomize build {overlay} failed:\n{out.stderr}")
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def render(overlay: str) -> list[dict]:
    """Every object the overlay renders (a fresh copy: tests may modify it)."""
    return yaml.safe_load(yaml.safe_dump(list(_rendered(overlay))))


class Objects:
    """One overlay's rendered objects, with the look-ups the tests share."""

    def __init__(self, overlay: str):
        self.overlay = overlay
        self.all = render(overlay)

    def of(self, kind: str) -> list[dict]:
        return [d for d in self.all if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict:
        found = [d for d in self.of(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.overlay}: expected one {kind} {name}, found {len(found)}"
        return found[0]

    def configmap(self, name: str) -> dict:
        """A generated ConfigMap by its base name (kustomize appends a content hash)."""
        found = [d for d in self.of("ConfigMap")
                 if re.fullmatch(rf"{re.escape(name)}(-[a-z0-9]{{10}})?", d["metadata"]["name"])]
        assert len(found) == 1, f"{self.overlay}: expected one ConfigMap {name}, found {len(found)}"
        return found[0]

    @property
    def shared_config(self) -> dict[str, str]:
        return self.configmap("panui-config")["data"]

    def deployment(self, service: str) -> dict:
        found = [d for d in self.of("Deployment") if main_container(d)["name"] == service]
        assert len(found) == 1, f"{self.overlay}: expected one Deployment running {service}"
        return found[0]

    def container_env(self, container: dict) -> dict[str, dict]:
        """Every variable a container gets, envFrom ConfigMaps first, then env (which wins),
        as {name: {"value": ...} | {"secretKeyRef": ...} | {"configMapKeyRef": ...}}."""
        env: dict[str, dict] = {}
        for source in container.get("envFrom", []):
            assert "configMapRef" in source, f"envFrom only from ConfigMaps, not {source}"
            data = next(d for d in self.of("ConfigMap")
                        if d["metadata"]["name"] == source["configMapRef"]["name"])["data"]
            env.update({k: {"value": v, "from": "configmap"} for k, v in data.items()})
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = {"value": item["value"], "from": "env"}
            else:
                env[item["name"]] = dict(item["valueFrom"])
        return env


def main_container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{deployment['metadata']['name']}: one container per pod"
    return containers[0]


# --- the code's own facts -------------------------------------------------------------------

@functools.cache
def services() -> tuple[str, ...]:
    """The deployable services: packages with a settings class and an app factory."""
    found = []
    for pkg in sorted(SERVICES_DIR.iterdir()):
        if (pkg / "settings.py").exists() and (pkg / "app.py").exists() and (pkg / "__main__.py").exists():
            found.append(pkg.name)
    return tuple(found)


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"services.{service}.settings")
    classes = [c for c in vars(module).values() if inspect.isclass(c) and issubclass(c, ServiceSettings)
               and c is not ServiceSettings and c.__module__ == module.__name__]
    assert len(classes) == 1, f"services/{service}/settings.py: expected one settings class"
    return classes[0]


def env_names(cls: type[ServiceSettings]) -> dict[str, str]:
    """{ENV_NAME: field} for every variable pydantic-settings reads for this class."""
    prefix = cls.model_config.get("env_prefix", "")
    names = {}
    for name, info in cls.model_fields.items():
        alias = info.validation_alias
        choices = getattr(alias, "choices", None) or ([alias] if isinstance(alias, str) else [])
        for choice in choices or [f"{prefix}{name}"]:
            names[str(choice).upper()] = name
    return names


def is_secret_field(cls: type[ServiceSettings], name: str) -> bool:
    annotation = cls.model_fields[name].annotation
    return SecretStr in (getattr(annotation, "__args__", None) or (annotation,)) or name == "database_url"


@dataclass(frozen=True)
class Route:
    path: str  # the template, e.g. /v1/incidents/{incident_id}
    methods: frozenset[str]
    tags: frozenset[str]


def app_routes(app) -> list[Route]:  # noqa: ANN001
    """Every route the app serves: its OpenAPI operations (with their tags) plus the plain routes
    outside the schema (FastAPI's /docs, /openapi.json, ...), tagged "docs" — except the
    coordinator console's page (intake's static mount named "console"), tagged "console"."""
    routes = [Route(path, frozenset(m.upper() for m in ops), frozenset(t for op in ops.values()
                                                                       for t in op.get("tags", [])))
              for path, ops in app.openapi()["paths"].items()]
    known = {r.path for r in routes}
    routes += [Route(r.path, frozenset(getattr(r, "methods", None) or ()),
                     frozenset({"console"} if isinstance(r, Mount) and r.name == "console" else {"docs"}))
               for r in app.routes if getattr(r, "path", None) and r.path not in known]
    return routes


@dataclass
class ServiceFacts:
    """What one service does with Kafka and how long it takes to stop, read from its app."""

    service: str
    port: int
    routes: list[Route]
    ensured_topics: set[str]  # created at start-up if missing (checked to exist when not creating)
    creates_topics: bool = True  # PANUI_KAFKA_CREATE_TOPICS
    groups: dict[str, set[str]] = field(default_factory=dict)  # consumer group -> topics
    followed: set[str] = field(default_factory=set)  # read without a group
    transactional_id: str | None = None  # of its producer, when transactional
    stop_seconds: float = 0.0  # worst case from SIGTERM to exit


def build_runtime(service: str, env: dict[str, str], tmp: Path):
    """The service's app and runtime built as production builds them, from `env` (nothing is
    started: no broker or database is contacted)."""
    cls = settings_class(service)
    known = env_names(cls)
    values = {known[k]: realistic_secret(k) if v.startswith("synthetic-") else v
              for k, v in env.items() if k in known}
    # Production mode refuses SQLite; the engine connects lazily, so no server is needed.
    values["database_url"] = "postgresql://panui@postgres.invalid/" + service
    if values.get("kafka_ssl_cafile"):
        # The pod's mounted CA (a path inside the container): a throwaway one here, so the
        # client's TLS context is built exactly as in the pod.
        from testkit.tls import TestCA

        values["kafka_ssl_cafile"] = str(TestCA(tmp / "kafka-ca").cert)
    settings = cls(**values)
    app = importlib.import_module(f"services.{service}.app").create_app(settings)
    return settings, app, app.state.runtime


def facts(service: str, env: dict[str, str], tmp: Path) -> ServiceFacts:
    from services.common.kafka import ConsumerWorker, TopicFollower, make_producer
    from services.common.outbox import OutboxRelay

    settings, app, runtime = build_runtime(service, env, tmp)
    prefix = settings.topic_prefix
    out = ServiceFacts(
        service=service, port=settings.port,
        routes=app_routes(app),
        ensured_topics={t.full_name(prefix) for t in runtime.topics},
        creates_topics=settings.kafka_create_topics,
    )
    factory = runtime._workers_factory  # the consumers the runtime would start
    workers = list(factory(runtime)) if factory else []
    follower_grace = inspect.signature(TopicFollower.stop).parameters.get("grace_s")
    for worker in workers:
        if isinstance(worker, ConsumerWorker):
            out.groups.setdefault(worker.group_id, set()).update(worker.topic_names)
            out.stop_seconds += worker.settings.consumer_stop_grace_s  # stop()'s grace
        elif isinstance(worker, TopicFollower):
            out.followed.add(worker.topic_name)
            out.stop_seconds += follower_grace.default if follower_grace else 0.0
        else:
            raise AssertionError(f"{service}: unknown worker type {type(worker).__name__}")
    out.stop_seconds += inspect.signature(OutboxRelay.stop).parameters["grace_s"].default
    out.stop_seconds += getattr(settings, "sender_stop_grace_s", 0.0)

    async def transactional_id() -> str | None:  # aiokafka builds producers in a running loop
        producer = make_producer(settings)
        manager = getattr(producer, "_txn_manager", None)
        try:
            return manager.transactional_id if manager else None
        finally:
            await producer.stop()

    out.transactional_id = asyncio.run(transactional_id())
    runtime.engine.dispose()
    return out


def readiness_wait_seconds() -> float:
    """The longest wait /readyz makes (asyncio.wait_for timeouts in any `readiness` method of
    services/common/runtime.py), so the readiness probe's timeout can be checked against it."""
    tree = ast.parse((SERVICES_DIR / "common" / "runtime.py").read_text())
    waits = [kw.value.value for node in ast.walk(tree)
             if isinstance(node, ast.AsyncFunctionDef) and node.name == "readiness"
             for call in ast.walk(node) if isinstance(call, ast.Call)
             for kw in call.keywords if kw.arg == "timeout" and isinstance(kw.value, ast.Constant)]
    assert waits, "services/common/runtime.py: no timeout found in readiness(); update tests/deploy"
    return float(max(waits))


def uses_tempfiles(service: str) -> bool:
    return any("tempfile" in p.read_text() for p in (SERVICES_DIR / service).rglob("*.py"))


def measured_peak_rss_mb() -> dict[str, float]:
    """Peak RSS per service from docs/benchmarks.md: the largest "NNN MB" in the peak-RSS column
    of each service's benchmark section (intake, dedupe through Kafka, dispatch)."""
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    sections = {"intake": r"## Intake", "dedupe": r"## Dedupe through Kafka", "dispatch": r"## Dispatch"}
    peaks = {}
    for service, heading in sections.items():
        body = re.split(r"\n## ", text.split(heading, 1)[1], maxsplit=1)[0]
        rows = [line for line in body.splitlines() if line.startswith("|")]
        header = [c.strip().lower() for c in rows[0].strip("|").split("|")]
        col = next(i for i, c in enumerate(header) if "peak rss" in c)
        values = [float(m.replace(",", "")) for row in rows[2:]
                  for m in re.findall(r"([\d,]+(?:\.\d+)?) MB", row.strip("|").split("|")[col])]
        assert values, f"docs/benchmarks.md: no peak RSS for {service}"
        peaks[service] = max(values)
    return peaks


def realistic_secret(name: str) -> str:
    """What an operator puts in the Secret for `name` (the manifests hold references only),
    shaped so production mode accepts it."""
    import hashlib
    import secrets

    from services.common.crypto import generate_key_spec

    if name in ("PANUI_RECORDS_KEYS", "PANUI_NOTICES_KEYS"):  # one keyring per purpose
        return generate_key_spec(f"site-{name.split('_')[1].lower()}1")
    if name == "PANUI_MESSAGE_SIGNING_KEYS":
        from services.common.signing import generate_signing_key_spec

        return generate_signing_key_spec("site1")
    if name == "PANUI_RECEIPT_SECRETS":
        return ",".join(f"{p}={secrets.token_urlsafe(32)}"
                        for p in ("sms-primary", "sms-secondary", "smtp"))
    if name == "PANUI_COORDINATOR_TOKENS":
        return "sha256:" + hashlib.sha256(secrets.token_bytes(32)).hexdigest()
    if name == "DATABASE_URL":
        return "postgresql://panui@postgres.invalid/panui"
    return secrets.token_urlsafe(32)


def synthetic_env(objects: Objects, container: dict) -> dict[str, str]:
    """The container's environment with every secret replaced by a placeholder."""
    env = {}
    for name, source in objects.container_env(container).items():
        env[name] = source["value"] if "value" in source else f"synthetic-{name.lower()}"
    return env


def clean_environ() -> dict[str, str]:
    """os.environ without anything pydantic-settings would read for a Pānui service."""
    known = set()
    for service in services():
        known |= set(env_names(settings_class(service)))
    return {k: v for k, v in os.environ.items() if k.upper() not in known}

