"""User-facing warnings point at the caller's line (this file), not at jaxlme's internals.

For each public entry (``lmm``, ``LMM(...)``/``.fit``, ``mixedlm(...).fit``, ``lrt``, the
bootstrap) the recorded warning's filename must be this test file and its line the line of
the call.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pandas as pd
import pytest

import jaxlme
from jaxlme import messages

SLEEP = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep():
    return jaxlme.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def sleep_fit(sleep):
    return jaxlme.lmm(SLEEP, sleep)


def _with_missing(df):
    df = df.copy()
    df.loc[[0, 5], "Reaction"] = np.nan
    return df


def _with_alias(df):
    df = df.copy()
    df["Days2"] = 2.0 * df["Days"]
    return df


def _next_line() -> int:
    """The number of the line after the caller's: where the call under test is made."""
    return inspect.currentframe().f_back.f_lineno + 1


def _only(caught, needle):
    hits = [w for w in caught if needle in str(w.message)]
    assert hits, f"no warning containing {needle!r}: {[str(w.message) for w in caught]}"
    return hits


def _assert_here(caught, needle, line):
    for w in _only(caught, needle):
        assert w.filename == __file__, f"{needle!r} attributed to {w.filename}:{w.lineno}"
        assert w.lineno == line


def test_lmm_missing_rows_and_aliased_columns(sleep):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = _next_line()
        jaxlme.lmm("Reaction ~ Days + Days2 + (1 | Subject)", _with_alias(_with_missing(sleep)))
    _assert_here(caught, "missing values", line)
    _assert_here(caught, "rank deficient", line)


def test_LMM_constructor_and_fit(sleep):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line_make = _next_line()
        model = jaxlme.LMM("Reaction ~ Days + (1 | Subject)", _with_missing(sleep))
    _assert_here(caught, "missing values", line_make)
    # a non-converged fit (one iteration allowed) warns at the .fit call
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line_fit = _next_line()
        model.fit(maxiter=1)
    _assert_here(caught, "failed to converge", line_fit)


def test_singular_fit():
    data = jaxlme.datasets.load("Dyestuff2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = _next_line()
        jaxlme.LMM("Yield ~ 1 + (1 | Batch)", data).fit()
    _assert_here(caught, "singular", line)


def test_mixedlm_unused_fit_keyword_and_missing_rows(sleep):
    # statsmodels' conventions: missing="none" raises, a keyword fit does not use warns
    with pytest.raises(jaxlme.DataError, match="missing values"):
        jaxlme.mixedlm("Reaction ~ Days", _with_missing(sleep), groups="Subject")
    model = jaxlme.mixedlm("Reaction ~ Days", _with_missing(sleep), groups="Subject", missing="drop")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line_fit = _next_line()
        model.fit(cov_type="hc1")
    _assert_here(caught, "not used by MixedLM.fit", line_fit)


def test_lrt_refit_with_ml(sleep, sleep_fit):
    small = jaxlme.lmm("Reaction ~ Days + (1 | Subject)", sleep)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = _next_line()
        jaxlme.lrt(small, sleep_fit)
        line_method = _next_line()
        small.anova(sleep_fit)
    hits = _only(caught, "refitting")
    assert [(w.filename, w.lineno) for w in hits] == [(__file__, line), (__file__, line_method)]


def test_bootstrap_failures_and_interruption(sleep_fit):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = _next_line()
        sleep_fit.bootstrap(8, seed=1, progress=False, chunk_size=4, _poison=[2])
    _assert_here(caught, "bootstrap replicates failed", line)

    def stop(_):
        raise KeyboardInterrupt

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = _next_line()
        jaxlme.bootstrap.bootstrap(sleep_fit, 40, progress=False, chunk_size=8, _on_round=stop)
    _assert_here(caught, "interrupted", line)


def test_the_check_can_fail():
    """The attribution check rejects a warning attributed elsewhere (e.g. a jaxlme module)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = _next_line()
        messages.warn("from the helper")
    _assert_here(caught, "from the helper", line)
    inside = warnings.WarningMessage("x", UserWarning, messages.__file__, line)
    with pytest.raises(AssertionError, match="attributed to"):
        _assert_here([inside], "x", line)
    with pytest.raises(AssertionError):
        _assert_here([warnings.WarningMessage("x", UserWarning, __file__, line + 1)], "x", line)


def test_kenward_roger_fallback():
    """A rank-deficient contrast for Kenward-Roger: lmerTest's fallback warning, at the caller."""
    from jaxlme import anova

    res = jaxlme.lmm("strength ~ cask + (1 | batch)", jaxlme.datasets.load("Pastes"))
    b, c = list(res.fixef.index[1:])
    L = pd.DataFrame({b: [1.0, 2.0], c: [-1.0, -2.0]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = _next_line()
        anova.f_test(res, L, ddf="kenward-roger")
    _assert_here(caught, "using Satterthwaite instead", line)
