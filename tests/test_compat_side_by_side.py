"""statsmodels' ``smf.mixedlm`` and ``jaxlme.mixedlm`` side by side on the same calls.

Every name the front end shares with statsmodels' ``MixedLMResults`` must mean the same
thing and come back in the same type, with the same index.  Estimates may differ by the
two optimizers' stopping points (rtol ~1e-3); ``predict`` is the fixed-effects part only,
so given the same ``fe_params`` it is reproduced exactly from statsmodels' own design matrix.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

import jaxlme
from jaxlme import DataError

smf = pytest.importorskip("statsmodels.formula.api")

EST = 1e-3  # relative tolerance on estimates (optimizer stopping points differ)
CASES = {
    "intercept": {},
    "slope": {"re_formula": "~Days"},
    "vc": {"re_formula": "1", "vc_formula": {"phase": "0 + C(phase)"}},
}


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    d = jaxlme.datasets.load("sleepstudy").copy()
    d["phase"] = np.where(d["Days"] < 5, "early", "late")
    # a non-default index: every returned Series must carry it
    d.index = [f"obs{i:03d}" for i in range(len(d))]
    return d


_PAIRS: dict = {}


def _pair(sleep, case: str, reml: bool):
    key = (case, reml)
    if key not in _PAIRS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sm = smf.mixedlm("Reaction ~ Days", sleep, groups="Subject", **CASES[case]).fit(reml=reml)
        jx = jaxlme.mixedlm("Reaction ~ Days", sleep, groups="Subject", **CASES[case]).fit(reml=reml)
        _PAIRS[key] = (sm, jx)
    return _PAIRS[key]


PARAMS = [pytest.param(c, r, id=f"{c}-{'REML' if r else 'ML'}") for c in CASES for r in (True, False)]


@pytest.mark.parametrize("case, reml", PARAMS)
def test_predict_is_the_fixed_part_like_statsmodels(sleep, case, reml):
    sm, jx = _pair(sleep, case, reml)
    beta = jx.fe_params.to_numpy()
    # no exog: a numpy array over the training rows, X @ fe_params exactly
    p_sm, p_jx = sm.predict(), jx.predict()
    assert type(p_jx) is type(p_sm) is np.ndarray
    assert p_jx.shape == p_sm.shape
    np.testing.assert_allclose(p_jx, np.asarray(sm.model.exog) @ beta, rtol=1e-13)
    np.testing.assert_allclose(p_jx, p_sm, rtol=EST)
    # the random effects are NOT in predict (they are in fittedvalues)
    assert np.max(np.abs(p_jx - jx.fittedvalues.to_numpy())) > 1.0
    # a new-data DataFrame (shuffled rows, unseen subject, string index): a Series indexed like it
    new = sleep.iloc[[17, 3, 150, 42]].copy()
    new["Subject"] = [999, 308, 1000, 309]
    q_sm, q_jx = sm.predict(new), jx.predict(new)
    assert isinstance(q_sm, pd.Series) and isinstance(q_jx, pd.Series)
    assert list(q_jx.index) == list(q_sm.index) == list(new.index)
    assert q_jx.name == q_sm.name
    sm_exog, _ = sm._results._transform_predict_exog(new)  # statsmodels' own design for `new`
    np.testing.assert_allclose(q_jx.to_numpy(), sm_exog @ beta, rtol=1e-13)
    np.testing.assert_allclose(q_jx.to_numpy(), q_sm.to_numpy(), rtol=EST)
    # a dict of columns: a Series with a fresh RangeIndex
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # statsmodels deprecates dict data
        d_sm = sm.predict({"Days": [0.0, 4.5]})
    d_jx = jx.predict({"Days": [0.0, 4.5]})
    assert list(d_jx.index) == list(d_sm.index) == [0, 1]
    np.testing.assert_allclose(d_jx.to_numpy(), d_sm.to_numpy(), rtol=EST)
    # transform=False: exog is the design matrix itself
    X = np.array([[1.0, 2.0], [1.0, 7.0]])
    np.testing.assert_allclose(jx.predict(X, transform=False), X @ beta, rtol=1e-13)
    assert type(jx.predict(X, transform=False)) is type(sm.predict(X, transform=False)) is np.ndarray


@pytest.mark.parametrize("case, reml", PARAMS)
def test_estimates_and_types_match_statsmodels(sleep, case, reml):
    sm, jx = _pair(sleep, case, reml)
    assert sm.converged and jx.converged
    for name in ("params", "fe_params", "bse", "bse_fe", "tvalues", "pvalues"):
        a, b = getattr(jx, name), getattr(sm, name)
        assert isinstance(a, pd.Series), name
        assert list(a.index) == list(b.index), name
        np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=EST, atol=1e-6, err_msg=name)
    assert isinstance(jx.cov_re, pd.DataFrame)
    assert list(jx.cov_re.index) == list(sm.cov_re.index) and list(jx.cov_re.columns) == list(sm.cov_re.columns)
    np.testing.assert_allclose(jx.cov_re.to_numpy(), sm.cov_re.to_numpy(), rtol=EST)
    np.testing.assert_allclose(jx.cov_re_unscaled.to_numpy(), np.asarray(sm.cov_re_unscaled), rtol=EST)
    assert isinstance(jx.vcomp, np.ndarray) and jx.vcomp.shape == np.asarray(sm.vcomp).shape
    np.testing.assert_allclose(jx.vcomp, sm.vcomp, rtol=EST)
    assert jx.scale == pytest.approx(sm.scale, rel=EST)
    assert jx.llf == pytest.approx(sm.llf, rel=1e-8, abs=1e-4)
    assert jx.llf >= sm.llf - 1e-6
    cov_jx, cov_sm = jx.cov_params(), sm.cov_params()
    assert list(cov_jx.index) == list(cov_sm.index)
    np.testing.assert_allclose(cov_jx.to_numpy(), cov_sm.to_numpy(), rtol=5 * EST, atol=1e-8)
    ci_jx, ci_sm = jx.conf_int(), sm.conf_int()
    assert list(ci_jx.columns) == list(ci_sm.columns) and list(ci_jx.index) == list(ci_sm.index)
    np.testing.assert_allclose(ci_jx.to_numpy(), ci_sm.to_numpy(), rtol=EST)
    if case != "vc":  # statsmodels' own bse_re fails with variance components (its names are short)
        assert list(jx.bse_re.index) == list(sm.bse_re.index)
        np.testing.assert_allclose(jx.bse_re.to_numpy(), sm.bse_re.to_numpy(), rtol=EST)
    for name in ("nobs", "df_resid", "k_fe", "k_re", "k_vc", "method", "reml", "converged"):
        assert getattr(jx, name) == getattr(sm, name), name
    # statsmodels gives NaN information criteria for REML fits
    if reml:
        assert math.isnan(sm.aic) and math.isnan(jx.aic) and math.isnan(sm.bic) and math.isnan(jx.bic)
    else:
        assert jx.aic == pytest.approx(sm.aic, abs=1e-3) and jx.bic == pytest.approx(sm.bic, abs=1e-3)


@pytest.mark.parametrize("case, reml", PARAMS)
def test_conditional_quantities_match_statsmodels(sleep, case, reml):
    sm, jx = _pair(sleep, case, reml)
    # fittedvalues and resid include the random effects, as in statsmodels
    for name in ("fittedvalues", "resid"):
        a, b = getattr(jx, name), getattr(sm, name)
        assert isinstance(a, pd.Series) and list(a.index) == list(b.index) == list(sleep.index), name
        assert a.name == b.name
        np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=0, atol=EST * 300, err_msg=name)
    np.testing.assert_allclose(jx.fittedvalues + jx.resid, sleep["Reaction"], rtol=1e-12)
    assert list(jx.random_effects) == list(sm.random_effects)
    for g, s in sm.random_effects.items():
        assert list(jx.random_effects[g].index) == list(s.index)
        np.testing.assert_allclose(jx.random_effects[g].to_numpy(), s.to_numpy(), rtol=EST, atol=0.05)
    # jaxlme's addition under its own name: conditional predictions, equal to fittedvalues
    cond = jx.predict_conditional(sleep.iloc[::-1])
    assert list(cond.index) == list(sleep.index[::-1])
    np.testing.assert_allclose(cond.loc[sleep.index], jx.fittedvalues, rtol=1e-10)
    np.testing.assert_allclose(jx.predict_conditional(), jx.fittedvalues, rtol=1e-12)


def test_summary_is_statsmodels_table(sleep):
    sm, jx = _pair(sleep, "slope", True)
    ours, theirs = str(jx.summary()), str(sm.summary())
    assert ours.splitlines()[0].strip() == theirs.splitlines()[0].strip()
    for name in sm.params.index:
        assert name in ours, name
    assert f"{sm.llf:.4f}" in theirs and f"{jx.llf:.3f}" in ours


def test_only_statsmodels_meanings_under_statsmodels_names(sleep):
    sm, jx = _pair(sleep, "slope", True)
    # statsmodels names that jaxlme's native result also has must not fall through to it
    assert not math.isclose(jx.aic, jx.lmm.aic, rel_tol=1e-9)  # NaN vs lme4's REML AIC
    assert isinstance(jx.predict(), np.ndarray) and isinstance(jx.lmm.predict(), pd.Series)
    with pytest.raises(AttributeError, match="bootstrap.*lmm"):
        jx.bootstrap  # noqa: B018  statsmodels' bootstrap refits by resampling; jaxlme's is parametric


@pytest.mark.parametrize("case", ["intercept", "slope", "vc"])
def test_random_effects_cov_matches_statsmodels(sleep, case):
    sm, jx = _pair(sleep, case, True)
    assert list(jx.random_effects_cov) == list(sm.random_effects_cov)
    for g, c in sm.random_effects_cov.items():
        ours = jx.random_effects_cov[g]
        assert list(ours.index) == list(c.index) and list(ours.columns) == list(c.columns)
        np.testing.assert_allclose(ours.to_numpy(), c.to_numpy(), rtol=5 * EST, atol=1e-3)


def test_predict_errors(sleep):
    _, jx = _pair(sleep, "intercept", True)
    with pytest.raises(DataError, match="missing column.*'Days'"):
        jx.predict(pd.DataFrame({"Subject": [308]}))
    with pytest.raises(DataError, match="DataFrame or dict"):
        jx.predict(np.ones((2, 2)))
    with pytest.raises(DataError, match="3 column.*2"):
        jx.predict(np.ones((2, 3)), transform=False)
    with pytest.raises(DataError, match="new level.*'999'"):
        jx.predict_conditional(pd.DataFrame({"Days": [1.0], "Subject": [999]}))


def test_predict_missing_values_and_single_row(sleep):
    sm, jx = _pair(sleep, "intercept", True)
    new = sleep.iloc[:3].copy()
    new.loc[new.index[1], "Days"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p_sm = sm.predict(new)
    p_jx = jx.predict(new)
    assert list(p_jx.index) == list(p_sm.index) == list(new.index)
    assert np.isnan(p_jx.iloc[1]) and np.isnan(p_sm.iloc[1])
    np.testing.assert_allclose(p_jx.iloc[[0, 2]], p_sm.iloc[[0, 2]], rtol=EST)
    # one row given as a Series is read as a row (statsmodels' guess; its patsy route fails on
    # a mixed-type row, so compare with the one-row DataFrame instead)
    row = sleep.iloc[5]
    r_jx = jx.predict(row)
    assert list(r_jx.index) == [row.name]
    assert r_jx.iloc[0] == pytest.approx(jx.predict(sleep.iloc[[5]]).iloc[0], rel=1e-14)
    assert r_jx.iloc[0] == pytest.approx(sm.predict(sleep.iloc[[5]]).iloc[0], rel=EST)
    # a Series named after a formula variable is read as that column
    days = sleep["Days"].iloc[[4, 9]]
    c_sm, c_jx = sm.predict(days), jx.predict(days)
    assert list(c_jx.index) == list(c_sm.index) == list(days.index)
    np.testing.assert_allclose(c_jx.to_numpy(), c_sm.to_numpy(), rtol=EST)


def test_predict_conditional_with_groups_given_as_a_column(sleep):
    """groups=data["Subject"] (the README's form) names the grouping column for new data;
    groups as a bare array has no name, and new data then cannot be matched to groups."""
    jx = jaxlme.mixedlm("Reaction ~ Days", sleep, groups=sleep["Subject"], re_formula="~Days").fit()
    np.testing.assert_allclose(jx.predict_conditional(sleep), jx.fittedvalues, rtol=1e-10)
    new = sleep.head(2).copy()
    new["Subject"] = [999, new["Subject"].iloc[1]]
    both = jx.predict_conditional(new, allow_new_levels=True).to_numpy()
    np.testing.assert_allclose(both[0], jx.predict(new).to_numpy()[0], rtol=1e-12)  # a new level: X·β only
    np.testing.assert_allclose(both[1], jx.fittedvalues.iloc[1], rtol=1e-10)
    bare = jaxlme.mixedlm("Reaction ~ Days", sleep, groups=sleep["Subject"].to_numpy()).fit()
    with pytest.raises(DataError, match="grouping column 'Group'"):
        bare.predict_conditional(sleep.head())
