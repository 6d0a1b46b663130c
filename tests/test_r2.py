"""Nakagawa's R² and the ICC against performance::r2_nakagawa / performance::icc.

Reference numbers: tests/data/predict_r2_reference.json, made by make_predict_r2_reference.R
(performance 0.10.2, insight 0.19.0 on lme4 1.1-31 fits).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from reference_fits import FITS, fit

import jaxlme
from jaxlme.r2 import variance_components

# every random term once per grouping factor: performance's definition holds as it is
SAME_AS_PERFORMANCE = [c for c in FITS if c not in ("singular", "sleepstudy_uncorr")]


@pytest.mark.filterwarnings("ignore:random-effect column")  # slope_not_fixed: as performance warns
@pytest.mark.parametrize("case", SAME_AS_PERFORMANCE)
def test_r2_and_icc_match_performance(case):
    res, ref = fit(case), FITS[case]
    r2, icc = res.r2(), res.icc()
    assert list(r2.index) == ["marginal", "conditional"] and list(icc.index) == ["adjusted", "unadjusted"]
    for got, want in [
        (r2["marginal"], ref["r2"]["marginal"]),
        (r2["conditional"], ref["r2"]["conditional"]),
        (icc["adjusted"], ref["icc"]["adjusted"]),
        (icc["unadjusted"], ref["icc"]["unadjusted"]),
    ]:
        assert got == pytest.approx(want, rel=1e-4, abs=1e-12)


@pytest.mark.parametrize("case", list(FITS))
def test_variance_components_match_insight(case):
    res, ref = fit(case), FITS[case]["variances"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = variance_components(res)
    assert v["fixed"] == pytest.approx(ref["fixed"], rel=1e-4, abs=1e-12)
    assert v["residual"] == pytest.approx(ref["residual"], rel=1e-4)
    if case == "singular":
        assert np.isnan(v["random"])
    else:  # insight's per-term sum over every term of VarCorr (Subject and Subject.1)
        assert v["random"] == pytest.approx(ref["random_all"], rel=1e-4)


def test_singular_fit_as_performance():
    res, ref = fit("singular"), FITS["singular"]
    assert ref["r2"]["conditional"] is None and ref["icc"] is None  # performance: NA
    with pytest.warns(UserWarning, match="singular fit"):
        r2 = res.r2()
    assert r2["marginal"] == pytest.approx(ref["r2"]["marginal"], abs=1e-12)
    assert np.isnan(r2["conditional"])
    with pytest.warns(UserWarning, match="singular fit"):
        icc = res.icc()
    assert icc.isna().all()


def test_repeated_factor_sums_every_term():
    """(Days || Subject): performance adds only Subject's intercept variance (it drops Subject.1);
    jaxlme adds the slope's too, Var(slope) * mean(Days²) (insight's formula over all terms)."""
    res, ref = fit("sleepstudy_uncorr"), FITS["sleepstudy_uncorr"]
    v = ref["variances"]
    f, r, e = v["fixed"], v["random_all"], v["residual"]
    r2 = res.r2()
    assert r2["marginal"] == pytest.approx(f / (f + r + e), rel=1e-4)
    assert r2["conditional"] == pytest.approx((f + r) / (f + r + e), rel=1e-4)
    assert res.icc()["adjusted"] == pytest.approx(r / (r + e), rel=1e-4)
    assert r2["marginal"] < ref["r2"]["marginal"]  # performance leaves the slope variance out
    days = res.model.design.X[:, 1]
    covs = res.covariance_matrices()
    by_hand = covs["Subject"].iloc[0, 0] + covs["Subject.1"].iloc[0, 0] * np.mean(days**2)
    assert variance_components(res)["random"] == pytest.approx(by_hand, rel=1e-12)


def test_random_slope_not_in_fixed_effects_is_left_out_with_warning():
    data = jaxlme.datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = jaxlme.lmm("Reaction ~ 1 + (Days | Subject)", data)
    with pytest.warns(UserWarning, match=r"Days \| Subject are not fixed-effect columns"):
        v = variance_components(res)
    assert v["random"] == pytest.approx(res.covariance_matrices()["Subject"].iloc[0, 0], rel=1e-12)
    assert v["fixed"] == pytest.approx(0.0, abs=1e-20)
    ref = FITS["slope_not_fixed"]
    with pytest.warns(UserWarning, match="not fixed-effect columns"):
        assert fit("slope_not_fixed").r2()["conditional"] == pytest.approx(ref["r2"]["conditional"], rel=1e-4)


def test_r2_is_a_series_of_fractions():
    r2 = fit("bounce").r2()
    assert isinstance(r2, pd.Series)
    assert 0 <= r2["marginal"] <= r2["conditional"] <= 1
