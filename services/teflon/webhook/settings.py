"""The webhook's settings: the only place that reads its ``TEFLON_WEBHOOK_*`` environment.

Field names are the contract with the chart (docs/design.md); the chart renders only these variables.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from teflon.common.settings import BaseComponentSettings


class Settings(BaseComponentSettings):
    """Validated webhook configuration, built once at startup and passed to ``create_app``."""

    model_config = SettingsConfigDict(
        env_prefix="TEFLON_WEBHOOK_", extra="forbid", case_sensitive=False, frozen=True
    )

    host: str = "0.0.0.0"  # noqa: S104 - a pod serves on all of its interfaces
    port: int = Field(default=2801, ge=1, le=65535, description="ingest port (Falco http_output)")
    ops_port: int = Field(default=8081, ge=1, le=65535, description="probes, /metrics and /v1/rates")
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = Field(
        default=None, description="when set, ingest requires client certificates signed by this CA"
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="largest request body, and largest line of a stream"
    )
    max_streams: int = Field(
        default=256, ge=1, description="alert streams (/v1/falco/stream) open at once; more get 503"
    )
    queue_size: int = Field(default=10_000, ge=1)
    queue_max_bytes: int = Field(
        default=24 * 1024 * 1024,
        ge=1024 * 1024,
        description="bytes that request bodies being read and queued alerts may hold together",
    )
    request_timeout_seconds: float = Field(
        default=10.0, gt=0, description="a request's line, headers and body must arrive within this"
    )
    max_connections: int = Field(default=1000, ge=1, description="per port; past it requests get 503")
    keepalive_seconds: float = Field(default=15.0, gt=0, description="idle keep-alive connections close")
    shutdown_seconds: float = Field(default=5.0, ge=0, description="open connections get this on shutdown")
    metrics_max_series: int = Field(
        default=1000, ge=10, description="series per labelled alert/action counter; more go to _other"
    )
    workers: int = Field(default=4, ge=1, le=256, description="alerts processed concurrently")
    policy_file: Path | None = Field(default=None, description="response policy YAML; unset: dry run")
    policy_reload_seconds: float = Field(default=10.0, gt=0)
    namespace: str = Field(default="teflon", min_length=1, description="own namespace, always protected")
    pod_name: str = Field(default="teflon-webhook", min_length=1, max_length=128)
    kubeconfig: str = Field(default="", description="empty: in-cluster credentials, else this file")
    # ~1.4 KiB per tracked pod with its workload and namespace (docs/benchmarks.md): 50,000 keep the rate
    # tracker near 70 MiB, inside the chart's 256 MiB limit with room for the queue and a scrape.
    rate_max_tracked: int = Field(default=50_000, ge=1)
    rate_ttl_seconds: float = Field(default=900.0, ge=300.0, description="at least the longest window")
    metrics_namespace_label: bool = True
    drain_seconds: float = Field(default=20.0, ge=0)

    @model_validator(mode="after")
    def _check_tls(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS_CERT_FILE and TLS_KEY_FILE must be set together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError(
                "TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE: mTLS is served over TLS"
            )
        if self.port == self.ops_port:
            raise ValueError("PORT and OPS_PORT must differ")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None
