"""Reading a request body within both the per-request limit and the webhook's shared byte budget."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.requests import Request

from teflon.webhook.alert import AlertRejected, RejectReason
from teflon.webhook.service import ByteBudget


@contextlib.asynccontextmanager
async def request_body(request: Request, limit: int, budget: ByteBudget) -> AsyncIterator[bytes]:
    """The request body, refused as soon as it is known to exceed ``limit`` bytes (before parsing).

    Every byte read is reserved in ``budget`` until the ``async with`` block ends, so many slow or
    large bodies at once cannot hold more than the budget: past it the request is refused as
    ``queue_full`` (503), as an alert that does not fit the queue would be.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise AlertRejected(
            RejectReason.BODY_TOO_LARGE, f"body of {declared} bytes is over the limit of {limit}"
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            if size + len(chunk) > limit:
                raise AlertRejected(RejectReason.BODY_TOO_LARGE, f"body is over the limit of {limit} bytes")
            if not budget.take(len(chunk)):
                raise AlertRejected(
                    RejectReason.QUEUE_FULL,
                    f"alerts in flight hold {budget.used} of {budget.limit} bytes; try again",
                )
            size += len(chunk)
            chunks.append(chunk)
        body = b"".join(chunks)
        chunks.clear()
        yield body
    finally:
        budget.give(size)
