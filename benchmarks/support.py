"""What every benchmark needs from the local stack — a fresh PostgreSQL database, a topic
prefix of its own, a free port — and the peak memory of a process. The database and broker
helpers are the ones the test suite uses (testkit/infra.py)."""

import asyncio
import os
import uuid
from pathlib import Path

from services.common import migrations
from testkit import infra
from testkit.infra import REPO, free_port, kafka_bootstrap, pg_admin_url

__all__ = ["REPO", "kafka_bootstrap", "pg_admin_url", "create_database", "drop_database",
           "topic_prefix", "delete_topics", "free_port", "peak_rss_mb", "table"]


def create_database(prefix: str, service: str) -> tuple[str, str]:
    """A new database on the local server, migrated to `service`'s head revision (as
    `python -m services.<service> migrate` leaves it): (name, url)."""
    name, url = infra.create_database(pg_admin_url(), prefix)
    migrations.upgrade(infra.migration_tree(service), url)
    return name, url


def drop_database(name: str) -> None:
    infra.drop_database(pg_admin_url(), name)


def topic_prefix(name: str) -> str:
    return f"bench-{name}-{uuid.uuid4().hex[:8]}."


def delete_topics(prefix: str) -> None:
    asyncio.run(infra.delete_topics_with_prefix(kafka_bootstrap(), prefix))


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process has had."""
    return _proc_status_mb(pid, "VmHWM:")


def rss_mb(pid: int) -> float:
    return _proc_status_mb(pid, "VmRSS:")


def _proc_status_mb(pid: int, field: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:  # the process has gone
        pass
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """user + system CPU of the process and its live children (uvicorn workers: their CPU is
    not in the parent's until they are reaped), and of its reaped children, so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks
    return total


def table(headers: list[str], rows: list[list]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]

    def line(cells: list) -> str:
        return "  ".join(str(c).rjust(w) for c, w in zip(cells, widths, strict=False))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def process_children() -> dict[int, list[int]]:
    """Every live process's children, by parent pid (one scan of /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
                children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(
                    int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return children


def process_tree(pid: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """The process and its live descendants (uvicorn workers are children of the service);
    `children` from process_children() when several trees are read at once."""
    children = process_children() if children is None else children
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out
