"""GLMMResult.confint: profile, Wald and bootstrap intervals against lme4 1.1-31's confint
(tests/data/make_glmm_confint_reference.R)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import DATA
from scipy import special
from test_glmm import CBPP_FORMULA, load_cbpp

import jaxlme

REF = json.loads((DATA / "glmm_confint_reference.json").read_text())

DATASETS = {
    "cbpp": load_cbpp,
    "poisson_offset": lambda: pd.read_csv(DATA / "glmm_poisson_offset.csv"),
    "grouseticks": lambda: pd.read_csv(
        DATA / "grouseticks.csv", dtype={"INDEX": str, "BROOD": str, "YEAR": str, "LOCATION": str}
    ),
}


def _fit(case: str):
    ref = REF[case]
    return jaxlme.glmm(ref["formula"], DATASETS[case](), family=ref["family"]), ref


def _table(part: dict) -> pd.DataFrame:
    return pd.DataFrame({"lower": part["lower"], "upper": part["upper"]}, index=part["names"]).astype(float)


def test_reference_is_cbpp_with_the_formula_the_tests_use():
    assert REF["cbpp"]["formula"] == CBPP_FORMULA and REF["lme4_version"] == "1.1.31"


@pytest.mark.slow
@pytest.mark.parametrize(
    "case,parm",
    [
        ("cbpp", None),
        ("poisson_offset", None),
        ("grouseticks", ["sd_(Intercept)|LOCATION", "cHEIGHT"]),  # an SD whose limit is 0
    ],
)
def test_profile_intervals_match_lme4(case, parm):
    res, ref = _fit(case)
    ci = res.confint(parm=parm)
    want = _table(ref["profile"]).loc[parm or slice(None)]
    assert list(ci.index) == list(want.index)
    # lme4 interpolates the profile with splines; the roots here are exact: agree to a
    # hundredth of a standard error (an SD's lower limit of 0 exactly, as lme4 reports it)
    se = pd.concat([pd.Series(0.1, index=[n for n in want.index if n.startswith("sd_")]), res.stderr])
    err = (ci - want).abs().max(axis=1) / se.loc[want.index]
    assert err.max() < 0.01, err
    assert ci.attrs["method"] == "profile"


def test_wald_intervals_are_estimate_plus_minus_z_se_and_match_lme4():
    res, ref = _fit("cbpp")
    ci = res.confint(method="wald", level=0.9)
    z = special.ndtri(0.95)
    np.testing.assert_allclose(ci.loc[res.fixef.index, "lower"], res.fixef - z * res.stderr, rtol=1e-12)
    np.testing.assert_allclose(ci.loc[res.fixef.index, "upper"], res.fixef + z * res.stderr, rtol=1e-12)
    assert ci.loc["sd_(Intercept)|herd"].isna().all()  # lme4's Wald has no variance intervals
    want = _table(ref["wald"]).loc[res.fixef.index]
    got = res.confint(method="wald").loc[res.fixef.index]
    # lme4 differences the Hessian for vcov (autodiff here): SEs agree within 0.1%
    np.testing.assert_allclose((got.upper - got.lower), (want.upper - want.lower), rtol=1e-3)
    mid = ((got.upper + got.lower) / 2 - (want.upper + want.lower) / 2).abs()
    assert (mid <= 1e-3 * res.stderr).all(), mid


@pytest.mark.slow
def test_profile_of_a_correlated_term_crosses_z_at_its_limits():
    """A vector-valued term (SDs and a correlation profiled through the θ map): at each
    limit the profiled criterion is D̂ + z² (or the limit is the parameter's bound)."""
    d = pd.read_csv(DATA / "glmm_accuracy.csv")
    res = jaxlme.glmm("acc ~ cond + (1 + cond | subj)", d, family="binomial")
    names = ["sd_(Intercept)|subj", "cor_cond.(Intercept)|subj", "cond"]
    ci = res.confint(parm=names[1:], level=0.9)
    assert list(ci.index) == names[1:]
    z2 = special.ndtri(0.95) ** 2
    vc = res.varcorr
    est = {
        names[0]: float(vc.sdcor.iloc[0]),
        names[1]: float(vc.loc[vc.var2.notna(), "sdcor"].iloc[0]),
        names[2]: float(res.fixef["cond"]),
    }
    for name in names[1:]:
        lo, hi = ci.loc[name]
        assert lo < est[name] < hi, (name, lo, est[name], hi)
    assert -1.0 <= ci.loc[names[1], "lower"] and ci.loc[names[1], "upper"] <= 1.0
    # the fixed effect's limits: refit with cond's coefficient held there through an offset
    base = res.objective
    for v in ci.loc["cond"]:
        held = jaxlme.glmm("acc ~ 1 + offset(off) + (1 + cond | subj)", d.assign(off=v * d.cond), family="binomial")
        assert held.objective - base == pytest.approx(z2, rel=2e-3)


def test_confint_rejects_bad_arguments():
    res, _ = _fit("cbpp")
    with pytest.raises(ValueError, match="unknown method"):
        res.confint(method="bayes")
    with pytest.raises(ValueError, match="unknown parameter"):
        res.confint(parm=["nope"])
    with pytest.raises(ValueError, match="level"):
        res.confint(level=2)


@pytest.mark.slow
def test_boot_intervals_are_the_bootstrap_percentiles():
    res, _ = _fit("cbpp")
    ci = res.confint(method="boot", nsim=40, seed=3)
    boot = res.bootstrap(40, seed=3).ci(0.95)
    names = list(ci.index)
    assert names == ["sd_(Intercept)|herd", *res.fixef.index]
    np.testing.assert_allclose(ci.to_numpy(), boot.loc[names, ["lower", "upper"]].to_numpy())
