"""A local stand-in for Sysdig Monitor's Prometheus-compatible query API.

Sysdig SaaS is out of reach from tests, so this serves what Sysdig documents for
``GET {base}/prometheus/api/v1/query``: a Monitor API token as ``Authorization: Bearer``, the standard
Prometheus response envelope (``{"status":"success","data":{"resultType":"vector","result":[...]}}``),
errors as ``{"status":"error","errorType":...,"error":...}`` with a 4xx/5xx code, and throttling as
HTTP 429 with ``Retry-After``. It does not evaluate PromQL: each test sets the series it answers with
and reads back the queries it received.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass
class StandIn:
    token: str
    url: str = ""
    series: list[dict[str, Any]] = field(default_factory=list)
    throttle: int = 0  # answer 429 this many times first
    retry_after: str = "0.05"
    queries: list[str] = field(default_factory=list)
    tokens_seen: list[str] = field(default_factory=list)


def _app(state: StandIn) -> FastAPI:
    app = FastAPI()

    @app.get("/prometheus/api/v1/query")
    async def query(request: Request) -> JSONResponse:
        auth = request.headers.get("authorization", "")
        state.tokens_seen.append(auth)
        if auth != f"Bearer {state.token}":
            return JSONResponse(
                {"status": "error", "errorType": "unauthorized", "error": "invalid API token"},
                status_code=401,
            )
        if state.throttle > 0:
            state.throttle -= 1
            return JSONResponse(
                {"status": "error", "errorType": "too_many_requests", "error": "rate limited"},
                status_code=429,
                headers={"Retry-After": state.retry_after},
            )
        state.queries.append(request.query_params.get("query", ""))
        now = time.time()
        result = [{"metric": s["metric"], "value": [now, s["value"]]} for s in state.series]
        return JSONResponse({"status": "success", "data": {"resultType": "vector", "result": result}})

    return app


@asynccontextmanager
async def sysdig_standin(token: str) -> AsyncIterator[StandIn]:
    state = StandIn(token)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_app(state), log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError("the Sysdig stand-in did not start")
        state.url = f"http://127.0.0.1:{port}"
        yield state
    finally:
        server.should_exit = True
        await task
        sock.close()
