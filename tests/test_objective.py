"""jaxlme.objective: the per-θ kernel against the dense formulas it computes blockwise.

lme4's profiled criteria (Bates et al. 2015, eqs. 34 and 41), written with dense matrices:
with A = Λ'Z'ZΛ + I, r² = min over (β, u) of ‖y − Xβ − ZΛu‖² + ‖u‖² and
R_X'R_X = X'X − X'ZΛ A⁻¹ Λ'Z'X,

    ML:   log|A| + n (1 + log(2π r²/n))
    REML: log|A| + log|R_X'R_X| + (n − p)(1 + log(2π r²/(n − p)))
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import jaxlme
from jaxlme import objective as obj
from jaxlme.structure import build_structure

MODELS = {
    "scalar": ("Yield ~ 1 + (1 | Batch)", "Dyestuff"),
    "vector": ("Reaction ~ Days + (Days | Subject)", "sleepstudy"),
    "crossed": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin"),
    "nested": ("strength ~ 1 + (1 | batch/cask)", "Pastes"),
    "uncorrelated": ("Reaction ~ Days + (Days || Subject)", "sleepstudy"),
}


def _dense(model, theta, reml: bool) -> float:
    d, lay = model.design, model.layout
    blocks = []
    for term, lam in zip(d.terms, lay.lambdas(theta)):
        n, r = term.Z.shape
        Zt = np.zeros((n, term.nlevels * r))
        for j in range(r):
            Zt[np.arange(n), term.index * r + j] = term.Z[:, j]
        blocks.append(Zt @ np.kron(np.eye(term.nlevels), lam))
    ZL = np.hstack(blocks)
    X, y = d.X, d.y
    n, p = X.shape
    A = ZL.T @ ZL + np.eye(ZL.shape[1])
    # the penalized least-squares problem as one augmented least-squares solve
    M = np.block([[ZL, X], [np.eye(ZL.shape[1]), np.zeros((ZL.shape[1], p))]])
    rhs = np.concatenate([y, np.zeros(ZL.shape[1])])
    coef = np.linalg.lstsq(M, rhs, rcond=None)[0]
    r2 = float(np.sum((rhs - M @ coef) ** 2))
    logdet_A = np.linalg.slogdet(A)[1]
    if not reml:
        return logdet_A + n * (1 + np.log(2 * np.pi * r2 / n))
    RX = X.T @ X - X.T @ ZL @ np.linalg.solve(A, ZL.T @ X)
    return logdet_A + np.linalg.slogdet(RX)[1] + (n - p) * (1 + np.log(2 * np.pi * r2 / (n - p)))


def _thetas(layout, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(3):
        theta = np.where(
            layout.theta_lower == 0, rng.uniform(0.05, 2.0, layout.ntheta), rng.normal(0, 0.5, layout.ntheta)
        )
        yield theta


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("name", list(MODELS))
def test_objective_equals_the_dense_formula(name, reml):
    formula, data = MODELS[name]
    model = jaxlme.LMM(formula, jaxlme.datasets.load(data))
    with jax.enable_x64(True):
        for theta in _thetas(model.layout, 0):
            got = float(obj.objective(jnp.asarray(theta), model.structure, reml))
            assert got == pytest.approx(_dense(model, theta, reml), rel=1e-10)


@pytest.mark.parametrize("name", list(MODELS))
def test_factor_readers_assemble_the_same_criterion(name):
    """The criterion's pieces read off one Factor give the same value as ``objective``."""
    formula, data = MODELS[name]
    model = jaxlme.LMM(formula, jaxlme.datasets.load(data))
    lay = model.layout
    theta = next(_thetas(lay, 1))
    n, p = lay.n, lay.p
    with jax.enable_x64(True):
        ct = obj.criterion_terms(obj.factorize(jnp.asarray(theta), model.structure), lay)
        ml = float(ct.ldL2 + n * (1 + jnp.log(2 * jnp.pi * ct.pwrss / n)))
        reml = float(ct.ldL2 + ct.ldRX2 + (n - p) * (1 + jnp.log(2 * jnp.pi * ct.pwrss / (n - p))))
        assert ml == pytest.approx(float(obj.objective(jnp.asarray(theta), model.structure, False)), rel=1e-12)
        assert reml == pytest.approx(float(obj.objective(jnp.asarray(theta), model.structure, True)), rel=1e-12)


