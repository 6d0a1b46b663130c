"""The analytic θ-gradient (``objective_analytic``) against JAX's autodiff of the same objective."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from helpers import crossed_large

import jaxlme
from jaxlme import compiled
from jaxlme import objective as obj
from jaxlme.design import build_design
from jaxlme.structure import build_structure


def _synthetic(slope_on: str, seed: int = 0) -> pd.DataFrame:
    """Crossed g1 (40 levels) × g2 (9 levels) with a random slope on one of them."""
    rng = np.random.default_rng(seed)
    n = 600
    g1, g2 = rng.integers(0, 40, n), rng.integers(0, 9, n)
    x = rng.normal(size=n)
    slope = rng.normal(0, 0.3, 40)[g1] if slope_on == "g1" else rng.normal(0, 0.3, 9)[g2]
    y = 1 + 0.5 * x + rng.normal(0, 0.8, 40)[g1] + rng.normal(0, 0.5, 9)[g2] + slope * x + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g1": g1.astype(str), "g2": g2.astype(str)})


CASES = {
    # all-scalar rest terms (the diagonal Λ̃ branch)
    "crossed scalar": ("diameter ~ 1 + (1|plate) + (1|sample)", jaxlme.datasets.load("Penicillin")),
    "nested scalar": ("strength ~ 1 + (1|batch/cask)", jaxlme.datasets.load("Pastes")),
    # a vector-valued rest term (the generic pull-back through Λ̃)
    "vector rest term": ("y ~ x + (1 | g1) + (x | g2)", _synthetic("g2")),
    # a vector-valued term 1 (r1 = 2: ∂W_k is a 2 × 2 block per level)
    "vector term 1": ("y ~ x + (x | g1) + (1 | g2)", _synthetic("g1")),
    "bounce_time": (
        "bounce_time ~ age_scaled + (1 + age_scaled | county) + (1 | county:location)",
        jaxlme.datasets.load("bounce_time"),
    ),
}


def _structure(case: str, schur: str):
    formula, data = CASES[case]
    with jax.enable_x64(True):  # float64 arrays, as LMM builds them
        s, _ = build_structure(build_design(formula, data), schur=schur)
    assert s.arr_fixed.dtype == jnp.float64
    return s


def _thetas(layout, seed: int) -> list[np.ndarray]:
    """A random interior θ and one with a diagonal entry on its bound (θ_i = 0)."""
    rng = np.random.default_rng(seed)
    theta = layout.theta_start * np.abs(rng.normal(1.0, 0.4, layout.ntheta)) + rng.normal(0, 0.3, layout.ntheta) * (
        layout.theta_lower != 0
    )
    boundary = theta.copy()
    boundary[np.flatnonzero(layout.theta_lower == 0)[-1]] = 0.0
    return [theta, boundary]


def _derivatives(f, hessian: bool):
    """Value, gradient and (when ``hessian``) Hessian of f(θ, s, reml): one jitted program
    (reml static)."""

    def run(th, s, reml):
        v, g = jax.value_and_grad(f)(th, s, reml)
        return v, g, (jax.hessian(f)(th, s, reml) if hessian else None)

    return jax.jit(run, static_argnums=2)


@pytest.mark.parametrize("schur", ["sparse", "dense"])
@pytest.mark.parametrize("case", list(CASES))
def test_value_gradient_and_hessian_equal_autodiff(case, schur):
    """Values and gradients under both criteria; the Hessian (the derivative of the
    analytic gradient's rule) under REML with the sparse Schur update and under ML with the
    dense one, so each criterion and each update is covered at half the compile time."""
    s = _structure(case, schur)
    assert s.layout.dense_schur == (schur == "dense")
    hessian_reml = schur == "sparse"
    autodiff = {r: _derivatives(obj.objective, r == hessian_reml) for r in (True, False)}
    analytic = {r: _derivatives(obj.objective_analytic, r == hessian_reml) for r in (True, False)}
    direct = jax.jit(obj.value_and_gradient, static_argnums=2)

    @functools.partial(jax.jit, static_argnums=2)
    def split(th, s, reml):
        value, pieces = obj.objective_pieces(th, s, reml)
        return value, obj.objective_gradient(th, s, pieces, reml)

    with jax.enable_x64(True):
        for theta in _thetas(s.layout, 1):
            th = jnp.asarray(theta)
            for reml in (True, False):
                va, ga, Ha = autodiff[reml](th, s, reml)
                vb, gb, Hb = analytic[reml](th, s, reml)
                assert float(vb) == pytest.approx(float(va), rel=1e-13)
                scale = np.max(np.abs(np.asarray(ga)))
                np.testing.assert_allclose(gb, ga, rtol=1e-9, atol=1e-9 * scale)
                np.testing.assert_allclose(direct(th, s, reml)[1], ga, rtol=1e-9, atol=1e-9 * scale)
                vp, gp = split(th, s, reml)  # the line search's pieces, then the gradient
                assert float(vp) == pytest.approx(float(va), rel=1e-13)
                np.testing.assert_allclose(gp, ga, rtol=1e-9, atol=1e-9 * scale)
                assert (Ha is None) == (Hb is None) == (reml != hessian_reml)
                if reml == hessian_reml:
                    hscale = np.max(np.abs(np.asarray(Ha)))
                    np.testing.assert_allclose(Hb, Ha, rtol=1e-7, atol=1e-7 * hscale)


def test_gradient_vmaps_over_theta_and_over_responses():
    s = _structure("crossed scalar", "sparse")
    with jax.enable_x64(True):
        thetas = jnp.asarray(np.stack(_thetas(s.layout, 2) + [s.layout.theta_start]))
        ga = jax.jit(jax.vmap(jax.grad(obj.objective), (0, None)))(thetas, s)
        gb = jax.jit(jax.vmap(jax.grad(obj.objective_analytic), (0, None)))(thetas, s)
        np.testing.assert_allclose(gb, ga, rtol=1e-9, atol=1e-9 * float(jnp.max(jnp.abs(ga))))

        # batched responses, as in the bootstrap: only zy1 and ry differ per lane
        zy1s = s.zy1[None] * jnp.array([1.0, 0.9, 1.2])[:, None, None]
        rys = s.ry[None] * jnp.array([1.0, 0.9, 1.2])[:, None]

        def grad_for(f):
            return jax.jit(jax.vmap(lambda z, r: jax.grad(f)(thetas[0], s.with_response(z, r))))(zy1s, rys)

        np.testing.assert_allclose(grad_for(obj.objective_analytic), grad_for(obj.objective), rtol=1e-9, atol=1e-6)


def test_derivatives_in_the_data_fall_back_to_autodiff():
    """Differentiating in the response cross-products (a pipeline fitting y) stays exact."""
    s = _structure("vector rest term", "sparse")
    with jax.enable_x64(True):
        th = jnp.asarray(_thetas(s.layout, 3)[0])

        def in_data(f):
            return jax.jit(jax.grad(lambda ry, t: f(t, s.with_response(s.zy1, ry)), argnums=(0, 1)))(s.ry, th)

        (dry_a, dth_a), (dry_b, dth_b) = in_data(obj.objective), in_data(obj.objective_analytic)
        assert float(jnp.max(jnp.abs(dry_a))) > 0
        np.testing.assert_allclose(dry_b, dry_a, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dth_b, dth_a, rtol=1e-9)


def test_program_objective_picks_the_analytic_gradient_for_large_blocks(monkeypatch):
    small = _structure("crossed scalar", "sparse")
    calls = []
    monkeypatch.setattr(obj, "objective_analytic", lambda *a: calls.append(1) or obj.objective(*a))
    with jax.enable_x64(True):
        th = jnp.asarray(small.layout.theta_start)
        obj.program_objective(th, small)
        assert not calls
        monkeypatch.setattr(obj, "ANALYTIC_GRADIENT_MIN_SIZE", small.layout.size_rest)
        obj.program_objective(th, small)
        assert calls
    # dense Schur products have no pairs to save: autodiff there, however large
    assert obj.uses_analytic_gradient(SimpleNamespace(size_rest=10**4, dense_schur=False))
    assert not obj.uses_analytic_gradient(SimpleNamespace(size_rest=10**4, dense_schur=True))


def test_fit_with_the_analytic_gradient_equals_the_autodiff_fit(monkeypatch):
    """A crossed model with a 420-row dense block fits to the same optimum either way."""
    model = jaxlme.LMM("y ~ x + (1 | g1) + (1 | g2)", crossed_large(4))
    assert model.layout.size_rest >= obj.ANALYTIC_GRADIENT_MIN_SIZE
    monkeypatch.setenv("JAXLME_NO_CACHE", "1")  # each fit program traced here
    compiled.clear_memory_cache()
    seen = []
    compile_program = jaxlme.model.compile_program

    def recording(*a, **k):
        seen.append(k.get("native_reductions"))
        return compile_program(*a, **k)

    monkeypatch.setattr(jaxlme.model, "compile_program", recording)
    analytic = model.fit(reml=False)
    assert seen and all(seen)  # compiled with XLA's own reductions (see compiled.py)
    monkeypatch.setattr(obj, "ANALYTIC_GRADIENT_MIN_SIZE", 10**9)
    compiled.clear_memory_cache()
    autodiff = model.fit(reml=False)
    compiled.clear_memory_cache()
    assert analytic.converged and autodiff.converged
    assert "analytic gradient" in analytic.opt.optimizer and "autodiff gradient" in autodiff.opt.optimizer
    assert analytic.objective == pytest.approx(autodiff.objective, abs=1e-6)
    np.testing.assert_allclose(analytic.theta, autodiff.theta, rtol=1e-4)
    with jax.enable_x64(True):  # stationary by the independent (autodiff) gradient too
        g = jax.grad(obj.objective)(jnp.asarray(analytic.theta), model.structure, False)
        assert float(jnp.max(jnp.abs(g))) < 1e-2


@pytest.mark.parametrize("case", list(CASES))
def test_fixef_sigma_equals_the_full_solve(case):
    """The bootstrap's β̂, σ̂ from the RX corner alone equal solve_effects' (REML and ML)."""
    s = _structure(case, "sparse")
    with jax.enable_x64(True):
        for theta in _thetas(s.layout, 2):
            th = jnp.asarray(theta)
            for reml in (True, False):
                beta, sigma = jax.jit(obj.fixef_sigma, static_argnums=2)(th, s, reml)
                full = obj.solve_effects(th, s, reml)
                np.testing.assert_allclose(beta, full.beta, rtol=1e-10, atol=1e-12)
                assert float(sigma) == pytest.approx(float(full.sigma), rel=1e-12)


@pytest.mark.parametrize("schur", ["sparse", "dense"])
@pytest.mark.parametrize("case", list(CASES))
def test_objective_and_corner_shares_the_factor(case, schur):
    """The bootstrap lanes' objective: the same value and gradient as ``objective``, and a
    factor corner that gives fixef_sigma's β̂, σ̂ and carries no derivative."""
    s = _structure(case, schur)
    with jax.enable_x64(True):
        for theta in _thetas(s.layout, 3):
            th = jnp.asarray(theta)
            for reml in (True, False):
                (value, corner), grad = jax.jit(
                    jax.value_and_grad(obj.objective_and_corner, has_aux=True), static_argnums=2
                )(th, s, reml)
                ref_value, ref_grad = jax.jit(jax.value_and_grad(obj.objective), static_argnums=2)(th, s, reml)
                assert float(value) == pytest.approx(float(ref_value), rel=1e-13)
                np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-9)
                beta, sigma = obj.effects_from_corner(corner, s, reml)
                ref_beta, ref_sigma = jax.jit(obj.fixef_sigma, static_argnums=2)(th, s, reml)
                np.testing.assert_allclose(beta, ref_beta, rtol=1e-11, atol=1e-12)
                assert float(sigma) == pytest.approx(float(ref_sigma), rel=1e-12)
                _, corner_tangent = jax.jvp(
                    functools.partial(lambda t, r: obj.objective_and_corner(t, s, r)[1], r=reml),
                    (th,),
                    (jnp.ones_like(th),),
                )
                assert corner.shape == (s.layout.p + 1,) * 2 and not np.any(np.asarray(corner_tangent))


