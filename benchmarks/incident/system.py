"""Pānui as one run starts it: the local SMTP and SMS gateways, then intake, dedupe and dispatch,
each its own process on its own database, on free ports, with a keyring, a coordinator token and
a receipt secret made for the run. What `make run` does, minus the fixed ports and var/dev.env."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.incident.stack import Stack, module
from testkit.infra import free_port
from testkit.keys import key_env, keyrings

SERVICES = ("intake", "dedupe", "dispatch")


@dataclass
class Options:
    databases: dict[str, str]  # service -> DATABASE_URL (migrated)
    bootstrap: str
    topic_prefix: str
    workers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SERVICES, 1))
    maildir: Path | None = None  # None: the SMTP gateway only counts (memory stays flat)
    quiet_hours: bool = False  # dispatch's 21:00-08:00 NZ pause; off for runs that must finish
    log_level: str = "WARNING"
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)  # service -> more settings


@dataclass(frozen=True)
class Endpoints:
    intake: str
    dedupe: str
    dispatch: str
    sms: str
    smtp_control: str
    coordinator_token: str
    maildir: Path | None


def start(stack: Stack, options: Options) -> Endpoints:
    """Start everything and wait until each process answers; the stack stops them."""
    ports = {name: free_port() for name in ("smtp", "smtp_control", "sms", *SERVICES)}
    token = f"coord-{secrets.token_urlsafe(18)}"
    receipt_secret = f"rcpt-{secrets.token_urlsafe(18)}"
    local = "http://127.0.0.1"
    dispatch_url = f"{local}:{ports['dispatch']}"

    smtp_args = ["--port", str(ports["smtp"]), "--control-port", str(ports["smtp_control"]),
                 "--webhook-secret", receipt_secret,
                 "--bounce-webhook-url", f"{dispatch_url}/v1/receipts/smtp"]
    smtp_args += ["--maildir", str(options.maildir)] if options.maildir else ["--count-only"]
    stack.start("smtp-gateway", module("services.gateways.smtp_server", *smtp_args),
                health_url=f"{local}:{ports['smtp_control']}/_control/stats")
    stack.start("sms-gateway", module("services.gateways.sms_server", "--port", str(ports["sms"]),
                                      "--callback-secret", receipt_secret),
                health_url=f"{local}:{ports['sms']}/_control/stats")

    common = {
        "KAFKA_BOOTSTRAP_SERVERS": options.bootstrap, "PANUI_TOPIC_PREFIX": options.topic_prefix,
        "PANUI_COORDINATOR_TOKENS": token,
        "PANUI_LOG_LEVEL": options.log_level,
    }
    per_service = {
        # The coordinator console (intake's /console/) reaches dedupe and dispatch through intake.
        "intake": {"PANUI_DEDUPE_URL": f"{local}:{ports['dedupe']}", "PANUI_DISPATCH_URL": dispatch_url},
        "dedupe": {},
        "dispatch": {
            "PANUI_SMTP_PORT": str(ports["smtp"]),
            "PANUI_SMS_PRIMARY_URL": f"{local}:{ports['sms']}",
            "PANUI_RECEIPT_SECRET": receipt_secret,
            "PANUI_RECEIPT_CALLBACK_BASE_URL": dispatch_url,
            "PANUI_QUIET_HOURS_ENABLED": str(options.quiet_hours).lower(),
        },
    }
    rings = keyrings("run")  # records and notices KEKs apart, each service only its own
    for service in SERVICES:
        env = {**common, **key_env(service, rings), **per_service[service],
               **options.extra_env.get(service, {}),
               "DATABASE_URL": options.databases[service], "PANUI_PORT": str(ports[service]),
               "PANUI_WORKERS": str(options.workers.get(service, 1))}
        stack.start(service, module(f"services.{service}"), env=env,
                    health_url=f"{local}:{ports[service]}/healthz")
    stack.wait_healthy()
    return Endpoints(
        intake=f"{local}:{ports['intake']}", dedupe=f"{local}:{ports['dedupe']}",
        dispatch=dispatch_url, sms=f"{local}:{ports['sms']}",
        smtp_control=f"{local}:{ports['smtp_control']}", coordinator_token=token,
        maildir=options.maildir)


class LocalKafka:
    """The broker `scripts/kafka.sh` manages (or the cluster KAFKA_BOOTSTRAP_SERVERS names):
    started if nothing answers, and stopped at the end only if this run started it."""

    def __init__(self, repo: Path) -> None:
        self.script = repo / "scripts" / "kafka.sh"
        self.started = False

    def _running(self) -> bool:
        status = subprocess.run([str(self.script), "status"], capture_output=True, text=True)
        return "running" in status.stdout

    def __enter__(self) -> LocalKafka:
        was_running = self._running()
        subprocess.run([str(self.script), "up"], check=True)
        self.started = not was_running and self._running()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            subprocess.run([str(self.script), "down"], check=False)
