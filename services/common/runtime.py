"""The runtime every Pānui service shares: settings, database, sealer, Kafka producer, outbox
relay, consumer workers — started and stopped together by the FastAPI lifespan — plus the
/healthz, /readyz and /metrics endpoints.

/healthz is liveness: it fails (503) only when a background loop is dead (crashed more often
than its restart policy allows) or wedged (stuck in one unit of work), i.e. when restarting
the process is the cure. /readyz is "can serve requests": it fails only on the database, which
every service's API needs. Kafka is reported but never makes a service unready — intake keeps
accepting feeds into its outbox while the broker is away, and dedupe's and dispatch's APIs
read their own databases; their consumers simply wait. (docs/operations.md)
"""

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlmodel import SQLModel
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from services.common import access, db, inbound, metrics, migrations, staffapi
from services.common.auth import CONFIGURED_PRINCIPAL, CoordinatorAuth, StaffAuth
from services.common.crypto import Sealer, Vault
from services.common.deadletters import DeadLetterPublisher
from services.common.deps import Caller
from services.common.errors import install_error_handlers
from services.common.inbound import InboundGuard
from services.common.kafka import (
    ConsumerWorker,
    MissingTopics,
    TopicFollower,
    ensure_topics,
    kafka_reachable,
    make_producer,
    restart_policy,
)
from services.common.keystore import DatabaseKeySource
from services.common.logging import configure_logging
from services.common.outbox import OutboxRelay
from services.common.settings import ServiceSettings
from services.common.signing import MessageSigner
from services.common.tasks import SupervisedLoop
from services.common.topics import DEAD_LETTERS, TopicSpec

log = logging.getLogger(__name__)

Worker = ConsumerWorker | TopicFollower
WorkersFactory = Callable[["ServiceRuntime"], Iterable[Worker]]


class LoopState(BaseModel):
    state: Literal["running", "restarting", "dead", "wedged", "stopped", "not-started"]
    restarts: int
    busy_for_s: float | None = None  # how long the unit of work in hand has taken
    last_error: str | None = None  # the last crash's exception class, never its text


class HealthBody(BaseModel):
    status: Literal["ok", "unhealthy"]
    loops: dict[str, LoopState]


class ReadyBody(BaseModel):
    status: Literal["ready", "not-ready"]
    checks: dict[str, str]  # each "ok" or "error: <exception class>"; all ok means ready
    details: dict[str, Any]  # kafka, loops, dead_letters: reported, never failing readiness


@dataclass
class Readiness:
    checks: dict[str, str] = field(default_factory=dict)  # each must be "ok" to be ready
    details: dict = field(default_factory=dict)  # reported, never failing readiness

    @property
    def ready(self) -> bool:
        return all(v == "ok" for v in self.checks.values())


