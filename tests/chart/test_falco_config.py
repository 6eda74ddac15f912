"""Falco's own checks on what the chart renders: for every scenario, the configuration the Falco pod
would load (falco.yaml plus the files it includes, the wiring variables expanded) passes Falco 0.44.1's
configuration schema and the container plugin 0.7.1's init_config schema, and a broken value fails."""

from __future__ import annotations

import copy
import hashlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .falco_config import (
    SCHEMAS,
    FalcoConfig,
    falco_daemonset,
    falco_default_config,
    falco_schema,
    load_documents,
    load_from_render,
    merge_config,
)
from .rendering import CHART, NAMESPACE, RELEASE, SCENARIO_PATHS, SCENARIOS, Rendered, helm_binary, render

ROOT = CHART.parents[1]
WITH_FALCO = [
    None,
    *[
        s
        for s in SCENARIOS
        if (yaml.safe_load(SCENARIO_PATHS[s].read_text()) or {}).get("falco", {}).get("enabled", True)
    ],
]
BYO_GUIDE = ROOT / "docs" / "bring-your-own-falco.md"


def _ok(result: FalcoConfig) -> None:
    assert result.errors == [], "\n".join(result.errors)


@pytest.mark.parametrize("scenario", WITH_FALCO)
def test_every_scenario_gives_falco_a_configuration_falco_0_44_accepts(scenario: str | None) -> None:
    result = load_from_render(render(scenario))
    _ok(result)
    assert result.files[0] == "/etc/falco/falco.yaml"
    # The configuration really is the wired one, not an empty document that trivially passes: exactly
    # one transport to this release's webhook.
    values = (yaml.safe_load(SCENARIO_PATHS[scenario].read_text()) if scenario else None) or {}
    http, program = result.config["http_output"], result.config["program_output"]
    if (values.get("falcoOutput") or {}).get("transport") == "program":
        assert (http["enabled"], program["enabled"]) == (False, True)
        assert f"-webhook.{NAMESPACE}.svc:2801/v1/falco/stream " in program["program"]
    else:
        assert (http["enabled"], program["enabled"]) == (True, False)
        assert http["url"].endswith(f"-webhook.{NAMESPACE}.svc:2801/v1/falco")
    assert "container" in result.config["load_plugins"]


def test_scenarios_without_falco_render_no_falco() -> None:
    without = [s for s in SCENARIOS if s not in WITH_FALCO]
    assert without, "some scenario keeps an existing Falco (falco.enabled: false)"
    for scenario in without:
        assert falco_daemonset(render(scenario)) is None


@pytest.mark.parametrize(
    ("falco_values", "expected"),
    [
        # teflon 0.1's bug: an engine list without all seven keys; the plugin refuses it, Falco exits.
        ({"collectors": {"containerEngine": {"engines": {"bpm": None}}}}, "'bpm' is a required property"),
        # An engine that may not carry sockets.
        (
            {"collectors": {"containerEngine": {"engines": {"lxc": {"enabled": True, "sockets": ["/x"]}}}}},
            "Additional properties are not allowed ('sockets' was unexpected)",
        ),
        # A plugin without the required library (program_output's required program is guarded
        # earlier: preflight refuses any override of the wiring keys).
        ({"falco": {"plugins": [{"name": "json"}]}}, "'library_path' is a required property"),
        # A wrong type and a key Falco does not know.
        ({"falco": {"syscall_event_drops": {"threshold": "high"}}}, "'high' is not of type 'number'"),
        ({"falco": {"http_outptu": {"enabled": True}}}, "('http_outptu' was unexpected)"),
    ],
)
def test_a_broken_value_fails_the_check(falco_values: dict[str, Any], expected: str) -> None:
    result = load_from_render(render(falco=falco_values))
    assert any(expected in e for e in result.errors), result.errors


def test_a_wiring_variable_that_expands_to_nothing_fails_the_check() -> None:
    """Falco expands an unset variable to an empty string, which is no boolean."""
    rendered = Rendered(copy.deepcopy(render().objects))
    (wiring,) = [c for c in rendered.of_kind("ConfigMap") if "TEFLON_FALCO_HTTP_MTLS" in c.get("data", {})]
    wiring["data"]["TEFLON_FALCO_HTTP_MTLS"] = ""
    result = load_from_render(rendered)
    assert any("http_output.mtls: '' is not of type 'boolean'" in e for e in result.errors), result.errors


def test_falco_s_shipped_configuration_passes_the_same_check() -> None:
    """The validator is not stricter than Falco about Falco's own default falco.yaml."""
    assert list(falco_schema().iter_errors(falco_default_config())) == []


def test_included_files_are_merged_as_falco_merges_them() -> None:
    root: dict[str, Any] = {"rules_files": ["/a"], "log_level": "info", "priority": "debug"}
    merge_config(root, {"rules_files": ["/b"], "log_level": "debug"})
    assert root == {"rules_files": ["/a", "/b"], "log_level": "debug", "priority": "debug"}
    merge_config(root, {"rules_files": ["/c"]}, "override")
    assert root["rules_files"] == ["/c"]
    merge_config(root, {"log_level": "error", "json_output": True}, "add-only")
    assert root["log_level"] == "debug"
    assert root["json_output"] is True