@pytest.mark.parametrize(
    "formula,data",
    [
        ("Reaction ~ Days + (Days | Subject)", "sleepstudy"),  # full grid: the reshape
        ("diameter ~ 1 + (1|plate) + (1|sample)", "Penicillin"),  # full grid, crossed
        ("strength ~ 1 + (1|batch/cask)", "Pastes"),  # nested: pairs missing, the scatter
    ],
)
def test_dense_entries_of_the_full_grid_need_no_scatter(formula, data):
    """Entries come in (row, level) order, so with every pair present C reshapes to the
    dense matrix the scatter builds (and otherwise the scatter is used)."""
    with jax.enable_x64(True):
        s, _ = build_structure(build_design(formula, jaxlme.datasets.load(data)), schur="dense")
        lay = s.layout
        k1, r1 = lay.terms[0].nlevels, lay.terms[0].ncols
        keys = np.asarray(s.rows, np.int64) * k1 + np.asarray(s.levs)
        assert np.all(np.diff(keys) > 0)
        C = jnp.asarray(np.random.default_rng(0).normal(size=(lay.nnz, r1)))
        scatter = jnp.zeros((lay.size_rest, k1, r1)).at[s.rows, s.levs].add(C).reshape(lay.size_rest, -1)
        np.testing.assert_array_equal(obj.dense_entries(C, s), scatter)
        full = lay.nnz == lay.size_rest * k1
        assert full == (data != "Pastes")


