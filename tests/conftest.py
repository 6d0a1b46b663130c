"""Shared fixtures, and what makes the suite deterministic and safe to run in parallel.

- Hypothesis draws the same examples on every run (``derandomize``, no example database):
  a property test fails for everyone or for no one, not by the luck of one run or by what
  an earlier run stored in ``.hypothesis/``.  ``HYPOTHESIS_PROFILE=explore`` draws fresh
  random examples (and stores failures) for a local search.
- Under pytest-xdist (``-n 2``) each worker keeps JAX's persistent cache in its own
  folder: JAX writes its cache files in place (no lock unless a size limit is set), so two
  workers compiling the same program could otherwise read each other's half-written file
  (a warning and a recompile, which tests that forbid warnings would see).  The folders
  (``<cache>-pytest-gw0``, ...) are per worker name, so a later run reuses them.  jaxlme's
  own executables are written atomically (a temporary file renamed into place), so the
  workers share one folder of them (``<cache>-pytest-executables``): a program one worker
  compiled, the other loads.
- Heavy test files are collected first, so pytest-xdist's per-file scheduling starts them
  early and the workers finish together instead of one running a long file alone at the end.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import DATA
from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:  # jaxlme reads the variable when the first model turns its cache on, after this
    from jaxlme.compiled import cache_root

    _root = cache_root()
    if _root is not None:
        os.environ["JAXLME_CACHE_DIR"] = f"{_root}-pytest-{_WORKER}"  # beside the cache, not in it
        _shared = Path(f"{_root}-pytest-executables")
        _link = Path(os.environ["JAXLME_CACHE_DIR"]) / "executables"
        try:
            _shared.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not _link.is_symlink():  # a folder of this worker's own from an older run
                shutil.rmtree(_link, ignore_errors=True)
                _link.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                _link.symlink_to(_shared, target_is_directory=True)
        except OSError:  # no symlinks here: the worker keeps a folder of its own
            pass

# Files by their measured weight on 2 cores (CPU seconds, most first); the rest follow in
# their usual order.  Only the order in which pytest-xdist hands out files changes.
HEAVY_FIRST = [
    "test_statsmodels_suite.py",
    "test_glmm_reference.py",
    "test_diff.py",
    "test_docs.py",
    "test_compat.py",
    "test_compiled.py",
    "test_reliability.py",
    "test_analytic_gradient.py",
]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(rank)))


@pytest.fixture(scope="session")
def lme4_reference() -> list[dict]:
    return json.loads((DATA / "lme4_reference.json").read_text())
