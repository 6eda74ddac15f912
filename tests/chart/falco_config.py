"""The Falco configuration a rendered chart gives Falco, loaded the way Falco 0.44 loads it, and checked
against Falco's own schemas.

Falco (``userspace/engine/yaml_helper.h``) reads the file named by ``-c`` (default
``/etc/falco/falco.yaml``), expands ``${VAR}`` in every scalar from its environment (an unset variable
becomes the empty string, ``$${x}`` stays ``${x}``), validates that document against its configuration
schema, then includes each ``config_files`` entry (a file, or every file of a directory in name order)
the same way, merging with the entry's strategy (``append`` by default: sequences are appended, other
keys replaced). The container plugin validates its ``init_config`` against its own schema when Falco
loads it.

Here the files and the environment come from the rendered objects: the Falco container's volume
mounts (ConfigMaps, Secrets; an ``emptyDir`` is empty until something writes it at run time) and its
``env`` (values, ConfigMap and Secret keys, the downward API). Falco's validator uses weak types (a
scalar ``"true"`` passes as a boolean); this check keeps YAML's types except for a scalar that came out
of a ``${VAR}`` expansion, which is read back as YAML, so it is at least as strict as Falco.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft4Validator, Draft6Validator

from .rendering import Manifest, Rendered

SCHEMAS = Path(__file__).resolve().parent / "data" / "falco-schemas"
FALCO_VERSION = "0.44.1"
CONTAINER_PLUGIN_VERSION = "0.7.1"
DEFAULT_CONFIG = "/etc/falco/falco.yaml"
#: What the downward API gives a pod; any value of the right shape will do for a configuration check.
DOWNWARD = {"spec.nodeName": "node-1", "metadata.name": "falco-abcde", "status.podIP": "10.0.0.10"}

_ENV_REF = re.compile(r"\$\{([^}]*)\}")


@cache
def falco_schema() -> Draft6Validator:
    schema = json.loads((SCHEMAS / f"falco_config_schema_{FALCO_VERSION}.json").read_text())
    return Draft6Validator(schema)


@cache
def container_plugin_schema() -> Draft4Validator:
    schema = json.loads((SCHEMAS / f"container_plugin_schema_{CONTAINER_PLUGIN_VERSION}.json").read_text())
    return Draft4Validator(schema)


def falco_default_config() -> dict[str, Any]:
    """Falco's shipped falco.yaml (0.44.1)."""
    config: dict[str, Any] = yaml.safe_load((SCHEMAS / f"falco_{FALCO_VERSION}.yaml").read_text())
    return config


class ConfigError(Exception):
    """The rendered objects do not give Falco a configuration it can load at all."""


@dataclass
class FalcoConfig:
    """What Falco would load: the merged configuration, the files it came from, every schema error."""

    config: dict[str, Any]
    files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def falco_daemonset(rendered: Rendered) -> Manifest | None:
    """The official falco chart's DaemonSet in a render, if Falco is deployed."""
    found = [
        d
        for d in rendered.of_kind("DaemonSet")
        if d["metadata"].get("labels", {}).get("helm.sh/chart", "").startswith("falco-")
    ]
    assert len(found) <= 1, f"expected at most one Falco DaemonSet, found {len(found)}"
    return found[0] if found else None


def falco_container(workload: Manifest) -> Manifest:
    found: list[Manifest] = [
        c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == "falco"
    ]
    (container,) = found
    return container


def expand_env(value: str, env: Mapping[str, str]) -> str:
    """Falco's ``pre_process_env_vars`` on one scalar."""
    out: list[str] = []
    i = 0
    while i < len(value):
        if value.startswith("$${", i) and "}" in value[i:]:
            end = value.index("}", i)
            out.append(value[i + 1 : end + 1])
            i = end + 1
        elif value.startswith("${", i) and "}" in value[i:]:
            end = value.index("}", i)
            out.append(env.get(value[i + 2 : end], ""))
            i = end + 1
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def _expanded(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: _expanded(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_expanded(v, env) for v in node]
    if isinstance(node, str) and "$" in node:
        text = expand_env(node, env)
        if _ENV_REF.search(node) and text:
            try:
                typed = yaml.safe_load(text)
            except yaml.YAMLError:
                return text
            if isinstance(typed, (bool, int, float)):
                return typed
        return text
    return node


def _schema_errors(validator: Draft4Validator | Draft6Validator, document: Any, where: str) -> list[str]:
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"{where}: {'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors]


class PodFiles:
    """The files and environment of one container, as the rendered objects define them."""

    def __init__(self, rendered: Rendered, workload: Manifest, container: Manifest) -> None:
        self._rendered = rendered
        self._namespace = workload["metadata"].get("namespace")
        self._volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"].get("volumes", [])}
        self._mounts = sorted(container.get("volumeMounts", []), key=lambda m: -len(m["mountPath"]))
        self.env = self._environment(container)

    def _object_data(self, kind: str, name: str) -> dict[str, str]:
        matches = [
            o
            for o in self._rendered.of_kind(kind)
            if o["metadata"]["name"] == name and o["metadata"].get("namespace") in (None, self._namespace)
        ]
        if not matches:
            raise ConfigError(f"the Falco pod reads {kind} {name}, which the chart does not render")
        data: dict[str, str] = dict(matches[0].get("data") or {})
        if kind == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in data.items()}
        return data

    def _environment(self, container: Manifest) -> dict[str, str]:
        env: dict[str, str] = {}
        for entry in container.get("env", []):
            name = entry["name"]
            if "value" in entry:
                env[name] = str(entry["value"])
                continue
            source = entry.get("valueFrom", {})
            if "fieldRef" in source:
                path = source["fieldRef"]["fieldPath"]
                env[name] = self._namespace if path == "metadata.namespace" else DOWNWARD.get(path, "x")
                continue
            for ref, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if ref in source:
                    key_ref = source[ref]
                    data = self._object_data(kind, key_ref["name"])
                    if key_ref["key"] not in data:
                        if key_ref.get("optional"):
                            break
                        raise ConfigError(f"env {name}: {kind} {key_ref['name']} has no key {key_ref['key']}")
                    env[name] = data[key_ref["key"]]
                    break
        return env

    def _mount_of(self, path: str) -> tuple[Manifest, Manifest, str] | None:
        for mount in self._mounts:
            base = mount["mountPath"].rstrip("/")
            if path == base or path.startswith(base + "/"):
                return mount, self._volumes[mount["name"]], path[len(base) :].lstrip("/")
        return None

    def _volume_files(self, mount: Manifest, volume: Manifest) -> dict[str, str]:
        """The files a volume shows at its mount point (relative path -> text)."""
        for kind, key in (("ConfigMap", "configMap"), ("Secret", "secret")):
            if key in volume:
                source = volume[key]
                name = source.get("name") or source.get("secretName")
                data = self._object_data(kind, name)
                items = source.get("items")
                files = {i["path"]: data[i["key"]] for i in items} if items else data
                if sub := mount.get("subPath"):
                    return {"": files[sub]} if sub in files else {}
                return files
        return {}  # emptyDir, hostPath, ...: nothing the chart decides

    def read(self, path: str) -> str | None:
        found = self._mount_of(path)
        if found is None:
            return None
        mount, volume, rest = found
        return self._volume_files(mount, volume).get(rest)

    def directory(self, path: str) -> list[tuple[str, str]] | None:
        """Files directly in directory ``path`` in name order, or None when it is not a directory."""
        found = self._mount_of(path)
        if found is None:
            return None
        mount, volume, rest = found
        files = self._volume_files(mount, volume)
        if rest in files:
            return None
        prefix = rest + "/" if rest else ""
        inside = sorted(
            k[len(prefix) :] for k in files if k.startswith(prefix) and "/" not in k[len(prefix) :]
        )
        return [(f"{path.rstrip('/')}/{name}", files[prefix + name]) for name in inside]