def test_lambda_blocks_place_theta_in_lme4_order():
    """Λ_t from θ: lower triangle filled column-wise (lme4's order), zero above the diagonal;
    a || term has its diagonal only."""
    with jax.enable_x64(True):
        for formula, data in [CASES["bounce_time"], ("y ~ x + (x || g1) + (1 | g2)", _synthetic("g1"))]:
            lay = build_structure(build_design(formula, data))[0].layout
            theta = np.arange(1.0, lay.ntheta + 1)
            got = obj.lambda_blocks(jnp.asarray(theta), lay)
            start = 0
            for t, lam in zip(lay.terms, got):
                want = np.zeros((t.ncols, t.ncols))
                for k, (i, j) in enumerate(t.theta_index):
                    want[i, j] = theta[start + k]
                start += len(t.theta_index)
                np.testing.assert_array_equal(np.asarray(lam), want)
                assert np.all(np.triu(want, 1) == 0)
                if t.ncols == 2 and len(t.theta_index) == 3:  # (1 + x | g): [[θa, 0], [θa+1, θa+2]]
                    a = want[0, 0]
                    np.testing.assert_array_equal(want, [[a, 0.0], [a + 1, a + 2]])
                if t.ncols == 2 and len(t.theta_index) == 2:  # (x || g): diagonal only
                    assert want[1, 0] == 0.0 and want[0, 0] > 0 and want[1, 1] > 0
            # and its derivative is the placement: d Λ / d θ_k is one unit entry
            jac = jax.jacfwd(lambda th, lay=lay: obj.lambda_blocks(th, lay)[0])(jnp.asarray(theta))
            assert np.asarray(jac).sum() == len(lay.terms[0].theta_index)


