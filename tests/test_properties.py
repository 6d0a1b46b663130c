"""Invariances and exact transformation rules of the fitted model, plus derivative checks."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxlme

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return jaxlme.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def base(sleep):
    return jaxlme.lmm(FORMULA, sleep)


def _same_fit(a, b, rtol=1e-5):
    assert a.objective == pytest.approx(b.objective, abs=1e-6)
    np.testing.assert_allclose(a.fixef.to_numpy(), b.fixef.loc[a.fixef.index].to_numpy(), rtol=rtol)
    np.testing.assert_allclose(a.stderr.to_numpy(), b.stderr.loc[a.stderr.index].to_numpy(), rtol=rtol)
    assert a.sigma == pytest.approx(b.sigma, rel=rtol)
    np.testing.assert_allclose(a.varcorr.sdcor.to_numpy(), b.varcorr.sdcor.to_numpy(), rtol=1e-4, atol=1e-6)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1))
def test_row_permutation_invariance(sleep, base, seed):
    perm = np.random.default_rng(seed).permutation(len(sleep))
    _same_fit(jaxlme.lmm(FORMULA, sleep.iloc[perm]), base)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1))
def test_level_relabeling_invariance(sleep, base, seed):
    levels = sleep["Subject"].astype(str).unique()
    new = np.random.default_rng(seed).permutation([f"s{i}" for i in range(len(levels))])
    d = sleep.assign(Subject=sleep["Subject"].astype(str).map(dict(zip(levels, new))))
    res = jaxlme.lmm(FORMULA, d)
    _same_fit(res, base)
    old = base.ranef["Subject"]
    relabeled = res.ranef["Subject"].loc[[dict(zip(levels, new))[str(k)] for k in old.index]]
    np.testing.assert_allclose(relabeled.to_numpy(), old.to_numpy(), rtol=1e-4, atol=1e-6)


def test_term_order_invariance():
    d = jaxlme.datasets.load("bounce_time")
    a = jaxlme.lmm("bounce_time ~ age_scaled + (1 + age_scaled | county) + (1 | county:location)", d)
    b = jaxlme.lmm("bounce_time ~ age_scaled + (1 | county:location) + (1 + age_scaled | county)", d)
    _same_fit(a, b)
    pen = jaxlme.datasets.load("Penicillin")
    a = jaxlme.lmm("diameter ~ 1 + (1|plate) + (1|sample)", pen)
    b = jaxlme.lmm("diameter ~ 1 + (1|sample) + (1|plate)", pen)
    _same_fit(a, b)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=st.floats(0.01, 100.0) | st.floats(-100.0, -0.01), b=st.floats(-50.0, 50.0))
@pytest.mark.parametrize("reml", [True, False])
def test_affine_response_transformation(sleep, a, b, reml):
    """y -> a·y + b·Days: β -> aβ + b e_Days, σ -> |a|σ, θ unchanged, criterion + 2 m log|a|."""
    base = jaxlme.lmm(FORMULA, sleep, reml=reml)
    d = sleep.assign(Reaction=a * sleep["Reaction"] + b * sleep["Days"])
    res = jaxlme.lmm(FORMULA, d, reml=reml)
    expected = a * base.fixef.to_numpy() + np.array([0.0, b])
    np.testing.assert_allclose(res.fixef.to_numpy(), expected, rtol=1e-5, atol=1e-5 * abs(a))
    assert res.sigma == pytest.approx(abs(a) * base.sigma, rel=1e-5)
    np.testing.assert_allclose(res.stderr.to_numpy(), abs(a) * base.stderr.to_numpy(), rtol=1e-4)
    np.testing.assert_allclose(res.theta, base.theta, rtol=1e-4, atol=1e-6)
    m = base.nobs - (2 if reml else 0)
    assert res.objective == pytest.approx(base.objective + 2 * m * np.log(abs(a)), abs=1e-5)


@pytest.mark.parametrize("reml", [True, False])
def test_predictor_rescaled_by_1e6(sleep, reml):
    """Rescaling x by c: ML deviance unchanged; REML criterion + 2 log c (|X'V⁻¹X| changes)."""
    base = jaxlme.lmm(FORMULA, sleep, reml=reml)
    d = sleep.assign(Days=sleep["Days"] * 1e6)
    res = jaxlme.lmm(FORMULA, d, reml=reml)
    assert res.converged
    expected = base.objective + (2 * np.log(1e6) if reml else 0.0)
    assert res.objective <= expected + 1e-3
    assert res.objective == pytest.approx(expected, abs=1e-3)
    assert res.fixef["Days"] * 1e6 == pytest.approx(base.fixef["Days"], rel=1e-4)
    assert res.varcorr.sdcor.iloc[1] * 1e6 == pytest.approx(base.varcorr.sdcor.iloc[1], rel=1e-3)


def test_very_unbalanced_groups():
    rng = np.random.default_rng(1)
    sizes = np.unique(np.concatenate([[1, 2, 3, 10, 100, 1000, 10_000], rng.integers(1, 50, 30)]))
    g = np.repeat(np.arange(len(sizes)), sizes)
    x = rng.normal(size=len(g))
    b = rng.normal(scale=2.0, size=len(sizes))
    y = 1.0 + 0.5 * x + b[g] + rng.normal(size=len(g))
    res = jaxlme.lmm("y ~ x + (1 | g)", pd.DataFrame({"y": y, "x": x, "g": g}))
    assert res.converged
    assert res.fixef["x"] == pytest.approx(0.5, abs=0.05)
    assert res.sigma == pytest.approx(1.0, abs=0.05)
    assert res.varcorr.sdcor.iloc[0] == pytest.approx(2.0, rel=0.4)


@pytest.mark.parametrize(
    "formula, data",
    [
        (FORMULA, "sleepstudy"),
        ("diameter ~ 1 + (1|plate) + (1|sample)", "Penicillin"),
        ("bounce_time ~ age_scaled + (1 + age_scaled | county) + (1 | county:location)", "bounce_time"),
    ],
)
@pytest.mark.parametrize("reml", [True, False])
def test_gradient_and_hessian_match_finite_differences(formula, data, reml):
    model = jaxlme.LMM(formula, jaxlme.datasets.load(data))
    f = model.objective_function(reml)
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        theta = jnp.asarray(np.abs(model.layout.theta_start + 0.3 * rng.normal(size=model.ntheta)) + 0.1)
        g = np.asarray(jax.grad(f)(theta))
        H = np.asarray(jax.hessian(f)(theta))
        h = 1e-5
        eye = np.eye(model.ntheta)
        g_fd = np.array([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in eye])
        H_fd = np.array([(jax.grad(f)(theta + h * e) - jax.grad(f)(theta - h * e)) / (2 * h) for e in eye])
    np.testing.assert_allclose(g, g_fd, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(H, H_fd, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(H, H.T, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("seed", [1, 2, 5])
def test_boundary_fit_converges_to_zero_and_warns(seed):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(20), 10)
    x = np.tile(np.arange(10.0), 20)
    y = 2.0 + 0.3 * x + rng.normal(scale=1.5, size=20)[g] + rng.normal(size=200)  # no slope variance
    d = pd.DataFrame({"y": y, "x": x, "g": g})
    with pytest.warns(UserWarning, match="singular"):
        res = jaxlme.lmm("y ~ x + (1 | g) + (0 + x | g)", d)
    assert res.converged and res.singular
    assert res.theta[1] == 0.0  # exactly on the boundary, not stalled near it
    assert res.theta[0] > 0.5


def test_objective_is_lme4_scale_at_lme4_theta(lme4_reference, sleep):
    ref = next(r for r in lme4_reference if r["model"] == "sleepstudy_slope" and r["REML"])
    model = jaxlme.LMM(FORMULA, sleep)
    assert model.objective(ref["theta"], reml=True) == pytest.approx(ref["criterion"], abs=1e-6)


def test_warm_start_and_opt_summary(sleep, base):
    model = jaxlme.LMM(FORMULA, sleep)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = model.fit(theta0=base.theta)
    assert res.opt.iterations <= 2
    assert res.objective == pytest.approx(base.objective, abs=1e-8)
    text = str(res.opt)
    for key in ("theta_initial", "theta_final", "iterations", "gradient_norm", "compile_seconds"):
        assert key in text
    np.testing.assert_allclose(res.opt.theta_initial, base.theta)


def test_x64_is_local(sleep):
    jaxlme.lmm("Reaction ~ Days + (1 | Subject)", sleep)
    assert jnp.ones(2).dtype == (jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)


@pytest.mark.parametrize(
    "formula, data",
    [
        ("diameter ~ 1 + (1|plate) + (1|sample)", "Penicillin"),
        ("bounce_time ~ age_scaled + (1 + age_scaled | county) + (1 | county:location)", "bounce_time"),
    ],
)
def test_sparse_and_dense_schur_updates_agree(formula, data):
    """Both Schur-complement strategies give the same criterion, gradient and effects."""
    from jaxlme.design import build_design
    from jaxlme.objective import objective, solve_effects
    from jaxlme.structure import build_structure

    design = build_design(formula, jaxlme.datasets.load(data))
    sparse, _ = build_structure(design, schur="sparse")
    dense, _ = build_structure(design, schur="dense")
    assert not sparse.layout.dense_schur and dense.layout.dense_schur
    rng = np.random.default_rng(2)
    with jax.enable_x64(True):
        theta = jnp.asarray(np.abs(rng.normal(size=sparse.layout.ntheta)) + 0.2)
        for reml in (True, False):
            np.testing.assert_allclose(objective(theta, sparse, reml), objective(theta, dense, reml), rtol=1e-12)
            np.testing.assert_allclose(
                jax.grad(objective)(theta, sparse, reml), jax.grad(objective)(theta, dense, reml), rtol=1e-8
            )
        a, b = solve_effects(theta, sparse), solve_effects(theta, dense)
        np.testing.assert_allclose(a.beta, b.beta, rtol=1e-10)
        for ba, bb in zip(a.b, b.b):
            np.testing.assert_allclose(ba, bb, rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="schur"):
        build_structure(design, schur="fast")


def _dense_criterion(model, theta, reml):
    """Brute force from the definition with a dense Z: an independent check of the blocks."""
    d = model.design
    cols, start = [], 0
    for term, tl in zip(d.terms, model.layout.terms):
        lam = np.zeros((tl.ncols, tl.ncols))
        for k, (i, j) in enumerate(tl.theta_index):
            lam[i, j] = theta[start + k]
        start += tl.ntheta
        Z = np.zeros((d.n, tl.nlevels * tl.ncols))
        for c in range(tl.ncols):
            Z[np.arange(d.n), term.index * tl.ncols + c] = term.Z[:, c]
        cols.append(Z @ np.kron(np.eye(tl.nlevels), lam))
    ZL = np.hstack(cols)
    q, n, p = ZL.shape[1], d.n, d.p
    A = np.block([[ZL, d.X], [np.eye(q), np.zeros((q, p))]])
    rhs = np.concatenate([d.y, np.zeros(q)])
    coef, *_ = np.linalg.lstsq(A, rhs, rcond=None)
    pwrss = np.sum((rhs - A @ coef) ** 2)
    M = ZL.T @ ZL + np.eye(q)
    ld = np.linalg.slogdet(M)[1]
    if reml:
        schur = d.X.T @ d.X - d.X.T @ ZL @ np.linalg.solve(M, ZL.T @ d.X)
        m = n - p
        return ld + np.linalg.slogdet(schur)[1] + m * (1 + np.log(2 * np.pi * pwrss / m))
    return ld + n * (1 + np.log(2 * np.pi * pwrss / n))


@pytest.mark.parametrize(
    "formula, data",
    [
        (FORMULA, "sleepstudy"),
        ("diameter ~ 1 + (1|plate) + (1|sample)", "Penicillin"),
        ("strength ~ 1 + (1|batch/cask)", "Pastes"),
        ("bounce_time ~ age_scaled + (1 + age_scaled | county) + (1 | county:location)", "bounce_time"),
    ],
)
@pytest.mark.parametrize("reml", [True, False])
def test_blocked_objective_equals_dense_definition(formula, data, reml):
    model = jaxlme.LMM(formula, jaxlme.datasets.load(data))
    rng = np.random.default_rng(5)
    for _ in range(3):
        theta = model.layout.theta_start * np.abs(rng.normal(1.0, 0.5, model.ntheta)) + rng.normal(
            0, 0.3, model.ntheta
        ) * (model.layout.theta_lower != 0)
        assert model.objective(theta, reml) == pytest.approx(_dense_criterion(model, theta, reml), rel=1e-10)


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(st.integers(0, 2**32 - 1), max_size=300)
    | st.lists(st.integers(0, 70_000), max_size=300)
    | st.lists(st.integers(-5, 5), max_size=50)
)
def test_stable_argsort_is_numpys_stable_argsort(keys):
    """The set-up's radix argsort of Schur-pair targets: the same permutation as NumPy's."""
    from jaxlme.structure import stable_argsort

    for dtype in (np.int64, np.int32) if all(-(2**31) <= k < 2**31 for k in keys) else (np.int64,):
        a = np.asarray(keys, dtype=dtype)
        np.testing.assert_array_equal(stable_argsort(a), np.argsort(a, kind="stable"))
