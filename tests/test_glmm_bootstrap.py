"""jaxlme.glmm: parametric bootstrap, simulation and likelihood-ratio tests of GLMMs."""

from __future__ import annotations

import numpy as np
import pytest
from test_glmm import CBPP_FORMULA, REF, load_cbpp

import jaxlme
from jaxlme.glmm import GLMM


@pytest.fixture(scope="module")
def fits():
    d = load_cbpp()
    return GLMM(CBPP_FORMULA, d).fit(), GLMM("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", d).fit()


def test_lrt_matches_lme4_anova(fits):
    full, null = fits
    tab = jaxlme.lrt(full, null, names=["full", "null"])  # sorted by npar, as anova()
    ref = REF["cbpp_lrt"]
    assert list(tab.index) == ["null", "full"]
    np.testing.assert_array_equal(tab["npar"], ref["npar"])
    for col in ["AIC", "BIC", "logLik", "deviance"]:
        np.testing.assert_allclose(tab[col], ref[col], rtol=1e-6)
    assert tab["Chisq"].iloc[1] == pytest.approx(ref["Chisq"][1], rel=1e-5)
    assert tab["Df"].iloc[1] == 3
    assert tab["p"].iloc[1] == pytest.approx(ref["p"][1], rel=1e-4)
    with pytest.raises(ValueError, match="bootstrap p-values are for linear mixed models"):
        jaxlme.lrt(full, null, bootstrap=10)


def test_simulate_respects_the_binomial_support(fits):
    full, _ = fits
    y = full.simulate(200, seed=3)
    trials = full.model.prior_weights
    assert y.shape == (200, full.nobs)
    assert np.all((y >= 0) & (y <= 1))
    np.testing.assert_allclose(y * trials, np.round(y * trials), atol=1e-9)  # whole successes
    np.testing.assert_array_equal(y, full.simulate(200, seed=3))  # seeded
    # the simulated overall incidence is near the observed one (herd effects average out)
    observed = np.sum(full.model.y * trials) / trials.sum()
    assert np.mean(y @ trials / trials.sum()) == pytest.approx(observed, rel=0.15)


def test_bootstrap_refits_converge_and_spread_like_the_wald_ses(fits):
    full, _ = fits
    boot = full.bootstrap(192, seed=11)
    assert boot.n == 192 and boot.n_failed == 0
    se = boot.fixef.std(ddof=1)
    np.testing.assert_allclose(se.to_numpy(), full.stderr.to_numpy(), rtol=0.25)
    again = full.bootstrap(192, seed=11)
    np.testing.assert_allclose(again.fixef.to_numpy(), boot.fixef.to_numpy(), rtol=1e-10)
    ci = boot.ci()
    assert (ci.loc[full.fixef.index, "lower"] < full.fixef).all()
    assert (ci.loc[full.fixef.index, "upper"] > full.fixef).all()
    assert "cbind(incidence, size - incidence) ~ period" in boot.summary()
