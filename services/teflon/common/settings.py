"""Helpers for component settings.

Each component has one pydantic-settings ``Settings`` class with its own ``TEFLON_<ID>_`` prefix. That
class is the only reader of the environment; everything else receives a validated instance.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class BaseComponentSettings(BaseSettings):
    """Shared behaviour: unknown ``TEFLON_<ID>_*`` variables are an error, not silently ignored."""

    model_config = SettingsConfigDict(extra="forbid", case_sensitive=False, frozen=True)

    log_level: str = "INFO"
