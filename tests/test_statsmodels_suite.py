"""statsmodels' own MixedLM test module, run against jaxlme by swapping the imports.

The module is read from the installed statsmodels (``regression/tests/test_lme.py``), its
``MixedLM``/``MixedLMParams``/``mixedlm`` imports are rewritten to jaxlme's, and pytest runs
it with its assertions unchanged.  Tests jaxlme deliberately does not support (listed with
reasons in docs/statsmodels.md) are expected failures by name, strictly: one that starts
passing, or any other test that fails, fails this module.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sm = pytest.importorskip("statsmodels")

ROOT = Path(__file__).resolve().parent.parent
SOURCE = Path(sm.__file__).parent / "regression" / "tests" / "test_lme.py"

#: test id -> why jaxlme does not support it (kept in step with docs/statsmodels.md)
EXPECTED_FAILURES = {
    "TestMixedLM::test_regularized": "fit_regularized (penalized fits) is not supported",
    "TestMixedLMSummaryRegularized::test_summary": "fit_regularized is not supported",
    "TestMixedLMSummaryRegularized::test_summary_xname_fe": "fit_regularized is not supported",
    "TestMixedLMSummaryRegularized::test_summary_xname_re": "fit_regularized is not supported",
    "TestMixedLMSummaryRegularized::test_summary_title": "fit_regularized is not supported",
    "test_handle_missing": "98 random effects for 96 observations: refused as unidentifiable, as lme4 does",
}

#: test -> (the parameters of its noisy cases, why): may pass or fail, not counted against
#: jaxlme.  test_compare_numdiff compares model.hessian with statsmodels' finite-difference
#: Hessian of model.loglike at rtol 1e-3; the entry coupling the two variance components
#: (0.104) carries rounding noise of about 1.5e-4 there (the loglike's last bits over steps
#: of 1e-5), so the outcome follows the last digits of the fitted point (docs/statsmodels.md).
NOISY = {
    "TestMixedLM::test_compare_numdiff": (
        {"use_sqrt": False, "profile_fe": False},
        "finite-difference Hessian noisier than the tolerance (passes or fails with the fit's last digits)",
    ),
}


def swapped_source(text: str) -> str:
    """statsmodels' test module with MixedLM, MixedLMParams and mixedlm taken from jaxlme."""
    old = (
        "from statsmodels.regression.mixed_linear_model import (\n"
        "    MixedLM,\n    MixedLMParams,\n    _smw_logdet,\n    _smw_solver,\n)"
    )
    if old not in text:
        raise AssertionError("statsmodels' test_lme.py imports changed; update the swap")
    text = text.replace(
        old,
        "from statsmodels.regression.mixed_linear_model import _smw_logdet, _smw_solver\n"
        "from jaxlme import MixedLM, MixedLMParams",
    )
    text = text.replace("from statsmodels.formula.api import mixedlm", "from jaxlme import mixedlm")
    text = text.replace(
        "from .results import lme_r_results", "from statsmodels.regression.tests.results import lme_r_results"
    )
    # the R result files are read relative to the module: point at the installed package's folder
    text = text.replace("cur_dir = Path(__file__).resolve().parent", f"cur_dir = Path({str(SOURCE.parent)!r})")
    return text


def conftest_source(expected: dict[str, str], noisy: dict | None = None) -> str:
    marks = repr(expected)
    return textwrap.dedent(
        f"""
        import pytest

        EXPECTED = {marks}
        NOISY = {repr(NOISY if noisy is None else noisy)}

        def pytest_configure(config):
            for m in ("slow", "smoke", "high_memory", "matplotlib"):
                config.addinivalue_line("markers", m)

        def pytest_collection_modifyitems(config, items):
            for item in items:
                key = item.nodeid.split("::", 1)[1]
                key = key if key in EXPECTED else key.split("[")[0]
                if key in EXPECTED:
                    item.add_marker(pytest.mark.xfail(reason=EXPECTED[key], strict=True))
                base = item.nodeid.split("::", 1)[1].split("[")[0]
                params = getattr(getattr(item, "callspec", None), "params", {{}})
                if base in NOISY and all(params.get(k) == v for k, v in NOISY[base][0].items()):
                    item.add_marker(pytest.mark.xfail(reason=NOISY[base][1], strict=False))
        """
    )


def run_suite(tmp_path: Path, select: list[str] | None = None, expected=None) -> subprocess.CompletedProcess:
    """Run the swapped module (the tests matching any of ``select``) in a fresh pytest."""
    (tmp_path / "test_lme_jaxlme.py").write_text(swapped_source(SOURCE.read_text()))
    (tmp_path / "conftest.py").write_text(conftest_source(EXPECTED_FAILURES if expected is None else expected))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(tmp_path)]
    cmd += [str(tmp_path / "test_lme_jaxlme.py")] + (["-k", " or ".join(f"({k})" for k in select)] if select else [])
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3000)


def test_swap_rewrites_the_imports():
    text = swapped_source(SOURCE.read_text())
    assert "from jaxlme import MixedLM, MixedLMParams" in text
    assert "mixed_linear_model import (\n    MixedLM" not in text


#: a quick subset: the summary, t_test and predict tests and two comparisons with lme4
FAST = [
    "TestMixedLMSummary and not Regularized",
    "test_mixedlm_t_test",
    "test_predict_reflects_only_fixed_effects",
    "test_r and lme00",
]


def test_statsmodels_suite_fast_subset(tmp_path):
    out = run_suite(tmp_path, FAST)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "10 passed" in out.stdout, out.stdout[-2000:]


def test_expected_failure_mechanism_can_fail(tmp_path):
    """An unsupported test fails the run unless it is listed, and a listed one is an xfail."""
    failing = run_suite(tmp_path, ["TestMixedLM and test_regularized"], expected={})
    assert failing.returncode != 0 and "1 failed" in failing.stdout, failing.stdout[-2000:]
    listed = run_suite(tmp_path, ["TestMixedLM and test_regularized"])
    assert listed.returncode == 0 and "1 xfailed" in listed.stdout, listed.stdout[-2000:]


def _count(stdout: str, outcome: str) -> int:
    import re

    found = re.search(rf"(\d+) {outcome}\b", stdout.strip().splitlines()[-1])
    return int(found.group(1)) if found else 0


@pytest.mark.slow
def test_statsmodels_suite(tmp_path):
    """All 123 tests: everything passes except the expected failures listed above (and,
    either way, the noisy cases); at least 115 pass."""
    out = run_suite(tmp_path)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    xfailed, noisy = _count(out.stdout, "xfailed"), 2
    assert len(EXPECTED_FAILURES) <= xfailed <= len(EXPECTED_FAILURES) + noisy, out.stdout[-2000:]
    assert _count(out.stdout, "passed") + _count(out.stdout, "xpassed") >= 115, out.stdout[-2000:]