def test_an_included_file_is_validated_on_its_own_and_merged() -> None:
    main = yaml.safe_dump({"config_files": ["/etc/falco/config.d"], "json_output": True})
    result = load_documents(
        [
            ("/etc/falco/falco.yaml", "append", main),
            ("/etc/falco/config.d/a.yaml", "append", "json_output: false\nstdout_output: {enabled: yes}\n"),
            ("/etc/falco/config.d/b.yaml", "append", "config_files: [/x]\n"),
        ],
        {},
    )
    assert result.config["json_output"] is False
    assert "/etc/falco/config.d/b.yaml: config_files in an included file (Falco refuses it)" in result.errors


def test_the_schemas_are_the_files_their_provenance_lists() -> None:
    provenance = (SCHEMAS / "PROVENANCE.md").read_text()
    listed = {
        name: digest for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", provenance, re.MULTILINE)
    }
    files = {p.name for p in SCHEMAS.iterdir() if p.name != "PROVENANCE.md"}
    assert set(listed) == files
    for name, digest in listed.items():
        assert hashlib.sha256((SCHEMAS / name).read_bytes()).hexdigest() == digest, name


def _guide_blocks(marker: str) -> str:
    """The YAML block that follows ``<!-- marker -->`` in the bring-your-own-Falco guide."""
    text = BYO_GUIDE.read_text()
    match = re.search(rf"<!-- {marker} -->\s*```yaml\n(.*?)```", text, re.DOTALL)
    assert match, f"{BYO_GUIDE.name} has no yaml block marked {marker}"
    return match.group(1)


def test_the_guide_s_falco_yaml_block_passes_falco_s_schema_on_top_of_the_default_configuration() -> None:
    block = yaml.safe_load(_guide_blocks("falco-yaml"))
    config = falco_default_config()
    merge_config(config, block, "override")
    assert list(falco_schema().iter_errors(config)) == []
    assert config["http_output"]["url"] == "http://teflon-webhook.teflon.svc:2801/v1/falco"
    assert config["json_output"] is True


def test_the_guide_s_mtls_block_passes_and_names_the_files_of_the_client_secret() -> None:
    block = yaml.safe_load(_guide_blocks("falco-yaml-mtls"))
    config = falco_default_config()
    merge_config(config, block, "override")
    assert list(falco_schema().iter_errors(config)) == []
    http = config["http_output"]
    assert http["url"].startswith("https://")
    assert http["mtls"] is True
    assert {Path(http[k]).name for k in ("client_cert", "client_key", "ca_cert")} == {
        "tls.crt",
        "tls.key",
        "ca.crt",
    }


@pytest.mark.parametrize(
    ("marker", "values"),
    [
        ("falco-yaml-program", {}),
        (
            "falco-yaml-program-mtls",
            {
                "webhook": {"tls": {"enabled": True}},
                "falco": {"certs": {"existingClientSecret": "teflon-falco-client-tls"}},
            },
        ),
    ],
)
def test_the_guide_s_program_blocks_pass_and_are_the_program_the_chart_renders(
    marker: str, values: dict[str, Any]
) -> None:
    block = yaml.safe_load(_guide_blocks(marker))
    config = falco_default_config()
    merge_config(config, block, "override")
    assert list(falco_schema().iter_errors(config)) == []
    assert (config["http_output"]["enabled"], config["program_output"]["enabled"]) == (False, True)
    rendered = load_from_render(render(falcoOutput={"transport": "program"}, **values))
    _ok(rendered)
    assert config["program_output"] == rendered.config["program_output"]


def test_the_guide_s_official_chart_values_render_a_falco_that_passes_the_check(tmp_path: Path) -> None:
    """The values for a separate release of the official chart, rendered by that very chart."""
    archives = sorted((CHART / "charts").glob("falco-*.tgz"))
    assert archives, "the falco chart archive is missing: run `make tools`"
    values = tmp_path / "falco-values.yaml"
    values.write_text(_guide_blocks("falco-chart-values"))
    cmd = [
        helm_binary(),
        "template",
        "falco",
        str(archives[0]),
        "--namespace",
        "falco",
        "--values",
        str(values),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    result = load_from_render(Rendered(tuple(d for d in yaml.safe_load_all(out) if d)))
    _ok(result)
    assert result.config["http_output"]["url"] == f"http://{RELEASE}-webhook.{NAMESPACE}.svc:2801/v1/falco"
    assert result.config["json_output"] is True


def test_upgrading_teflon_with_unchanged_falco_values_keeps_the_falco_pod_template(tmp_path: Path) -> None:
    """A new teflon version (chart and app) renders the same Falco pod template: no Falco restart."""
    chart = tmp_path / "teflon"
    shutil.copytree(CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    text = (chart / "Chart.yaml").read_text()
    text = text.replace(f"version: {meta['version']}", "version: 99.0.0", 1)
    text = text.replace(f'appVersion: "{meta["appVersion"]}"', 'appVersion: "99.0.0"', 1)
    (chart / "Chart.yaml").write_text(text)

    def template(path: Path) -> Any:
        out = subprocess.run(
            [helm_binary(), "template", RELEASE, str(path), "--namespace", NAMESPACE],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        falco = falco_daemonset(Rendered(tuple(d for d in yaml.safe_load_all(out) if d)))
        assert falco is not None
        return falco["spec"]["template"]

    new = template(chart)
    assert new == template(CHART)
    assert "99.0.0" not in yaml.safe_dump(new)