@pytest.mark.parametrize("name", list(MODELS))
def test_device_and_host_lambda_maps_agree(name):
    formula, data = MODELS[name]
    lay = jaxlme.LMM(formula, jaxlme.datasets.load(data)).layout
    theta = next(_thetas(lay, 2))
    with jax.enable_x64(True):
        device = obj.lambda_blocks(jnp.asarray(theta), lay)
    for a, b in zip(device, lay.lambdas(theta)):
        np.testing.assert_array_equal(np.asarray(a), b)
        assert np.all(np.triu(b, 1) == 0)  # lower triangular, as lme4's Λ


def test_fixef_and_sigma_are_the_penalized_least_squares_solution():
    model = jaxlme.LMM("Reaction ~ Days + (Days | Subject)", jaxlme.datasets.load("sleepstudy"))
    res = model.fit()
    n, p = model.layout.n, model.layout.p
    with jax.enable_x64(True):
        beta, sigma = obj.fixef_sigma(jnp.asarray(res.theta), model.structure, True)
    # the structure holds centred columns: β's intercept differs, the slope and σ do not
    assert float(beta[1]) == pytest.approx(res.fixef["Days"], rel=1e-10)
    assert float(sigma) == pytest.approx(res.sigma, rel=1e-10)
    with jax.enable_x64(True):  # σ̂² = r²/(n − p) under REML
        ct = obj.criterion_terms(obj.factorize(jnp.asarray(res.theta), model.structure), model.layout)
    assert float(sigma) ** 2 == pytest.approx(float(ct.pwrss) / (n - p), rel=1e-10)


# Rest blocks with a block-diagonal lead: term 1 nested in term 2 (or both on one grouping
# factor, as (x || g) splits), large enough (>= structure.LARGE_REST rows) to be factored
# block by block.  Simulated: no bundled data set is that large.
LEAD = {
    "nested": ("y ~ x + (1 | a) + (1 | a:b)", (420, 1)),
    "nested_vector": ("y ~ x + (1 + x | a) + (1 | a:b)", (210, 2)),
    "zerocorr": ("y ~ x + (1 + x || g1) + (1 | g2)", (420, 1)),
    "zerocorr_vector": ("y ~ x + (1 + x || g1) + (1 + x | g2)", (420, 1)),
}


