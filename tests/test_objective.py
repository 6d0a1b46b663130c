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
import pytest

import jaxlme
from jaxlme import objective as obj

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
