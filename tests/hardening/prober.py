"""``python -m tests.hardening.prober PORT``: time ``GET /healthz`` on 127.0.0.1:PORT until stdin closes.

A process of its own, so that the attack's threads in the test process cannot delay the probe and
be mistaken for the server's slowness. Prints one JSON object: every latency (seconds) and failures.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time


def main() -> None:
    port, interval = int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.02
    stop = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    latencies: list[float] = []
    failures: list[str] = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    while not stop.is_set():
        started = time.perf_counter()
        try:
            conn.request("GET", "/healthz")
            answer = conn.getresponse()
            answer.read()
            if answer.status != 200:
                failures.append(f"HTTP {answer.status}")
            else:
                latencies.append(time.perf_counter() - started)
        except (OSError, http.client.HTTPException) as exc:
            failures.append(repr(exc))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        time.sleep(interval)
    conn.close()
    print(json.dumps({"latencies": latencies, "failures": failures}))


if __name__ == "__main__":
    main()
