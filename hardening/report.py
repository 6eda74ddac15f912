# ruff: noqa: E501 - the page's prose is kept one source line per rendered line
"""Write docs/hardening.md from the last ``make fuzz`` and ``make chaos`` summaries.

python -m hardening.report
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "hardening.md"
DATA = ROOT / "docs" / "hardening"

FOUND = [
    (
        "A body nested about 2,000 levels deep (`[[[[...`)",
        "`RecursionError` in `json.loads`: HTTP 500, not counted",
        "400 `invalid_json`, counted",
        "`test_deeply_nested_json_is_rejected_as_invalid_not_a_crash`",
    ),
    (
        "`evt.time` beyond year 9999 (any integer over about 2.5e20 ns)",
        "`OverflowError`/`OSError`/`ValueError` from `datetime.fromtimestamp`: HTTP 500, not counted",
        "422 `invalid_alert` naming the field",
        "`test_an_event_time_of_any_size_is_used_or_rejected_never_a_crash`",
    ),
    (
        "An alert naming namespace `default/../kube-system` (or pod `../../../nodes/x`)",
        "passed the protected-namespace guard as a string, then the HTTP client resolved the dot segments "
        "and the label and the delete went to the pod in `kube-system` (shown on the real kube-apiserver)",
        "no lookup for names that are not DNS-1123 names: `pod_not_found`, nothing touched",
        "`tests/hardening/test_hostile_names.py` (9 cases on the local control plane)",
    ),
]


def fuzz_section(f: dict[str, Any]) -> list[str]:
    out = [
        "## Fuzzing the HTTP API (`make fuzz`)",
        "",
        "`hardening/fuzz_ingest.py` sends requests to the real ingest and ops apps that `create_app`",
        "builds, called in process as ASGI apps (bodies split into up to three chunks, as from a socket),",
        "with an enforce policy whose rule matches every alert, so the responder runs on everything that is",
        "accepted. Hypothesis generates the first requests (every alert fixture as a seed with any field",
        "replaced by any JSON value, raw bytes, deep nesting, truncation, UTF-16/32, every body shape, media",
        "types, oversize bodies declared and undeclared, other routes and methods, rate API queries); a seeded",
        "mutator derives the rest from them (byte flips, cuts, splices, hostile values at random JSON paths,",
        "batching). For every request it checks: no 5xx; every refused item raises",
        "`teflon_webhook_alerts_rejected_total` by exactly one under the reason the answer names; an accepted",
        "request raises `teflon_webhook_alerts_total` by exactly `accepted`; other routes change neither",
        "counter; the queue workers log no error.",
        "",
        "| cases | from Hypothesis | mutated | 5xx | violations | worker errors | seconds | seed |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {f['cases']:,} | {f['generated_by_hypothesis']:,} | {f['mutated']:,} | {f['server_errors']} | "
        f"{f['violations']} | {f['worker_errors']} | {f['seconds']:,.0f} | {f['seed']} |",
        "",
        "| answer | count |",
        "| --- | ---: |",
        *[f"| HTTP {k} | {v:,} |" for k, v in f["statuses"].items()],
        "",
        f"{f['alerts_accepted']:,} alerts accepted and {f['items_rejected']:,} items refused, every one counted:",
        "",
        "| `teflon_webhook_alerts_rejected_total{reason}` | count |",
        "| --- | ---: |",
        *[f"| `{k}` | {v:,} |" for k, v in f["rejections_by_reason"].items()],
        "",
    ]
    if f["first_violations"] or f["first_worker_errors"]:
        out += ["Violations:", "", "```", *f["first_violations"], *f["first_worker_errors"], "```", ""]
    return out


def chaos_section(c: dict[str, Any]) -> list[str]:
    passed = c["checks"] - len(c["failed"])
    out = [
        "## Fault injection (`make chaos`)",
        "",
        "`hardening/chaos.py` installs the chart in enforce mode on a local control plane of its own",
        "(`build/evidence-cluster`), with the webhook and metrics server as real processes behind the chart's",
        "Services and RBAC (`tests/harness/stack.py`), and injects each fault while teflon works.",
        f"**{passed} of {c['checks']} checks passed** in {c['seconds']:,.0f} s.",
        "",
    ]
    for name, s in c["scenarios"].items():
        out += [f"### {name}", "", "| check | result | detail |", "| --- | --- | --- |"]
        for check, v in s["checks"].items():
            detail = json.dumps(v["detail"]) if not isinstance(v["detail"], str) else v["detail"]
            detail = " ".join(detail.split()).replace("|", "\\|")[:220]
            out.append(f"| {check} | {'pass' if v['ok'] else '**FAIL**'} | {detail} |")
        if s["figures"]:
            out += [
                "",
                "Figures: "
                + "; ".join(f"{k}: {json.dumps(v)}" for k, v in s["figures"].items()).replace("|", "\\|"),
            ]
        out.append("")
    return out


def main() -> int:
    fuzz = json.loads((DATA / "fuzz.json").read_text()) if (DATA / "fuzz.json").exists() else None
    chaos = json.loads((DATA / "chaos.json").read_text()) if (DATA / "chaos.json").exists() else None
    lines = [
        "# Hardening",
        "",
        "How teflon behaves on hostile input and under faults, and the commands that show it. The figures",
        "below are from the last `make fuzz` and `make chaos` on this repository's machine; the raw",
        "summaries are `docs/hardening/fuzz.json` and `docs/hardening/chaos.json`.",
        "",
        "## Property tests (in `make test`)",
        "",
        "`tests/hardening/test_properties_*.py` run with bounded Hypothesis examples on every `make test`:",
        "",
        "- the alert parser (`parse_one`, `decode_body`, `parse_request`) turns any JSON value, any mutated",
        "  Falco alert, any body of bytes, any nesting depth and any `evt.time` into alerts or the declared",
        "  `AlertRejected` with a reason, and a request yields one result per document, none lost;",
        "- the responder, under any policy (modes, protected namespaces and globs, budgets, dedupe windows,",
        "  rules) and any stream of alerts (bursts handled by concurrent workers, repeats, clock jumps, pods",
        "  replaced under the same name, API calls that fail or are blocked), never acts in a protected",
        "  namespace, never exceeds the global or a namespace's token bucket over any interval, never acts",
        "  twice on one pod UID and action inside the dedupe window, never acts in dry run, and only names",
        "  the UID the pod has at that moment. Each property was checked to fail when its guard is removed.",
        "",
        "Writing them, with the hostile-name cases beside them, turned up three defects, fixed in the webhook:",
        "",
        "| input | before | now | regression test |",
        "| --- | --- | --- | --- |",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in FOUND],
        "",
    ]
    lines += fuzz_section(fuzz) if fuzz else ["## Fuzzing", "", "Not run yet: `make fuzz`.", ""]
    wire = json.loads((DATA / "fuzz-wire.json").read_text()) if (DATA / "fuzz-wire.json").exists() else None
    if wire:
        lines += [
            "### On the wire",
            "",
            "`hardening/fuzz_wire.py` sends raw bytes over TCP to a real `python -m teflon.webhook` on",
            "127.0.0.1, so uvicorn's HTTP parsing is in the path: lying, negative, huge and duplicate",
            "Content-Length, broken chunked encoding, bad request lines, methods and header names, oversized",
            "headers, pipelined, truncated and LF-only requests, random bytes; the client half-closes after",
            "sending. It checks that no answer is a 5xx, that the process is alive at the end, and that it",
            "counted at least one alert per 202.",
            "",
            "| connections | 5xx | alive at the end | alerts counted | violations | seconds |",
            "| ---: | ---: | --- | ---: | ---: | ---: |",
            f"| {wire['cases']:,} | {wire['server_errors']} | {'yes' if wire['alive_at_end'] else 'NO'} | "
            f"{wire['alerts_counted']:,.0f} | {wire['violations']} | {wire['seconds']:,.1f} |",
            "",
            "Answers: " + ", ".join(f"{k}: {v:,}" for k, v in wire["answers"].items()) + ".",
            "",
            "It found one defect, fixed: a client that closed its connection before its whole body arrived",
            "made `read_body` raise Starlette's `ClientDisconnect` out of the route, and uvicorn logged an",
            "ERROR traceback per such request (a cheap way to flood the logs). The webhook now answers it in",
            "an exception handler with one INFO line. What remains in the log is uvicorn's own: "
            + "; ".join(f"{v:,} x `{k}`" for k, v in wire["error_log_kinds"].items())
            + ", logged when the application answers on a connection whose client half-closed mid-request and",
            "that h11 has already given up; the process carries on, and no client is owed that answer.",
            "",
        ]
    lines += chaos_section(chaos) if chaos else ["## Fault injection", "", "Not run yet: `make chaos`.", ""]
    lines += [
        "## Known limits these runs show",
        "",
        "- **One action per pod UID across replicas costs a Lease.** Alerts about one pod reach every",
        "  replica; before an enforced action a replica claims (pod UID, action) with a Lease in its own",
        "  namespace, and the others skip. When the Lease API fails the webhook fails closed: it does not",
        "  act (result `error`), and a later alert tries again. Every mutating call also carries the pod's",
        "  UID as a precondition, so a replacement pod is never touched.",
        "- **An accepted alert lives in memory until a worker takes it.** SIGTERM drains the queue",
        "  (`TEFLON_WEBHOOK_DRAIN_SECONDS`); SIGKILL (or an OOM kill) loses what was queued, after Falco has",
        "  had its 202. `make chaos` counts them.",
        "- **Cached metric values outlive a backend failure by up to `cacheSeconds`** (15 s for the built-ins);",
        "  after that the custom metrics API answers errors, and the HPA holds.",
        "- **kube-apiserver takes about a minute to exit on SIGTERM** while it drains long-running requests;",
        "  the webhook keeps answering 202 throughout and its lookups skip (`lookup_failed`) until the API is",
        "  back, so the next alert for the pod acts.",
        "",
        "## Reproduce",
        "",
        "```",
        "make test                 # the property tests, with everything else",
        "make fuzz                 # 100,000 cases (FUZZ_CASES=...), 10 to 25 minutes on 2 cores",
        "make chaos                # every fault, about 5 minutes; CHAOS_ARGS=--quick for shorter windows",
        "```",
        "",
    ]
    DOC.write_text("\n".join(lines))
    print(f"hardening: wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
