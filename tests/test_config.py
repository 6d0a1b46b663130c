"""Process-level configuration: import changes nothing process-wide; the garbage-collector
freeze after import only when opted in (scripts only); BLAS on one thread inside jaxlme's
calls only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest
import threadpoolctl

import jaxlme
from jaxlme._config import blas_limit, x64

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import gc, sys
{setup}
before = gc.get_freeze_count()
import jaxlme
print(before, gc.get_freeze_count())
"""


def _freeze_counts(setup: str = "", **env: str) -> tuple[int, int]:
    environ = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **env)
    environ.pop("JAXLME_GC_FREEZE", None)
    environ.update(env)
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(setup=setup)], capture_output=True, text=True, env=environ, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    before, after = map(int, out.stdout.split())
    return before, after


def test_import_freezes_the_imported_objects_only_when_opted_in():
    before, after = _freeze_counts(JAXLME_GC_FREEZE="1")
    assert before == 0 and after > 100_000  # JAX, NumPy and pandas modules' objects


@pytest.mark.parametrize(
    "setup, env",
    [
        ("", {}),  # the default: import jaxlme changes nothing process-wide
        ("", {"JAXLME_GC_FREEZE": "0"}),
        ("import types; sys.modules['IPython'] = types.ModuleType('IPython')", {"JAXLME_GC_FREEZE": "1"}),  # Jupyter
        ("sys.ps1 = '>>> '", {"JAXLME_GC_FREEZE": "1"}),  # the interactive interpreter
    ],
    ids=["default", "off", "ipython", "interactive"],
)
def test_no_freeze_when_opted_out_or_interactive(setup, env):
    assert _freeze_counts(setup, **env) == (0, 0)


# --- one BLAS thread inside jaxlme's calls --------------------------------------------


def _blas_threads() -> set[int]:
    return {lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"}


def test_blas_runs_on_one_thread_inside_and_as_before_after(monkeypatch):
    monkeypatch.delenv("JAXLME_BLAS_THREADS", raising=False)
    jaxlme.lmm("Reaction ~ Days + (1 | Subject)", jaxlme.datasets.load("sleepstudy"))  # JAX's LAPACK loaded
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        assert _blas_threads() == {2}
        with blas_limit():
            assert _blas_threads() == {1}
        assert _blas_threads() == {2}
        seen = []
        spy = x64(lambda: seen.append(_blas_threads()))  # what every public entry point runs under
        spy()
        assert seen == [{1}] and _blas_threads() == {2}
        res = jaxlme.lmm("Reaction ~ Days + (Days | Subject)", jaxlme.datasets.load("sleepstudy"))
        assert res.converged and _blas_threads() == {2}


@pytest.mark.parametrize("setting, inside", [("0", 2), ("2", 2), ("1", 1), ("junk", 1)])
def test_blas_thread_limit_follows_the_environment(monkeypatch, setting, inside):
    monkeypatch.setenv("JAXLME_BLAS_THREADS", setting)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"), blas_limit():
        assert _blas_threads() == {inside}


def test_blas_limit_covers_the_lapack_jax_calls():
    """The library JAX's CPU LAPACK uses (SciPy's, loaded lazily) is among those limited."""
    with blas_limit():
        libs = threadpoolctl.threadpool_info()
    scipy_blas = [lib for lib in libs if "scipy" in lib["filepath"] and "numpy" not in lib["filepath"]]
    if jax.default_backend() != "cpu" or not scipy_blas:
        pytest.skip("no SciPy BLAS of its own here")
    assert {lib["num_threads"] for lib in scipy_blas} == {1}
