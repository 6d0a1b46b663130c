"""Bad input gives a clear error naming the column or term, never a silent wrong answer."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import jaxlme


@pytest.fixture()
def sleep() -> pd.DataFrame:
    return jaxlme.datasets.load("sleepstudy")


def test_missing_column_is_named(sleep):
    with pytest.raises(jaxlme.DataError, match="'Dayz'"):
        jaxlme.LMM("Reaction ~ Dayz + (1 | Subject)", sleep)
    with pytest.raises(jaxlme.DataError, match="'Subj'"):
        jaxlme.LMM("Reaction ~ Days + (1 | Subj)", sleep)


def test_missing_values_dropped_with_count(sleep):
    d = sleep.copy()
    d.loc[[0, 5], "Reaction"] = np.nan
    d.loc[7, "Subject"] = None
    d["unused"] = np.nan  # columns outside the formula do not drop rows
    with pytest.warns(UserWarning, match="3 row"):
        res = jaxlme.lmm("Reaction ~ Days + (Days | Subject)", d)
    assert res.nobs == 177
    assert "3 observation(s) deleted due to missingness" in res.summary()
    clean = jaxlme.lmm("Reaction ~ Days + (Days | Subject)", d.drop(index=[0, 5, 7]).drop(columns="unused"))
    assert res.objective == pytest.approx(clean.objective, abs=1e-8)


@pytest.mark.parametrize("column", ["Reaction", "Days"])
def test_infinite_values_rejected(sleep, column):
    d = sleep.copy()
    d.loc[3, column] = np.inf
    with pytest.raises(jaxlme.DataError, match=f"'{column}'.*infinite"):
        jaxlme.LMM("Reaction ~ Days + (1 | Subject)", d)


def test_non_numeric_response(sleep):
    d = sleep.copy()
    d["Reaction"] = d["Reaction"].astype(str) + "ms"
    with pytest.raises(jaxlme.DataError, match="Reaction"):
        jaxlme.LMM("Reaction ~ Days + (1 | Subject)", d)


def test_grouping_factor_with_one_level(sleep):
    d = sleep.copy()
    d["one"] = "a"
    with pytest.raises(jaxlme.DataError, match="'one'.*at least 2 levels"):
        jaxlme.LMM("Reaction ~ Days + (1 | one)", d)


def test_as_many_levels_as_observations(sleep):
    d = sleep.copy()
    d["obs"] = np.arange(len(d))
    with pytest.raises(jaxlme.DataError, match="'obs'.*< number of observations"):
        jaxlme.LMM("Reaction ~ Days + (1 | obs)", d)


def test_too_many_random_effects(sleep):
    d = sleep.copy()
    d["pair"] = np.arange(len(d)) // 2
    with pytest.raises(jaxlme.DataError, match="unidentifiable"):
        jaxlme.LMM("Reaction ~ Days + (Days | pair)", d)


def test_rank_deficient_fixed_effects_dropped_with_warning(sleep):
    d = sleep.copy()
    d["Days2"] = 2.0 * d["Days"] + 1.0
    with pytest.warns(UserWarning, match="rank deficient.*Days2"):
        res = jaxlme.lmm("Reaction ~ Days + Days2 + (1 | Subject)", d)
    assert list(res.fixef.index) == ["(Intercept)", "Days"]
    ref = jaxlme.lmm("Reaction ~ Days + (1 | Subject)", sleep)
    assert res.objective == pytest.approx(ref.objective, abs=1e-8)
    assert "dropped: Days2" in res.summary()


def test_empty_data(sleep):
    with pytest.raises(jaxlme.DataError, match="empty"):
        jaxlme.LMM("Reaction ~ Days + (1 | Subject)", sleep.iloc[:0])


def test_all_rows_missing(sleep):
    d = sleep.copy()
    d["Reaction"] = np.nan
    with pytest.raises(jaxlme.DataError, match="no complete rows"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jaxlme.LMM("Reaction ~ Days + (1 | Subject)", d)


def test_data_must_be_a_frame():
    with pytest.raises(jaxlme.DataError, match="DataFrame"):
        jaxlme.LMM("y ~ x + (1 | g)", [1, 2, 3])


def test_non_convergence_warns_with_gradient_norm(sleep):
    model = jaxlme.LMM("Reaction ~ Days + (Days | Subject)", sleep)
    with pytest.warns(UserWarning, match=r"failed to converge.*gradient\| = "):
        res = model.fit(maxiter=1)
    assert not res.converged
    assert "NOT CONVERGED" in res.summary()


def test_wrong_theta0_length(sleep):
    model = jaxlme.LMM("Reaction ~ Days + (Days | Subject)", sleep)
    with pytest.raises(ValueError, match="3 elements"):
        model.fit(theta0=[1.0])


def test_refit_validates_response(sleep):
    model = jaxlme.LMM("Reaction ~ Days + (1 | Subject)", sleep)
    with pytest.raises(ValueError, match="180 rows"):
        model.refit(np.ones(5))
    with pytest.raises(ValueError, match="non-finite"):
        model.refit(np.full(180, np.nan))
