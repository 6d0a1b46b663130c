"""LMM.fit_many: one design fitted to many responses equals a loop of refit (issue 18)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import crossed_large, load_csv

import jaxlme
from jaxlme.params import varpar_name

SLEEP = "Reaction ~ Days + (Days | Subject)"


def _model(formula, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jaxlme.LMM(formula, data, **kw)


def _refit_row(model, y, reml):
    """A refit's answer in fit_many's column names."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.refit(y, reml=reml)
    row = dict(res.fixef)
    for label, cov in res.covariance_matrices().items():
        c = cov.to_numpy()
        sd = np.sqrt(np.diag(c))
        cols = list(cov.columns)
        for i in range(len(cols)):
            row[varpar_name(label, cols, i, i)] = sd[i]
            for j in range(i):
                if c.shape[0] > 1 and sd[i] * sd[j] > 0:
                    row[varpar_name(label, cols, i, j)] = c[i, j] / (sd[i] * sd[j])
    row["sigma"] = res.sigma
    row["objective"] = res.objective
    row["converged"] = res.converged
    return row


def _assert_equal_to_refit_loop(model, Y, reml, tab, sd_atol=1e-4):
    """Same optimum as refit: criterion within 1e-6; β and σ to 1e-6 relative; SDs and
    correlations (flat directions of the criterion) to 1e-5 relative / ``sd_atol``."""
    assert len(tab) == Y.shape[1]
    for j in range(Y.shape[1]):
        ref = _refit_row(model, Y[:, j], reml)
        got = tab.iloc[j]
        assert got["converged"] and ref["converged"], (j, got["status"])
        assert got["objective"] == pytest.approx(ref["objective"], abs=1e-6), j
        for name in list(model.design.xnames) + ["sigma"]:
            assert got[name] == pytest.approx(ref[name], rel=1e-6, abs=1e-8), (j, name)
        for name, value in ref.items():
            if name.startswith(("sd_", "cor_")):
                assert got[name] == pytest.approx(value, rel=1e-5, abs=sd_atol), (j, name)


@pytest.fixture(scope="module")
def sleep_model():
    return _model(SLEEP, load_csv("sleepstudy"))


@pytest.fixture(scope="module")
def sleep_responses(sleep_model):
    res = sleep_model.fit()
    return np.asarray(res.simulate(24, seed=7)).T  # (180, 24)


@pytest.mark.parametrize("reml", [True, False])
def test_sleepstudy_equals_refit_loop(sleep_model, sleep_responses, reml):
    tab = sleep_model.fit_many(sleep_responses, reml=reml)
    expected = ["(Intercept)", "Days", "sd_(Intercept)|Subject", "sd_Days|Subject", "cor_Days.(Intercept)|Subject"]
    assert list(tab.columns) == expected + ["sigma", "objective", "converged", "status", "iterations"]
    assert set(expected[2:] + ["sigma"]) == set(jaxlme.inference.varpar_names(sleep_model.fit(reml=reml)))
    assert tab.attrs["method"] == ("REML" if reml else "ML")
    assert (tab["iterations"] > 0).all()
    _assert_equal_to_refit_loop(sleep_model, sleep_responses, reml, tab)


def _crossed_unbalanced(seed=3):
    """Unbalanced crossed design: 40 items × 25 raters, ~35% of cells observed, a covariate."""
    rng = np.random.default_rng(seed)
    cells = [(i, r) for i in range(40) for r in range(25) if rng.random() < 0.35]
    g1 = np.array([c[0] for c in cells])
    g2 = np.array([c[1] for c in cells])
    x = rng.normal(size=len(cells))
    y = 2 + 0.5 * x + rng.normal(0, 0.8, 40)[g1] + rng.normal(0, 0.5, 25)[g2] + rng.normal(size=len(cells))
    return pd.DataFrame({"y": y, "x": x, "item": [f"i{v}" for v in g1], "rater": [f"r{v}" for v in g2]}), rng


@pytest.mark.parametrize("reml", [True, False])
def test_unbalanced_crossed_equals_refit_loop(reml):
    data, rng = _crossed_unbalanced()
    model = _model("y ~ x + (1 | item) + (1 | rater)", data)
    n = len(data)
    g1 = data["item"].str[1:].astype(int).to_numpy()
    g2 = data["rater"].str[1:].astype(int).to_numpy()
    m = 16
    # responses with differing variance ratios, one with no rater variance at all (boundary)
    tau2 = np.linspace(0.0, 1.0, m)
    Y = np.stack(
        [
            1
            + data["x"].to_numpy() * rng.normal()
            + rng.normal(0, 1.0, 40)[g1]
            + rng.normal(0, np.sqrt(tau2[j]), 25)[g2]
            + rng.normal(size=n)
            for j in range(m)
        ],
        axis=1,
    )
    tab = model.fit_many(Y, reml=reml)
    _assert_equal_to_refit_loop(model, Y, reml, tab)


