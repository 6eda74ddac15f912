"""``make fuzz``: drive the webhook's HTTP API with generated requests and check every answer.

    python -m hardening.fuzz_ingest --cases 100000 --out docs/hardening/fuzz.json

Requests go to the real ingest and ops apps that ``create_app`` builds, called in process as ASGI
apps (the body arrives in one to three chunks, as from a socket), with a policy whose rule matches every
alert, so the queue workers run the responder on everything that is accepted. Hypothesis generates a
pool of requests (every alert fixture as a seed, any field replaced by any JSON value, raw bytes, deep
nesting, every body shape and media type); a seeded mutator derives the bulk of the cases from that
pool (byte flips, cuts, splices, hostile JSON values at random paths, batch wrapping), which costs far
less per case than drawing each one from Hypothesis.

Per request the fuzzer checks: no 5xx; an ingest rejection raises
``teflon_webhook_alerts_rejected_total`` by exactly the number of refused items, under the reason the
answer names; an accepted request raises ``teflon_webhook_alerts_total`` by exactly ``accepted`` and the
rejected counter by exactly the items it lists; a request to any other route changes neither; the
workers log no error. Any violation is printed with the request that caused it; the exit status is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from hardening.summary import publish
from teflon.webhook.app import create_app
from teflon.webhook.settings import Settings
from tests.harness.strategies import JSON_VALUES, bodies

INGEST_PATHS = ("/v1/falco", "/")
REJECT_STATUSES = {400, 413, 415, 422}
MAX_BODY = 1024 * 1024
POLICY = """
mode: enforce
allowBarePods: true
rules:
  - name: everything
    match: {minPriority: Debug}
    actions: [{type: label}, {type: delete}]
