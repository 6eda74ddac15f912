"""A minimal extension API server for tests of the aggregation layer (standard library only).

Run it inside a harness network namespace with ``command(...)``. It:

* serves HTTPS with ``--cert``/``--key`` and asks for a client certificate verified against
  ``--client-ca`` (the cluster's front-proxy CA);
* trusts ``X-Remote-User``/``X-Remote-Group`` only on connections whose verified certificate has a CN in
  ``--allowed-names`` (the aggregator's ``front-proxy-client``); every other request gets 401;
* answers discovery for each ``--group-version`` (``GET /apis/<group>/<version>``), echoes the caller at
  ``GET /apis/<group>/<version>/whoami``, and serves custom metrics for ``custom.metrics.k8s.io`` from
  the JSON file ``--metrics`` (re-read on every request, so a test changes a value by rewriting it):
  ``{"<namespace>/<resource>/<name>/<metric>": "<quantity>"}``, e.g. ``{"shop/services/web/rps": "250"}``;
* appends one JSON line per request to ``--record``: method, path, peer certificate CN, remote user and
  groups, status.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import ssl
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CUSTOM_METRICS = "custom.metrics.k8s.io"
_KINDS = {"services": ("Service", "v1"), "pods": ("Pod", "v1"), "deployments.apps": ("Deployment", "apps/v1")}


def command(
    python: str,
    *,
    port: int,
    cert: Path,
    key: Path,
    client_ca: Path,
    record: Path,
    group_versions: list[str],
    metrics: Path | None = None,
    host: str = "0.0.0.0",  # noqa: S104 - inside a test-made network namespace
) -> list[str]:
    """The argv that starts this server with ``python``."""
    argv = [python, str(Path(__file__).resolve()), "--host", host, "--port", str(port)]
    argv += ["--cert", str(cert), "--key", str(key), "--client-ca", str(client_ca), "--record", str(record)]
    for gv in group_versions:
        argv += ["--group-version", gv]
    if metrics is not None:
        argv += ["--metrics", str(metrics)]
    return argv


def _status(code: HTTPStatus, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": code.phrase.replace(" ", ""),
        "code": int(code),
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        # The TLS handshake runs here, in the request's own thread, so one slow client cannot stall
        # the accept loop.
        self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"testserver: {format % args}\n")

    def _peer_cn(self) -> str | None:
        cert = self.request.getpeercert()
        if not cert:
            return None
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return str(value)
        return None

    def do_GET(self) -> None:
        peer_cn = self._peer_cn()
        user = self.headers.get("X-Remote-User") if peer_cn in self.server.allowed_names else None
        groups = (self.headers.get_all("X-Remote-Group") or []) if user else []
        path = urlsplit(self.path).path
        if not user:
            code, body = (
                HTTPStatus.UNAUTHORIZED,
                _status(HTTPStatus.UNAUTHORIZED, "front-proxy identity required"),
            )
        else:
            code, body = self._route(path, user, groups, peer_cn)
        self.server.record(
            {
                "method": "GET",
                "path": self.path,
                "peer_cn": peer_cn,
                "user": user,
                "groups": groups,
                "code": code,
            }
        )
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, path: str, user: str, groups: list[str], peer_cn: str | None) -> tuple[HTTPStatus, Any]:
        parts = [p for p in path.split("/") if p]
        if len(parts) < 3 or parts[0] != "apis" or f"{parts[1]}/{parts[2]}" not in self.server.group_versions:
            return HTTPStatus.NOT_FOUND, _status(HTTPStatus.NOT_FOUND, f"no route for {path}")
        group, version, rest = parts[1], parts[2], parts[3:]
        if not rest:
            return HTTPStatus.OK, self._discovery(group, version)
        if rest == ["whoami"]:
            return HTTPStatus.OK, {"kind": "WhoAmI", "user": user, "groups": groups, "peerCN": peer_cn}
        # /namespaces/{ns}/{resource}/{name}/{metric}
        if group == CUSTOM_METRICS and len(rest) == 5 and rest[0] == "namespaces":
            return self._metric(version, *rest[1:])
        return HTTPStatus.NOT_FOUND, _status(HTTPStatus.NOT_FOUND, f"no route for {path}")

    def _metrics(self) -> dict[str, str]:
        if self.server.metrics_file is None:
            return {}
        loaded: dict[str, str] = json.loads(self.server.metrics_file.read_text())
        return loaded

    def _discovery(self, group: str, version: str) -> dict[str, Any]:
        resources = []
        if group == CUSTOM_METRICS:
            names = sorted({"/".join(k.split("/")[1:4:2]) for k in self._metrics()})
            resources = [
                {
                    "name": n,
                    "singularName": "",
                    "namespaced": True,
                    "kind": "MetricValueList",
                    "verbs": ["get"],
                }
                for n in names
            ]
        else:
            resources = [
                {
                    "name": "whoami",
                    "singularName": "",
                    "namespaced": False,
                    "kind": "WhoAmI",
                    "verbs": ["get"],
                }
            ]
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}",
            "resources": resources,
        }

    def _metric(self, version: str, ns: str, resource: str, name: str, metric: str) -> tuple[HTTPStatus, Any]:
        value = self._metrics().get(f"{ns}/{resource}/{name}/{metric}")
        if value is None or resource not in _KINDS:
            return HTTPStatus.NOT_FOUND, _status(
                HTTPStatus.NOT_FOUND, f"no {metric} for {resource} {ns}/{name}"
            )
        kind, api_version = _KINDS[resource]
        item: dict[str, Any] = {
            "describedObject": {"kind": kind, "namespace": ns, "name": name, "apiVersion": api_version},
            "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "value": value,
        }
        if version == "v1beta1":
            item |= {"metricName": metric, "window": 60, "selector": None}
        else:
            item |= {"metric": {"name": metric, "selector": None}, "windowSeconds": 60}
        body = {
            "kind": "MetricValueList",
            "apiVersion": f"{CUSTOM_METRICS}/{version}",
            "metadata": {},
            "items": [item],
        }
        return HTTPStatus.OK, body


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__((args.host, args.port), _Handler)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(args.cert, args.key)
        self.tls.load_verify_locations(args.client_ca)
        self.tls.verify_mode = ssl.CERT_OPTIONAL
        self.allowed_names = set(args.allowed_names)
        self.group_versions = set(args.group_version)
        self.metrics_file: Path | None = args.metrics
        self._record_file: Path = args.record
        self._lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Port probes connect and close without a handshake; one line is enough for those.
        exc = sys.exc_info()[1]
        sys.stderr.write(f"testserver: {client_address}: {type(exc).__name__}: {exc}\n")

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock, self._record_file.open("a") as out:
            out.write(json.dumps(entry) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--client-ca", type=Path, required=True)
    parser.add_argument("--allowed-names", nargs="*", default=["front-proxy-client"])
    parser.add_argument("--group-version", action="append", required=True)
    parser.add_argument("--metrics", type=Path)
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args()
    server = _Server(args)
    sys.stderr.write(f"testserver: listening on {args.host}:{args.port}\n")
    server.serve_forever()


if __name__ == "__main__":
    main()
