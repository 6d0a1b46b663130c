"""Predictions with re_form, standard errors and intervals against lme4/lmerTest and a dense
Henderson computation.

Reference numbers: tests/data/predict_r2_reference.json, made by make_predict_r2_reference.R
(lme4 ``predict(fit, newdata, re.form = ...)``, ``sqrt(diag(X %*% vcov(fit) %*% t(X)))`` and
lmerTest ``contest(fit, X, joint = FALSE)`` Satterthwaite df).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from reference_fits import FITS, fit, newdata
from scipy import stats

from jaxlme.design import DataError
from jaxlme.formula import FormulaError

CASES = list(FITS)


@pytest.mark.parametrize("case", CASES)
def test_predictions_match_lme4(case):
    res, nd, ref = fit(case), newdata(case), FITS[case]["predict"]
    np.testing.assert_allclose(res.predict(nd), ref["conditional"], rtol=1e-4)
    np.testing.assert_allclose(res.predict(nd, re_form="~0"), ref["population"], rtol=1e-4)
    for spelling in ("NA", "0", " ~ 0 ", False):
        np.testing.assert_array_equal(res.predict(nd, re_form=spelling), res.predict(nd, re_form="~0"))
    np.testing.assert_array_equal(res.predict(nd, random_effects=False), res.predict(nd, re_form="~0"))
    for sub in ref["subsets"]:
        np.testing.assert_allclose(res.predict(nd, re_form=sub["re_form"]), sub["fit"], rtol=1e-4)


@pytest.mark.parametrize("case", [c for c in CASES if FITS[c]["predict"]["new_level"]])
def test_new_level_predictions_match_lme4(case):
    res, ref = fit(case), FITS[case]["predict"]["new_level"]
    nd = pd.DataFrame({k: [v] for k, v in ref["newdata"].items()})
    np.testing.assert_allclose(res.predict(nd, allow_new_levels=True), np.atleast_1d(ref["conditional"]), rtol=1e-4)


@pytest.mark.parametrize("case", CASES)
def test_population_se_and_satterthwaite_df_match_r(case):
    res, nd, ref = fit(case), newdata(case), FITS[case]["predict"]
    out = res.predict(nd, re_form="NA", interval="confidence", level=0.9)
    assert list(out.columns) == ["fit", "se", "df", "lower", "upper"]
    assert list(out.index) == list(nd.index)
    np.testing.assert_allclose(out["se"], ref["se_population"], rtol=1e-4)
    df = np.array(ref["df"], dtype=float)  # NA (None) where x = 0: no_intercept at Days = 0
    np.testing.assert_allclose(out["df"], df, rtol=5e-4)
    half = stats.t.ppf(0.95, df) * np.asarray(ref["se_population"])
    np.testing.assert_allclose(out["upper"] - out["fit"], half, rtol=1e-3)
    np.testing.assert_allclose(out["fit"] - out["lower"], half, rtol=1e-3)
    se_only = res.predict(nd, re_form="~0", se_fit=True)
    assert list(se_only.columns) == ["fit", "se"]
    np.testing.assert_allclose(se_only["se"], out["se"], rtol=1e-12)


def _henderson_variance(res, rows_X, rows_Z):
    """Var(x'β̂ + z'b̂ − x'β − z'b) from the textbook mixed-model equations
    [[X'WX, X'WZ], [Z'WX, Z'WZ + σ² G⁻¹]]⁻¹ σ², G = blockdiag(Σ_t) (needs G invertible)."""
    d = res.model.design
    blocks_Z, blocks_G = [], []
    for t, cov in zip(d.terms, res.covariance_matrices().values()):
        Zt = np.zeros((d.n, t.nlevels * t.ncols))
        for c in range(t.ncols):
            Zt[np.arange(d.n), t.index * t.ncols + c] = t.Z[:, c]
        blocks_Z.append(Zt)
        blocks_G.append(np.kron(np.eye(t.nlevels), cov.to_numpy()))
    Z = np.hstack(blocks_Z)
    q = Z.shape[1]
    G = np.zeros((q, q))
    o = 0
    for g in blocks_G:
        G[o : o + len(g), o : o + len(g)] = g
        o += len(g)
    X, s2 = d.X, res.sigma**2
    w = np.ones(d.n) if d.weights is None else d.weights
    XW, ZW = X.T * w, Z.T * w
    C = np.block([[XW @ X, XW @ Z], [ZW @ X, ZW @ Z + s2 * np.linalg.inv(G)]])
    A = np.hstack([rows_X, rows_Z])
    return s2 * np.einsum("ij,jk,ik->i", A, np.linalg.inv(C), A)


def _z_rows(res, nd):
    """Each newdata row's Z row (all terms), from its levels; the terms' own columns."""
    d = res.model.design
    out = []
    for t in d.terms:
        Zt = np.zeros((len(nd), t.nlevels * t.ncols))
        lev = [str(v) for v in t.levels]
        vals = {"(Intercept)": np.ones(len(nd))}
        for c in t.columns:
            if c != "(Intercept)":
                vals[c] = nd[c].to_numpy(dtype=float)
        for i, key in enumerate(nd[t.name].astype(str)):
            k = lev.index(key)
            for c, name in enumerate(t.columns):
                Zt[i, k * t.ncols + c] = vals[name][i]
        out.append(Zt)
    return np.hstack(out)


@pytest.mark.parametrize("case", ["sleepstudy", "penicillin", "weighted"])
def test_conditional_se_matches_dense_henderson_equations(case):
    res, nd = fit(case), newdata(case)
    out = res.predict(nd, se_fit=True)
    Xn = np.column_stack([np.ones(len(nd))] + ([nd["Days"].to_numpy(float)] if "Days" in nd else []))
    expected = np.sqrt(_henderson_variance(res, Xn, _z_rows(res, nd)))
    np.testing.assert_allclose(out["se"], expected, rtol=1e-7)
    # the fitting rows without newdata: same route, indexed like the data
    all_rows = res.predict(se_fit=True)
    np.testing.assert_allclose(all_rows["fit"], res.fitted, rtol=1e-12)
    assert (all_rows["se"] > 0).all()


def test_conditional_confidence_uses_normal_quantile_and_prediction_adds_variances():
    res, nd = fit("bounce"), newdata("bounce")
    conf = res.predict(nd, interval="confidence")
    z = stats.norm.ppf(0.975)
    np.testing.assert_allclose(conf["upper"] - conf["fit"], z * conf["se"], rtol=1e-12)
    assert np.isinf(conf["df"]).all()
    covs = res.covariance_matrices()
    s2 = res.sigma**2
    # conditioned on (1|county:location) only: the county term's z'Σz joins σ² in the interval
    sub = "~(1|county:location)"
    se = res.predict(nd, re_form=sub, se_fit=True)["se"].to_numpy()
    pred = res.predict(nd, re_form=sub, interval="prediction")
    zc = np.column_stack([np.ones(len(nd)), nd["age_scaled"].to_numpy(float)])
    county = np.einsum("ij,jk,ik->i", zc, covs["county"].to_numpy(), zc)
    np.testing.assert_allclose(pred["upper"] - pred["fit"], z * np.sqrt(se**2 + s2 + county), rtol=1e-10)
    # population level: every term's variance
    pop = res.predict(nd, re_form="~0", interval="prediction")
    se0 = res.predict(nd, re_form="~0", se_fit=True)["se"].to_numpy()
    loc = covs["county:location"].to_numpy()[0, 0]
    np.testing.assert_allclose(pop["upper"] - pop["fit"], z * np.sqrt(se0**2 + s2 + county + loc), rtol=1e-10)


def test_new_level_se_adds_its_variance():
    res = fit("sleepstudy")
    Days = 4.5
    new = res.predict(pd.DataFrame({"Days": [Days], "Subject": ["999"]}), allow_new_levels=True, se_fit=True)
    pop = res.predict(pd.DataFrame({"Days": [Days]}), re_form="~0", se_fit=True)
    S = res.covariance_matrices()["Subject"].to_numpy()
    z = np.array([1.0, Days])
    assert new["fit"].iloc[0] == pytest.approx(pop["fit"].iloc[0], rel=1e-12)
    assert new["se"].iloc[0] ** 2 == pytest.approx(pop["se"].iloc[0] ** 2 + z @ S @ z, rel=1e-8)


def test_re_form_double_bar_and_errors():
    res = fit("sleepstudy_uncorr")
    nd = newdata("sleepstudy_uncorr")
    np.testing.assert_allclose(res.predict(nd, re_form="~(Days||Subject)"), res.predict(nd), rtol=1e-12)
    one = res.predict(nd, re_form="~(1|Subject)")
    b = res.ranef["Subject"]["(Intercept)"].reindex(nd["Subject"].astype(str)).to_numpy()
    np.testing.assert_allclose(one, res.predict(nd, re_form="~0") + b, rtol=1e-12)
    with pytest.raises(FormulaError, match=r"re_form term \(1 \| Days\) is not a random-effects term"):
        res.predict(nd, re_form="~(1|Days)")
    slope = fit("sleepstudy")
    with pytest.raises(FormulaError, match=r"re_form term \(1 \| Subject\) is not a random-effects term"):
        slope.predict(nd, re_form="~(1|Subject)")
    with pytest.raises(ValueError, match="random_effects=True contradicts re_form"):
        slope.predict(nd, re_form="~0", random_effects=True)
    np.testing.assert_array_equal(slope.predict(nd, re_form=None, random_effects=True), slope.predict(nd))
    np.testing.assert_array_equal(slope.predict(nd, True), slope.predict(nd))  # the former positional flag
    np.testing.assert_array_equal(slope.predict(nd, False), slope.predict(nd, re_form="~0"))
    with pytest.raises(ValueError, match="interval must be"):
        slope.predict(nd, interval="tolerance")
    with pytest.raises(TypeError, match="re_form must be"):
        slope.predict(nd, re_form=3)
    # a term's variance needs its columns (Days), not its grouping factor
    pd.testing.assert_frame_equal(
        slope.predict(nd[["Days"]], re_form="~0", interval="prediction"),
        slope.predict(nd, re_form="~0", interval="prediction"),
    )
    with pytest.raises(DataError, match="missing column.*'Days'"):
        slope.predict(nd[["Subject"]], re_form="~0", interval="prediction")


def test_missing_values_give_nan_rows():
    res = fit("sleepstudy")
    nd = pd.DataFrame({"Days": [1.0, np.nan], "Subject": ["308", "309"]})
    out = res.predict(nd, interval="confidence")
    assert np.isfinite(out.iloc[0][["fit", "se", "lower", "upper"]]).all()
    assert out.iloc[1].isna().all()
    pop = res.predict(nd, re_form="~0", interval="confidence")
    assert np.isfinite(pop.iloc[0]).all() and pop.iloc[1].isna().all()


@pytest.mark.slow
def test_bootstrap_interval_agrees_with_wald_and_is_reproducible():
    res = fit("sleepstudy")
    nd = pd.DataFrame({"Days": [0.0, 4.5, 9.0]})
    boot = res.bootstrap(1000, seed=11)
    a = res.predict_interval(nd, boot=boot)
    wald = res.predict(nd, re_form="~0", se_fit=True)
    z = stats.norm.ppf(0.975)
    # Monte-Carlo SD of a 2.5% quantile of 1000 normal draws is about 0.085 se: allow 0.3 se
    band = 0.3 * wald["se"]
    assert (np.abs(a["lower"] - (wald["fit"] - z * wald["se"])) < band).all()
    assert (np.abs(a["upper"] - (wald["fit"] + z * wald["se"])) < band).all()
    np.testing.assert_allclose(a["fit"], wald["fit"], rtol=1e-12)
    again = res.predict_interval(nd, boot=res.bootstrap(1000, seed=11))
    pd.testing.assert_frame_equal(a, again)
    other = res.predict_interval(nd, boot=res.bootstrap(1000, seed=12))
    assert not np.allclose(a["lower"], other["lower"])
    with pytest.raises(ValueError, match="population-level only"):
        res.predict_interval(nd, boot=boot, which="conditional")


def test_bootstrap_interval_arguments_are_checked_before_refitting():
    res = fit("sleepstudy")
    nd = pd.DataFrame({"Days": [1.0]})
    with pytest.raises(ValueError, match="population-level only"):
        res.predict_interval(nd, which="conditional")
    with pytest.raises(ValueError, match="level must be between 0 and 1"):
        res.predict_interval(nd, level=95)


def test_conditional_se_beyond_the_dense_limit_is_refused(monkeypatch):
    import jaxlme.predict as jp

    res = fit("sleepstudy")
    monkeypatch.setattr(jp, "MAX_DENSE_Q", 10)
    with pytest.raises(ValueError, match="q = 36 random effects, more than MAX_DENSE_Q = 10"):
        res.predict(newdata("sleepstudy"), se_fit=True)
    assert res.predict(newdata("sleepstudy"), re_form="~0", se_fit=True)["se"].notna().all()
