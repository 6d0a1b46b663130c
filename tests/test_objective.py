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
import scipy.linalg
import scipy.sparse

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


def _z_lambda(model, theta) -> scipy.sparse.csr_matrix:
    """ZΛ as a sparse (n, q) matrix: each term's columns level-major, terms in order.

    Row i of a term's Z is z_i ⊗ e_level, and (z_i ⊗ e_level)(I ⊗ Λ) = (z_i Λ) ⊗ e_level:
    the row's z_i Λ lands in its level's columns."""
    blocks = []
    for term, lam in zip(model.design.terms, model.layout.lambdas(theta)):
        n, r = term.Z.shape
        zl = term.Z @ lam
        cols = term.index[:, None] * r + np.arange(r)
        rows = np.repeat(np.arange(n), r)
        blocks.append(scipy.sparse.csr_matrix((zl.ravel(), (rows, cols.ravel())), shape=(n, term.nlevels * r)))
    return scipy.sparse.hstack(blocks, format="csr")


def _pls(model, theta) -> tuple[np.ndarray, float, float, float]:
    """The dense penalized least squares at θ: min_u,β ‖y − ZΛu − Xβ‖² + ‖u‖², solved from
    its normal equations [[A, Λ'Z'X], [X'ZΛ, X'X]] (A = Λ'Z'ZΛ + I) by one dense Cholesky
    factor.  Returns (u, r², log|A|, log|R_X'R_X|)."""
    d = model.design
    ZL, X, y = _z_lambda(model, theta), d.X, d.y
    q = ZL.shape[1]
    A = (ZL.T @ ZL).toarray() + np.eye(q)
    ZtX = np.asarray(ZL.T @ X)
    M = np.block([[A, ZtX], [ZtX.T, X.T @ X]])
    rhs = np.concatenate([ZL.T @ y, X.T @ y])
    cM = scipy.linalg.cho_factor(M, lower=True)
    coef = scipy.linalg.cho_solve(cM, rhs)
    u, beta = coef[:q], coef[q:]
    r2 = float(np.sum((y - ZL @ u - X @ beta) ** 2) + u @ u)
    # M's factor is [[L_A, 0], [., R_X']]: its leading q diagonal entries give log|A|, the rest log|R_X'R_X|
    diag = np.log(np.diag(cM[0]))
    return u, r2, 2.0 * np.sum(diag[:q]), 2.0 * np.sum(diag[q:])


def _dense(model, theta, reml: bool) -> float:
    """The criterion from the dense formulas (see the module docstring)."""
    n, p = model.design.X.shape
    _, r2, logdet_A, logdet_RX = _pls(model, theta)
    if not reml:
        return logdet_A + n * (1 + np.log(2 * np.pi * r2 / n))
    return logdet_A + logdet_RX + (n - p) * (1 + np.log(2 * np.pi * r2 / (n - p)))


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


# The kernel compiled whole, for the larger models below: evaluated eagerly, JAX dispatches
# and compiles it primitive by primitive, about three times slower there.
objective_jit = jax.jit(obj.objective, static_argnums=2)
value_and_gradient_jit = jax.jit(obj.value_and_gradient, static_argnums=2)
gradient_jit = jax.jit(jax.grad(obj.objective), static_argnums=2)
solve_effects_jit = jax.jit(obj.solve_effects, static_argnums=2)
unprofiled_jit = jax.jit(obj.unprofiled_value_and_grad, static_argnums=2)
unprofiled_autodiff_jit = jax.jit(jax.value_and_grad(obj.unprofiled_deviance), static_argnums=2)


