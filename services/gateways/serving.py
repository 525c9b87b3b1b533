"""Run an ASGI app with uvicorn inside the current event loop (for tests and dev)."""

from __future__ import annotations

import asyncio
import socket

import uvicorn


class AsgiServer:
    def __init__(self, app, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app, self.host, self.port = app, host, port
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> int:
        # Bind ourselves so port=0 gives a free port we can report before serving.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        # proxy_headers off: an app that serves behind a proxy trusts it itself (forwarded_allow_ips).
        # A request that never ends (an app bug under test) is cancelled 20 s into the stop
        # instead of holding it for good.
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False,
                                proxy_headers=False, timeout_graceful_shutdown=20)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # surface the startup error
            await asyncio.sleep(0.01)
        return self.port

    async def stop(self) -> None:
        if self._server and self._task:
            self._server.should_exit = True
            await self._task
        self._server = self._task = None


def run_until_interrupted(gateway, describe) -> None:  # noqa: ANN001
    """The gateways' command line: start, print where it listens (describe(gateway)), serve
    until Ctrl-C or SIGTERM's KeyboardInterrupt, then stop cleanly."""

    async def run() -> None:
        await gateway.start()
        print(describe(gateway), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await gateway.stop()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
