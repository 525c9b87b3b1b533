"""An ASGI app served over real HTTP by uvicorn in a background thread with its own event loop,
for clients that are not async (schemathesis, the CLI, requests from a thread)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn


@contextmanager
def serve_in_thread(app, port: int, name: str = "app-under-test",  # noqa: ANN001
                    start_timeout_s: float = 60.0) -> Iterator[uvicorn.Server]:
    """Yields the running server (lifespan run) once it accepts connections; stops it after."""
    # proxy_headers off as in services/common/runtime.serve: the app trusts proxies itself
    # (PANUI_FORWARDED_ALLOW_IPS), uvicorn's default would believe any X-Forwarded-For from 127.0.0.1.
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="on", proxy_headers=False))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout_s
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, f"{name} did not start"
            time.sleep(0.05)
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=30)
