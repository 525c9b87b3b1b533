"""The whole Pānui system as separate processes, the way production runs it: each service's
database migrated first (what `python -m services.<name> migrate` runs), then the local SMTP and SMS
gateways, then intake, dedupe and dispatch, each with its own settings. Any process can be
killed, stopped or restarted; extra replicas of a service share its database and consumer
groups. Kafka and PostgreSQL are either the shared ones (isolated by topic prefix and fresh
databases) or a test's private ones (testkit/private_infra.py) for the scenarios that stop them.

`observe()` collects what reconciliation needs from the system's own records and the
gateways' own logs; `wait_quiescent()` waits until nothing is left to do.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from email import policy as email_policy
from email.parser import BytesHeaderParser
from pathlib import Path

import httpx
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common import migrations
from services.common.kafka_client import client_options
from services.common.lag import LagSampler, LagUnavailable, system_groups
from services.common.settings import ServiceSettings, env_name
from testkit import infra
from testkit.keys import key_env, keyrings
from testkit.processes import (
    HttpProcess,
    ServiceProcess,
    clean_environ,
    service_process,
    sms_gateway_process,
    smtp_gateway_process,
)

COORDINATOR_TOKEN = "faults-coordinator-token"  # noqa: S105 - test-only credential
RECEIPT_SECRET = "faults-receipt-secret"  # noqa: S105 - test-only credential
SERVICES = ("intake", "dedupe", "dispatch")
PENDING = ("queued", "sending", "temporary-failure", "technical-failure")

# Fast test settings; scenarios override per service.
BASE_ENV = {
    "PANUI_LOG_LEVEL": "INFO",
    "PANUI_CONSUMER_POLL_TIMEOUT_MS": "200",
    "PANUI_OUTBOX_POLL_INTERVAL_S": "0.05",
    # The scenarios SIGKILL consumers on purpose: their partitions move on within 10 s, not
    # the production 45 s (the setting is about when to give up on a member, not correctness).
    "PANUI_CONSUMER_SESSION_TIMEOUT_MS": "10000",
}
SERVICE_ENV = {
    "intake": {"PANUI_AGENCY_REQUESTS_PER_MINUTE": "100000"},
    "dedupe": {"PANUI_RELEASE_TICK_S": "0.2"},
    "dispatch": {
        "PANUI_QUIET_HOURS_ENABLED": "false",  # SMS would wait for 08:00 in Auckland
        "PANUI_RETRY_BASE_S": "0.2", "PANUI_RETRY_CAP_S": "2",
        "PANUI_SMTP_TIMEOUT_S": "5", "PANUI_SMS_TIMEOUT_S": "5",
        "PANUI_SENDING_LEASE_S": "15",  # above the timeouts, as docs/dispatch.md requires
        "PANUI_SEND_DEADLINE_S": "10",  # a send ends before its claim could be recovered
        "PANUI_SENDER_IDLE_POLL_S": "0.05", "PANUI_SENDER_STOP_GRACE_S": "5",
    },
}


_TEMPLATES: dict[tuple[str, str], str] = {}  # (admin url, service) -> migrated template database


def migrate(service: str, url: str) -> None:
    """What `python -m services.<service> migrate` runs (services/common/entrypoint.py:
    migrations.upgrade to head), in this process: the command as a subprocess imported the
    whole service first — three of them took minutes at load 30 on 2 cores. Not in threads at
    once (Alembic's context is module state)."""
    migrations.upgrade(infra.migration_tree(service), url)


def drop_templates() -> None:
    """Drop the template databases this process made (end of a run)."""
    while _TEMPLATES:
        (admin_url, _service), name = _TEMPLATES.popitem()
        try:
            infra.drop_database(admin_url, name)
        except psycopg.Error:
            pass  # a private server already gone


@dataclass
class Observed:
    """What the system and the gateways say happened."""

    emails: list[tuple[str, str, str]]  # (to, reference, message id) — the SMTP maildir
    sms: list[tuple[str, str, str]]  # (to, reference, gateway) — each SMS gateway's log
    postal: list[tuple[str, str]]  # (address line 1, notice id) — dispatch's postal list
    public_notice: list[str]  # notice ids on the s 115 list
    notice_versions: dict[str, int]  # notice id -> version (dispatch's notices)
    assignments: list[tuple[str, str, str, str]]  # (incident, agency, record, person) live, dedupe
    summaries: dict[str, dict]  # incident -> dispatch's delivery summary
    sms_send_attempts: int = 0


@dataclass
class Quiescence:
    quiet: bool
    waited_s: float
    last: dict = field(default_factory=dict)


class System:
    def __init__(self, run_dir: Path, *, kafka_bootstrap: str, pg_admin_url: str,
                 topic_prefix: str | None = None, env: dict[str, dict[str, str]] | None = None,
                 sms_gateways: int = 1, sms_proxy: bool = False, start_timeout_s: float = 300.0):
        self.run_dir = run_dir
        self.log_dir = run_dir / "logs"
        self.maildir = run_dir / "maildir"
        self.kafka_bootstrap = kafka_bootstrap
        self.pg_admin_url = pg_admin_url
        self.topic_prefix = topic_prefix or f"faults-{uuid.uuid4().hex[:10]}."
        self.keyrings = keyrings("faults")  # one per purpose, as in production (testkit/keys.py)
        self.overrides = env or {}
        self.sms_gateway_count = sms_gateways
        self.sms_proxy = sms_proxy  # a proxy that loses answers in front of gateway sms-0
        self.databases: dict[str, tuple[str, str]] = {}  # service -> (name, url)
        self.old_databases: list[str] = []
        self.services: dict[str, ServiceProcess] = {}
        self.gateways: dict[str, HttpProcess] = {}
        self.smtp_port = infra.free_port()
        self.events: list[tuple[float, str]] = []
        self.started_at = time.time()
        # For a process to answer after a (re)start: at load 30 on 2 cores importing a service
        # took over 90 s (a scenario then failed at its start, proving nothing).
        self.start_timeout_s = start_timeout_s
        self.ports: dict[str, int] = {}  # service -> port of its first process

    # ------------------------------------------------------------------ set-up
    def env_for(self, service: str) -> dict[str, str]:
        env = {**clean_environ(), **BASE_ENV, **SERVICE_ENV[service],
               "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
               "PANUI_TOPIC_PREFIX": self.topic_prefix, **key_env(service, self.keyrings),
               "PANUI_COORDINATOR_TOKENS": COORDINATOR_TOKEN,
               "DATABASE_URL": self.databases[service][1]}
        if service == "dispatch":
            env.update({
                "PANUI_SMTP_PORT": str(self.smtp_port),
                "PANUI_SMS_PRIMARY_URL": (self.gateways.get("sms-proxy") or self.gateways["sms-0"]).url,
                "PANUI_SMS_SECONDARY_URL": self.gateways["sms-1"].url if "sms-1" in self.gateways else "",
                "PANUI_RECEIPT_SECRET": RECEIPT_SECRET,
            })
            # The whole fault suite at another SMS batch size (`FAULTS_SMS_BATCH_SIZE=1` for
            # single sends): the runner's own PANUI_* never reach a service, so not that name.
            if batch := os.environ.get("FAULTS_SMS_BATCH_SIZE"):
                env["PANUI_SMS_BATCH_SIZE"] = batch
        env.update(self.overrides.get(service, {}))
        return env

    async def create_database(self, service: str) -> str:
        """A new database for `service` at the code's schema, as the service's own command
        leaves it (what `python -m services.<service> migrate` runs, once per server and service,
        into a template that later databases are copied from); returns its URL."""
        key = (self.pg_admin_url, service)
        if key not in _TEMPLATES:
            name, url = infra.create_database(self.pg_admin_url, prefix=f"tpl_faults_{service}")
            try:
                migrate(service, url)
            except BaseException:
                infra.drop_database(self.pg_admin_url, name)
                raise
            _TEMPLATES[key] = name
        name = f"faults_{service}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.pg_admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_TEMPLATES[key]}"')
        if service in self.databases:
            self.old_databases.append(self.databases[service][0])
        self.databases[service] = (name, infra.database_url(self.pg_admin_url, name))
        return self.databases[service][1]

    async def start(self) -> None:
        dispatch_port = infra.free_port()
        self.gateways["smtp"] = smtp_gateway_process(
            self.smtp_port, infra.free_port(), self.maildir,
            f"http://127.0.0.1:{dispatch_port}/v1/receipts/smtp", RECEIPT_SECRET, self.log_dir)
        for i in range(self.sms_gateway_count):
            self.gateways[f"sms-{i}"] = sms_gateway_process(infra.free_port(), RECEIPT_SECRET,
                                                            self.log_dir, name=f"sms-{i}")
        if self.sms_proxy:
            port = infra.free_port()
            self.gateways["sms-proxy"] = HttpProcess(
                name="sms-proxy", argv=[sys.executable, "-m", "testkit.faultproxy", "--port", str(port),
                                        "--upstream", self.gateways["sms-0"].url],
                env=clean_environ(), log_path=self.log_dir / "sms-proxy.log", port=port,
                health_path="/_proxy/stats")
        for gateway in self.gateways.values():  # they start while the databases are made
            gateway.start()
        for service in SERVICES:  # the first of a run (and of a private server) migrates the templates
            await self.create_database(service)
        ports = {"intake": infra.free_port(), "dedupe": infra.free_port(), "dispatch": dispatch_port}
        self.ports = ports
        for service in SERVICES:
            self.add_service(service, ports[service])
        await self.start_services(*SERVICES)
        await asyncio.gather(*(g.wait_up() for g in self.gateways.values()))

    def add_service(self, service: str, port: int | None = None, name: str | None = None) -> ServiceProcess:
        """Another process of `service` (a replica when `name` differs): same database, same
        consumer groups. Not started."""
        port = port or infra.free_port()
        env = self.env_for(service)
        if service == "dispatch":
            env["PANUI_RECEIPT_CALLBACK_BASE_URL"] = f"http://127.0.0.1:{port}"
        if service == "intake":  # the console's pass-through to the first dedupe and dispatch
            for other in ("dedupe", "dispatch"):
                if other in self.ports:
                    env.setdefault(f"PANUI_{other.upper()}_URL", f"http://127.0.0.1:{self.ports[other]}")
        proc = service_process(service, port, env, self.log_dir, name=name)
        self.services[proc.name] = proc
        return proc

    async def start_services(self, *names: str) -> None:
        for name in names:
            self.services[name].start()
            self.event(f"start {name}")
        await asyncio.gather(*(self.services[n].wait_up(timeout=self.start_timeout_s) for n in names))

    def use_database(self, service: str, url: str) -> None:
        """Point every process of `service` at `url` from their next start."""
        for proc in self.services.values():
            if proc.service == service:
                proc.env["DATABASE_URL"] = url

    # ------------------------------------------------------------------ faults
    def event(self, what: str) -> None:
        self.events.append((time.time(), what))

    def kill(self, name: str) -> None:
        self.services.get(name, self.gateways.get(name)).kill()
        self.event(f"SIGKILL {name}")

    def terminate(self, name: str, grace_s: float = 45.0) -> float:
        took = self.services.get(name, self.gateways.get(name)).terminate(grace_s)
        self.event(f"SIGTERM {name} (exited after {took:.1f}s)")
        return took

    async def restart(self, name: str) -> None:
        proc = self.services.get(name) or self.gateways[name]
        if proc.alive:
            proc.kill()
            self.event(f"SIGKILL {name}")
        proc.start()
        self.event(f"start {name}")
        await proc.wait_up(timeout=self.start_timeout_s)

    def kafka_options(self) -> dict:
        """The harness's own Kafka clients connect as the services do: the bootstrap and the
        PANUI_KAFKA_* security settings given to dedupe (services/common/kafka_client.py)."""
        env = self.overrides.get("dedupe", {})  # the runner's own PANUI_* never reach a service
        fields = {name: env[env_name(name)] for name in ServiceSettings.model_fields
                  if name.startswith("kafka_") and name != "kafka_bootstrap_servers"
                  and env_name(name) in env}
        return client_options(ServiceSettings(**fields, kafka_bootstrap_servers=self.kafka_bootstrap))

    async def rewind_group(self, group: str, topic: str, partitions: int = 3) -> None:
        """Commit offset 0 on every partition of `topic` for consumer group `group` (names
        without the prefix), as an operator replays a topic. The group must have no live
        member (stop its processes first)."""
        consumer = AIOKafkaConsumer(**self.kafka_options(), group_id=f"{self.topic_prefix}{group}",
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(f"{self.topic_prefix}{topic}", p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.commit(dict.fromkeys(tps, 0))
        finally:
            await consumer.stop()
        self.event(f"rewound {group} on {topic} to offset 0")

    # ------------------------------------------------------------------ reading the system
    def query(self, service: str, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.databases[service][1], connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()

    def count(self, service: str, sql: str, params: tuple = ()) -> int:
        return self.query(service, sql, params)[0][0]

    def email_count(self) -> int:
        return sum(1 for _ in self.emails())

    def emails(self) -> list[tuple[str, str, str]]:
        """(to, reference, message id) of every notice email the SMTP gateway accepted (its
        maildir; bounces, which the gateway files there too, are left out)."""
        # compat32: raw header strings; the default policy's address parser chokes on some To
        # headers (HeaderParseError), and only the address text is wanted here.
        parser = BytesHeaderParser(policy=email_policy.compat32)
        found = []
        for path in sorted([*self.maildir.glob("new/*"), *self.maildir.glob("cur/*")]):
            headers = parser.parsebytes(path.read_bytes())
            reference = headers.get("X-Panui-Reference")
            if headers.get("Content-Type", "").startswith("multipart/report") or not reference:
                continue
            found.append((str(headers["To"]).strip().lower(), str(reference), str(headers["Message-ID"])))
        return found

    def sms_gateways(self) -> dict[str, HttpProcess]:
        """The SMS gateways themselves (sms-0, sms-1…), not a proxy in front of one."""
        return {n: g for n, g in self.gateways.items() if n.removeprefix("sms-").isdigit()}

    async def control(self, gateway: str, path: str, body: dict) -> dict:
        """POST to a gateway's (or the proxy's) control API."""
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.post(self.gateways[gateway].url + path, json=body)
            r.raise_for_status()
            return r.json()

    async def sms_messages(self) -> list[tuple[str, str, str]]:
        out = []
        async with httpx.AsyncClient(timeout=10) as client:
            for name, gateway in self.sms_gateways().items():
                body = (await client.get(gateway.url + "/v1/messages")).json()
                out += [(m["to"], m["reference"], name) for m in body["messages"]]
        return out

    async def sms_send_attempts(self) -> int:
        total = 0
        async with httpx.AsyncClient(timeout=10) as client:
            for gateway in self.sms_gateways().values():
                total += (await client.get(gateway.url + "/_control/stats")).json()["send_attempts"]
        return total

    def dispatch_url(self) -> str:
        for proc in self.services.values():
            if proc.service == "dispatch" and proc.alive:
                return proc.url
        raise AssertionError("no dispatch process is running")

    async def observe(self, incident_ids: list[str]) -> Observed:
        postal, public, summaries = [], [], {}
        headers = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}
        # A loaded box (load 35+) took over 30 s to render a 10k-person summary: the chaos run
        # at 20k records settled, then died here. Reading the result must not be the fault.
        async with httpx.AsyncClient(base_url=self.dispatch_url(), timeout=180, headers=headers) as client:
            for incident in incident_ids:
                summaries[incident] = (await client.get(
                    f"/v1/incidents/{incident}/deliveries/summary")).json()
                csv_text = (await client.get(f"/v1/incidents/{incident}/unreachable.csv")).text
                for row in csv.DictReader(io.StringIO(csv_text)):
                    if row["list"] == "postal":
                        postal.append((row["address_line1"], row["notice_id"]))
                    else:
                        public.append(row["notice_id"])
        notices = self.query("dispatch", "SELECT notice_id, version, incident_id FROM dispatch_notice")
        versions = {notice_id: version for notice_id, version, _incident in notices}
        # A system shared by several scenarios (each its own incidents) also carries the others'
        # messages: those of another incident's notice are theirs. A message whose notice
        # dispatch does not know stays in (reconciliation shows it as to no known person).
        others = {notice_id for notice_id, _v, incident in notices if incident not in incident_ids}

        def ours(reference: str) -> bool:
            return reference.split(":", 1)[0] not in others

        assignments = [tuple(r) for r in self.query(
            "dedupe", "SELECT incident_id, agency_id, source_record_id, person_id FROM record_state "
                      "WHERE NOT withdrawn AND person_id IS NOT NULL")]
        return Observed([m for m in self.emails() if ours(m[1])],
                        [m for m in await self.sms_messages() if ours(m[1])], postal, public,
                        versions, assignments, summaries, await self.sms_send_attempts())

    # ------------------------------------------------------------------ quiescence
    def lag_sampler(self) -> LagSampler:
        return LagSampler(self.kafka_bootstrap, self.topic_prefix, system_groups(self.topic_prefix),
                          request_timeout_ms=5000)

    async def snapshot(self, sampler: LagSampler | None = None) -> dict:
        """Work left anywhere: consumer lag (from Kafka), outbox rows, unfinished deliveries.
        `sampler`: one kept across the snapshots of a wait (a new admin client every half
        second is most of a snapshot's cost on a loaded box); otherwise one for this call."""
        state: dict = {}
        try:
            if sampler is None:
                async with self.lag_sampler() as own:
                    samples = await own.sample()
            else:
                samples = await sampler.sample()
            state["lag"] = {g.group.removeprefix(self.topic_prefix): g.total_lag for g in samples}
        except (LagUnavailable, OSError) as exc:
            if sampler is not None:
                await sampler.close()  # reconnects at the next sample (a broker restarted)
            state["lag"] = f"unavailable: {type(exc).__name__}"
        try:
            state["outbox"] = {s: self.count(s, "SELECT count(*) FROM outbox_message") for s in SERVICES}
            state["pending_deliveries"] = self.count(
                "dispatch", "SELECT count(*) FROM delivery WHERE status = ANY(%s) "
                            "AND channel IN ('email', 'sms')", (list(PENDING),))
            state["notices"] = self.count("dispatch", "SELECT count(*) FROM dispatch_notice")
            state["deliveries"] = dict(self.query(
                "dispatch", "SELECT channel || '/' || status, count(*) FROM delivery GROUP BY 1"))
        except psycopg.Error as exc:
            state["database"] = f"unavailable: {type(exc).__name__}"
        state["emails"] = self.email_count()
        try:
            state["sms"] = len(await self.sms_messages())
        except httpx.HTTPError as exc:
            state["sms"] = f"unavailable: {type(exc).__name__}"
        return state

    @staticmethod
    def _idle(state: dict) -> bool:
        lag = state.get("lag")
        return (isinstance(lag, dict) and not any(lag.values()) and "database" not in state
                and not any(state["outbox"].values()) and state["pending_deliveries"] == 0)

    async def wait_quiescent(self, timeout: float = 120.0, settle_s: float = 3.0,
                             progress_s: float | None = None, max_s: float | None = None) -> Quiescence:
        """Until no consumer has lag, no outbox holds a row and no email/SMS delivery is
        unfinished — and nothing changed for `settle_s` (a release tick or a receipt may still
        be on its way). Returns whether that happened within `timeout`, and the last state.
        With `progress_s`, a system still making progress (its state changed within the last
        `progress_s`) gets more time after `timeout`, up to `max_s` in all: a slow box sends
        fewer messages a second, which is not a fault (`make chaos` at 20k records, load 35:
        ~5 emails/s, still sending when a fixed 900 s ran out)."""
        started = time.monotonic()
        quiet_since, previous, state = None, None, {}
        changed_at = started
        sampler = self.lag_sampler()

        def waiting() -> bool:
            now = time.monotonic()
            if now - started < timeout:
                return True
            if progress_s is None or (max_s is not None and now - started >= max_s):
                return False
            return now - changed_at < progress_s

        try:
            while waiting():
                state = await self.snapshot(sampler)
                if state != previous:
                    changed_at = time.monotonic()
                if self._idle(state) and state == previous:
                    quiet_since = quiet_since or time.monotonic()
                    if time.monotonic() - quiet_since >= settle_s:
                        return Quiescence(True, time.monotonic() - started, state)
                else:
                    quiet_since = None
                previous = state
                await asyncio.sleep(0.5)
            return Quiescence(False, time.monotonic() - started, state)
        finally:
            await sampler.close()

    async def wait_for(self, predicate, timeout: float = 60.0, what: str = "condition") -> None:  # noqa: ANN001
        """Poll `predicate()` (sync or async) until true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    # ------------------------------------------------------------------ tear-down
    async def close(self, drop: bool = True) -> None:
        for proc in [*self.services.values(), *self.gateways.values()]:
            proc.kill()
        if drop:
            for name in [*(n for n, _ in self.databases.values()), *self.old_databases]:
                try:
                    infra.drop_database(self.pg_admin_url, name)
                except psycopg.Error:
                    pass  # a private server already gone
            try:
                await asyncio.wait_for(
                    infra.delete_topics_with_prefix(self.kafka_bootstrap, self.topic_prefix), 30)
            except Exception:  # noqa: BLE001, S110 - a private broker already gone
                pass
