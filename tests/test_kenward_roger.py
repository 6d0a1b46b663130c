"""Kenward–Roger adjusted covariance and df against pbkrtest 0.5.2 (vcovAdj, Lb_ddf).

Reference numbers: tests/data/anova_reference.json, made by make_anova_reference.R.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import DATA
from scipy import stats

import jaxlme
from jaxlme import inference

REF = json.loads((DATA / "anova_reference.json").read_text())
MODELS = [k for k in REF if k != "cake_contrast"]
_FITS: dict = {}


def fit(name: str, reml: bool = True):
    """The reference model ``name`` fitted to its CSV (cached per module run)."""
    key = (name, reml)
    if key not in _FITS:
        r = REF[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[key] = jaxlme.LMM(r["formula"], pd.read_csv(DATA / r["data"])).fit(reml=reml)
    return _FITS[key]


@pytest.mark.parametrize("name", MODELS)
def test_kenward_roger_matches_pbkrtest(name):
    r = REF[name]
    res = fit(name)
    np.testing.assert_allclose(res.theta, r["theta"], rtol=1e-4, atol=1e-4)  # the same optimum as lme4
    kr = inference.kenward_roger(res)
    assert list(kr.columns) == ["estimate", "se", "df"]
    assert list(kr.index) == r["coef_names"]
    np.testing.assert_allclose(kr["estimate"], r["estimate"], rtol=1e-4)
    np.testing.assert_allclose(kr["se"], r["kr_se"], rtol=1e-4)
    np.testing.assert_allclose(kr["df"], r["kr_df"], rtol=1e-4)
    Va = np.array(r["kr_vcov"])
    scale = np.sqrt(np.outer(np.diag(Va), np.diag(Va)))
    from jaxlme.kenward_roger import kr_parts

    np.testing.assert_allclose(kr_parts(res).vcov_adj() / scale, Va / scale, atol=1e-4)
    assert kr_parts(res) is kr_parts(res)  # computed once per fit (emmeans asks for many L)


@pytest.mark.parametrize("name", ["sleepstudy", "cake", "singular"])
def test_coefs_kenward_roger(name):
    r = REF[name]
    res = fit(name)
    tab = res.coefs(ddf="kenward-roger")
    np.testing.assert_allclose(tab["se"], r["kr_se"], rtol=1e-4)
    np.testing.assert_allclose(tab["df"], r["kr_df"], rtol=1e-4)
    t = np.array(r["estimate"]) / np.array(r["kr_se"])
    np.testing.assert_allclose(tab["t"], t, rtol=1e-4)
    p = 2 * stats.t.sf(np.abs(t), np.array(r["kr_df"]))
    np.testing.assert_allclose(tab["p"], p, rtol=1e-4, atol=1e-300)
    q = stats.t.ppf(0.975, np.array(r["kr_df"]))
    np.testing.assert_allclose(tab["upper"], np.array(r["estimate"]) + q * np.array(r["kr_se"]), rtol=1e-4)
    assert tab.attrs["ddf"] == "kenward-roger"


def test_kenward_roger_contrasts_follow_satterthwaite_conventions():
    res = fit("cake")
    names = REF["cake"]["coef_names"]
    L = pd.DataFrame([[0, 1, -1], [0, 0, 1]], columns=["(Intercept)", "recipeB", "recipeC"], index=["B-C", "C"])
    kr = inference.kenward_roger(res, L)
    sat = inference.satterthwaite(res, L)
    assert list(kr.index) == list(sat.index) == ["B-C", "C"]
    np.testing.assert_allclose(kr["estimate"], sat["estimate"], rtol=1e-12)
    # the single coefficient recipeC as a contrast equals its row of the full table
    full = inference.kenward_roger(res)
    np.testing.assert_allclose(kr.loc["C", ["se", "df"]].to_numpy(float), full.loc["recipeC", ["se", "df"]], rtol=1e-10)
    arr = inference.kenward_roger(res, L.reindex(columns=names, fill_value=0).to_numpy())
    assert list(arr.index) == ["L1", "L2"]
    np.testing.assert_allclose(arr[["se", "df"]].to_numpy(), kr[["se", "df"]].to_numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="columns"):
        inference.kenward_roger(res, np.ones((1, 3)))
    with pytest.raises(ValueError, match="not fixed effects"):
        inference.kenward_roger(res, pd.DataFrame({"recipeZ": [1.0]}))


def test_kenward_roger_refuses_ml_weights_and_size():
    with pytest.raises(ValueError, match="only available for REML"):
        inference.kenward_roger(fit("sleepstudy", reml=False))
    with pytest.raises(ValueError, match="only available for REML"):
        fit("sleepstudy", reml=False).coefs(ddf="kenward-roger")
    with pytest.raises(ValueError, match="max_re"):
        inference.kenward_roger(fit("sleepstudy"), max_re=10)
    df = pd.read_csv(DATA / "sleepstudy.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wfit = jaxlme.LMM("Reaction ~ Days + (1 | Subject)", df, weights=np.linspace(1, 2, len(df))).fit()
    with pytest.raises(ValueError, match="prior weights"):
        inference.kenward_roger(wfit)
    with pytest.raises(ValueError, match="unknown ddf"):
        fit("sleepstudy").coefs(ddf="kr")


def _dense_vcov_adj(res) -> np.ndarray:
    """pbkrtest's vcovAdj, literally: dense Σ(γ) in its parametrization (each term's lower
    triangle, then σ²), G_r = ∂Σ/∂γ_r by JAX autodiff, and its formulas term by term."""
    import jax
    import jax.numpy as jnp

    d = res.model.design
    X = d.X
    Zs, gamma, shapes = [], [], []
    for t, lam in zip(d.terms, res.model.layout.lambdas(res.theta)):
        Zt = np.zeros((d.n, t.nlevels * t.ncols))
        for j in range(t.ncols):
            Zt[np.arange(d.n), t.index * t.ncols + j] = t.Z[:, j]
        cov = res.sigma**2 * lam @ lam.T
        Zs.append(Zt)
        shapes.append((t.nlevels, t.ncols))
        gamma += [cov[i, j] for j in range(t.ncols) for i in range(j, t.ncols)]
    gamma.append(res.sigma**2)

    def sigma_of(g):
        out, k = g[-1] * jnp.eye(d.n), 0
        for Zt, (ell, r) in zip(Zs, shapes):
            C = jnp.zeros((r, r))
            for j in range(r):
                for i in range(j, r):
                    C = C.at[i, j].set(g[k]).at[j, i].set(g[k])
                    k += 1
            out = out + Zt @ jnp.kron(jnp.eye(ell), C) @ Zt.T
        return out

    with jax.enable_x64(True):
        g0 = jnp.asarray(gamma)
        Sigma = np.asarray(sigma_of(g0))
        G = np.moveaxis(np.asarray(jax.jacfwd(sigma_of)(g0)), -1, 0)
    Si = np.linalg.inv(Sigma)
    phi = np.linalg.inv(X.T @ Si @ X)
    H = [Gr @ Si for Gr in G]
    O = [h @ X for h in H]
    P = [-(o.T @ Si @ X) for o in O]
    n = len(G)
    Q = {(a, b): O[a].T @ Si @ O[b] for a in range(n) for b in range(n)}
    IE = np.array(
        [
            [np.sum(H[a].T * H[b]) - 2 * np.sum(phi * Q[a, b]) + np.sum((phi @ P[a]) * (P[b] @ phi)) for b in range(n)]
            for a in range(n)
        ]
    )
    W = 2 * np.linalg.pinv(IE)
    U = sum(W[a, b] * (Q[a, b] - P[a] @ phi @ P[b]) for a in range(n) for b in range(n))
    return phi + 2 * phi @ U @ phi


@pytest.mark.parametrize(
    "formula",
    [
        pytest.param("y ~ x * B + (1 + x + B | subj) + (1 | item)", marks=pytest.mark.slow),  # ~17 s, mostly the fit
        "y ~ A + x + (1 | subj) + (0 + x | subj) + (1 | item)",
    ],
)
def test_kenward_roger_woodbury_equals_dense_autodiff(formula):
    """The Woodbury/Gram-matrix algebra against the dense n × n computation with autodiff
    derivatives of Σ, on structures the R references do not cover (a 3 × 3 covariance
    term; a factor with two terms)."""
    from jaxlme.kenward_roger import kr_parts

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = jaxlme.LMM(formula, pd.read_csv(DATA / "anova_crossed.csv")).fit()
    dense = _dense_vcov_adj(res)
    fast = kr_parts(res).vcov_adj()
    scale = np.sqrt(np.outer(np.diag(dense), np.diag(dense)))
    np.testing.assert_allclose(fast / scale, dense / scale, atol=1e-8)
