"""Process-level configuration: import changes nothing process-wide; the garbage-collector
freeze after import only when opted in (scripts only)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
