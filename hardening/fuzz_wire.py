"""``make fuzz`` (second part): malformed HTTP on the wire to a real ``python -m teflon.webhook``.

    python -m hardening.fuzz_wire --cases 5000 --out docs/hardening/fuzz-wire.json

The in-process fuzzer (``fuzz_ingest``) starts at the ASGI boundary; this one sends raw bytes over
TCP to 127.0.0.1, so uvicorn's own HTTP parsing is in the path: lying or duplicate Content-Length,
broken chunked encoding, bad request lines and header names, pipelined and truncated requests, bodies
cut short by a closed socket. Per connection it checks that any answer is not a 5xx; at the end, that
the process is still running, still ready, and that the alerts it accepted equal its counter.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from hardening.summary import publish
from tests.harness.prom import metric_sum
from tests.harness.webhook import WebhookError, WebhookProcess

HOST = "127.0.0.1"
ALERT = json.dumps(
    {
        "rule": "Terminal shell in container",
        "priority": "Notice",
        "output": "A shell was spawned",
        "output_fields": {"k8s.ns.name": "shop", "k8s.pod.name": "web-1", "evt.time": 1700000000000000000},
    }
).encode()


def request(rng: random.Random) -> tuple[bytes, str]:
    """One malformed (or valid) request and the name of the mutation."""
    body = ALERT if rng.random() < 0.7 else json.dumps([json.loads(ALERT)] * rng.randint(1, 5)).encode()
    path = rng.choice([b"/v1/falco", b"/", b"/v1/falco?x=1", b"//", b"/%00", b"*", b"/" + b"a" * 9000])
    method = rng.choice([b"POST"] * 6 + [b"GET", b"PUT", b"P0ST", b"post", b"CONNECT"])
    version = rng.choice([b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/9.9", b"HTTX/1.1", b""])
    headers = [b"Host: fuzz", b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
    kind = rng.choice(
        [
            "valid",
            "length_short",
            "length_long",
            "length_negative",
            "length_huge",
            "length_twice",
            "length_garbage",
            "chunked",
            "chunked_broken",
            "chunked_and_length",
            "header_garbage",
            "header_huge",
            "no_host",
            "pipelined",
            "truncated",
            "bytes",
            "lf_only",
        ]
    )
    if kind == "length_short":
        headers[2] = b"Content-Length: %d" % rng.randint(0, max(0, len(body) - 1))
    elif kind == "length_long":
        headers[2] = b"Content-Length: %d" % (len(body) + rng.randint(1, 100))
    elif kind == "length_negative":
        headers[2] = b"Content-Length: -5"
    elif kind == "length_huge":
        headers[2] = b"Content-Length: 99999999999999999999"
    elif kind == "length_twice":
        headers.append(b"Content-Length: %d" % (len(body) + 3))
    elif kind == "length_garbage":
        headers[2] = b"Content-Length: 1e3"
    elif kind in ("chunked", "chunked_broken", "chunked_and_length"):
        if kind != "chunked_and_length":
            headers.pop(2)
        headers.append(b"Transfer-Encoding: chunked")
        cut = rng.randint(1, len(body))
        chunks = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (cut, body[:cut], len(body) - cut, body[cut:])
        if kind == "chunked_broken":
            chunks = chunks.replace(
                b"%x\r\n" % cut, rng.choice([b"zz\r\n", b"-1\r\n", b"ffffffffffff\r\n"]), 1
            )
        body = chunks
    elif kind == "header_garbage":
        headers.append(
            rng.choice([b"X Bad: 1", b": empty", b"X-Ctl: \x00\x01", b"\xff\xfe: x", b"X-Fold: a\r\n b"])
        )
    elif kind == "header_huge":
        headers.append(b"X-Big: " + b"a" * rng.choice([8000, 70000]))
    elif kind == "no_host":
        headers.pop(0)
    head = method + b" " + path + b" " + version + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n"
    raw = head + body
    if kind == "pipelined":
        raw = raw + raw
    elif kind == "truncated":
        raw = raw[: rng.randint(1, len(raw) - 1)]
    elif kind == "bytes":
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))
    elif kind == "lf_only":
        raw = raw.replace(b"\r\n", b"\n")
    return raw, kind


def exchange(port: int, raw: bytes, timeout: float = 5.0) -> list[int]:
    """Send ``raw``, half-close, and read every status line the server answers with."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        try:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close first on garbage: what it answered is still read below
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return [
        int(line.split(b" ")[1])
        for line in data.split(b"\r\n")
        if line.startswith(b"HTTP/1.1 ") and len(line.split(b" ")) > 1 and line.split(b" ")[1].isdigit()
    ]


