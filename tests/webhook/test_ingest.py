"""The ingest API: every alert shape accepted, bad input refused with a clear 4xx, counted and logged."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from teflon.webhook.alert import parse_one

from .conftest import CONSTRUCTED_ALERTS, REAL_ALERTS, StartApp, load, make_settings

ALL_ALERTS = REAL_ALERTS + CONSTRUCTED_ALERTS
RAW = {p.name: p.read_bytes() for p in ALL_ALERTS}


@pytest.mark.parametrize("path", ALL_ALERTS, ids=lambda p: p.name)
@pytest.mark.parametrize("route", ["/v1/falco", "/"])
async def test_every_alert_fixture_is_accepted_and_counted(
    start_app: StartApp, path: Path, route: str
) -> None:
    app = await start_app()
    raw = RAW[path.name]
    doc = json.loads(raw)
    resp = await app.ingest.post(route, content=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code == 202, resp.text
    assert resp.json() == {"accepted": 1, "rejected": []}
    expected = parse_one(doc, received=datetime.now(UTC))
    labels = {
        "rule": doc["rule"],
        "priority": expected.priority.label,
        "source": expected.source,
        "namespace": expected.namespace or "",
    }
    assert app.metric("teflon_webhook_alerts_total", labels) == 1.0
    await app.drain()


async def test_sidekick_content_type_with_charset_is_accepted(start_app: StartApp) -> None:
    app = await start_app()
    resp = await app.ingest.post(
        "/",
        content=RAW["26-falcosidekick-webhook-body-uuid-nc-capture.json"],
        headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "Falcosidekick"},
    )
    assert resp.status_code == 202


async def test_a_json_array_batch_is_accepted_whole(start_app: StartApp) -> None:
    app = await start_app()
    batch = [load(p) for p in ALL_ALERTS]
    resp = await app.ingest.post("/v1/falco", json=batch)
    assert resp.status_code == 202
    assert resp.json() == {"accepted": len(batch), "rejected": []}
    assert app.app.service.queue.qsize() == len(batch)


async def test_an_ndjson_batch_is_accepted_with_or_without_its_content_type(start_app: StartApp) -> None:
    app = await start_app()
    body = "\n".join(json.dumps(load(p)) for p in REAL_ALERTS) + "\n"
    for ctype in ("application/x-ndjson", "application/json"):
        resp = await app.ingest.post("/v1/falco", content=body, headers={"Content-Type": ctype})
        assert resp.status_code == 202, resp.text
        assert resp.json()["accepted"] == len(REAL_ALERTS)


async def test_a_batch_with_some_bad_items_keeps_the_good_ones_and_lists_the_bad(start_app: StartApp) -> None:
    app = await start_app()
    good = load(REAL_ALERTS[2])
    resp = await app.ingest.post("/v1/falco", json=[good, {"rule": "x", "priority": "Loud"}, good, 7])
    assert resp.status_code == 202
    body = resp.json()
    assert body["accepted"] == 2
    assert [(r["index"], r["reason"]) for r in body["rejected"]] == [
        (1, "unknown_priority"),
        (3, "invalid_alert"),
    ]
    assert app.metric("teflon_webhook_alerts_rejected_total", {"reason": "unknown_priority"}) == 1
    assert app.metric("teflon_webhook_alerts_rejected_total", {"reason": "invalid_alert"}) == 1


BAD_INPUT = [
    # (name, body, content type, status, reason)
    ("invalid JSON", b'{"rule": "x", ', "application/json", 400, "invalid_json"),
    ("empty body", b"", "application/json", 400, "empty"),
    ("empty array", b"[]", "application/json", 400, "empty"),
    (
        "plain text alert",
        b"09:12:44: Notice A shell was spawned",
        "text/plain",
        415,
        "unsupported_media_type",
    ),
    ("form encoded", b"rule=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ("rule is a number", b'{"rule": 1, "priority": "Notice"}', "application/json", 422, "invalid_alert"),
    (
        "output_fields is a list",
        b'{"rule": "r", "priority": "Notice", "output_fields": [1]}',
        "application/json",
        422,
        "invalid_alert",
    ),
    ("unknown priority", b'{"rule": "r", "priority": "Urgent"}', "application/json", 422, "unknown_priority"),
    ("a bare string", b'"hello"', "application/json", 422, "invalid_alert"),
    (
        "all items of a batch bad",
        b'[{"rule": "r"}, {"priority": "Notice"}]',
        "application/json",
        422,
        "invalid_alert",
    ),
    ("not UTF-8", b'\xff{"rule": "r"}', "application/json", 400, "invalid_json"),
]


@pytest.mark.parametrize("case", BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
async def test_bad_input_gets_a_clear_4xx_json_error_a_counter_and_one_log_line(
    start_app: StartApp, caplog: pytest.LogCaptureFixture, case: tuple[str, bytes, str, int, str]
) -> None:
    _name, body, ctype, status, reason = case
    app = await start_app()
    caplog.set_level(logging.INFO, logger="teflon.webhook")
    resp = await app.ingest.post("/v1/falco", content=body, headers={"Content-Type": ctype})
    assert resp.status_code == status
    doc = resp.json()
    assert doc["error"] == reason
    assert doc["detail"]
    assert app.metric("teflon_webhook_alerts_rejected_total", {"reason": reason}) >= 1
    lines = [
        r
        for r in caplog.records
        if r.name.startswith("teflon.webhook") and r.getMessage() == "alert rejected"
    ]
    assert len(lines) == 1
    assert lines[0].__dict__["reason"] == reason
    assert app.app.service.queue.qsize() == 0


async def test_a_body_over_the_limit_is_refused_before_it_is_parsed(start_app: StartApp) -> None:
    app = await start_app(make_settings(max_body_bytes=4096))
    big = json.dumps({"rule": "r", "priority": "Notice", "output": "x" * 5000}).encode()
    resp = await app.ingest.post("/v1/falco", content=big, headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    assert resp.json()["error"] == "body_too_large"
    assert app.metric("teflon_webhook_alerts_rejected_total", {"reason": "body_too_large"}) == 1


async def test_a_chunked_body_over_the_limit_is_refused_while_reading(start_app: StartApp) -> None:
    app = await start_app(make_settings(max_body_bytes=4096))

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit must hold while streaming
        for _ in range(10):
            yield b"x" * 1000

    resp = await app.ingest.post("/v1/falco", content=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    assert "over the limit of 4096" in resp.json()["detail"]


async def test_a_full_queue_answers_503_and_counts_the_dropped_alerts(start_app: StartApp) -> None:
    app = await start_app(make_settings(queue_size=2, workers=1, drain_seconds=0))
    app.app.service.accepting = True
    for task in app.app.service._tasks:  # hold the workers so the queue stays full
        task.cancel()
    batch = [load(REAL_ALERTS[2])] * 5
    resp = await app.ingest.post("/v1/falco", json=batch)
    assert resp.status_code == 503
    assert resp.json()["accepted"] == 2
    assert app.metric("teflon_webhook_alerts_rejected_total", {"reason": "queue_full"}) == 3
    assert app.metric("teflon_webhook_queue_depth") == 2
