"""Shared fixtures, and what makes the suite deterministic and safe to run in parallel.

- Hypothesis draws the same examples on every run (``derandomize``, no example database):
  a property test fails for everyone or for no one, not by the luck of one run or by what
  an earlier run stored in ``.hypothesis/``.  ``HYPOTHESIS_PROFILE=explore`` draws fresh
  random examples (and stores failures) for a local search.
- Under pytest-xdist (``-n 2``) each worker keeps its compiled programs in its own cache
  folder: JAX writes its persistent-cache files in place (no lock unless a size limit is
  set), so two workers compiling the same program could otherwise read each other's
  half-written file (a warning and a recompile, which tests that forbid warnings would
  see).  The folders (``<cache>-pytest-gw0``, ...) are per worker name, so a later run
  reuses them.
"""

from __future__ import annotations

import json
import os

import pytest
from helpers import DATA
from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:  # jaxlme reads the variable when the first model turns its cache on, after this
    from jaxlme._config import cache_root

    _root = cache_root()
    if _root is not None:
        os.environ["JAXLME_CACHE_DIR"] = f"{_root}-pytest-{_WORKER}"  # beside the cache, not in it


@pytest.fixture(scope="session")
def lme4_reference() -> list[dict]:
    return json.loads((DATA / "lme4_reference.json").read_text())