# Rest blocks with a block-diagonal lead: term 1 nested in term 2, large enough
# (>= structure.LARGE_REST rows) to be factored block by block.  Simulated: no bundled data
# set is that large.
LEAD = {
    "nested": ("y ~ x + (1 | a) + (1 | a:b)", (420, 1)),
    "nested_vector": ("y ~ x + (1 + x | a) + (1 | a:b)", (210, 2)),
    "nested_zerocorr": ("y ~ x + (1 + x || a) + (1 | a:b)", (210, 1)),  # (0 + x | a) trails the lead
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
                    assert float(objective_jit(jnp.asarray(theta), s, reml)) == pytest.approx(want, rel=1e-10)
                value, _ = value_and_gradient_jit(jnp.asarray(theta), model.structure, reml)
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
        _, analytic = value_and_gradient_jit(t, model.structure, True)
        autodiff = gradient_jit(t, model.structure, True)
        dense = gradient_jit(t, build_structure(model.design, "dense")[0], True)
        varpar = jnp.concatenate([t, jnp.array([0.8])])
        value, grad, _ = unprofiled_jit(varpar, model.structure, True)
        want_value, want_grad = unprofiled_autodiff_jit(varpar, model.structure, True)
    np.testing.assert_allclose(np.asarray(analytic), fd, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.asarray(autodiff), np.asarray(analytic), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(np.asarray(dense), np.asarray(analytic), rtol=1e-8, atol=1e-8)
    assert float(value) == pytest.approx(float(want_value), rel=1e-12)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(want_grad), rtol=1e-8, atol=1e-8)


def test_lead_needs_nesting_and_size():
    """Crossed factors keep the dense rest block; so does a nested model below the size
    where factoring block by block pays."""
    crossed = jaxlme.LMM("y ~ x + (1 | g1) + (1 | g2)", _lead_data("crossed"))
    assert crossed.layout.size_rest < 400 or crossed.layout.lead_blocks is None
    data = _lead_data("crossed")
    data["g3"] = np.random.default_rng(5).integers(0, 430, len(data))  # many levels, crossed with g1
    assert jaxlme.LMM("y ~ x + (1 | g1) + (1 | g3)", data).layout.lead_blocks is None
    small = jaxlme.LMM("strength ~ 1 + (1 | batch/cask)", jaxlme.datasets.load("Pastes"))
    assert small.layout.lead_blocks is None


def test_lead_needs_every_level_nested():
    """One row of a term-1 level under a second term-2 level breaks the nesting."""
    data = _lead_data("nested")
    data["c"] = data["a"] * 4 + data["b"]  # a:b coded as one factor
    assert jaxlme.LMM("y ~ x + (1 | a) + (1 | c)", data).layout.lead_blocks == (420, 1)
    data.loc[0, "a"] = 7  # level c = 0 now meets a = 0 and a = 7
    assert jaxlme.LMM("y ~ x + (1 | a) + (1 | c)", data).layout.lead_blocks is None


@pytest.mark.parametrize("fill", ["sparse", "full"])
def test_dense_and_entrywise_term1_products_agree(fill, monkeypatch):
    """C by dense products per level and C by a solve per entry give the dense formula's
    criterion and the same gradient, on a grid term 1's levels fill sparsely or fully."""
    rng = np.random.default_rng(3)
    if fill == "full":  # every g1 level meets every g2 level
        g1, g2 = np.repeat(np.arange(40), 12), np.tile(np.arange(12), 40)
    else:
        g1, g2 = rng.integers(0, 40, 300), rng.integers(0, 60, 300)
    x = rng.normal(size=len(g1))
    y = x + rng.normal(size=(40, 2))[g1] @ [1.0, 0.0] + rng.normal(size=60)[g2] + rng.normal(size=len(g1))
    model = jaxlme.LMM("y ~ x + (1 + x | g1) + (1 | g2)", pd.DataFrame({"g1": g1, "g2": g2, "x": x, "y": y}))
    with jax.enable_x64(True):
        s = build_structure(model.design, "dense")[0]
    lay = s.layout
    assert lay.dense_schur and (lay.nnz == lay.size_rest * lay.k1) == (fill == "full")
    theta = next(_thetas(model.layout, 5))
    got = {}
    for path, threshold in (("dense", 0.0), ("entrywise", 2.0)):
        monkeypatch.setattr(obj, "DENSE_TERM1_MIN_FILL", threshold)
        with jax.enable_x64(True):  # a new function each time: traced under this threshold
            got[path] = jax.jit(jax.value_and_grad(lambda t, s: obj.objective(t, s, True)))(jnp.asarray(theta), s)
    assert float(got["dense"][0]) == pytest.approx(_dense(model, theta, True), rel=1e-10)
    assert float(got["entrywise"][0]) == pytest.approx(float(got["dense"][0]), rel=1e-12)
    np.testing.assert_allclose(np.asarray(got["entrywise"][1]), np.asarray(got["dense"][1]), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["nested", "nested_zerocorr"])
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
    data = _lead_data("nested_zerocorr", 3)
    model = jaxlme.LMM(LEAD["nested_zerocorr"][0], data)
    rng = np.random.default_rng(6)
    Y = np.column_stack([data["y"].to_numpy() + rng.normal(size=len(data)) * s for s in (0.5, 1.0, 2.0)])
    many = model.fit_many(Y)
    for j in range(Y.shape[1]):
        single = model.refit(Y[:, j])
        assert many["objective"].iloc[j] == pytest.approx(single.opt.objective, abs=1e-6)


# Terms on term 1's grouping factor side by side in lme4's order (``(x || g)`` splits into
# such terms) form one block-diagonal term-1 block once they would put at least
# structure.HEAD_MIN_ROWS rows into the dense rest block: (head terms, columns per level,
# rows of the dense rest block).  Simulated crossed data; g1 has the most levels.
HEAD = {
    "zerocorr_crossed": ("y ~ x + (1 + x + z || g1) + (1 + x || g2)", (3, 3, 2 * 9 + 2 + 1)),
    "factor_piece": ("y ~ x + (1 + f || g1) + (1 | g2)", (2, 4, 9 + 2 + 1)),
    "vector_and_scalar": ("y ~ x + (1 + x | g1) + (0 + z | g1) + (1 | g2)", (2, 3, 9 + 2 + 1)),
    "head_only": ("y ~ x + z + (1 + x + z || g1)", (3, 3, 3 + 1)),
}


def _head_data(seed: int = 0, n: int = 1500, k1: int = 150) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g1, g2 = rng.integers(0, k1, n), rng.integers(0, 9, n)
    x, z = rng.normal(size=n), rng.normal(size=n)
    f = np.array(["a", "b", "c"])[rng.integers(0, 3, n)]
    u1, u2 = rng.normal(size=(k1, 4)) * [1.0, 0.5, 0.3, 0.4], rng.normal(size=(9, 2)) * [0.8, 0.3]
    y = 1 + x - 0.5 * z + u1[g1, 0] + u1[g1, 1] * x + u1[g1, 2] * z + u1[g1, 3] * (f == "b")
    y = y + u2[g2, 0] + u2[g2, 1] * x + rng.normal(size=n)
    return pd.DataFrame({"g1": g1, "g2": g2, "x": x, "z": z, "f": f, "y": y})


def _dense_effects(model, theta) -> list[np.ndarray]:
    """Per term (k_t, r_t) conditional modes b = Λu of the dense penalized least squares."""
    d, lams = model.design, model.layout.lambdas(theta)
    coef = _pls(model, theta)[0]
    out, start = [], 0
    for term, lam in zip(d.terms, lams):
        size = term.nlevels * term.ncols
        out.append(coef[start : start + size].reshape(term.nlevels, term.ncols) @ lam.T)
        start += size
    return out


@pytest.mark.parametrize("name", list(HEAD))
def test_head_terms_form_one_term1_block(name):
    formula, (head, r1, size) = HEAD[name]
    lay = jaxlme.LMM(formula, _head_data()).layout
    assert (lay.head, lay.r1, lay.size_rest) == (head, r1, size)
    assert lay.ntheta == sum(t.ntheta for t in lay.terms)  # every term keeps its own θ


def test_head_needs_enough_rows_to_pay():
    """Below HEAD_MIN_ROWS moved rows the terms stay apart; at it they join."""
    from jaxlme.structure import HEAD_MIN_ROWS

    few = jaxlme.LMM("y ~ x + (1 + x || g1) + (1 | g2)", _head_data(k1=HEAD_MIN_ROWS - 1)).layout
    assert few.head == 1 and few.size_rest == (HEAD_MIN_ROWS - 1) + 9 + 2 + 1
    enough = jaxlme.LMM("y ~ x + (1 + x || g1) + (1 | g2)", _head_data(k1=HEAD_MIN_ROWS)).layout
    assert enough.head == 2 and enough.size_rest == 9 + 2 + 1
    sleep = jaxlme.LMM("Reaction ~ Days + (Days || Subject)", jaxlme.datasets.load("sleepstudy")).layout
    assert sleep.head == 1  # 18 rows: not worth the merged block's compile time


@pytest.mark.parametrize("schur", ["sparse", "dense"])
@pytest.mark.parametrize("name", list(HEAD))
def test_head_block_criterion_gradient_and_modes_equal_the_dense_formulas(name, schur):
    """With a multi-term head, both Schur updates give the dense formula's criterion (REML
    and ML), the analytic gradient and autodiff agree with its central differences, and the
    conditional modes of every term equal the dense solution's."""
    formula, _ = HEAD[name]
    model = jaxlme.LMM(formula, _head_data(1))
    with jax.enable_x64(True):
        s = build_structure(model.design, schur)[0]
    assert s.layout.head == model.layout.head and s.layout.dense_schur == (schur == "dense")
    theta = next(_thetas(model.layout, 5))
    h = 1e-5
    fd = np.array(
        [(_dense(model, theta + e, True) - _dense(model, theta - e, True)) / (2 * h) for e in np.eye(len(theta)) * h]
    )
    with jax.enable_x64(True):
        t = jnp.asarray(theta)
        for reml in (True, False):
            assert float(objective_jit(t, s, reml)) == pytest.approx(_dense(model, theta, reml), rel=1e-10)
        value, analytic = value_and_gradient_jit(t, s, True)
        autodiff = gradient_jit(t, s, True)
        eff = solve_effects_jit(t, s, True)
    assert float(value) == pytest.approx(_dense(model, theta, True), rel=1e-10)
    np.testing.assert_allclose(np.asarray(analytic), fd, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.asarray(autodiff), np.asarray(analytic), rtol=1e-8, atol=1e-8)
    want = _dense_effects(model, theta)
    assert len(eff.b) == len(want)
    for got, ref in zip(eff.b, want):
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-8, atol=1e-8)


