"""What every benchmark needs from the local stack: a fresh PostgreSQL database, a topic
prefix of its own, a free port, and the peak memory of a process."""

import asyncio
import os
import socket
import subprocess
import uuid
from pathlib import Path

import psycopg
from aiokafka.admin import AIOKafkaAdminClient

REPO = Path(__file__).resolve().parents[1]


def kafka_bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def pg_admin_url() -> str:
    return os.environ.get("PANUI_PG_ADMIN_URL") or subprocess.run(
        [str(REPO / "scripts/postgres.sh"), "url"], capture_output=True, text=True, check=True
    ).stdout.strip()


def create_database(prefix: str = "bench") -> tuple[str, str]:
    """A new database on the local server: (name, url)."""
    admin = pg_admin_url()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, f"{admin.rpartition('/')[0]}/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(pg_admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def topic_prefix(name: str) -> str:
    return f"bench-{name}-{uuid.uuid4().hex[:8]}."


def delete_topics(prefix: str) -> None:
    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap())
        await admin.start()
        try:
            topics = [t for t in await admin.list_topics() if t.startswith(prefix)]
            if topics:
                await admin.delete_topics(topics)
        finally:
            await admin.close()

    asyncio.run(run())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process has had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def table(headers: list[str], rows: list[list]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths, strict=False))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])
