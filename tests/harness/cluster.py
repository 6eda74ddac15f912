"""The local control plane (``scripts/cluster.sh``) as seen by tests.

Tests get a ``Cluster`` from the session fixture ``cluster`` in ``tests/conftest.py`` (it runs
``scripts/cluster.sh up``, which is idempotent and takes seconds when the cluster already runs). Mark
such tests ``@pytest.mark.cluster`` (the fixture adds the mark too). What a ``Cluster`` offers:

* files: ``kubeconfig`` (cluster admin), ``ca_file`` (the cluster CA: API server serving certificate
  and client certificates), ``front_proxy_ca_file`` (``--requestheader-client-ca-file``) and
  ``front_proxy_client_cert_file``/``front_proxy_client_key_file`` (the aggregator's client
  certificate, CN ``front-proxy-client``, to call an extension server exactly as the aggregator does);
  ``server`` is the API server URL, ``api_port`` its port on 127.0.0.1, ``kubernetes_version`` the
  version it was built at (``1.37.2``; ``TEFLON_K8S_VERSION`` for ``scripts/cluster.sh`` changes it);
* ``kube()`` -> a ``teflon.common.kube.KubeClient`` for the admin kubeconfig (async; close it with
  ``await client.aclose()``; the ``kube`` fixture does that for you);
* ``request(method, path, body)`` -> a synchronous JSON call as admin, raising ``ApiError``;
  ``apply(obj)`` server-side applies a manifest dict; ``delete(obj)`` deletes it (gone is fine);
* ``kubectl(*args)`` / ``helm(*args)`` -> ``CompletedProcess[str]`` with ``KUBECONFIG`` set, raising
  ``CommandError`` (with stdout/stderr) on failure unless ``check=False``; the binaries come from
  ``.tools/bin`` (``make tools``);
* ``wait_until(probe, timeout, what)`` -> polls ``probe()`` until it returns a truthy value;
* ``netns_service(name, namespace, port)`` -> a context manager that makes a network namespace with
  its own address (``harness.netns``), a Service ``name`` without selector in ``namespace`` whose
  EndpointSlice points at that address and ``port``, and removes all of it afterwards:

      with cluster.netns_service("my-api", ns, 8443) as svc:
          svc.run([sys.executable, "server.py", "--port", "8443"])    # runs inside the namespace
          svc.wait_ready()                                            # until svc.ip:8443 accepts
          svc.ip, svc.port, svc.dns_name                              # 10.250.0.x, 8443, my-api.<ns>.svc

  The Service port is ``service_port`` (default 443, name ``https``); Service VIPs are not routed
  here, so clients use the endpoint (the aggregator does, with ``--enable-aggregator-routing``).
  Processes inside reach the API server at the same ``server`` URL, so they can use ``kubeconfig``;
* ``run(argv)`` -> runs any command with the cluster's ``KUBECONFIG`` and ``.tools/bin`` on PATH;
* ``lock(name)`` -> an exclusive file lock shared by every test session using this cluster, for
  cluster-scoped objects that only one test may own at a time. Whoever registers a
  ``custom.metrics.k8s.io`` APIService holds ``cluster.lock("apiservice-custom.metrics.k8s.io")``
  while it exists (``with cluster.lock(...): ...``).

Other fixtures in ``tests/conftest.py``: ``kube`` (a ``KubeClient``, closed after the test) and
``namespace`` (a fresh namespace, deleted after the test). For an extension API server to register
behind an APIService, ``harness.certs`` makes a CA and a serving certificate for ``svc.dns_name`` and
``harness.testserver`` is a minimal one (see ``tests/cluster/test_control_plane.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
import yaml

from teflon.common.kube import KubeClient
from tests.harness.netns import NetNamespace

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cluster.sh"
TOOLS_BIN = ROOT / ".tools" / "bin"

T = TypeVar("T")


class ClusterError(RuntimeError):
    """The local control plane could not be started or used."""


class CommandError(ClusterError):
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        cmd = " ".join(str(a) for a in proc.args)
        super().__init__(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        self.proc = proc


class ApiError(ClusterError):
    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body}")
        self.status = status
        self.body = body


def tool(name: str) -> str:
    """Path of a project tool: ``.tools/bin`` first, then PATH."""
    local = TOOLS_BIN / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise ClusterError(f"{name} not found in {TOOLS_BIN} or on PATH; run `make tools`")
    return found


def is_running() -> bool:
    """Whether ``scripts/cluster.sh status`` finds every component running and the API ready."""
    return subprocess.run([str(SCRIPT), "status"], capture_output=True, check=False, cwd=ROOT).returncode == 0


def stop() -> None:
    """``scripts/cluster.sh down``: stop the processes ``up`` started and remove the state."""
    proc = subprocess.run([str(SCRIPT), "down"], capture_output=True, text=True, check=False, cwd=ROOT)
    if proc.returncode != 0:
        raise ClusterError(f"scripts/cluster.sh down failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")


def ensure_up(timeout: float | None = None) -> Cluster:
    """Run ``scripts/cluster.sh up`` (idempotent) and describe the running cluster.

    ``TEFLON_CLUSTER_STATE`` moves the state directory (default ``<repo>/.cluster``), as for the script.
    """
    proc = subprocess.run(
        [str(SCRIPT), "up"], capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT
    )
    if proc.returncode != 0:
        raise ClusterError(f"scripts/cluster.sh up failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return Cluster.from_state(Path(os.environ.get("TEFLON_CLUSTER_STATE") or ROOT / ".cluster"))


def evidence_cluster(timeout: float = 900) -> Cluster:
    """The cluster benchmarks and fault injection run on: TEFLON_CLUSTER_STATE's, or else one of their
    own in ``build/evidence-cluster``, so they never disturb (or stop parts of) a cluster other work uses.
    """
    os.environ.setdefault("TEFLON_CLUSTER_STATE", str(ROOT / "build" / "evidence-cluster"))
    return ensure_up(timeout=timeout)


@dataclass(frozen=True)
class Cluster:
    state: Path
    kubernetes_version: str
    kubeconfig: Path
    server: str
    api_port: int
    ca_file: Path
    admin_cert_file: Path
    admin_key_file: Path
    front_proxy_ca_file: Path
    front_proxy_client_cert_file: Path
    front_proxy_client_key_file: Path
    _http: httpx.Client = field(repr=False, compare=False)

    @classmethod
    def from_state(cls, state: Path) -> Cluster:
        kubeconfig = state / "kubeconfig"
        doc = yaml.safe_load(kubeconfig.read_text())
        server = str(doc["clusters"][0]["cluster"]["server"])
        pki = state / "pki"
        tls = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        tls.load_cert_chain(pki / "admin.crt", pki / "admin.key")
        http = httpx.Client(base_url=server, verify=tls, timeout=30)
        return cls(
            state=state,
            kubernetes_version=(state / "kubernetes-version").read_text().strip(),
            kubeconfig=kubeconfig,
            server=server,
            api_port=int(server.rsplit(":", 1)[1]),
            ca_file=pki / "ca.crt",
            admin_cert_file=pki / "admin.crt",
            admin_key_file=pki / "admin.key",
            front_proxy_ca_file=pki / "front-proxy-ca.crt",
            front_proxy_client_cert_file=pki / "front-proxy-client.crt",
            front_proxy_client_key_file=pki / "front-proxy-client.key",
            _http=http,
        )

    # -- clients ---------------------------------------------------------------------------------

    def kube(self, timeout: float = 10.0) -> KubeClient:
        return KubeClient.from_config(str(self.kubeconfig), timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        resp = self._http.request(method, path, json=body, params=params, headers=headers)
        try:
            doc = resp.json() if resp.content else {}
        except ValueError:
            doc = resp.text
        if resp.status_code >= 400:
            raise ApiError(method, path, resp.status_code, doc)
        return doc

    def apply(self, obj: Mapping[str, Any]) -> Any:
        """Server-side apply ``obj`` (needs ``apiVersion``, ``kind``, ``metadata.name``)."""
        return self.request(
            "PATCH",
            _object_path(obj),
            obj,
            params={"fieldManager": "teflon-tests", "force": "true"},
            content_type="application/apply-patch+yaml",
        )

    def delete(self, obj: Mapping[str, Any]) -> None:
        """Delete ``obj``; an object that is already gone is fine."""
        try:
            self.request("DELETE", _object_path(obj))
        except ApiError as exc:
            if exc.status != 404:
                raise

    def _env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        path = f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": path, **(env or {})}

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float = 300,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self._env(env),
            cwd=cwd,
            check=False,
        )
        if check and proc.returncode != 0:
            raise CommandError(proc)
        return proc

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        return self.run([tool("kubectl"), *args], input=input, check=check, timeout=timeout)

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.run([tool("helm"), *args], check=check, timeout=timeout)

    # -- waiting ---------------------------------------------------------------------------------

    @staticmethod
    def wait_until(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
        """Poll ``probe`` until it returns something truthy and return that; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            try:
                result = probe()
                if result:
                    return result
            except (ApiError, CommandError) as exc:
                last_error = exc
            if time.monotonic() > deadline:
                detail = f"; last error: {last_error}" if last_error else ""
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}{detail}")
            time.sleep(interval)

    # -- servers inside the cluster ----------------------------------------------------------------

    @contextlib.contextmanager
    def netns_service(
        self,
        name: str,
        namespace: str,
        port: int,
        *,
        service_port: int = 443,
        port_name: str = "https",
    ) -> Iterator[NetnsService]:
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "ports": [{"name": port_name, "port": service_port, "targetPort": port, "protocol": "TCP"}]
            },
        }
        with NetNamespace(api_port=self.api_port) as ns:
            slice_ = {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-netns",
                    "namespace": namespace,
                    "labels": {
                        "kubernetes.io/service-name": name,
                        "endpointslice.kubernetes.io/managed-by": "teflon-test-harness",
                    },
                },
                "addressType": "IPv4",
                "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
                "endpoints": [{"addresses": [ns.ip], "conditions": {"ready": True}}],
            }
            self.apply(service)
            self.apply(slice_)
            try:
                yield NetnsService(
                    ns=ns, name=name, namespace=namespace, port=port, service_port=service_port
                )
            finally:
                self.delete(slice_)
                self.delete(service)

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        # Per cluster: what it guards (an APIService, say) exists once per cluster.
        locks = self.state / "locks"
        locks.mkdir(exist_ok=True)
        with (locks / f"{name}.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class NetnsService:
    ns: NetNamespace
    name: str
    namespace: str
    port: int
    service_port: int

    @property
    def ip(self) -> str:
        return self.ns.ip

    @property
    def dns_name(self) -> str:
        """The TLS server name the aggregator (and in-cluster clients) use for this Service."""
        return f"{self.name}.{self.namespace}.svc"

    def run(
        self,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdout: int | IO[bytes] | None = None,
        stderr: int | IO[bytes] | None = None,
    ) -> subprocess.Popen[bytes]:
        return self.ns.run(cmd, env=env, stdout=stdout, stderr=stderr)

    def wait_ready(self, timeout: float = 15) -> None:
        """Wait until the server accepts connections on ``ip:port`` (reached from the host)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((self.ip, self.port), timeout=1).close()
            except OSError:
                self.ns.check_alive()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
            else:
                return


def _object_path(obj: Mapping[str, Any]) -> str:
    api_version = str(obj["apiVersion"])
    kind = str(obj["kind"])
    meta = obj["metadata"]
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    plural = _PLURALS.get(kind) or kind.lower() + "s"
    ns = meta.get("namespace")
    scope = f"/namespaces/{ns}" if ns else ""
    return f"{prefix}{scope}/{plural}/{meta['name']}"


_PLURALS = {
    "EndpointSlice": "endpointslices",
    "APIService": "apiservices",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "Ingress": "ingresses",
    "NetworkPolicy": "networkpolicies",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
}
