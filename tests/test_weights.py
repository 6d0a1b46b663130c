"""Prior weights (lme4's ``lmer(..., weights = w)``): residual variance σ²/wᵢ throughout the
fit, criterion, inference, simulation, bootstrap and command line, against lme4 and lmerTest
(tests/data/make_weights_reference.R)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import DATA, assert_matches_lme4

import jaxlme
from jaxlme.cli import main
from jaxlme.design import DataError

REF = json.loads((DATA / "lme4_weights_reference.json").read_text())
FITS = REF["fits"]
SLOPE = "Reaction ~ Days + (Days | Subject)"


def _data(name: str) -> pd.DataFrame:
    return jaxlme.datasets.load(name)


def _weights(case: dict) -> np.ndarray:
    return np.array([np.nan if w is None else w for w in case["weights"]], dtype=float)


def _case(model: str, reml: bool) -> dict:
    return next(c for c in FITS if c["model"] == model and c["REML"] == reml)


def _fit(case: dict, **kwargs):
    data = _data(case["data"]).assign(w=_weights(case))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jaxlme.lmm(case["formula"], data, reml=case["REML"], weights="w", **kwargs)


@pytest.fixture(scope="module")
def sleep_w():
    """sleepstudy with lme4's weight columns, and the REML fit weighted by 0.5 + Days/9."""
    case = _case("sleep_slope_wdays", True)
    return _fit(case)


@pytest.mark.parametrize("case", FITS, ids=[f"{c['model']}-{'REML' if c['REML'] else 'ML'}" for c in FITS])
def test_matches_lme4(case):
    res = _fit(case)
    assert_matches_lme4(res, case)
    scale = case["sigma"]
    np.testing.assert_allclose(res.fitted, case["fitted"], rtol=0, atol=1e-3 * scale)
    np.testing.assert_allclose(res.residuals, case["residuals"], rtol=0, atol=1e-3 * scale)
    np.testing.assert_allclose(res.pearson_residuals, case["pearson"], rtol=0, atol=1e-3 * scale)
    assert res.weights is not None and len(res.weights) == case["nobs"]


@pytest.mark.parametrize("model", ["sleep_slope_wdays", "sleep_int_wsubj", "penicillin_crossed_w"])
@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
def test_satterthwaite_matches_lmertest(model, reml):
    case = _case(model, reml)
    res = _fit(case)
    table = res.coefs()
    sat = case["satterthwaite"]
    assert list(table.index) == sat["names"]
    np.testing.assert_allclose(table["df"], sat["df"], rtol=1e-3)
    np.testing.assert_allclose(table["t"], sat["t"], rtol=2e-3)
    np.testing.assert_allclose(table["p"], sat["p"], rtol=2e-2)


def test_profile_confint_matches_lme4(sleep_w):
    """SD, correlation and σ rows against lme4's profile; the fixed-effect rows against the
    ML deviance with β_j fixed by an offset, computed in R (lme4 1.1's own profile of a
    weighted fit's fixed effects is broken: non-monotonic, narrower than Wald)."""
    ref = REF["profile"]
    ci = sleep_w.confint(method="profile")
    rows = ref["confint"]["rows"]
    assert list(ci.index) == rows
    nvc = 4
    lo, hi = np.array(ref["confint"]["lower"][:nvc]), np.array(ref["confint"]["upper"][:nvc])
    width = hi - lo
    assert np.all(np.abs(ci["lower"].to_numpy()[:nvc] - lo) <= 1e-3 * width)
    assert np.all(np.abs(ci["upper"].to_numpy()[:nvc] - hi) <= 1e-3 * width)
    fx = ref["fixef_profile"]
    got = ci.loc[fx["rows"]]
    width = np.array(fx["upper"]) - np.array(fx["lower"])
    assert np.all(np.abs(got["lower"].to_numpy() - fx["lower"]) <= 1e-3 * width)
    assert np.all(np.abs(got["upper"].to_numpy() - fx["upper"]) <= 1e-3 * width)


def test_condsd_matches_lme4(sleep_w):
    ref = REF["profile"]["condsd"]
    sd = sleep_w.ranef_condsd()["Subject"]
    np.testing.assert_allclose(sd["(Intercept)"], ref["intercept"], rtol=1e-3)
    np.testing.assert_allclose(sd["Days"], ref["Days"], rtol=1e-3)