def metric(hook: WebhookProcess, name: str) -> float:
    return metric_sum(httpx.get(f"{hook.ops_url}/metrics", timeout=5).text, name)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rng = random.Random(args.seed)  # noqa: S311 - not for secrets: a seed that reproduces the run
    with tempfile.TemporaryDirectory() as tmp:
        try:
            hook = WebhookProcess.start(Path(tmp), {"TEFLON_WEBHOOK_LOG_LEVEL": "ERROR"})
        except WebhookError as exc:
            raise SystemExit(f"webhook did not start: {exc}") from None
        proc, port = hook.proc, hook.port
        try:
            statuses: Counter[str] = Counter()
            kinds: Counter[str] = Counter()
            violations: list[str] = []
            accepted = 0
            started = time.monotonic()
            for _ in range(args.cases):
                raw, kind = request(rng)
                kinds[kind] += 1
                try:
                    answers = exchange(port, raw)
                except OSError as exc:
                    answers = []
                    statuses[f"no answer ({type(exc).__name__})"] += 1
                if not answers:
                    statuses["closed without answer"] += 1
                for status in answers:
                    statuses[str(status)] += 1
                    accepted += status == 202
                    if status >= 500:
                        violations.append(f"HTTP {status} <- {kind}: {raw[:200]!r}")
                if proc.poll() is not None:
                    violations.append(
                        f"the webhook exited with {proc.returncode} after {kind}: {raw[:200]!r}"
                    )
                    break
            elapsed = time.monotonic() - started
            alive = proc.poll() is None
            counted = metric(hook, "teflon_webhook_alerts_total") if alive else -1.0
            requests_202 = accepted
            # Each 202 answer accepted 1 to 5 alerts; the counter must hold at least one per 202.
            if alive and counted < requests_202:
                violations.append(
                    f"{requests_202} requests answered 202 but only {counted:.0f} alerts counted"
                )
        finally:
            hook.stop(timeout=60)
        errors = [line for line in hook.output().splitlines() if '"level":"error"' in line]
    # What each ERROR line ended in: the last line of its traceback.
    kinds_of_error = Counter(
        (json.loads(line).get("exc") or json.loads(line).get("msg", "")).strip().splitlines()[-1][:160]
        for line in errors
    )
    # uvicorn's h11 protocol logs this when an answer is sent on a connection h11 has already given up
    # (the client half-closed mid-request): the process carries on and nobody is owed the answer.
    tolerated = (
        "h11._util.LocalProtocolError: can't handle event type Response when role=SERVER and state=MUST_CLOSE"
    )
    unexpected = {k: v for k, v in kinds_of_error.items() if k != tolerated}
    summary: dict[str, Any] = {
        "cases": sum(kinds.values()),
        "seconds": round(elapsed, 1),
        "seed": args.seed,
        "mutations": dict(sorted(kinds.items())),
        "answers": dict(sorted(statuses.items())),
        "server_errors": sum(v for k, v in statuses.items() if k.isdigit() and int(k) >= 500),
        "alive_at_end": alive,
        "alerts_counted": counted,
        "violations": len(violations),
        "error_log_lines": len(errors),
        "error_log_kinds": dict(kinds_of_error),
        "unexpected_error_kinds": unexpected,
        "first_violations": violations[:20],
    }
    publish(summary, args.out)
    return 1 if violations or unexpected or not alive else 0


if __name__ == "__main__":
    sys.exit(main())