"""
VALID_MEDIA = ["application/json", "application/json; charset=utf-8", "application/x-ndjson", "", "x/y+json"]
OTHER_MEDIA = [
    "text/plain",
    "application/jsonl",
    "application/x-www-form-urlencoded",
    "multipart/form-data; b=x",
]
LATIN1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
MEDIA = st.one_of(
    st.sampled_from(VALID_MEDIA),
    st.sampled_from(VALID_MEDIA),
    st.sampled_from(VALID_MEDIA),
    st.sampled_from(OTHER_MEDIA),
    st.text(LATIN1, max_size=30),
)
HOSTILE: list[Any] = [
    None, "<NA>", "", -1, 0, 2**64, -(2**63), 1e308, 10**25, True, [], {}, "x" * 300,
    "\u0000", "\ud7ff\uffff",
    "default/../kube-system", "../../../nodes/n", "Warning", "EMERGENCY", "info", "2024-13-01T00:00:00Z",
    [{"rule": "r", "priority": "Warning"}], {"k8s.ns.name": None},
]  # fmt: skip
TOKENS = [
    b"null",
    b"<NA>",
    b"-1",
    b"1e999",
    b'"\\ud800"',
    b"{}",
    b"[]",
    b'"',
    b"\\",
    b",",
    b"\n",
    b"\xff\xfe",
    b"\x00",
]


@dataclass(frozen=True)
class Request:
    app: str  # ingest | ops
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def describe(self) -> str:
        query = f"?{self.query}" if self.query else ""
        return f"{self.app} {self.method} {self.path}{query} {self.headers} {self.body[:300]!r}"


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """Mostly ingest POSTs; some other routes and methods, oversize bodies and rate API queries."""
    kind = draw(st.sampled_from(["ingest"] * 16 + ["oversize", "other", "other", "rates", "rates"]))
    if kind == "rates":
        keys = st.sampled_from(
            ["scope", "signal", "window", "namespace", "kind", "name", "minPriority", "rule", "x"]
        )
        values = st.sampled_from(
            ["pod", "workload", "namespace", "alerts", "60", "300", "61", "Warning", "", "-1"]
        )
        params = {"scope": draw(st.sampled_from(["pod", "workload", "namespace", "node"]))}
        params |= draw(st.dictionaries(keys, values | st.text(max_size=10), max_size=5))
        return Request("ops", "GET", "/v1/rates", urlencode(params), {}, b"")
    headers: dict[str, str] = {}
    media = draw(MEDIA)
    if media or draw(st.booleans()):
        headers["content-type"] = media
    path = draw(st.sampled_from(INGEST_PATHS))
    if kind == "oversize":
        size = draw(st.integers(min_value=MAX_BODY + 1, max_value=3 * MAX_BODY))
        if draw(st.booleans()):
            headers["content-length"] = str(size)  # declared: refused before reading
            return Request("ingest", "POST", path, "", headers, b"[]")
        return Request("ingest", "POST", path, "", headers, b"[" + b"1," * (size // 2) + b"1]")
    if kind == "other":
        method = draw(st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "POST", "OPTIONS", "HEAD"]))
        other = draw(st.sampled_from(["/v1/falco/x", "/v2/falco", "/metrics", "/healthz", "/v1/falco"]))
        if method == "POST" and other == "/v1/falco":
            other = "/v1/falco/"
        return Request("ingest", method, other, "", headers, json.dumps(draw(JSON_VALUES)).encode())
    return Request("ingest", "POST", path, "", headers, draw(bodies()))


# --- the mutator ---


def _mutate_json(rng: random.Random, doc: Any) -> Any:
    """Replace one value at a random path of ``doc`` by a hostile one (or drop a key)."""
    if isinstance(doc, dict) and doc and rng.random() < 0.8:
        key = rng.choice(list(doc))
        out = dict(doc)
        if rng.random() < 0.15:
            del out[key]
        else:
            out[key] = _mutate_json(rng, doc[key])
        return out
    if isinstance(doc, list) and doc and rng.random() < 0.8:
        i = rng.randrange(len(doc))
        return [*doc[:i], _mutate_json(rng, doc[i]), *doc[i + 1 :]]
    return rng.choice(HOSTILE)


def mutate(rng: random.Random, req: Request, pool: list[Request]) -> Request:
    if req.app != "ingest" or req.method != "POST" or len(req.body) > MAX_BODY:
        return req
    body = req.body
    headers = dict(req.headers)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(9)
        if op == 0 and body:  # flip bytes
            raw = bytearray(body)
            for _ in range(rng.randint(1, 4)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            body = bytes(raw)
        elif op == 1 and body:  # cut a slice
            a = rng.randrange(len(body))
            body = body[:a] + body[a + rng.randint(1, 64) :]
        elif op == 2:  # insert a token
            a = rng.randint(0, len(body))
            body = body[:a] + rng.choice(TOKENS) + body[a:]
        elif op == 3:  # splice with another body
            other = rng.choice(pool).body
            body = body[: rng.randint(0, len(body))] + other[rng.randint(0, len(other)) :]
        elif op in (4, 5, 6):  # a hostile value at a random JSON path
            try:
                doc = json.loads(body)
            except (ValueError, RecursionError):
                continue
            body = json.dumps(_mutate_json(rng, doc)).encode()
        elif op == 7:  # batch it
            n = rng.randint(2, 6)
            body = b"[" + b",".join([body] * n) + b"]" if rng.random() < 0.5 else b"\n".join([body] * n)
        else:  # another media type
            headers["content-type"] = rng.choice(VALID_MEDIA + OTHER_MEDIA)
    return Request(req.app, req.method, req.path, req.query, headers, body[: 2 * MAX_BODY])


# --- running requests ---


async def call_asgi(app: Any, req: Request, rng: random.Random) -> tuple[int, bytes]:
    """One request through an ASGI app, the body split in up to three chunks."""
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in req.headers.items()]
    if "content-length" not in req.headers:
        headers.append((b"content-length", str(len(req.body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": req.method,
        "scheme": "http",
        "path": req.path,
        "raw_path": req.path.encode(),
        "query_string": req.query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 2801),
    }
    cuts = sorted(rng.sample(range(len(req.body) + 1), k=min(2, len(req.body) + 1)))
    pieces = [req.body[: cuts[0]], req.body[cuts[0] : cuts[-1]], req.body[cuts[-1] :]]
    messages = [{"type": "http.request", "body": p, "more_body": i < 2} for i, p in enumerate(pieces)]
    status = 0
    out: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # a client that stays connected and sends nothing more
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            out.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(out)


class ErrorLog(logging.Handler):
    """Counts ERROR records: a worker that fails on an alert logs one and carries on."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()} {record.exc_text or ''}")


@dataclass
class Tally:
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    accepted_alerts: int = 0
    rejected_items: int = 0
    violations: list[str] = field(default_factory=list)


def total(counter: PromCounter) -> dict[str, float]:
    """A labelled counter's values summed by its ``reason`` label (or under '' when it has none)."""
    out: dict[str, float] = {}
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                key = sample.labels.get("reason", "")
                out[key] = out.get(key, 0.0) + sample.value
    return out


