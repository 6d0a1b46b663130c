"""Fits do not depend on the data's location and scale (the centred cross-products).

For every model of the reference suites: y + c (c up to 1e9) and a·y (a from 1e-6 to 1e6)
give the same fit, mapped exactly (intercept + c; β, σ times a; the criterion plus a known
constant), and so do x + c and b·x for a fixed-effect covariate that no random term uses.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import DATA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxlme

RTOL = 1e-9


def _sleep(d: pd.DataFrame) -> pd.DataFrame:
    """sleepstudy with the derived columns the reference models use."""
    d = d.copy()
    d["phase"] = np.where(d["Days"] < 5, "early", "late")
    d["period3"] = np.array(["a", "b", "c"])[np.minimum(d["Days"].to_numpy() // 4, 2).astype(int)]
    d["period5"] = ["p" + str(int(v) // 2) for v in d["Days"]]
    d["period"] = (d["Days"] // 3).astype(int)
    d["Days2"] = d["Days"] ** 2 / 10
    return d


def _models() -> list[tuple[str, str]]:
    out = []
    for name in ("lme4_reference.json", "lme4_extra_reference.json", "lme4_terms_reference.json"):
        for ref in json.loads((DATA / name).read_text()):
            formula = " ".join(ref.get("jformula", ref["formula"]).split())
            key = (formula, ref["data"])
            # transformed responses (log) are not affine in y; offsets are tested on their own
            lhs_ok = "log(" not in formula.split("~")[0] and "offset(" not in formula
            if ref["data"] != "InstEval" and lhs_ok and key not in out:
                out.append(key)
    return out


MODELS = _models()
_DATA: dict[str, pd.DataFrame] = {}
_BASE: dict[tuple[str, str, bool], jaxlme.LMMResult] = {}


def _data(name: str) -> pd.DataFrame:
    if name not in _DATA:
        d = pd.read_csv(DATA / f"{name}.csv") if name == "terms_crossed" else jaxlme.datasets.load(name)
        _DATA[name] = _sleep(d) if name == "sleepstudy" else d
    return _DATA[name]


def _fit(formula: str, data: pd.DataFrame, reml: bool) -> jaxlme.LMMResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jaxlme.lmm(formula, data, reml=reml)


def _base(formula: str, name: str, reml: bool) -> jaxlme.LMMResult:
    key = (formula, name, reml)
    if key not in _BASE:
        _BASE[key] = _fit(formula, _data(name), reml)
    return _BASE[key]


def _close(a, b, rtol=RTOL, atol=0.0):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=rtol, atol=atol)


def _same_fit(res, base, *, beta, sigma_factor=1.0, criterion_shift=0.0):
    """res is base with β mapped to ``beta``, σ scaled and the criterion shifted."""
    scale = max(1.0, abs(base.objective))
    assert abs(res.objective - (base.objective + criterion_shift)) <= RTOL * scale * 10
    # θ and σ to 3e-7: a shift c up to 1e9 leaves the centred cross-products ~7 fewer exact
    # digits, and XLA releases that sum in another order land up to 1.2e-7 apart there
    th = np.abs(base.theta).max() + 1e-3
    _close(res.theta, base.theta, rtol=0, atol=3e-7 * th)
    _close(res.sigma, base.sigma * sigma_factor, rtol=3e-7)
    bscale = np.abs(beta).max()
    _close(res.fixef.to_numpy(), beta, rtol=0, atol=1e-7 * bscale)


CASES = [pytest.param(f, d, id=f"{d}:{f}") for f, d in MODELS]


@pytest.mark.parametrize("formula,name", CASES)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=st.floats(-1e9, 1e9), log_a=st.floats(-6, 6), reml=st.booleans())
def test_response_location_and_scale(formula, name, c, log_a, reml):
    base = _base(formula, name, reml)
    d = base.model.design
    if d.p == 0 or not np.any(np.all(d.X == 1.0, axis=0)):
        pytest.skip("no intercept: y + c is another model")
    response = d.formula.response
    j0 = int(np.flatnonzero(np.all(d.X == 1.0, axis=0))[0])
    data = _data(name)
    shifted = _fit(formula, data.assign(**{response: data[response] + c}), reml)
    beta = base.fixef.to_numpy().copy()
    beta[j0] += c
    _same_fit(shifted, base, beta=beta)
    _close(shifted.stderr, base.stderr, rtol=1e-6)
    a = 10.0**log_a
    scaled = _fit(formula, data.assign(**{response: data[response] * a}), reml)
    dof = d.n - (d.p if reml else 0)
    _same_fit(scaled, base, beta=base.fixef.to_numpy() * a, sigma_factor=a, criterion_shift=dof * np.log(a * a))
    _close(scaled.stderr, base.stderr * a, rtol=1e-6)


# fixed-effect covariates that no random term uses: shifting or scaling them is a
# reparametrization of β alone
COVARIATE_CASES = [
    ("Reaction ~ Days + (1 | Subject)", "sleepstudy", "Days"),
    ("Reaction ~ Days + phase + (1 | Subject)", "sleepstudy", "Days"),
    ("bounce_time ~ age_scaled + (1 | county)", "bounce_time", "age_scaled"),
    ("Reaction ~ Days2 + (Days | Subject)", "sleepstudy", "Days2"),
]


@pytest.mark.parametrize("formula,name,column", COVARIATE_CASES)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=st.floats(-1e9, 1e9), log_b=st.floats(-6, 6), reml=st.booleans())
def test_covariate_location_and_scale(formula, name, column, c, log_b, reml):
    base = _base(formula, name, reml)
    data = _data(name)
    names = list(base.fixef.index)
    j = names.index(column)
    shifted = _fit(formula, data.assign(**{column: data[column] + c}), reml)
    beta = base.fixef.to_numpy().copy()
    beta[names.index("(Intercept)")] -= c * beta[j]
    _same_fit(shifted, base, beta=beta)
    b = 10.0**log_b
    scaled = _fit(formula, data.assign(**{column: data[column] * b}), reml)
    beta = base.fixef.to_numpy().copy()
    beta[j] /= b
    # REML's log|X'V⁻¹X| gains 2·log|b|; the ML deviance does not change
    _same_fit(scaled, base, beta=beta, criterion_shift=2 * np.log(b) if reml else 0.0)


def test_response_offset_1e8_bootstrap_runs():
    """A response near 1e8 bootstraps like the original: the same replicates, shifted."""
    d = _data("sleepstudy")
    base = _base("Reaction ~ Days + (Days | Subject)", "sleepstudy", True)
    far = _fit("Reaction ~ Days + (Days | Subject)", d.assign(Reaction=d["Reaction"] + 1e8), True)
    assert far.converged
    b0 = base.bootstrap(40, seed=5, progress=False)
    b1 = far.bootstrap(40, seed=5, progress=False)
    assert b1.n_failed == 0
    _close(b1.theta.to_numpy(), b0.theta.to_numpy(), rtol=0, atol=1e-5)
    _close(b1.fixef["Days"], b0.fixef["Days"], rtol=1e-6)
    _close(b1.fixef["(Intercept)"] - 1e8, b0.fixef["(Intercept)"], rtol=0, atol=1e-5)
