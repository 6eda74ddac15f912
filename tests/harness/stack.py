"""The installed chart, brought to life: its webhook and metrics server as real processes.

kwok pods run no containers, so a chart installed on the local control plane has Deployments whose pods
never execute anything. ``ChartStack`` plays the kubelet for the chart's two Deployments:

* it installs the chart with ``helm`` (the values pin the Deployments' pods to a node selector no node
  has, so their kwok pods stay Pending: they get no IP and never appear in an EndpointSlice);
* for each of the Deployment's replicas, it starts the container's real entry point (the Dockerfile's
  ``ENTRYPOINT``) in a network namespace of its own (``harness.netns``), with the environment of the
  installed Deployment's pod template (literal values, and ``fieldRef``s resolved against the process's
  pod name), the files of the installed ConfigMaps and Secrets mounted where the pod spec says (under a
  per-pod root directory), as the image's user (65532), and with credentials of the chart's own
  ServiceAccount (a TokenRequest, in a kubeconfig), so the chart's RBAC is what the process gets;
* once the process answers its readiness probe, it publishes an EndpointSlice for each of the chart's
  Services that select the pod, with the namespace's address and the container's ports. The real
  aggregator (``--enable-aggregator-routing``) and the metrics server's replica discovery find the
  processes exactly as they would find pods.

Network namespaces route to one another through the host (forwarding enabled on their host-side veth
interfaces only), so the metrics server reaches every webhook replica as in a pod network.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.harness.cluster import ROOT, ApiError, Cluster
from tests.harness.netns import SUBNET, NetNamespace

CHART = ROOT / "charts" / "teflon"
#: Values every install that ChartStack runs needs: the node selector that keeps the chart's own pods Pending.
PROCESS_VALUES = Path(__file__).resolve().parent / "values" / "processes.yaml"
#: The node selector (in ``PROCESS_VALUES``) that keeps the chart's own pods Pending.
PROCESS_NODE_LABEL = "teflon.io/e2e-process"
SLICE_MANAGER = "teflon-e2e-stack"
IMAGE_USER = 65532
TOKEN_SECONDS = 24 * 3600
#: Where the ServiceAccount admission plugin mounts the API token into every pod.
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


class StackError(RuntimeError):
    """The chart's processes could not be started or wired into the cluster."""


def entrypoint(container: str) -> list[str]:
    """The container's entry point from ``Dockerfile.<container>``, run with this interpreter."""
    dockerfile = ROOT / f"Dockerfile.{container}"
    match = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", dockerfile.read_text(), re.MULTILINE)
    if match is None:
        raise StackError(f"{dockerfile} has no exec-form ENTRYPOINT")
    argv = [str(a) for a in json.loads(match.group(1))]
    if not Path(argv[0]).name.startswith("python"):
        raise StackError(f"{dockerfile}: expected a Python entry point, got {argv}")
    return [sys.executable, *argv[1:]]


