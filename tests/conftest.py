"""Shared fixtures."""

from __future__ import annotations

import json

import pytest
from helpers import DATA


@pytest.fixture(scope="session")
def lme4_reference() -> list[dict]:
    return json.loads((DATA / "lme4_reference.json").read_text())