def test_unit_weights_equal_unweighted_fit():
    sleep = _data("sleepstudy")
    plain = jaxlme.lmm(SLOPE, sleep)
    ones = jaxlme.lmm(SLOPE, sleep, weights=np.ones(len(sleep)))
    assert ones.objective == plain.objective
    assert ones.sigma == plain.sigma
    np.testing.assert_array_equal(ones.theta, plain.theta)
    np.testing.assert_array_equal(ones.fixef, plain.fixef)
    np.testing.assert_array_equal(ones.residuals, plain.residuals)
    assert plain.weights is None and "Weights:" not in plain.summary()


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
def test_scaling_weights_changes_only_sigma(reml):
    """w -> c·w is the same model with σ -> σ·√c (σ²/wᵢ unchanged): θ = SD/σ shrinks by
    1/√c, β̂, SEs and the random-effect SDs stay, and so does the criterion: -Σlog w loses
    n·log c, the profiled log r² and (REML) log|RX|² gain (n - p)·log c and p·log c (ML:
    n·log c).  lme4's numbers agree."""
    c = 4.0
    a, b = _case("sleep_slope_wdays", reml), _case("sleep_slope_wdays4", reml)
    ra, rb = _fit(a), _fit(b)
    assert b["criterion"] == pytest.approx(a["criterion"], abs=1e-5)  # lme4
    assert b["sigma"] == pytest.approx(a["sigma"] * math.sqrt(c), rel=1e-4)  # lme4
    assert rb.objective == pytest.approx(ra.objective, abs=1e-8)
    assert rb.sigma == pytest.approx(ra.sigma * math.sqrt(c), rel=1e-6)
    np.testing.assert_allclose(rb.fixef, ra.fixef, rtol=1e-6)
    np.testing.assert_allclose(rb.stderr, ra.stderr, rtol=1e-6)
    np.testing.assert_allclose(rb.theta * math.sqrt(c), ra.theta, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(rb.varcorr.sdcor, ra.varcorr.sdcor.to_numpy() * [1, 1, 1, math.sqrt(c)], rtol=1e-5)


def test_missing_weights_drop_rows_and_are_counted():
    case = _case("sleep_slope_wna", True)
    data = _data("sleepstudy").assign(w=_weights(case))
    with pytest.warns(UserWarning, match="3 row"):
        model = jaxlme.LMM(SLOPE, data, weights="w")
    assert model.nobs == case["nobs"] == 177
    assert model.design.n_dropped == 3
    assert len(model.weights) == 177 and np.all(np.isfinite(model.weights))


def test_weights_array_aligned_with_rows_before_dropping():
    """An array of weights lines up with the data's rows, including rows later dropped."""
    case = _case("sleep_slope_wna", True)
    sleep = _data("sleepstudy")
    w = _weights(case)
    y = sleep["Reaction"].to_numpy(dtype=float).copy()
    y[np.isnan(w)] = np.nan  # the same rows dropped through the response instead
    data = sleep.assign(Reaction=y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_array = jaxlme.lmm(SLOPE, data, weights=np.nan_to_num(w, nan=1.0))
        by_column = jaxlme.lmm(SLOPE, sleep.assign(w=w), weights="w")
    assert by_array.objective == pytest.approx(by_column.objective, abs=1e-9)
    assert by_array.objective == pytest.approx(case["criterion"], abs=1e-3)


def test_summary_and_cli_json_name_the_weights(sleep_w):
    text = sleep_w.summary()
    assert "Weights: w" in text
    # lme4 scales the weighted (Pearson) residuals
    q = np.quantile(np.array(_case("sleep_slope_wdays", True)["pearson"]) / sleep_w.sigma, [0, 1])
    assert f"{q[0]:8.4f}" in text and f"{q[1]:8.4f}" in text


def test_refit_same_response_reproduces_weighted_fit(sleep_w):
    again = sleep_w.model.refit(sleep_w.model.design.y)
    assert again.objective == pytest.approx(sleep_w.objective, abs=1e-8)
    np.testing.assert_allclose(again.fixef, sleep_w.fixef, rtol=1e-8)
    assert again.sigma == pytest.approx(sleep_w.sigma, rel=1e-8)


def test_simulate_residual_variance_is_sigma2_over_w():
    """(1 | Subject) with weights 1..3 by subject: within-subject deviations of simulated
    responses (which remove the random intercept) have variance (1 - 1/10)·σ²/w."""
    case = _case("sleep_int_wsubj", True)
    res = _fit(case)
    w = res.weights
    ys = res.simulate(2000, seed=3)
    assert ys.shape == (2000, 180)
    subj = res.model.design.terms[0].index
    dev = ys.copy()
    for s in np.unique(subj):
        cols = subj == s
        dev[:, cols] -= ys[:, cols].mean(axis=1, keepdims=True)
    for wk in np.unique(w):
        emp = dev[:, w == wk].var(axis=0).mean()  # across replicates, row by row
        expected = 0.9 * res.sigma**2 / wk
        assert emp == pytest.approx(expected, rel=0.05), wk


def test_bootstrap_with_weights_centres_on_the_fit():
    case = _case("sleep_int_wsubj", True)
    res = _fit(case)
    boot = res.bootstrap(200, seed=5, progress=False)
    assert boot.n == 200 and boot.n_failed == 0
    se = res.stderr
    for name in res.fixef.index:
        assert abs(boot.fixef[name].mean() - res.fixef[name]) < 0.3 * se[name], name
    # σ̂ of replicates simulated with variance σ²/w and refitted with weights centres on σ̂
    assert boot.sigma.mean() == pytest.approx(res.sigma, rel=0.03)
    # a replicate equals the core refit of the simulated response
    y0 = res.simulate(1, seed=5)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = res.model.refit(y0, theta0=res.theta)
    assert boot.objective[0] == pytest.approx(ref.objective, abs=1e-6)
    assert boot.sigma[0] == pytest.approx(ref.sigma, rel=1e-5)


def _one_line_error(match: str, **kwargs):
    sleep = kwargs.pop("data", None)
    sleep = _data("sleepstudy") if sleep is None else sleep
    with pytest.raises(DataError, match=match) as info:
        jaxlme.LMM(SLOPE, sleep, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_error_unknown_column():
    _one_line_error("weights column 'wt' not found", weights="wt")


def test_error_negative_weight():
    w = np.ones(180)
    w[7] = -1.0
    _one_line_error("weights 'w' contain 1 negative", data=_data("sleepstudy").assign(w=w), weights="w")


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_error_infinite_weight(bad):
    w = np.ones(180)
    w[3] = bad
    _one_line_error("weights 'weights' contain infinite", weights=w)


def test_error_wrong_length():
    _one_line_error(r"weights must have one value per data row \(180\), got shape \(179,\)", weights=np.ones(179))
    _one_line_error(r"got shape \(180, 1\)", weights=np.ones((180, 1)))


@pytest.mark.parametrize(
    "values", [["a"] * 180, [True] * 180, pd.Categorical(["1"] * 180)], ids=["str", "bool", "categorical"]
)
def test_error_non_numeric(values):
    data = _data("sleepstudy").assign(wt=values)
    _one_line_error("weights 'wt' must be numeric", data=data, weights="wt")


def test_error_zero_weights_where_lme4_returns_an_unoptimized_fit():
    zero = REF["zero_weights"]
    assert zero["criterion_infinite"]  # lme4: REML criterion Inf, θ left at its start
    assert zero["theta"] == [1, 0, 1]
    data = _data("sleepstudy").assign(w=np.array(zero["weights"], dtype=float))
    msg = _one_line_error("weights 'w' contain 3 zero", data=data, weights="w")
    assert "lme4" in msg


def test_cli_weights_column(tmp_path, capsys):
    case = _case("sleep_slope_wdays", False)
    csv = tmp_path / "sleep.csv"
    _data("sleepstudy").assign(w=_weights(case)).to_csv(csv, index=False)
    assert main(["fit", str(csv), SLOPE, "--ml", "--weights", "w", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["weights"] == "w"
    assert out["objective"] == pytest.approx(case["criterion"], abs=1e-3)
    assert out["sigma"] == pytest.approx(case["sigma"], rel=2e-3)
    assert main(["fit", str(csv), SLOPE, "--weights", "w"]) == 0
    assert "Weights: w" in capsys.readouterr().out
    assert main(["fit", str(csv), SLOPE, "--weights", "nope"]) != 0
    err = capsys.readouterr().err
    assert "weights column 'nope' not found" in err


@pytest.mark.slow
def test_large_crossed_weighted_fit_is_the_optimum_of_the_weighted_criterion():
    """A crossed model large enough for BFGS with the analytic gradient (and difference
    Hessians for Satterthwaite): its optimum is a stationary point of the plain autodiff
    objective, which carries the weights' -Σ log w, and unit weights change nothing."""
    import jax
    from helpers import crossed_large

    data = crossed_large(3)
    rng = np.random.default_rng(0)
    data["w"] = rng.uniform(0.5, 2.0, len(data))
    model = jaxlme.LMM("y ~ x + (1 | g1) + (1 | g2)", data, weights="w")
    assert model.layout.size_rest >= 400
    res = model.fit()
    assert res.converged and res.opt.optimizer.startswith("bounded quasi-Newton")
    with jax.enable_x64(True):
        f = model.objective_function()
        theta = jax.numpy.asarray(res.theta)
        value, grad = float(f(theta)), np.asarray(jax.grad(f)(theta))
    assert value == pytest.approx(res.objective, abs=1e-8)
    assert np.max(np.abs(grad)) < 1e-3
    unweighted = jaxlme.LMM("y ~ x + (1 | g1) + (1 | g2)", data)
    ones = jaxlme.LMM("y ~ x + (1 | g1) + (1 | g2)", data, weights=np.ones(len(data)))
    assert ones.objective(res.theta) == unweighted.objective(res.theta)
    table = res.coefs()
    assert np.all(np.isfinite(table["df"])) and np.all(table["df"] > 0)
