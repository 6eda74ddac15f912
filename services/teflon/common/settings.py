"""Helpers for component settings.

Each component has one pydantic-settings ``Settings`` class with its own ``TEFLON_<ID>_`` prefix. That
class is the only reader of the environment; everything else receives a validated instance.
"""

from __future__ import annotations

import os
import sys
from typing import Self, TypeVar

from pydantic import ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class BaseComponentSettings(BaseSettings):
    """Shared behaviour: unknown ``TEFLON_<ID>_*`` variables are an error, not silently ignored.

    pydantic-settings only reads the variables that match a field, so a misspelt
    ``TEFLON_WEBHOOK_MAX_BODY_BYTE`` would otherwise leave the default in force without a word.
    """

    model_config = SettingsConfigDict(extra="forbid", case_sensitive=False, frozen=True)

    log_level: str = "INFO"

    @model_validator(mode="after")
    def _reject_unknown_variables(self) -> Self:
        prefix = str(self.model_config.get("env_prefix") or "").upper()
        if not prefix:
            return self
        known = {prefix + name.upper() for name in type(self).model_fields}
        unknown = sorted(k for k in os.environ if k.upper().startswith(prefix) and k.upper() not in known)
        if unknown:
            fields = ", ".join(sorted(known))
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known settings are {fields}")
        return self


S = TypeVar("S", bound=BaseComponentSettings)

#: The exit status of a component started with invalid settings (a usage error, as in sysexits' 64 family).
EXIT_INVALID_SETTINGS = 2


def load_settings(cls: type[S], component: str) -> S:
    """``cls`` read from the environment; invalid settings print what is wrong and exit with status 2.

    Both components' ``main()`` start with this, so a misconfigured pod fails the same clear way instead
    of with a traceback.
    """
    try:
        return cls()
    except ValidationError as exc:
        print(f"teflon {component}: invalid settings: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_INVALID_SETTINGS) from None