def _lead_data(name: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    if name.startswith("nested"):
        na = LEAD[name][1][0]
        a = np.repeat(np.arange(na), 12)
        b = np.tile(np.repeat(np.arange(4), 3), na)
        x = rng.normal(size=len(a))
        u = rng.normal(size=(na, 2)) * [1.5, 0.5]
        y = 1 + x + u[a, 0] + u[a, 1] * x + 0.7 * rng.normal(size=na * 4)[a * 4 + b] + rng.normal(size=len(a))
        return pd.DataFrame({"a": a, "b": b, "x": x, "y": y})
    n = 4000
    g1, g2, x = rng.integers(0, 420, n), rng.integers(0, 12, n), rng.normal(size=n)
    u1, u2 = rng.normal(size=(420, 2)) * [1.0, 0.4], rng.normal(size=(12, 2)) * [0.8, 0.3]
    y = 1 + x + u1[g1, 0] + u1[g1, 1] * x + u2[g2, 0] + u2[g2, 1] * x + rng.normal(size=n)
    return pd.DataFrame({"g1": g1, "g2": g2, "x": x, "y": y})


@pytest.mark.parametrize("name", list(LEAD))
def test_lead_blocks_criterion_equals_the_dense_formula(name):
    """Both Schur updates (pairs into the lead's parts; one dense product) give the dense
    formula's criterion, with the lead detected."""
    formula, lead = LEAD[name]
    model = jaxlme.LMM(formula, _lead_data(name))
    with jax.enable_x64(True):
        dense = build_structure(model.design, "dense")[0]
    assert model.layout.lead_blocks == lead and not model.layout.dense_schur
    assert dense.layout.lead_blocks == lead and dense.layout.dense_schur
    with jax.enable_x64(True):
        for theta in _thetas(model.layout, 3):
            for reml in (True, False):
                want = _dense(model, theta, reml)
                for s in (model.structure, dense):
                    assert float(obj.objective(jnp.asarray(theta), s, reml)) == pytest.approx(want, rel=1e-10)
                value, _ = obj.value_and_gradient(jnp.asarray(theta), model.structure, reml)
                assert float(value) == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("name", list(LEAD))
def test_lead_blocks_gradients_agree_with_the_dense_formula(name):
    """The analytic gradient on the lead's parts, autodiff through the block-by-block
    factorization, and central differences of the dense formula agree."""
    formula, _ = LEAD[name]
    model = jaxlme.LMM(formula, _lead_data(name, 1))
    theta = next(_thetas(model.layout, 4))
    h = 1e-5
    steps = np.eye(len(theta)) * h
    fd = np.array([(_dense(model, theta + e, True) - _dense(model, theta - e, True)) / (2 * h) for e in steps])
    with jax.enable_x64(True):
        t = jnp.asarray(theta)
        _, analytic = obj.value_and_gradient(t, model.structure, True)
        autodiff = jax.grad(obj.objective)(t, model.structure, True)
        dense = jax.grad(obj.objective)(t, build_structure(model.design, "dense")[0], True)
        varpar = jnp.concatenate([t, jnp.array([0.8])])
        value, grad, _ = obj.unprofiled_value_and_grad(varpar, model.structure, True)
        want_value, want_grad = jax.value_and_grad(obj.unprofiled_deviance)(varpar, model.structure, True)
    np.testing.assert_allclose(np.asarray(analytic), fd, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.asarray(autodiff), np.asarray(analytic), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(np.asarray(dense), np.asarray(analytic), rtol=1e-8, atol=1e-8)
    assert float(value) == pytest.approx(float(want_value), rel=1e-12)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(want_grad), rtol=1e-8, atol=1e-8)


def test_lead_needs_nesting_and_size():
    """Crossed factors keep the dense rest block; so does a nested model below the size
    where factoring block by block pays."""
    crossed = jaxlme.LMM("y ~ x + (1 | g1) + (1 | g2)", _lead_data("zerocorr"))
    assert crossed.layout.size_rest < 400 or crossed.layout.lead_blocks is None
    data = _lead_data("zerocorr")
    data["g3"] = np.random.default_rng(5).integers(0, 430, len(data))  # many levels, crossed with g1
    assert jaxlme.LMM("y ~ x + (1 | g1) + (1 | g3)", data).layout.lead_blocks is None
    small = jaxlme.LMM("strength ~ 1 + (1 | batch/cask)", jaxlme.datasets.load("Pastes"))
    assert small.layout.lead_blocks is None


@pytest.mark.parametrize("name", ["nested", "zerocorr_vector"])
def test_lead_blocks_fit_reaches_a_minimum_of_the_dense_formula(name):
    """At the fitted θ the dense formula gives the reported criterion, and no step of 1e-3
    along any coordinate (inside the bounds) lowers it."""
    formula, _ = LEAD[name]
    model = jaxlme.LMM(formula, _lead_data(name, 2))
    res = model.fit()
    theta = np.asarray(res.theta)
    best = _dense(model, theta, True)
    assert res.opt.converged
    assert res.opt.objective == pytest.approx(best, rel=1e-10)
    for step in np.eye(len(theta)) * 1e-3:
        for moved in (theta + step, theta - step):
            if np.all(moved >= model.layout.theta_lower):
                assert _dense(model, moved, True) >= best - 1e-7


def test_lead_blocks_under_vmap_match_single_fits():
    """The vmapped lanes (fit_many, the bootstrap's machinery) reach the single fits' optima."""
    data = _lead_data("zerocorr", 3)
    model = jaxlme.LMM(LEAD["zerocorr"][0], data)
    rng = np.random.default_rng(6)
    Y = np.column_stack([data["y"].to_numpy() + rng.normal(size=len(data)) * s for s in (0.5, 1.0, 2.0)])
    many = model.fit_many(Y)
    for j in range(Y.shape[1]):
        single = model.refit(Y[:, j])
        assert many["objective"].iloc[j] == pytest.approx(single.opt.objective, abs=1e-6)
