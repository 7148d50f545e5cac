"""Shared test set-up: a clean environment for every test (no BLOCKVAULT_* or OCI_* from the caller)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("BLOCKVAULT_", "OCI_CLI_", "OCI_CONFIG")) and name != "OCI_CLI_BIN":
            monkeypatch.delenv(name, raising=False)