class Fuzzer:
    def __init__(self, policy_file: Path, rng: random.Random) -> None:
        settings_ = Settings(
            namespace="teflon", pod_name="fuzz", policy_file=policy_file, policy_reload_seconds=3600
        )
        self.app = create_app(settings_, registry=CollectorRegistry())
        self.rng = rng
        self.tally = Tally()

    async def one(self, req: Request) -> None:
        telemetry = self.app.service.telemetry
        rejected_before = total(telemetry.rejected)
        alerts_before = sum(total(telemetry.alerts.counter).values())
        app = self.app.ops if req.app == "ops" else self.app.ingest
        try:
            status, raw = await asyncio.wait_for(call_asgi(app, req, self.rng), timeout=30)
        except Exception as exc:  # the fuzzer's job is to report any crash, whatever it is
            self.tally.violations.append(f"crash {type(exc).__name__}: {exc} <- {req.describe()}")
            return
        await self.app.service.queue.join()
        self.tally.cases += 1
        self.tally.statuses[status] += 1
        rejected = total(telemetry.rejected)
        delta = {
            k: v - rejected_before.get(k, 0.0)
            for k, v in rejected.items()
            if v != rejected_before.get(k, 0.0)
        }
        alerts = sum(total(telemetry.alerts.counter).values()) - alerts_before
        problem = self.check(req, status, raw, delta, alerts)
        if problem:
            self.tally.violations.append(f"{problem} <- {req.describe()}")

    def check(self, req: Request, status: int, raw: bytes, delta: dict[str, float], alerts: float) -> str:
        if status >= 500 or status < 100:
            return f"HTTP {status}: {raw[:200]!r}"
        if not (req.app == "ingest" and req.method == "POST" and req.path in INGEST_PATHS):
            return (
                f"a non-ingest request changed the counters: {delta} alerts={alerts}"
                if delta or alerts
                else ""
            )
        reply = json.loads(raw)
        if status == 202:
            want = Counter(item["reason"] for item in reply["rejected"])
            if delta != dict(want) or alerts != reply["accepted"]:
                return f"202 {reply} but counted rejected={delta} accepted={alerts}"
            self.tally.accepted_alerts += reply["accepted"]
            self.tally.rejected_items += len(reply["rejected"])
            self.tally.reasons.update(want)
            return ""
        if status in REJECT_STATUSES:
            n = max(1, len(reply.get("rejected", [])))
            if sum(delta.values()) != n or alerts != 0 or reply["error"] not in delta:
                return f"{status} {reply['error']} x{n} but counted {delta}"
            self.tally.rejected_items += n
            self.tally.reasons.update({k: int(v) for k, v in delta.items()})
            return ""
        return f"unexpected status {status} on ingest"


def generate_pool(size: int, base_seed: int) -> list[Request]:
    pool: list[Request] = []

    @seed(base_seed)
    @settings(
        max_examples=size,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(req=requests())
    def collect(req: Request) -> None:
        pool.append(req)

    collect()
    return pool


def run(cases: int, pool_size: int, base_seed: int) -> tuple[Tally, list[str], float, int]:
    errors = ErrorLog()
    logging.getLogger("teflon").addHandler(errors)
    logging.getLogger("teflon").setLevel(logging.ERROR)
    rng = random.Random(base_seed)  # noqa: S311 - not for secrets: a seed that reproduces the run
    started = time.monotonic()
    pool = generate_pool(pool_size, base_seed)
    print(f"fuzz: {len(pool)} requests generated in {time.monotonic() - started:.0f}s", file=sys.stderr)
    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(POLICY, encoding="utf-8")
        fuzzer = Fuzzer(policy, rng)
        loop.run_until_complete(fuzzer.app.service.start())

        async def drive() -> None:
            for i in range(cases):
                # Every pool request once as generated, then mutants of random pool members.
                req = pool[i] if i < len(pool) else mutate(rng, rng.choice(pool), pool)
                await fuzzer.one(req)
                if (i + 1) % 10_000 == 0:
                    print(
                        f"fuzz: {i + 1}/{cases} cases, {len(fuzzer.tally.violations)} violations, "
                        f"{time.monotonic() - started:.0f}s",
                        file=sys.stderr,
                        flush=True,
                    )

        loop.run_until_complete(drive())
        loop.run_until_complete(fuzzer.app.service.stop())
    loop.close()
    return fuzzer.tally, errors.records, time.monotonic() - started, len(pool)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--pool", type=int, default=1500, help="requests drawn from Hypothesis")
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    tally, worker_errors, elapsed, pool = run(args.cases, min(args.pool, args.cases), args.seed)
    summary: dict[str, Any] = {
        "cases": tally.cases,
        "generated_by_hypothesis": pool,
        "mutated": tally.cases - pool,
        "seconds": round(elapsed, 1),
        "seed": args.seed,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "server_errors": sum(v for k, v in tally.statuses.items() if k >= 500),
        "alerts_accepted": tally.accepted_alerts,
        "items_rejected": tally.rejected_items,
        "rejections_by_reason": dict(sorted(tally.reasons.items())),
        "violations": len(tally.violations),
        "worker_errors": len(worker_errors),
        "first_violations": tally.violations[:20],
        "first_worker_errors": worker_errors[:20],
    }
    publish(summary, args.out)
    return 1 if tally.violations or worker_errors or tally.cases < args.cases else 0


if __name__ == "__main__":
    sys.exit(main())