def merge_config(root: dict[str, Any], included: Mapping[str, Any], strategy: str = "append") -> None:
    """Falco's ``include_config_file``: merge one included document into the configuration."""
    for key, value in included.items():
        if strategy == "add-only":
            root.setdefault(key, value)
        elif strategy == "append" and isinstance(value, list):
            existing = root.get(key)
            root[key] = (existing if isinstance(existing, list) else []) + value
        else:
            root[key] = value


def _config_path(container: Manifest) -> str:
    args = [*container.get("command", []), *container.get("args", [])]
    for flag, value in itertools.pairwise(args):
        if flag in ("-c", "--config"):
            return str(value)
    return DEFAULT_CONFIG


def _config_entries(config: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for entry in config.get("config_files") or []:
        if isinstance(entry, str):
            yield entry, "append"
        else:
            yield entry["path"], entry.get("strategy", "append")


def check_plugins(config: Mapping[str, Any]) -> list[str]:
    """Every loaded plugin has a configuration; the container plugin's init_config passes its schema."""
    errors: list[str] = []
    plugins = {p.get("name"): p for p in config.get("plugins") or []}
    for name in config.get("load_plugins") or []:
        if name not in plugins:
            errors.append(f"load_plugins: {name} has no entry in plugins")
            continue
        init = plugins[name].get("init_config")
        if name == "container":
            if isinstance(init, str):
                init = yaml.safe_load(init) if init.strip() else {}
            errors += _schema_errors(container_plugin_schema(), init or {}, "plugins[container].init_config")
    return errors


def _load(path: str, text: str, env: Mapping[str, str], errors: list[str]) -> dict[str, Any]:
    document = _expanded(yaml.safe_load(text) or {}, env)
    if not isinstance(document, dict):
        raise ConfigError(f"{path} is not a YAML mapping")
    errors += _schema_errors(falco_schema(), document, path)
    return document


def load_documents(documents: list[tuple[str, str, str]], env: Mapping[str, str]) -> FalcoConfig:
    """Load a main file and the files it includes, as (path, strategy, text) in Falco's order."""
    result = FalcoConfig(config={})
    for i, (path, strategy, text) in enumerate(documents):
        document = _load(path, text, env, result.errors)
        if i == 0:
            result.config = document
        else:
            if "config_files" in document:
                result.errors.append(f"{path}: config_files in an included file (Falco refuses it)")
            merge_config(result.config, document, strategy)
        result.files.append(path)
    if len(documents) > 1:
        result.errors += _schema_errors(falco_schema(), result.config, "merged configuration")
    result.errors += check_plugins(result.config)
    return result


def load_from_render(rendered: Rendered) -> FalcoConfig:
    """The configuration the rendered Falco DaemonSet's Falco would load, checked."""
    workload = falco_daemonset(rendered)
    if workload is None:
        raise ConfigError("the render has no Falco DaemonSet")
    container = falco_container(workload)
    files = PodFiles(rendered, workload, container)
    main_path = _config_path(container)
    main = files.read(main_path)
    if main is None:
        raise ConfigError(f"{main_path} (Falco's -c) is not provided by any volume the chart renders")
    documents = [(main_path, "append", main)]
    head = _expanded(yaml.safe_load(main) or {}, files.env)
    for path, strategy in _config_entries(head):
        listed = files.directory(path)
        if listed is None:
            text = files.read(path)
            listed = [(path, text)] if text is not None else []
        documents += [(included, strategy, text) for included, text in listed]
    return load_documents(documents, files.env)
