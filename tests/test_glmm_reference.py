"""The other glmer references (tests/data/make_glmm_reference.R): links, AGQ, Poisson with an
offset, crossed Poisson and a crossed 0/1 model with a random slope, an all-0 group.  Each fit
compiles its own programs (15-75 s on the 2-core VM), so these are slow tests."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import DATA
from test_glmm import CBPP_FORMULA, REF, assert_matches_glmer, criterion, load_cbpp

from jaxlme.glmm import GLMM

pytestmark = pytest.mark.slow


def _poisson() -> pd.DataFrame:
    return pd.read_csv(DATA / "glmm_poisson_offset.csv")


CASES = {
    "cbpp_probit": lambda: GLMM(CBPP_FORMULA, load_cbpp(), link="probit"),
    "cbpp_cloglog": lambda: GLMM(CBPP_FORMULA, load_cbpp(), link="cloglog"),
    "cbpp_agq9": lambda: GLMM(CBPP_FORMULA, load_cbpp(), nagq=9),
    "cbpp_agq10": lambda: GLMM(CBPP_FORMULA, load_cbpp(), nagq=10),
    "poisson_offset": lambda: GLMM("events ~ x + offset(log(exposure)) + (1 | site)", _poisson(), "poisson"),
    "poisson_offset_agq5": lambda: GLMM(
        "events ~ x + offset(log(exposure)) + (1 | site)", _poisson(), "poisson", nagq=5
    ),
    "cbpp_zero_herds": lambda: GLMM(
        CBPP_FORMULA, load_cbpp().assign(incidence=lambda d: np.where(d["herd"].isin(["1", "3"]), 0, d["incidence"]))
    ),
    "grouseticks": lambda: GLMM(
        "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
        pd.read_csv(DATA / "grouseticks.csv", dtype={"INDEX": str, "BROOD": str, "YEAR": str, "LOCATION": str}),
        "poisson",
    ),
    "singular": lambda: GLMM("y ~ x + (1 | g)", pd.read_csv(DATA / "glmm_singular.csv")),
    "accuracy": lambda: GLMM("acc ~ cond + (1 + cond | subj) + (1 | item)", pd.read_csv(DATA / "glmm_accuracy.csv")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_glmer(name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = CASES[name]().fit()
    singular_warned = any("singular" in str(w.message) for w in caught)
    assert singular_warned == REF[name]["singular"]
    # grouseticks: jaxlme's criterion is 6e-6 below tight glmer's, whose fixed effects then
    # differ by up to 1.3e-4 SE; the bar is 5e-3 SE
    assert_matches_glmer(res, name, fixef_tol=2e-4 if name == "grouseticks" else 1e-4)
    if name == "cbpp_zero_herds":  # the all-0 herds get the lowest modes, as in lme4
        low = res.ranef["herd"]["(Intercept)"].nsmallest(2).index
        assert set(low) == {"1", "3"}


def test_offset_argument_equals_offset_term():
    d = _poisson().assign(logexp=lambda f: np.log(f["exposure"]))
    ref = REF["poisson_offset"]
    theta, beta = ref["theta"], list(ref["fixef"].values())
    a = GLMM("events ~ x + offset(log(exposure)) + (1 | site)", d, "poisson").objective([theta], beta)
    b = GLMM("events ~ x + (1 | site)", d, "poisson", offset="logexp").objective([theta], beta)
    assert a == pytest.approx(b, rel=1e-12)
    assert a == pytest.approx(criterion(ref), rel=1e-8)


def test_large_nested_model_matches_glmer():
    """(1 | a) + (1 | a:b) with 450 units (tests/data/make_glmm_nested_reference.R): the
    rest block's lead of 450 blocks is factored block by block inside PIRLS.  (glmer's
    default fit reports SEs of 5e-4 from a failed Hessian; the tight fit's are compared.)"""
    refs = json.loads((DATA / "glmm_nested_reference.json").read_text())
    model = GLMM("y ~ x + (1 | a) + (1 | a:b)", pd.read_csv(DATA / "glmm_nested.csv"))
    assert model.layout.lead_blocks == (450, 1)
    assert_matches_glmer(model.fit(), "nested", refs=refs)


def test_large_nested_model_with_several_fixed_effects():
    """The nested model with five covariates (a trailing dense square of 6 rows after the
    lead in PIRLS' joint solve): its programs compile and fit, and the deviance is at most
    the one-covariate model's (its covariates nest that model)."""
    data = pd.read_csv(DATA / "glmm_nested.csv")
    rng = np.random.default_rng(0)
    for c in ("x2", "x3", "x4", "x5"):
        data[c] = rng.normal(size=len(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = GLMM("y ~ x + (1 | a) + (1 | a:b)", data).fit()
        big = GLMM("y ~ x + x2 + x3 + x4 + x5 + (1 | a) + (1 | a:b)", data).fit()
    assert big.model.layout.lead_blocks == (450, 1)
    assert big.converged and small.converged
    assert big.deviance <= small.deviance + 1e-6
    assert np.all(np.isfinite(big.stderr.to_numpy())) and np.all(big.stderr.to_numpy() > 0)
    np.testing.assert_allclose(big.fixef["x"], small.fixef["x"], atol=3 * small.stderr["x"])
