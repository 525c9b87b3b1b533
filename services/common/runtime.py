"""The runtime every Pānui service shares: settings, database, sealer, Kafka producer, outbox
relay, consumer workers — started and stopped together by the FastAPI lifespan — plus the
/healthz, /readyz and /metrics endpoints."""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlmodel import SQLModel

from services.common import db, inbound, metrics, migrations
from services.common.auth import CoordinatorAuth
from services.common.crypto import Sealer
from services.common.deps import Caller
from services.common.errors import install_error_handlers
from services.common.inbound import InboundGuard
from services.common.kafka import ConsumerWorker, ensure_topics, kafka_reachable, make_producer
from services.common.logging import configure_logging
from services.common.outbox import OutboxMessage, OutboxRelay
from services.common.settings import ServiceSettings
from services.common.topics import TopicSpec

log = logging.getLogger(__name__)

WorkersFactory = Callable[["ServiceRuntime"], Iterable[ConsumerWorker]]


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
        self.models = [*models, OutboxMessage]
        self.migrations = migrations.MigrationTree.of(self.models)
        self.topics = list(topics)
        self.sealer = Sealer(settings.data_keys.get_secret_value())
        self._workers_factory = workers
        self._on_start = on_start
        self.producer = None
        self.relay: OutboxRelay | None = None
        self.workers: list[ConsumerWorker] = []

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
        await ensure_topics(self.settings, self.topics)
        self.producer = make_producer(self.settings)
        await self.producer.start()
        self.relay = OutboxRelay(self.settings, self.engine, self.producer)
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

    async def authenticate(self, token: str) -> Caller | None:
        """The caller a bearer token belongs to, or None. Services with callers of their own
        (intake's agencies) extend this."""
        if self.coordinators.is_coordinator(token):
            return Caller("coordinator", "coordinator")
        return None

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            await db.run_db(db.ping, self.engine)
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - report, don't crash the probe
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            await asyncio.wait_for(kafka_reachable(self.settings), timeout=5)
            checks["kafka"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["kafka"] = f"error: {type(exc).__name__}"
        for worker in self.workers:
            checks[f"consumer:{worker.group_id}"] = "ok" if worker.running else "error: stopped"
        if self.relay:
            checks["outbox-relay"] = "ok" if self.relay.running else "error: stopped"
        return checks


def _ops_router() -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/healthz", summary="Process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Database and Kafka reachable, workers running")
    async def readyz(request: Request) -> JSONResponse:
        checks = await request.app.state.runtime.readiness()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not-ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics_endpoint() -> Response:
        body, content_type = metrics.render()
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

    app = FastAPI(title=title, description=description, version="1.0.0", lifespan=lifespan)
    app.state.runtime = runtime
    install_error_handlers(app)
    routers = [_ops_router(), *routers]
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
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.HTTP_REQUESTS.labels(
            service=service,
            method=request.method,
            route=getattr(route, "path", "unmatched"),  # the template, never the raw path
            status=str(response.status_code),
        ).inc()
        return response

    return app


def serve(factory: str, settings: ServiceSettings) -> None:
    """Run a service with uvicorn. `factory` is "module:function" returning the app; several
    worker processes (PANUI_WORKERS) share the port — each runs its own consumers (one
    consumer group) and competes for the outbox relay's lock."""
    import uvicorn

    uvicorn.run(factory, factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, log_config=None, access_log=False)