def test_head_block_fit_equals_the_same_model_without_one():
    """``(1 + x || g1) + (1 + x || g2)`` with as many levels in g1 as in g2 is fitted with a
    two-term head; listing the terms interleaved, ``(1 | g1) + (1 | g2) + (0 + x | g1) +
    (0 + x | g2)``, keeps lme4's order g1, g2, g1, g2 and so no head.  Same model: the
    same criterion, the same SDs under their names, the same conditional modes."""
    rng = np.random.default_rng(7)
    n, k = 2600, 130
    g1, g2, x = rng.integers(0, k, n), rng.integers(0, k, n), rng.normal(size=n)
    u1, u2 = rng.normal(size=(k, 2)) * [1.0, 0.5], rng.normal(size=(k, 2)) * [0.7, 0.4]
    y = 2 + x + u1[g1, 0] + u1[g1, 1] * x + u2[g2, 0] + u2[g2, 1] * x + rng.normal(size=n)
    data = pd.DataFrame({"g1": g1, "g2": g2, "x": x, "y": y})
    split = jaxlme.LMM("y ~ x + (1 + x || g1) + (1 + x || g2)", data)
    interleaved = jaxlme.LMM("y ~ x + (1 | g1) + (1 | g2) + (0 + x | g1) + (0 + x | g2)", data)
    assert split.layout.head == 2 and interleaved.layout.head == 1
    for reml in (True, False):
        a, b = split.fit(reml=reml), interleaved.fit(reml=reml)
        assert a.objective == pytest.approx(b.objective, abs=1e-6)
        va, vb = a.varcorr.set_index(["group", "var1"]), b.varcorr.set_index(["group", "var1"])
        for key in [("g1", "(Intercept)"), ("g1.1", "x"), ("g2", "(Intercept)"), ("g2.1", "x")]:
            assert va.loc[key, "sdcor"] == pytest.approx(vb.loc[key, "sdcor"], rel=1e-4)
        for g in ("g1", "g2"):
            np.testing.assert_allclose(a.ranef[g].to_numpy(), b.ranef[g].to_numpy(), rtol=1e-4, atol=1e-5)


def test_head_block_under_vmap_matches_single_fits():
    """The vmapped lanes (fit_many, the bootstrap's machinery) reach the single fits'
    optima with a multi-term head, and a bootstrap's replicates are refits of its responses."""
    data = _head_data(8)
    model = jaxlme.LMM(HEAD["zerocorr_crossed"][0], data)
    assert model.layout.head == 3
    rng = np.random.default_rng(9)
    Y = np.column_stack([data["y"].to_numpy() + rng.normal(size=len(data)) * s for s in (0.5, 1.0)])
    many = model.fit_many(Y)
    for j in range(Y.shape[1]):
        assert many["objective"].iloc[j] == pytest.approx(model.refit(Y[:, j]).opt.objective, abs=1e-6)
    res = model.fit()
    boot = res.bootstrap(3, seed=2, progress=False)
    sims = res.simulate(3, seed=2)
    for r in range(3):
        assert boot.objective[r] == pytest.approx(model.refit(sims[r], warn=False).objective, abs=1e-5)
