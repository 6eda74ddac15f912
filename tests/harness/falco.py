"""Falco alerts as Falco's ``http_output`` posts them (``json_output: true``, Falco 0.4x shape).

``alert_doc`` is the one builder of an alert document: the fields the webhook reads (rule, priority,
source, hostname, the pod in ``output_fields``) and only what the caller adds. Unit tests parse it
(``parse_one``), process tests post it. The named builders below take the pod object the alert is
about and return the full document Falco would send from the node that pod runs on: ``hostname`` is
the node name, ``output_fields`` carries the container plugin's fields and ``k8s.pod.uid`` (the chart
adds it to every syscall rule).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

import httpx


def _now() -> tuple[str, int]:
    ns = time.time_ns()
    stamp = dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return f"{stamp}{ns % 1000:03d}Z", ns


SHELL_RULE = "Terminal shell in container"


def alert_doc(
    namespace: str,
    pod: str,
    *,
    rule: str = SHELL_RULE,
    priority: str = "Critical",
    uid: str | None = None,
    hostname: str = "node-1",
    tags: list[str] | None = None,
    fields: Mapping[str, Any] | None = None,
    stamped: bool = False,
    **top: Any,
) -> dict[str, Any]:
    """An alert about pod ``namespace/pod``; ``fields`` extend ``output_fields``, ``top`` sets any other key.

    ``stamped`` adds ``time`` (now) and an ``output`` line as Falco writes them.
    """
    output_fields: dict[str, Any] = {"k8s.ns.name": namespace, "k8s.pod.name": pod}
    if uid is not None:
        output_fields["k8s.pod.uid"] = uid
    output_fields.update(fields or {})
    doc: dict[str, Any] = {
        "rule": rule,
        "priority": priority,
        "source": "syscall",
        "hostname": hostname,
        "output_fields": output_fields,
    }
    if tags is not None:
        doc["tags"] = tags
    if stamped:
        when, _ = _now()
        doc["time"] = when
        doc["output"] = f"{when[11:29]}: {priority} {rule} (k8s_ns_name={namespace} k8s_pod_name={pod})"
    doc.update(top)
    return doc


def _alert(
    pod: Mapping[str, Any],
    *,
    rule: str,
    priority: str,
    tags: list[str],
    message: str,
    fields: dict[str, Any],
    hostname: str | None = None,
) -> dict[str, Any]:
    meta, spec = pod["metadata"], pod["spec"]
    container = spec["containers"][0]
    image, _, tag = container["image"].rpartition(":")
    when, ns = _now()
    output_fields = {
        "container.id": meta["uid"].replace("-", "")[:12],
        "container.image.repository": image,
        "container.image.tag": tag,
        "container.name": container["name"],
        "evt.time": ns,
        "k8s.ns.name": meta["namespace"],
        "k8s.pod.name": meta["name"],
        "k8s.pod.uid": meta["uid"],
        "user.loginuid": -1,
        "user.name": "root",
        "user.uid": 0,
        **fields,
    }
    clock = when[11:29]
    details = " ".join(f"{k}={v}" for k, v in fields.items())
    output = (
        f"{clock}: {priority} {message} | {details} container_id={output_fields['container.id']} "
        f"container_name={container['name']} container_image_repository={image} "
        f"k8s_pod_name={meta['name']} k8s_ns_name={meta['namespace']}"
    )
    return alert_doc(
        meta["namespace"],
        meta["name"],
        rule=rule,
        priority=priority,
        hostname=hostname if hostname is not None else spec["nodeName"],
        tags=tags,
        fields=output_fields,
        output=output,
        time=when,
    )


def terminal_shell(pod: Mapping[str, Any], *, hostname: str | None = None) -> dict[str, Any]:
    return _alert(
        pod,
        rule="Terminal shell in container",
        priority="Notice",
        tags=["T1059", "container", "maturity_stable", "mitre_execution", "shell"],
        message="A shell was spawned in a container with an attached terminal",
        fields={
            "evt.type": "execve",
            "proc.name": "bash",
            "proc.exepath": "/usr/bin/bash",
            "proc.pname": "runc",
            "proc.cmdline": "bash",
            "proc.tty": 34816,
        },
        hostname=hostname,
    )


def read_sensitive_file(pod: Mapping[str, Any], *, hostname: str | None = None) -> dict[str, Any]:
    return _alert(
        pod,
        rule="Read sensitive file untrusted",
        priority="Warning",
        tags=["T1555", "container", "filesystem", "host", "maturity_stable", "mitre_credential_access"],
        message="Sensitive file opened for reading by non-trusted program",
        fields={
            "evt.type": "openat",
            "fd.name": "/etc/shadow",
            "proc.name": "cat",
            "proc.exepath": "/usr/bin/cat",
            "proc.pname": "bash",
            "proc.cmdline": "cat /etc/shadow",
            "proc.aname[2]": "runc",
            "proc.aname[3]": None,
            "proc.tty": 34816,
        },
        hostname=hostname,
    )


def drop_and_execute(pod: Mapping[str, Any], *, hostname: str | None = None) -> dict[str, Any]:
    return _alert(
        pod,
        rule="Drop and execute new binary in container",
        priority="Critical",
        tags=["T1610", "TA0003", "container", "maturity_stable", "mitre_persistence"],
        message="Executing binary not part of base image",
        fields={
            "evt.type": "execve",
            "proc.name": "xmrig",
            "proc.exepath": "/tmp/.x/xmrig",
            "proc.pname": "bash",
            "proc.cmdline": "xmrig -o stratum+tcp://pool.invalid:3333",
            "proc.is_exe_upper_layer": True,
            "proc.tty": 34816,
        },
        hostname=hostname,
    )


def contact_api_server(pod: Mapping[str, Any], *, hostname: str | None = None) -> dict[str, Any]:
    """An alert no response rule matches: it only counts towards the alert rates."""
    return _alert(
        pod,
        rule="Contact K8S API Server From Container",
        priority="Notice",
        tags=["T1565", "container", "k8s", "maturity_stable", "mitre_discovery", "network"],
        message="Unexpected connection to K8s API Server from container",
        fields={
            "evt.type": "connect",
            "fd.name": "10.244.0.7:41234->10.96.0.1:443",
            "proc.name": "curl",
            "proc.exepath": "/usr/bin/curl",
            "proc.cmdline": "curl -k https://kubernetes.default",
        },
        hostname=hostname,
    )


def post(client: httpx.Client, url: str, alerts: list[dict[str, Any]]) -> None:
    """Post each alert as its own request, as Falco's ``http_output`` does; fail on anything but 202."""
    for alert in alerts:
        resp = client.post(url, json=alert)
        if resp.status_code != 202:
            raise AssertionError(f"POST {url}: HTTP {resp.status_code}: {resp.text}")