def _selected_by(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@dataclass
class PodProcess:
    """One pod of a chart Deployment, running as a process in its own network namespace."""

    deployment: str
    pod: dict[str, Any]
    netns: NetNamespace
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    log_file: Path | None = None

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    @property
    def ip(self) -> str:
        return self.netns.ip


@dataclass
class ChartStack:
    """A release of ``charts/teflon`` whose webhook and metrics server run as real processes."""

    cluster: Cluster
    release: str
    namespace: str
    workdir: Path
    chart: Path = CHART
    #: The webhook policy mode the release was last installed with (the tests' bookkeeping).
    mode: str = ""
    pods: dict[str, list[PodProcess]] = field(default_factory=dict)
    _templates: dict[str, str] = field(default_factory=dict)

    # -- helm --------------------------------------------------------------------------------------

    def helm_install(self, values: Sequence[Path], *, timeout: str = "120s") -> None:
        """``helm upgrade --install`` the chart with ``values`` (no --wait: our pods stay Pending)."""
        args = ["upgrade", "--install", self.release, str(self.chart), "--namespace", self.namespace]
        args += ["--create-namespace", "--timeout", timeout]
        for f in values:
            args += ["--values", str(f)]
        self.cluster.helm(*args)

    def uninstall(self) -> None:
        self.cluster.helm("uninstall", self.release, "--namespace", self.namespace, "--ignore-not-found")

    # -- reading the installed release ---------------------------------------------------------------

    def deployment(self, component: str) -> dict[str, Any]:
        """The release's Deployment of ``component`` (``webhook`` or ``metrics``), found by its labels."""
        selector = f"app.kubernetes.io/instance={self.release},app.kubernetes.io/component={component}"
        items = self.cluster.request(
            "GET",
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments",
            params={"labelSelector": selector},
        )["items"]
        if len(items) != 1:
            raise StackError(f"expected one Deployment with {selector}, found {len(items)}")
        return dict(items[0])

    def _pods(self, dep: dict[str, Any]) -> list[dict[str, Any]]:
        """The pods the Deployment asks for, as the kubelet would get them: its template, named.

        The chart's own pods stay Pending (and a rollout of Pending pods never finishes), so the
        processes take their spec from the Deployment's template, not from those pods.
        """
        template = dep["spec"]["template"]
        digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        if template["spec"].get("nodeSelector", {}).get(PROCESS_NODE_LABEL) is None:
            raise StackError(
                f"Deployment {dep['metadata']['name']} has no nodeSelector {PROCESS_NODE_LABEL}: install "
                "with tests/harness/values/processes.yaml so kwok does not run the chart's pods too"
            )
        return [
            {
                "metadata": {
                    "name": f"{dep['metadata']['name']}-{digest}-p{i}",
                    "namespace": self.namespace,
                    "uid": str(uuid.uuid4()),
                    "labels": template["metadata"].get("labels") or {},
                },
                "spec": template["spec"],
            }
            for i in range(int(dep["spec"].get("replicas", 1)))
        ]

    def _volume_files(self, volume: dict[str, Any]) -> dict[str, bytes]:
        ns = self.namespace
        if "configMap" in volume:
            src = volume["configMap"]
            obj = self.cluster.request("GET", f"/api/v1/namespaces/{ns}/configmaps/{src['name']}")
            data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        elif "secret" in volume:
            src = volume["secret"]
            obj = self.cluster.request("GET", f"/api/v1/namespaces/{ns}/secrets/{src['secretName']}")
            data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        elif "emptyDir" in volume:
            return {}
        else:
            raise StackError(
                f"volume {volume.get('name')!r}: only configMap, secret and emptyDir are supported"
            )
        items = src.get("items")
        if items:
            return {i["path"]: data[i["key"]] for i in items}
        return data

    def _env(self, container: dict[str, Any], pod: dict[str, Any], mounts: dict[str, Path]) -> dict[str, str]:
        env: dict[str, str] = {}
        for var in container.get("env") or []:
            if "value" in var:
                value = str(var["value"])
            elif "fieldRef" in var.get("valueFrom", {}):
                path = var["valueFrom"]["fieldRef"]["fieldPath"]
                fields = {
                    "metadata.name": pod["metadata"]["name"],
                    "metadata.namespace": pod["metadata"]["namespace"],
                    "metadata.uid": pod["metadata"]["uid"],
                    "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
                }
                if path not in fields:
                    raise StackError(f"env {var['name']}: fieldRef {path} is not supported")
                value = str(fields[path])
            else:
                raise StackError(f"env {var['name']}: only literal values and fieldRefs are supported")
            # A path under a volume mount points into this pod's root directory instead.
            for mount_path, local in sorted(mounts.items(), key=lambda m: -len(m[0])):
                if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                    value = str(local) + value[len(mount_path.rstrip("/")) :]
                    break
            env[var["name"]] = value
        return env

    def _kubeconfig(self, pod: dict[str, Any], target: Path) -> None:
        """A kubeconfig with a token of the pod's ServiceAccount (no pod object exists to bind it to)."""
        sa = pod["spec"].get("serviceAccountName", "default")
        answer = self.cluster.request(
            "POST",
            f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{sa}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {
                    "expirationSeconds": TOKEN_SECONDS,
                },
            },
        )
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "cluster",
                    "cluster": {"server": self.cluster.server, "certificate-authority": "ca.crt"},
                }
            ],
            "users": [{"name": sa, "user": {"token": answer["status"]["token"]}}],
            "contexts": [
                {"name": sa, "context": {"cluster": "cluster", "user": sa, "namespace": self.namespace}}
            ],
            "current-context": sa,
        }
        shutil.copyfile(self.cluster.ca_file, target.parent / "ca.crt")
        target.write_text(yaml.safe_dump(doc))

    # -- processes ---------------------------------------------------------------------------------

    def start(self, *components: str, ready_timeout: float = 90) -> None:
        """Run every pod of each ``component`` Deployment as a process and publish its endpoints.

        All processes start at once and are then waited for, so a cold interpreter start is paid once.
        """
        deployments = {c: self.deployment(c) for c in components}
        for component, dep in deployments.items():
            pods = self._pods(dep)
            previous = self.pods.get(component, [])
            started: list[PodProcess] = []
            for i, pod in enumerate(pods):
                ns = previous[i].netns if i < len(previous) else self._netns()
                started.append(self._run_pod(component, pod, ns))
            for extra in previous[len(pods) :]:
                extra.netns.close()
            self.pods[component] = started
            self._templates[component] = json.dumps(dep["spec"]["template"], sort_keys=True)
        for component, dep in deployments.items():
            for p in self.pods[component]:
                self._wait_ready(p, dep, ready_timeout)
            self.publish(component)

    def _netns(self) -> NetNamespace:
        ns = NetNamespace(api_port=self.cluster.api_port)
        try:
            _route_via_host(ns)
        except BaseException:
            ns.close()
            raise
        return ns

    def _run_pod(self, component: str, pod: dict[str, Any], ns: NetNamespace) -> PodProcess:
        name = pod["metadata"]["name"]
        root = self.workdir / component / name
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        spec = pod["spec"]
        (container,) = [c for c in spec["containers"] if c["name"] == component]
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        mounts: dict[str, Path] = {}
        for m in container.get("volumeMounts") or []:
            if m["mountPath"] == SA_MOUNT:
                continue  # the process gets the same ServiceAccount's token in its kubeconfig
            local = root / "fs" / m["mountPath"].lstrip("/")
            local.mkdir(parents=True, exist_ok=True)
            for rel, data in self._volume_files(volumes[m["name"]]).items():
                target = local / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                target.chmod(0o644)
            if "emptyDir" in volumes[m["name"]]:
                os.chown(local, IMAGE_USER, IMAGE_USER)
            mounts[m["mountPath"]] = local
        creds = root / "serviceaccount"
        creds.mkdir()
        self._kubeconfig(pod, creds / "kubeconfig")
        env = self._env(container, pod, mounts)
        prefix = "TEFLON_" + component.upper() + "_"
        env[prefix + "KUBECONFIG"] = str(creds / "kubeconfig")
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o755 if path.is_dir() else path.stat().st_mode | 0o644)
        log_file = root / "process.log"
        user = ["setpriv", f"--reuid={IMAGE_USER}", f"--regid={IMAGE_USER}", "--clear-groups"]
        with log_file.open("ab") as log:
            proc = ns.run([*user, *entrypoint(component)], env=env, stdout=log, stderr=log)
        return PodProcess(component, pod, ns, root, proc, log_file)

    def _wait_ready(self, p: PodProcess, dep: dict[str, Any], timeout: float) -> None:
        """Poll the container's readinessProbe (httpGet on a named port) like the kubelet does."""
        (container,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == p.deployment]
        probe = container["readinessProbe"]["httpGet"]
        ports = {cp["name"]: cp["containerPort"] for cp in container.get("ports", [])}
        port = ports.get(probe["port"], probe["port"])
        url = f"http://{p.ip}:{port}{probe['path']}"
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if p.proc is not None and p.proc.poll() is not None:
                raise StackError(f"{p.name} exited with {p.proc.returncode}:\n{self.tail(p)}")
            try:
                resp = httpx.get(url, timeout=2)
                if resp.status_code == 200:
                    return
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.3)
        raise StackError(f"{p.name} not ready at {url} after {timeout}s ({last}):\n{self.tail(p)}")

    @staticmethod
    def tail(p: PodProcess, lines: int = 8) -> str:
        if p.log_file is None or not p.log_file.exists():
            return ""
        return "\n".join(p.log_file.read_text(errors="replace").splitlines()[-lines:])

    def logs(self, component: str) -> list[dict[str, Any]]:
        """The JSON log lines of every process of ``component``."""
        out: list[dict[str, Any]] = []
        for p in self.pods.get(component, []):
            if p.log_file is None or not p.log_file.exists():
                continue
            for line in p.log_file.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    doc = json.loads(line)
                    if isinstance(doc, dict):
                        out.append(doc)
        return out

    # -- endpoints ---------------------------------------------------------------------------------

    def services_for(self, component: str) -> list[dict[str, Any]]:
        dep = self.deployment(component)
        labels = dep["spec"]["template"]["metadata"].get("labels") or {}
        services = self.cluster.request("GET", f"/api/v1/namespaces/{self.namespace}/services")["items"]
        return [s for s in services if _selected_by(s["spec"].get("selector") or {}, labels)]

    def publish(self, component: str, *, ready: bool = True) -> None:
        """Write one EndpointSlice per Service selecting ``component``'s pods, listing the processes."""
        dep = self.deployment(component)
        (container,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == component]
        container_ports = {cp["name"]: cp["containerPort"] for cp in container.get("ports", [])}
        for svc in self.services_for(component):
            ports = []
            for sp in svc["spec"]["ports"]:
                target = sp.get("targetPort", sp["port"])
                number = container_ports.get(target, target) if isinstance(target, str) else target
                ports.append({"name": sp.get("name", ""), "port": int(number), "protocol": "TCP"})
            name = svc["metadata"]["name"]
            self.cluster.apply(
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": f"{name}-processes",
                        "namespace": self.namespace,
                        "labels": {
                            "kubernetes.io/service-name": name,
                            "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER,
                        },
                    },
                    "addressType": "IPv4",
                    "ports": ports,
                    "endpoints": [
                        {
                            "addresses": [p.ip],
                            "conditions": {"ready": ready},
                            "hostname": p.name[-63:].lstrip("-"),
                        }
                        for p in self.pods.get(component, [])
                    ],
                }
            )

    # -- lifecycle -----------------------------------------------------------------------------------

    def upgrade(self, values: Sequence[Path]) -> list[str]:
        """``helm upgrade`` and restart the components whose pod template changed (a rollout)."""
        self.helm_install(values)
        return self.reconcile()

    def reconcile(self) -> list[str]:
        """Restart the components whose Deployment's pod template changed since they started."""
        rolled = []
        for component in list(self.pods):
            template = json.dumps(self.deployment(component)["spec"]["template"], sort_keys=True)
            if template != self._templates.get(component):
                self.stop_processes(component)
                rolled.append(component)
        if rolled:
            self.start(*rolled)
        return rolled

    def restart(self, *components: str) -> None:
        """Stop and start the processes again (in-memory state such as budgets and rates is lost)."""
        for c in components:
            self.stop_processes(c)
        self.start(*components)

    def stop_processes(self, component: str) -> None:
        for p in self.pods.get(component, []):
            if p.proc is not None and p.proc.poll() is None:
                p.proc.send_signal(signal.SIGTERM)
                try:
                    p.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.proc.kill()
                    p.proc.wait(timeout=5)

    def pause(self, component: str) -> None:
        """SIGSTOP every process of ``component``: it keeps its sockets and state but answers nothing."""
        for p in self.pods.get(component, []):
            if p.proc is not None:
                os.kill(p.proc.pid, signal.SIGSTOP)
                for child in _children(p.proc.pid):
                    os.kill(child, signal.SIGSTOP)

    def resume(self, component: str) -> None:
        for p in self.pods.get(component, []):
            if p.proc is not None:
                for child in _children(p.proc.pid):
                    os.kill(child, signal.SIGCONT)
                os.kill(p.proc.pid, signal.SIGCONT)

    def close(self) -> None:
        for component, pods in self.pods.items():
            for svc in self.services_for_safe(component):
                with contextlib.suppress(ApiError):
                    self.cluster.request(
                        "DELETE",
                        f"/apis/discovery.k8s.io/v1/namespaces/{self.namespace}/endpointslices/"
                        f"{svc}-processes",
                    )
            for p in pods:
                p.netns.close()
        self.pods.clear()

    def services_for_safe(self, component: str) -> list[str]:
        try:
            return [s["metadata"]["name"] for s in self.services_for(component)]
        except ApiError:
            return []

    @contextlib.contextmanager
    def running(self, *components: str) -> Iterator[ChartStack]:
        try:
            self.start(*components)
            yield self
        finally:
            self.close()


def _route_via_host(ns: NetNamespace) -> None:
    """Reach the other harness namespaces through the host, which forwards for this veth only."""
    route = ns.exec(["ip", "route", "replace", str(SUBNET), "via", ns.host_ip])
    if route.returncode != 0:
        raise StackError(f"route in {ns.name}: {route.stderr.strip()}")
    Path(f"/proc/sys/net/ipv4/conf/tfh{ns.slot}/forwarding").write_text("1\n")


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (``ip netns exec`` and ``setpriv`` exec, but be thorough)."""
    out: list[int] = []
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for kid in kids:
        out.append(int(kid))
        out.extend(_children(int(kid)))
    return out
