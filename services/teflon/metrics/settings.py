"""Environment settings of the metrics server (prefix ``TEFLON_METRICS_``), read in this one place."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from teflon.common.settings import BaseComponentSettings


class Settings(BaseComponentSettings):
    """What the metrics server reads from its environment; backends and metrics live in ``config_file``."""

    model_config = SettingsConfigDict(
        env_prefix="TEFLON_METRICS_", extra="forbid", case_sensitive=False, frozen=True
    )

    host: str = "0.0.0.0"  # noqa: S104 - a pod serves on all its addresses
    port: int = Field(default=6443, ge=1, le=65535)
    ops_port: int = Field(default=8080, ge=1, le=65535)
    tls_cert_file: str = ""
    tls_key_file: str = ""
    config_file: str = ""
    kubeconfig: str = ""
    auth_refresh_seconds: float = Field(default=60.0, gt=0)
    authz_cache_seconds: float = Field(default=5.0, ge=0)
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=1000, ge=1)
    keepalive_seconds: float = Field(default=75.0, gt=0)
    shutdown_seconds: float = Field(default=5.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.port == self.ops_port:
            raise ValueError("port and ops_port must differ: the API port is HTTPS, the ops port plain HTTP")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        if not self.tls_cert_file:
            # An aggregated API server is reached by the kube-apiserver over HTTPS only.
            raise ValueError("TEFLON_METRICS_TLS_CERT_FILE and TEFLON_METRICS_TLS_KEY_FILE are required")
        return self
