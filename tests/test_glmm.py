"""jaxlme.glmm: the cbpp binomial GLMM against lme4 1.1-31's glmer, results, predictions, errors.

References come from tests/data/make_glmm_reference.R.  "cbpp" is glmer with PIRLS converged
tightly (tolPwrss = 1e-12), the exact Laplace criterion's optimum; "cbpp_default" is glmer's
default fit, whose criterion carries PIRLS' convergence error (jaxlme's is lower, tested).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import DATA

import jaxlme
from jaxlme import DataError, FormulaError
from jaxlme.glmm import GLMM

REF = json.loads((DATA / "glmm_reference.json").read_text())
CBPP_FORMULA = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def load_cbpp() -> pd.DataFrame:
    return pd.read_csv(DATA / "cbpp.csv", dtype={"herd": str, "period": str})


def criterion(ref: dict) -> float:
    """lme4's optimized criterion: Σ devres + ‖u‖² + log|L|² (Laplace) or the AGQ deviance."""
    c = ref["cmp"]
    return c["drsum"] + c["ussq"] + c["ldL2"] if ref["nAGQ"] <= 1 else c["dev"]


def assert_matches_glmer(res, name: str, fixef_tol: float = 1e-4, refs: dict = REF) -> None:
    """Deviance and logLik to 1e-5 relative, fixed effects within ``fixef_tol`` of their SE,
    SEs and θ to 1e-4 relative, against glmer with tight PIRLS; criterion no higher than
    default glmer's (``refs``: the reference file's fits, by name)."""
    ref, default = refs[name], refs[f"{name}_default"]
    assert res.converged
    assert res.objective <= criterion(default) + 1e-6
    assert res.objective == pytest.approx(criterion(ref), rel=1e-7)
    assert res.loglike == pytest.approx(ref["logLik"], rel=1e-5)
    assert res.deviance == pytest.approx(-2 * ref["logLik"], rel=1e-5)
    assert res.aic == pytest.approx(ref["AIC"], rel=1e-5)
    assert res.bic == pytest.approx(ref["BIC"], rel=1e-5)
    assert res.nobs == ref["nobs"] and res.df_resid == ref["df_resid"]
    assert res.singular == ref["singular"]
    np.testing.assert_allclose(res.theta, np.atleast_1d(ref["theta"]), rtol=1e-4, atol=1e-5)
    se = pd.Series(ref["se"])
    for k, v in ref["fixef"].items():
        assert abs(res.fixef[k] - v) <= fixef_tol * se[k], k
        assert res.stderr[k] == pytest.approx(se[k], rel=1e-4), k
    sd = np.asarray(ref["varcorr"]["sdcor"], dtype=float)
    np.testing.assert_allclose(res.varcorr["sdcor"].to_numpy(), sd, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def cbpp_fit():
    return GLMM(CBPP_FORMULA, load_cbpp()).fit()


def test_cbpp_matches_glmer(cbpp_fit):
    assert_matches_glmer(cbpp_fit, "cbpp")
    # glmer's default fit stops at a criterion 5.7e-4 higher (its PIRLS tolerance); ours is lower
    assert cbpp_fit.objective < criterion(REF["cbpp_default"]) - 1e-4


def test_cbpp_z_tests_ranef_and_fitted_match_glmer(cbpp_fit):
    ref = REF["cbpp"]
    ct = cbpp_fit.coefs()
    np.testing.assert_allclose(ct["z"].to_numpy(), list(ref["z"].values()), rtol=1e-4)
    np.testing.assert_allclose(ct["p"].to_numpy(), list(ref["p"].values()), rtol=1e-3)
    assert list(ct.columns) == ["estimate", "se", "z", "p", "lower", "upper"]
    herd = cbpp_fit.ranef["herd"]
    r = ref["ranef"]["herd"]
    got = herd.loc[r["levels"], "(Intercept)"].to_numpy()
    np.testing.assert_allclose(got, r["values"]["(Intercept)"], atol=1e-4)
    np.testing.assert_allclose(cbpp_fit.fitted.to_numpy(), ref["fitted"], rtol=1e-4)
    np.testing.assert_allclose(cbpp_fit.predict(type="link").to_numpy(), ref["eta"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        np.quantile(cbpp_fit.pearson_residuals, [0, 0.25, 0.5, 0.75, 1]), ref["scaled_resid"], rtol=1e-3
    )


def test_cbpp_predict_newdata_link_response_and_new_levels(cbpp_fit):
    ref = REF["cbpp_predict"]
    nd = pd.DataFrame({"herd": ["1", "2", "99"], "period": ["1", "4", "2"]})
    link = cbpp_fit.predict(nd, type="link", allow_new_levels=True)
    np.testing.assert_allclose(link.to_numpy(), ref["link"], rtol=1e-4)
    resp = cbpp_fit.predict(nd, type="response", allow_new_levels=True)
    np.testing.assert_allclose(resp.to_numpy(), ref["response"], rtol=1e-4)
    pop = cbpp_fit.predict(nd, type="response", re_form="NA")
    np.testing.assert_allclose(pop.to_numpy(), ref["population"], rtol=1e-4)
    with pytest.raises(DataError, match="new level.*'99'.*herd"):
        cbpp_fit.predict(nd)
    with pytest.raises(ValueError, match="type must be 'link' or 'response'"):
        cbpp_fit.predict(nd, type="probability", allow_new_levels=True)


def test_cbpp_summary_has_glmers_layout(cbpp_fit):
    text = cbpp_fit.summary()
    lines = text.splitlines()
    assert lines[0] == "Generalized linear mixed model fit by maximum likelihood (Laplace Approximation) [glmerMod]"
    assert lines[1] == " Family: binomial  ( logit )"
    assert lines[2] == f"Formula: {CBPP_FORMULA}"
    assert lines[4].split() == ["AIC", "BIC", "logLik", "deviance", "df.resid"]
    assert lines[5].split() == ["194.1", "204.2", "-92.0", "184.1", "51"]
    for piece in ["Scaled residuals:", "Random effects:", "Number of obs: 56, groups:  herd, 15", "Pr(>|z|)"]:
        assert piece in text
    assert "Residual" not in text  # binomial: no residual variance
    assert "Correlation of Fixed Effects:" in text
    assert "period2 -0.364" in text  # lme4 prints -0.363 at its default fit; -0.364 at the optimum
    assert cbpp_fit.opt.converged and "BFGS" in cbpp_fit.opt.optimizer


def test_proportions_with_weights_and_offset_argument_give_the_same_criterion():
    d = load_cbpp()
    ref = REF["cbpp"]
    theta, beta = ref["theta"], list(ref["fixef"].values())
    a = GLMM(CBPP_FORMULA, d).objective([theta], beta)
    prop = GLMM("incidence / size ~ period + (1 | herd)", d, weights="size")
    assert prop.objective([theta], beta) == pytest.approx(a, rel=1e-12)
    assert a == pytest.approx(criterion(ref), rel=1e-8)
    # β profiled by PIRLS: lme4's nAGQ = 0 criterion at its (tight) optimum
    nagq0 = REF["cbpp_nagq0"]
    assert GLMM(CBPP_FORMULA, d).objective([nagq0["theta"]]) == pytest.approx(criterion(nagq0), rel=1e-8)


def test_module_level_function_is_exported():
    assert jaxlme.glmm is not None and jaxlme.GLMM is GLMM


def test_bad_responses_raise_naming_the_column():
    d = load_cbpp()
    with pytest.raises(DataError, match="'incidence' has values outside \\[0, 1\\]"):
        GLMM("incidence ~ period + (1 | herd)", d)
    neg = d.assign(count=np.where(np.arange(len(d)) == 3, -1, d["incidence"]))
    with pytest.raises(DataError, match="'count' has negative values"):
        GLMM("count ~ period + (1 | herd)", neg, family="poisson")
    frac = d.assign(count=d["incidence"] + 0.5)
    with pytest.raises(DataError, match="'count' has non-integer values"):
        GLMM("count ~ period + (1 | herd)", frac, family="poisson")
    bad = d.assign(k=d["incidence"] - 3)
    with pytest.raises(DataError, match="cbind column 'k' must hold whole numbers >= 0"):
        GLMM("cbind(k, size - k) ~ period + (1 | herd)", bad)
    with pytest.raises(FormulaError, match="cbind\\(...\\) responses are binomial"):
        GLMM(CBPP_FORMULA, d, family="poisson")
    with pytest.raises(ValueError, match="link 'probit' is not available for the poisson family"):
        GLMM("incidence ~ period + (1 | herd)", d, family="poisson", link="probit")


def test_agq_needs_one_scalar_term():
    d = load_cbpp().assign(x=np.linspace(-1, 1, 56))
    with pytest.raises(ValueError, match="single scalar random-effects term.*\\(1 \\+ x \\| herd\\)"):
        GLMM("cbind(incidence, size - incidence) ~ period + (1 + x | herd)", d, nagq=5)
    with pytest.raises(ValueError, match="nagq must be >= 1"):
        GLMM(CBPP_FORMULA, d, nagq=0)


def test_complete_separation_warns_naming_the_column():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(10), 8).astype(str)
    x = np.tile([0.0, 1.0], 40)
    y = np.where(x == 1, 1.0, rng.integers(0, 2, 80))
    d = pd.DataFrame({"y": y, "x": x, "g": g})
    with pytest.warns(UserWarning, match="complete separation.*'y' is 1 in every row where 'x' is 1"):
        GLMM("y ~ x + (1 | g)", d)


def test_term1_block_of_a_factors_terms_fits_the_same_model():
    """``(1 + x || g1) + (1 + x || g2)`` (equal level counts) fits g1's two terms as one
    term-1 block (``Layout.head``); listing the terms interleaved keeps them apart.  Same
    model: the same deviance and θ (in each formula's term order)."""
    rng = np.random.default_rng(3)
    n, k = 3000, 130
    g1, g2, x = rng.integers(0, k, n), rng.integers(0, k, n), rng.normal(size=n)
    u1, u2 = rng.normal(size=(k, 2)) * [0.8, 0.4], rng.normal(size=(k, 2)) * [0.6, 0.3]
    eta = -0.3 + 0.5 * x + u1[g1, 0] + u1[g1, 1] * x + u2[g2, 0] + u2[g2, 1] * x
    d = pd.DataFrame({"g1": g1, "g2": g2, "x": x, "y": rng.binomial(1, 1 / (1 + np.exp(-eta)))})
    a = jaxlme.glmm("y ~ x + (1 + x || g1) + (1 + x || g2)", d, family="binomial")
    b = jaxlme.glmm("y ~ x + (1 | g1) + (1 | g2) + (0 + x | g1) + (0 + x | g2)", d, family="binomial")
    assert a.model.layout.head == 2 and b.model.layout.head == 1
    assert a.objective == pytest.approx(b.objective, abs=1e-6)
    np.testing.assert_allclose(np.asarray(a.theta)[[0, 2, 1, 3]], b.theta, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.fixef, b.fixef, rtol=1e-5, atol=1e-7)
