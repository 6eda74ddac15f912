"""The settings base refuses misspelt variables instead of silently keeping defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from teflon.common.settings import BaseComponentSettings


class ExampleSettings(BaseComponentSettings):
    model_config = SettingsConfigDict(env_prefix="TEFLON_EXAMPLE_", extra="forbid", frozen=True)

    max_body_bytes: int = 1024


def test_a_known_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEFLON_EXAMPLE_MAX_BODY_BYTES", "2048")
    assert ExampleSettings().max_body_bytes == 2048


def test_a_misspelt_variable_is_an_error_that_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEFLON_EXAMPLE_MAX_BODY_BYTE", "2048")
    with pytest.raises(ValidationError, match="TEFLON_EXAMPLE_MAX_BODY_BYTE"):
        ExampleSettings()


def test_variables_of_other_components_are_not_this_ones_business(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEFLON_OTHER_ANYTHING", "1")
    assert ExampleSettings().max_body_bytes == 1024