class ServiceRuntime:
    def __init__(
        self,
        settings: ServiceSettings,
        models: list[type[SQLModel]],
        topics: Iterable[TopicSpec],
        workers: WorkersFactory | None = None,
        on_start: Callable[["ServiceRuntime"], Awaitable[None]] | None = None,
    ):
        settings.check_production()  # before anything is opened: refuse development defaults
        self.settings = settings
        self.engine = db.make_engine(settings.resolved_database_url())
        self.db = db.Database(self.engine)
        self.coordinators = CoordinatorAuth(settings.coordinator_tokens.get_secret_value())
        self.staff = StaffAuth(settings)
        self.models = [*models, *migrations.SHARED_MODELS]
        self.migrations = migrations.MigrationTree.of(self.models)
        # A service that consumes may dead-letter what it cannot take.
        self.topics = [*topics, DEAD_LETTERS] if workers else list(topics)
        # The KEKs of this service's purposes only, and its own store of incident data keys.
        self.keks = {purpose: Sealer(spec) for purpose, spec in settings.keyring_specs().items()}
        self.vault = Vault(self.keks, DatabaseKeySource(self.engine))
        self.sealer = self.vault
        self.signer = MessageSigner(settings.message_signing_keys.get_secret_value())
        self._workers_factory = workers
        self._on_start = on_start
        self.producer = None
        self.relay: OutboxRelay | None = None
        self.dead_letters: DeadLetterPublisher | None = None
        self.workers: list[Worker] = []
        # Collectors whose values are computed at scrape time (see metrics.render).
        self.metric_collectors: list = []

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()  # release whatever did start (producer, consumers, relay)
            raise

    async def _start(self) -> None:
        # Tables come from migrations (`python -m services.<name> migrate`), never from start-up:
        # a database at another revision than the code's would fail later and less clearly.
        try:
            await db.run_db(migrations.check_current, self.engine, self.migrations)
        except migrations.SchemaNotCurrent as exc:
            log.error("not starting: %s", exc)
            raise
        try:
            await ensure_topics(self.settings, self.topics)
        except MissingTopics as exc:
            log.error("not starting: %s", exc)
            raise
        self.producer = make_producer(self.settings)
        await self.producer.start()
        self.dead_letters = DeadLetterPublisher(self.settings, self.producer)
        self.relay = OutboxRelay(self.settings, self.engine, self.producer,
                                 restart_policy(self.settings), signer=self.signer)
        self.relay.start()
        if self._on_start:
            await self._on_start(self)
        self.workers = list(self._workers_factory(self)) if self._workers_factory else []
        for worker in self.workers:
            await worker.start()
        log.info("service started", extra={"service": self.settings.service_name})

    async def stop(self) -> None:
        for worker in self.workers:
            await worker.stop()
        if self.relay:
            await self.relay.stop()
        if self.producer:
            await self.producer.stop()
        self.engine.dispose()
        log.info("service stopped", extra={"service": self.settings.service_name})

    async def authenticate(self, token: str) -> Caller | None:
        """The caller a bearer token belongs to, or None. Services with callers of their own
        (intake's agencies) extend this."""
        if self.coordinators.is_coordinator(token):
            # PANUI_COORDINATOR_TOKENS: the bootstrap principal, coordinator of every incident.
            return Caller("coordinator", CONFIGURED_PRINCIPAL, frozenset({"coordinator"}))
        return await self.staff.authenticate(token, self.db)

    async def refresh_gauges(self) -> None:
        """Set the gauges a scrape reads from the database: the outbox backlog, counted (a
        count per scrape, not per relay poll). A database that does not answer leaves the last
        value; /readyz reports the database."""
        if self.relay is None:
            return
        try:
            pending = await asyncio.wait_for(db.run_db(self.relay.pending_count), timeout=5)
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail on it
            log.warning("metrics: outbox pending not counted (%s)", type(exc).__name__)
            return
        metrics.OUTBOX_PENDING.labels(service=self.settings.service_name).set(pending)

    def loops(self) -> list[SupervisedLoop]:
        """Every supervised background loop of the service (subclasses add their own)."""
        loops = [worker.loop for worker in self.workers]
        if self.relay:
            loops.append(self.relay.loop)
        return loops

    def liveness(self) -> tuple[bool, dict[str, dict]]:
        health = [loop.health() for loop in self.loops()]
        return all(h.alive for h in health), {h.name: h.as_dict() for h in health}

    async def readiness(self) -> Readiness:
        result = Readiness()
        try:
            await db.run_db(db.ping, self.engine)
            result.checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - report, don't crash the probe
            result.checks["database"] = f"error: {type(exc).__name__}"
        try:
            await asyncio.wait_for(kafka_reachable(self.settings), timeout=5)
            result.details["kafka"] = "ok"
        except Exception as exc:  # noqa: BLE001
            result.details["kafka"] = f"error: {type(exc).__name__}"
        result.details["loops"] = self.liveness()[1]
        if self.dead_letters is not None and self.workers:
            result.details["dead_letters"] = self.dead_letters.stats.as_dict()
        return result