def test_boundary_responses_equal_refit_loop(sleep_model):
    """Responses without random-slope variance: many refits end on the boundary."""
    data = load_csv("sleepstudy")
    rng = np.random.default_rng(11)
    subj = pd.factorize(data["Subject"])[0]
    Y = np.stack(
        [250 + 10 * data["Days"].to_numpy() + rng.normal(0, 25, 18)[subj] + rng.normal(0, 30, 180) for _ in range(12)],
        axis=1,
    )
    tab = sleep_model.fit_many(Y, reml=False)
    singular = 0
    for j in range(Y.shape[1]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sleep_model.refit(Y[:, j], reml=False)
        singular += res.singular
        assert tab["objective"].iloc[j] == pytest.approx(res.objective, abs=1e-6), j
        np.testing.assert_allclose(tab[["(Intercept)", "Days"]].iloc[j], res.fixef, rtol=1e-6)
        assert tab["sigma"].iloc[j] == pytest.approx(res.sigma, rel=1e-6)
    assert singular >= 3  # the case is really a boundary case


@pytest.mark.slow
def test_large_dense_block_equals_refit_loop():
    """A model with a dense rest block of 422 rows: BFGS lanes started at the moment start."""
    model = _model("y ~ x + (1 | g1) + (1 | g2)", crossed_large(1, n=3000, k1=300, k2=420))
    Y = np.asarray(model.fit().simulate(4, seed=1)).T
    _assert_equal_to_refit_loop(model, Y, True, model.fit_many(Y))


def test_weighted_model_equals_refit_loop():
    data = load_csv("sleepstudy")
    w = 1.0 + (np.arange(len(data)) % 3)
    model = _model(SLEEP, data, weights=w)
    Y = np.asarray(model.fit().simulate(6, seed=2)).T
    _assert_equal_to_refit_loop(model, Y, True, model.fit_many(Y))


def test_rows_dropped_for_missing_values():
    """Y may have the model's rows, or one row per data row (then the dropped rows go)."""
    data = load_csv("sleepstudy")
    data.loc[[3, 50, 51, 177], "Days"] = np.nan
    data.index = [f"row{i}" for i in range(len(data))]
    model = _model(SLEEP, data)
    assert model.nobs == 176
    rng = np.random.default_rng(0)
    full = data["Reaction"].to_numpy()[:, None] + rng.normal(0, 20, (len(data), 5))
    full[[3, 50], 0] = np.nan  # missing in rows the model dropped anyway: harmless
    kept = np.delete(full, [3, 50, 51, 177], axis=0)
    a = model.fit_many(full)
    b = model.fit_many(kept)
    frame = pd.DataFrame(full, index=data.index, columns=[f"g{j}" for j in range(5)])
    c = model.fit_many(frame)
    pd.testing.assert_frame_equal(a.drop(columns="iterations"), b.drop(columns="iterations"))
    assert list(c.index) == ["g0", "g1", "g2", "g3", "g4"]
    np.testing.assert_array_equal(c["objective"].to_numpy(), a["objective"].to_numpy())
    # and the answers are those of refit on the model's rows
    _assert_equal_to_refit_loop(model, kept[:, :2], True, b.iloc[:2])
    # a model-rows DataFrame carries the model's row labels
    d = model.fit_many(frame.loc[model.design.rows])
    np.testing.assert_array_equal(d["objective"].to_numpy(), a["objective"].to_numpy())
    with pytest.raises(ValueError, match="index matches neither"):
        model.fit_many(frame.iloc[::-1])


def test_one_response_and_names(sleep_model, sleep_responses):
    y = sleep_responses[:, 0]
    one = sleep_model.fit_many(y)
    series = sleep_model.fit_many(pd.Series(y, name="gene1"))
    assert len(one) == 1 and list(series.index) == ["gene1"]
    assert one["objective"].iloc[0] == pytest.approx(series["objective"].iloc[0], abs=1e-9)
    empty = sleep_model.fit_many(np.zeros((180, 0)))
    assert len(empty) == 0 and "objective" in empty.columns


def test_simulate_output_is_one_response_per_row(sleep_model):
    """simulate(m) lays responses out as rows (m × nobs); fit_many takes it as it is."""
    sims = sleep_model.fit().simulate(5, seed=3)
    tab = sleep_model.fit_many(sims)
    assert len(tab) == 5
    for j in (0, 4):
        assert tab["objective"].iloc[j] == pytest.approx(sleep_model.refit(sims[j]).objective, abs=1e-6)
    with pytest.raises(ValueError, match="Y has 5 rows"):
        sleep_model.fit_many(np.asarray(sims))  # a plain (m × nobs) array is not transposed


def test_bad_input(sleep_model, sleep_responses):
    with pytest.raises(ValueError, match="Y has 179 rows, the model has 180 rows"):
        sleep_model.fit_many(sleep_responses[:-1])
    bad = pd.DataFrame(sleep_responses[:, :3], columns=["a", "b", "c"])
    bad.iloc[5, 1] = np.nan
    with pytest.raises(ValueError, match="Y column 'b' has non-finite values"):
        sleep_model.fit_many(bad)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        sleep_model.fit_many(np.zeros((180, 2, 2)))
    with pytest.raises(ValueError, match="theta0 must have 3 elements"):
        sleep_model.fit_many(sleep_responses[:, :2], theta0=[1.0])
