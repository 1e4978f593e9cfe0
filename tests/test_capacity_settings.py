"""How many sessions and commands a process works at once, as an operator sets it."""

from __future__ import annotations

import os

import pytest

from openjules.settings import SettingsError, load_settings


def test_by_default_a_process_works_hundreds_of_sessions_and_two_commands_per_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("WORKERS", "MAX_CONCURRENT_SESSIONS", "MAX_CONCURRENT_COMMANDS"):
        monkeypatch.delenv(f"OPENJULES_{name}", raising=False)
    settings = load_settings()
    assert settings.sessions_at_once() == 200
    assert settings.commands_at_once() == 2 * (os.cpu_count() or 1)


def test_the_limits_come_from_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENJULES_WORKERS", raising=False)
    monkeypatch.setenv("OPENJULES_MAX_CONCURRENT_SESSIONS", "0")
    monkeypatch.setenv("OPENJULES_MAX_CONCURRENT_COMMANDS", "3")
    settings = load_settings()
    assert settings.sessions_at_once() == 0  # serve leaves sessions to `openjules worker`
    assert settings.commands_at_once() == 3


def test_the_old_workers_variable_still_works_and_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENJULES_MAX_CONCURRENT_SESSIONS", "50")
    monkeypatch.setenv("OPENJULES_WORKERS", "0")
    assert load_settings().sessions_at_once() == 0


def test_a_negative_limit_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENJULES_USER_DAILY_SESSIONS", "-1")
    with pytest.raises(SettingsError, match="OPENJULES_USER_DAILY_SESSIONS='-1' is not valid"):
        load_settings()