@pytest.mark.parametrize("schur", ["sparse", "dense"])
@pytest.mark.parametrize("case", ["crossed scalar", "vector rest term", "vector term 1"])
def test_satterthwaite_deviance_gradient_equals_autodiff(case, schur):
    """The (θ, σ) deviance behind Satterthwaite's df: the analytic value and gradient that
    large models difference equal autodiff's, REML and ML, at σ off its optimum too; and
    Var(β̂) read off the same factorization equals the direct one."""
    from jaxlme.inference import deviance_varpar_value_and_grad, vcov_varpar
    from jaxlme.objective import unprofiled_deviance as _deviance_vp

    s = _structure(case, schur)
    autodiff = jax.jit(jax.value_and_grad(_deviance_vp), static_argnums=2)
    analytic = jax.jit(deviance_varpar_value_and_grad, static_argnums=2)
    vcov = jax.jit(vcov_varpar)
    with jax.enable_x64(True):
        for theta in _thetas(s.layout, 3):
            for sigma in (0.7, 1.9):
                vp = jnp.asarray(np.append(theta, sigma))
                for reml in (True, False):
                    va, ga = autodiff(vp, s, reml)
                    vb, gb, V = analytic(vp, s, reml)
                    assert float(vb) == pytest.approx(float(va), rel=1e-12)
                    np.testing.assert_allclose(V, vcov(vp, s), rtol=1e-10)
                    np.testing.assert_allclose(gb, ga, rtol=1e-9, atol=1e-9 * np.max(np.abs(np.asarray(ga))))