def _ops_router() -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/healthz", summary="Liveness: every background loop alive (none dead or wedged)",
                response_model=HealthBody, responses={503: {"model": HealthBody}})
    async def healthz(request: Request) -> JSONResponse:
        alive, loops = request.app.state.runtime.liveness()
        return JSONResponse({"status": "ok" if alive else "unhealthy", "loops": loops},
                            status_code=200 if alive else 503)

    @router.get("/readyz", summary="Readiness: the database answers (Kafka, loops and dead "
                                   "letters reported as details)",
                response_model=ReadyBody, responses={503: {"model": ReadyBody}})
    async def readyz(request: Request) -> JSONResponse:
        result = await request.app.state.runtime.readiness()
        return JSONResponse(
            {"status": "ready" if result.ready else "not-ready", "checks": result.checks,
             "details": result.details},
            status_code=200 if result.ready else 503,
        )

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics_endpoint(request: Request) -> Response:
        runtime = request.app.state.runtime
        await runtime.refresh_gauges()
        body, content_type = metrics.render(runtime.metric_collectors)
        return Response(body, media_type=content_type)

    return router


def create_service_app(
    runtime: ServiceRuntime, *, title: str, description: str, routers: Iterable[APIRouter] = ()
) -> FastAPI:
    configure_logging(runtime.settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()
            metrics.process_exiting()

    app = FastAPI(title=title, description=description, version="1.0.0", lifespan=lifespan)
    app.state.runtime = runtime
    install_error_handlers(app)
    routers = [_ops_router(), staffapi.router, *routers]
    for router in routers:
        inbound.document(router.routes)
        app.include_router(router)

    service = runtime.settings.service_name
    # Authentication and body limits before any body is read; inside count_requests (added
    # after, so outside it) so refused requests are counted too.
    app.add_middleware(InboundGuard, runtime=runtime,
                       routes=[route for router in routers for route in router.routes])

    @app.middleware("http")
    async def count_requests(request: Request, call_next):  # noqa: ANN001, ANN202
        presented = request.headers.get(access.REQUEST_ID_HEADER)
        request_id = access.request_id(presented)
        request.state.request_id = request_id
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            if presented == request_id:  # echoed only when the caller gave a usable one:
                # otherwise answers stay byte-identical (no existence oracle in a random header)
                response.headers[access.REQUEST_ID_HEADER] = request_id
            return response
        finally:
            elapsed = time.perf_counter() - started
            # The template, never the raw path (ids) nor the query string.
            route = getattr(request.scope.get("route"), "path", "unmatched")
            metrics.HTTP_REQUESTS.labels(service=service, method=request.method, route=route,
                                         status=str(status)).inc()
            metrics.HTTP_REQUEST_SECONDS.labels(service=service, method=request.method,
                                                route=route).observe(elapsed)
            access.log_request(service, request_id, request.method, route, status, elapsed)

    # Outermost: the client address every layer inside sees (logs, the check's per-client
    # rate limit) is the forwarded one only when the TCP peer is a trusted proxy.
    if runtime.settings.forwarded_allow_ips.strip():
        app.add_middleware(ProxyHeadersMiddleware,
                           trusted_hosts=[h.strip() for h in runtime.settings.forwarded_allow_ips.split(",")
                                          if h.strip()])
    return app


def serve(factory: str, settings: ServiceSettings) -> None:
    """Run a service with uvicorn. `factory` is "module:function" returning the app; several
    worker processes (PANUI_WORKERS) share the port — each runs its own consumers (one
    consumer group) and competes for the outbox relay's lock."""
    import os
    import shutil
    import signal
    import tempfile

    import uvicorn

    # uvicorn re-raises a SIGTERM it caught once its graceful shutdown is done, so the process
    # would "die by the signal" (rc -15). A pod that stopped cleanly exits 0 instead.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    made_dir = None
    if settings.workers > 1 and not metrics.multiprocess_dir():
        # A scrape reaches one worker: let each write its values where every worker reads
        # them (set before uvicorn starts the workers, which import prometheus_client anew).
        made_dir = tempfile.mkdtemp(prefix=f"panui-{settings.service_name}-metrics-")
        os.environ[metrics.MULTIPROC_ENV] = made_dir
    try:
        uvicorn.run(factory, factory=True, host=settings.host, port=settings.port,
                    workers=settings.workers, log_config=None, access_log=False,
                    proxy_headers=False)  # the app reads them itself (forwarded_allow_ips)
    finally:
        if made_dir:
            shutil.rmtree(made_dir, ignore_errors=True)
