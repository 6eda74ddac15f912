"""The API app served by uvicorn over real TLS on 127.0.0.1, as ``python -m teflon.metrics`` serves it."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from teflon.metrics.tls import ServerTLS, https_config


@asynccontextmanager
async def serve_https(app: Any, server_tls: ServerTLS) -> AsyncIterator[str]:
    """Serve ``app`` on a free 127.0.0.1 port; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        https_config(app, host="127.0.0.1", port=port, server_tls=server_tls, lifespan="off")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        else:
            raise RuntimeError("uvicorn did not start")
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def client(server_ca: Path, cert: tuple[Path, Path] | None = None, **kwargs: Any) -> httpx.AsyncClient:
    """An HTTPS client trusting ``server_ca``, presenting ``cert`` (cert file, key file) if given."""
    ctx = ssl.create_default_context(cafile=str(server_ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return httpx.AsyncClient(verify=ctx, timeout=10, **kwargs)
