"""An HTTP proxy in front of a gateway that loses answers, as a load balancer or API gateway in
front of a real SMS provider does: the request IS forwarded and the provider takes the
message, but the caller is told 502 (bad gateway) or 504 (gateway timeout). Whoever treats
that as "certainly not sent" and fails over to another provider sends the message twice.

    python -m testkit.faultproxy --port P --upstream http://127.0.0.1:8025

Control (JSON):
    POST /_proxy/behaviour {"answers": [502, 504, ...]}   the next forwarded POSTs get these
    POST /_proxy/behaviour {"status": 504, "for_seconds": 5}  every forwarded POST for 5 s
    GET  /_proxy/stats   {"forwarded", "replaced"}
Anything else is passed through unchanged (GETs, and POSTs once the behaviour is spent).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import deque

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from services.gateways.serving import AsgiServer


class FaultProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.answers: deque[int] = deque()
        self.window_status = 0
        self.window_until = 0.0
        self.forwarded = 0
        self.replaced = 0
        self.client = httpx.AsyncClient(timeout=30)

    def replacement(self) -> int | None:
        if self.answers:
            return self.answers.popleft()
        if time.monotonic() < self.window_until:
            return self.window_status
        return None


def create_app(proxy: FaultProxy) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None)

    @app.post("/_proxy/behaviour")
    async def behaviour(body: dict) -> dict:
        proxy.answers.extend(int(s) for s in body.get("answers", []))
        if body.get("for_seconds"):
            proxy.window_status = int(body.get("status", 504))
            proxy.window_until = time.monotonic() + float(body["for_seconds"])
        return {"pending_answers": len(proxy.answers)}

    @app.get("/_proxy/stats")
    async def stats() -> dict:
        return {"forwarded": proxy.forwarded, "replaced": proxy.replaced}

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def forward(path: str, request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        upstream = await proxy.client.request(request.method, f"{proxy.upstream}/{path}",
                                              params=request.query_params, content=await request.body(),
                                              headers=headers)
        if request.method == "POST":
            proxy.forwarded += 1
            status = proxy.replacement()
            if status is not None:  # the provider took it; the caller never hears so
                proxy.replaced += 1
                return JSONResponse({"error": "upstream answer lost (simulated)"}, status_code=status)
        return Response(upstream.content, status_code=upstream.status_code,
                        media_type=upstream.headers.get("content-type"))

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="HTTP proxy that loses answers (tests only)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args(argv)

    async def run() -> None:
        server = AsgiServer(create_app(FaultProxy(args.upstream)), "127.0.0.1", args.port)
        await server.start()
        print(f"fault proxy on 127.0.0.1:{server.port} -> {args.upstream}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
