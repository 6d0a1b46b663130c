"""The quasi-Newton path (BFGS) and the dense-block derivative kernels it relies on."""

from __future__ import annotations

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from helpers import DATA, assert_matches_lme4, load_csv
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxlme
from jaxlme.objective import lower_cholesky, weighted_inverse
from jaxlme.optimizer import (
    BFGS_MIN_SIZE,
    BFGS_MIN_THETA,
    NewtonOptions,
    NewtonState,
    Status,
    bfgs_update,
    newton_minimize,
)

REFERENCE = [r for r in json.loads((DATA / "lme4_reference.json").read_text()) if r["data"] != "InstEval"]


@pytest.mark.parametrize("ref", REFERENCE, ids=[f"{r['model']}-{'REML' if r['REML'] else 'ML'}" for r in REFERENCE])
def test_bfgs_matches_lme4(ref):
    """Forced BFGS meets the same bar as Newton on every reference fit, boundary fits included."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = jaxlme.LMM(ref["formula"], load_csv(ref["data"])).fit(reml=ref["REML"], optimizer="bfgs")
    assert "BFGS" in res.opt.optimizer
    assert_matches_lme4(res, ref)


def _crossed(n_big: int, n_small: int, n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g1 = rng.integers(0, n_big, n)
    g2 = rng.integers(0, n_small, n)
    y = 1.0 + rng.normal(0, 0.7, n_big)[g1] + rng.normal(0, 0.4, n_small)[g2] + rng.normal(0, 1.0, n)
    return pd.DataFrame({"y": y, "g1": g1.astype(str), "g2": g2.astype(str)})


def test_auto_picks_bfgs_for_a_large_dense_block_and_agrees_with_newton():
    d = _crossed(600, BFGS_MIN_SIZE + 20, 6000)
    model = jaxlme.LMM("y ~ 1 + (1 | g1) + (1 | g2)", d)
    assert model.layout.size_rest >= BFGS_MIN_SIZE
    auto = model.fit(reml=False)
    newton = model.fit(reml=False, optimizer="newton")
    assert "BFGS" in auto.opt.optimizer and "Newton" in newton.opt.optimizer
    assert auto.converged and newton.converged
    assert auto.objective == pytest.approx(newton.objective, abs=1e-6)
    np.testing.assert_allclose(auto.theta, newton.theta, rtol=1e-4)


def test_auto_picks_bfgs_finished_by_newton_for_many_theta_and_agrees_with_newton():
    """Many covariance parameters on a small rest block: BFGS (the autodiff Hessian costs
    ~ntheta gradients), then Newton steps from its point, so the optimum is Newton's."""
    rng = np.random.default_rng(3)
    n = 400
    d = pd.DataFrame({c: rng.choice([-0.5, 0.5], n) for c in "abc"})
    d["g"], d["h"] = rng.integers(0, 16, n).astype(str), rng.integers(0, 12, n).astype(str)
    bg, bh = rng.normal(0, 0.4, (16, 4)), rng.normal(0, 0.3, (12, 4))
    X = np.c_[np.ones(n), d[["a", "b", "c"]].to_numpy()]
    d["y"] = X @ [1, 0.2, 0.1, 0.3] + np.sum(X * bg[d["g"].astype(int)], 1) + np.sum(X * bh[d["h"].astype(int)], 1)
    d["y"] += rng.normal(0, 0.5, n)
    model = jaxlme.LMM("y ~ a + b + c + (1 + a + b + c || g) + (1 + a + b + c || h)", d)
    assert model.layout.ntheta >= BFGS_MIN_THETA and model.layout.size_rest < BFGS_MIN_SIZE
    auto = model.fit(reml=False)
    newton = model.fit(reml=False, optimizer="newton")
    assert "BFGS" in auto.opt.optimizer and "finished by Newton" in auto.opt.optimizer
    assert auto.converged and newton.converged
    assert auto.objective <= newton.objective + 1e-6
    np.testing.assert_allclose(auto.theta, newton.theta, rtol=1e-4, atol=1e-5)
    small = jaxlme.LMM("y ~ a + (1 + a | g)", d)  # few θ: Newton alone
    assert "BFGS" not in small.fit().opt.optimizer


def test_small_models_keep_newton():
    res = jaxlme.lmm("Reaction ~ Days + (Days | Subject)", jaxlme.datasets.load("sleepstudy"))
    assert "Newton" in res.opt.optimizer


def test_unknown_optimizer_is_rejected():
    model = jaxlme.LMM("Reaction ~ Days + (Days | Subject)", jaxlme.datasets.load("sleepstudy"))
    with pytest.raises(ValueError, match="optimizer must be"):
        model.fit(optimizer="nelder-mead")


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 6))
def test_bfgs_update_stays_symmetric_positive_definite(seed, k):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(k, k))
    B = A @ A.T + 0.1 * np.eye(k)
    s, y = rng.normal(size=k), rng.normal(size=k)  # sᵀy may be negative: damping must cope
    with jax.enable_x64(True):
        Bn = np.asarray(bfgs_update(jnp.asarray(B), jnp.asarray(s), jnp.asarray(y)))
    np.testing.assert_allclose(Bn, Bn.T, atol=1e-12 * np.abs(Bn).max())
    assert np.linalg.eigvalsh(Bn).min() > 0
    if s @ y >= 0.2 * s @ B @ s:  # undamped: the secant equation holds
        np.testing.assert_allclose(Bn @ s, y, rtol=1e-6, atol=1e-8 * np.abs(y).max())


def _direction_reference(x, g, H, lb):
    """The projected Newton direction written out step by step (numpy)."""
    active = (x <= lb) & (g > 0)
    free = ~active
    pg = np.where(active, 0.0, g)
    Hf = np.where(free[:, None] & free[None, :], H, np.eye(len(x)))
    w, V = np.linalg.eigh(Hf)
    wabs = np.abs(w)
    d = -V @ ((V.T @ pg) / np.maximum(wabs, max(1e-10 * wabs.max(), 1e-12)))
    if w[0] < -1e-8 * max(1.0, wabs.max()):  # along the most negative eigenvector
        vmin = V[:, 0] * free
        slope = pg @ vmin
        s = -np.sign(slope) if slope != 0 else np.sign(vmin @ (x <= lb) - 1e-300)
        d = d + s * vmin * max(np.linalg.norm(d), 0.1 * (1.0 + np.linalg.norm(x)))
    Hz = np.where(free[:, None] & free[None, :], H, 0.0)
    wz = np.linalg.eigvalsh(Hz)
    return np.where(free, d, 0.0), pg, wz[0] / max(1.0, np.abs(wz).max())


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 5), indefinite=st.booleans())
def test_newton_direction_and_its_curvature_test(seed, k, indefinite):
    """One eigh gives the direction and the saddle test: the same as computing each on its
    own (the curvature test with the active block zeroed)."""
    from jaxlme.optimizer import newton_direction

    rng = np.random.default_rng(seed)
    A = rng.normal(size=(k, k))
    H = A @ A.T + 0.1 * np.eye(k)
    if indefinite:
        H -= (np.linalg.eigvalsh(H).min() + rng.uniform(0.1, 2.0)) * np.eye(k)
    lb = np.where(rng.random(k) < 0.5, 0.0, -np.inf)
    x = np.where((lb == 0) & (rng.random(k) < 0.5), 0.0, rng.uniform(0.1, 2.0, k))
    g = rng.normal(size=k)
    d_ref, pg_ref, min_eig_ref = _direction_reference(x, g, H, lb)
    with jax.enable_x64(True):
        args = tuple(jnp.asarray(a) for a in (x, g, H, lb))
        d, pg, min_eig = (np.asarray(a) for a in jax.jit(newton_direction)(*args))
    np.testing.assert_allclose(d, d_ref, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(d_ref).max()))
    np.testing.assert_array_equal(pg, pg_ref)
    for threshold in (-1e-6, -1e-8):  # the thresholds the optimizers use
        assert (min_eig >= threshold) == (min_eig_ref >= threshold)


@pytest.mark.parametrize("n", [5, 128, 129, 300, 517])
def test_weighted_inverse_equals_direct_formula(n):
    rng = np.random.default_rng(n)
    A = rng.normal(size=(n, n))
    M = A @ A.T / n + np.eye(n)
    L = np.linalg.cholesky(M)
    c = np.ones(n)
    c[-3:] = [0.0, 1.0, 1e4]  # the ML/REML weights on X and y rows
    want = np.linalg.inv(L).T @ np.diag(c) @ np.linalg.inv(L)
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(weighted_inverse)(jnp.asarray(L), jnp.asarray(c)))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())


def test_lower_cholesky_derivatives_see_the_symmetric_matrix():
    """Only the lower triangle is passed on; first and second derivatives must be those of
    the symmetric matrix it stands for (a lower-only tangent broke Satterthwaite's Hessian)."""
    rng = np.random.default_rng(0)
    n = 6
    A0, A1, A2 = (rng.normal(size=(n, n)) for _ in range(3))
    S0 = A0 @ A0.T + n * np.eye(n)
    S1, S2 = A1 + A1.T, A2 + A2.T

    with jax.enable_x64(True):

        def lower_only(t):  # upper triangle left at garbage values
            m = S0 + t[0] * S1 + t[1] ** 2 * S2
            return jnp.sum(jnp.log(jnp.diagonal(lower_cholesky(jnp.tril(m) + 7.0 * jnp.triu(jnp.ones((n, n)), 1)))))

        def full(t):
            m = S0 + t[0] * S1 + t[1] ** 2 * S2
            return jnp.sum(jnp.log(jnp.diagonal(jnp.linalg.cholesky(m))))

        t = jnp.array([0.3, -0.4])
        # jit-compiled: run op by op, the column loop's Hessian took 7x longer
        grad, hess = jax.jit(jax.grad(lower_only)), jax.jit(jax.hessian(lower_only))
        np.testing.assert_allclose(grad(t), jax.jit(jax.grad(full))(t), rtol=1e-10)
        np.testing.assert_allclose(hess(t), jax.jit(jax.hessian(full))(t), rtol=1e-9, atol=1e-12)


def test_unconverged_bfgs_is_finished_by_newton():
    """A BFGS run that stops short (here: an iteration cap) is polished with Newton's exact
    Hessian from where it stopped, and reports so."""
    model = jaxlme.LMM("Reaction ~ Days + (Days | Subject)", jaxlme.datasets.load("sleepstudy"))
    newton = model.fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(optimizer="bfgs", maxiter=3)
    assert "finished by Newton" in res.opt.optimizer
    assert res.converged
    assert res.objective == pytest.approx(newton.objective, abs=1e-6)
    np.testing.assert_allclose(res.theta, newton.theta, rtol=1e-4)
    assert res.opt.iterations > 3  # both runs counted


def test_split_objective_takes_the_accepted_points_gradient_from_the_line_search():
    """With ``split`` the line search hands its last trial's pieces to the gradient: the
    same iterates as value_and_grad, one objective evaluation fewer per iteration."""
    w = jnp.array([1.0, 30.0, 0.2])
    c = jnp.array([0.5, -1.0, 2.0])

    def fun(x):
        return jnp.sum(w * (x - c) ** 2) + jnp.sum(jnp.exp(-x))

    def value_pieces(x):
        return fun(x), (2.0 * w * (x - c), jnp.exp(-x))  # the gradient's parts

    def gradient(x, pieces):
        return pieces[0] - pieces[1]

    opts = NewtonOptions(hessian="bfgs", gtol=1e-9)
    lb = jnp.array([0.0, -jnp.inf, 0.0])
    with jax.enable_x64(True):
        x0 = jnp.array([3.0, 3.0, 0.1])
        plain = jax.jit(lambda x: newton_minimize(fun, x, lb, (), opts))(x0)
        split = jax.jit(lambda x: newton_minimize(fun, x, lb, (), opts, split=(value_pieces, gradient)))(x0)
    assert int(plain.status) in (1, 2) and int(split.status) == int(plain.status)
    assert int(split.it) == int(plain.it) > 3
    np.testing.assert_allclose(split.x, plain.x, rtol=1e-10, atol=1e-12)
    assert np.all(np.asarray(split.x) >= np.asarray(lb))
    assert int(plain.nfev) - int(split.nfev) == int(plain.it) + 1  # it counts from -1 (the start)
    with pytest.raises(ValueError, match="split objectives need hessian='bfgs'"):
        newton_minimize(fun, x0, lb, (), NewtonOptions(), split=(value_pieces, gradient))


def test_bfgs_starts_from_moment_estimates_near_the_optimum():
    """Scalar terms start at method-of-moments θ (truth here: 0.7 and 0.4 over σ = 1), from
    which BFGS reaches the optimum it reaches from Λ = I, in fewer evaluations."""
    from jaxlme.params import moment_start

    model = jaxlme.LMM("y ~ 1 + (1 | g1) + (1 | g2)", _crossed(600, BFGS_MIN_SIZE + 20, 6000))
    start = model.initial_theta()
    np.testing.assert_allclose(start, [0.7, 0.4], rtol=0.3)
    assert start is model.initial_theta()  # computed once per model
    moment = model.fit(reml=False)
    identity = model.fit(reml=False, theta0=model.layout.theta_start * model.theta_scale)
    assert "BFGS" in moment.opt.optimizer and np.allclose(moment.opt.theta_initial, start)
    assert moment.converged and identity.converged
    assert moment.objective == pytest.approx(identity.objective, abs=1e-6)
    np.testing.assert_allclose(moment.theta, identity.theta, rtol=1e-4)
    assert moment.opt.evaluations < identity.opt.evaluations

    # models with vector-valued terms keep Λ = I (unit-scale columns); degenerate factors fall back
    sleep = jaxlme.LMM("Reaction ~ Days + (Days | Subject)", jaxlme.datasets.load("sleepstudy"))
    np.testing.assert_array_equal(sleep.initial_theta(), sleep.layout.theta_start * sleep.theta_scale)
    mixed = jaxlme.LMM("y ~ x + (1 + x | g1) + (1 | g2)", _crossed(60, 8, 900).assign(x=lambda f: np.sin(f.index)))
    np.testing.assert_array_equal(mixed.initial_theta(), mixed.layout.theta_start * mixed.theta_scale)
    d = _crossed(30, 5, 400)
    d["x"] = (d["g2"] == "0").astype(float)  # a slope seen in one level only: no moments
    one = jaxlme.LMM("y ~ 1 + (1 | g1) + (0 + x | g2)", d, warn=False)
    np.testing.assert_array_equal(
        moment_start(one.design, one.layout, one.theta_scale, one.design.y), one.layout.theta_start * one.theta_scale
    )


def _inner_modes(x, u0, steps=3):
    """A damped fixed-point iteration u <- (u + x)/2 from u0, cut after ``steps``: its fixed
    point is u = x, reached only approximately from a distant start (as PIRLS from u = 0)."""
    u = jax.lax.stop_gradient(u0)
    for _ in range(steps):
        u = 0.5 * u + 0.5 * jax.lax.stop_gradient(x)
    return u


def _criterion_from(x, start):
    u = 0.5 * start + 0.5 * x  # one differentiable step from the inner modes
    return jnp.sum((u - 3.0) ** 2) + 0.1 * jnp.sum((x - 3.0) ** 2)


def test_warm_start_carries_the_accepted_points_inner_modes():
    """``warm`` hands the accepted point's pieces to the next evaluations: an inner iteration
    cut short converges across the outer iterations, and the minimum of the converged
    criterion (x = 3) is found; without it every evaluation restarts from u0 = 0 and the
    optimizer minimizes the truncated criterion instead."""

    def value_pieces(x, u0):
        start = _inner_modes(x, u0)
        return _criterion_from(x, start), start

    def gradient(x, start, u0):
        return jax.grad(_criterion_from)(x, start)

    def fun(x, u0):
        return _criterion_from(x, _inner_modes(x, u0))

    opt = NewtonOptions(gtol=1e-10, maxiter=200, hessian="bfgs")
    x0, lb, u0 = jnp.array([0.5, 1.0]), jnp.full(2, -jnp.inf), jnp.zeros(2)

    def run(warm):
        return jax.jit(lambda x, u: newton_minimize(fun, x, lb, (u,), opt, split=(value_pieces, gradient), warm=warm))(
            x0, u0
        )

    with jax.enable_x64(True):
        carried = run(lambda pieces, args: (pieces,))
        fixed = run(None)
    np.testing.assert_allclose(np.asarray(carried.x), 3.0, atol=1e-6)
    assert Status(int(carried.status)).converged
    assert np.all(np.abs(np.asarray(fixed.x) - 3.0) > 1e-2)  # the truncated criterion's minimum
    with pytest.raises(ValueError, match="split"):
        newton_minimize(fun, x0, lb, (u0,), opt, warm=lambda pieces, args: args)


def test_fd_newton_reaches_the_exact_newton_optimum():
    """hessian='fd' (forward differences of the exact gradient, the BFGS fit's Newton finish)
    converges to the autodiff-Hessian Newton's optimum, on the bound where it is active."""

    def fun(x):
        return (1.0 - x[0]) ** 2 + 10.0 * (x[1] - x[0] ** 2) ** 2 + (x[2] + 0.5) ** 2 + 0.1 * x[0] * x[2]

    with jax.enable_x64(True):
        lb = jnp.array([-jnp.inf, -jnp.inf, 0.0])
        x0 = jnp.array([-1.0, 2.0, 1.0])
        runs = {
            h: jax.jit(lambda x, h=h: newton_minimize(fun, x, lb, (), NewtonOptions(hessian=h, gtol=1e-9)))(x0)
            for h in ("exact", "fd")
        }
    for state in runs.values():
        assert Status(int(state.status)).converged
    np.testing.assert_allclose(np.asarray(runs["fd"].x), np.asarray(runs["exact"].x), atol=1e-7)
    assert float(runs["fd"].x[2]) == 0.0  # the bound
    with pytest.raises(ValueError, match="hessian"):
        newton_minimize(fun, x0, lb, (), NewtonOptions(hessian="lbfgs"))


def test_fd_refresh_keeps_the_hessian_over_short_steps_and_reaches_the_same_optimum():
    """fd_refresh: after steps no longer than it the forward-difference Hessian is kept (a
    chord step, one gradient), so the final model is the start's Hessian; 0 (the default)
    or a step longer than it takes a new one.  Both reach the same optimum."""

    def fun(x):
        return jnp.sum(jnp.exp(0.6 * x) - 0.6 * x) + 0.3 * x[0] * x[1] + 0.05 * x[1] ** 4

    def fd_h(x):
        return jax.jit(jax.hessian(fun))(x)

    with jax.enable_x64(True):
        lb = jnp.full(2, -jnp.inf)
        x0 = jnp.array([0.05, -0.08])  # near the optimum: every step is short
        opts = {r: NewtonOptions(hessian="fd", gtol=1e-10, fd_refresh=r) for r in (0.0, 1.0, 1e-9)}
        runs = {r: jax.jit(lambda x, o=o: newton_minimize(fun, x, lb, (), o))(x0) for r, o in opts.items()}
        h_start, h_end = np.asarray(fd_h(x0)), np.asarray(fd_h(runs[0.0].x))
    for state in runs.values():
        assert Status(int(state.status)).converged
        np.testing.assert_allclose(np.asarray(state.x), np.asarray(runs[0.0].x), atol=1e-7)  # f flat to rounding
    assert int(runs[1.0].it) >= 2  # steps were taken, each with the start's Hessian
    np.testing.assert_allclose(np.asarray(runs[1.0].H), h_start, rtol=1e-4)
    assert not np.allclose(h_start, h_end, rtol=1e-3)
    for r in (0.0, 1e-9):  # a new Hessian at the last point
        np.testing.assert_allclose(np.asarray(runs[r].H), h_end, rtol=1e-4)
    with pytest.raises(ValueError, match="fd_refresh"):
        newton_minimize(fun, x0, lb, (), NewtonOptions(hessian="fd", fd_refresh=-1.0))


def test_bfgs_step_growth_bounds_each_step_by_the_last_accepted_one():
    """With step_growth = g, no BFGS step moves a coordinate more than g times the last
    accepted step did (the first step is free); without the limit the same problem's steps
    jump by more, so the check can fail; both reach the same bounded optimum."""
    target = np.array([40.0, -3.0, 2.0, -1.0])
    weight = np.array([0.01, 1.0, 50.0, 1.0])

    def fun(x):  # convex: the coupling 0.05 is below sqrt(0.01 * 1.0)
        return 0.5 * jnp.sum(weight * (x - target) ** 2) + 0.05 * x[0] * x[1]

    lb = np.array([-np.inf, -np.inf, -np.inf, 0.0])
    x0 = np.array([0.0, 1.0, 0.0, 2.0])

    def path(growth: float) -> tuple[np.ndarray, NewtonState]:
        points = []
        for it in range(1, 7):
            opt = NewtonOptions(hessian="bfgs", maxiter=it, step_growth=growth, gtol=1e-9)
            state = jax.jit(lambda x, o=opt: newton_minimize(fun, x, lb, (), o))(x0)
            points.append(np.asarray(state.x))
        full = jax.jit(
            lambda x: newton_minimize(fun, x, lb, (), NewtonOptions(hessian="bfgs", step_growth=growth, gtol=1e-9))
        )(x0)
        return np.max(np.abs(np.diff(np.vstack([np.asarray(x0)[None]] + points), axis=0)), axis=1), full

    with jax.enable_x64(True):
        limited, end_limited = path(2.0)
        free, end_free = path(0.0)
    moved = limited[:-1] > 0
    assert np.all(limited[1:][moved] <= 2.0 * limited[:-1][moved] * (1 + 1e-12))
    assert np.any(free[1:] > 2.0 * free[:-1] * (1 + 1e-12))
    for end in (end_limited, end_free):
        assert Status(int(end.status)).converged
        np.testing.assert_allclose(np.asarray(end.x), [220 / 3, -20 / 3, 2.0, 0.0], rtol=1e-6, atol=1e-9)
    for bad in (0.5, -1.0):
        with pytest.raises(ValueError, match="step_growth must be 0 \\(no limit\\) or at least 1"):
            newton_minimize(fun, x0, lb, (), NewtonOptions(hessian="bfgs", step_growth=bad))


# -- the one step function: newton_trial / newton_admissible / newton_update ------------------


def _judge(s, x, fun, lb, opt, **kw):
    from jaxlme.optimizer import newton_admissible, newton_update

    f, g = jax.value_and_grad(fun)(x)
    return newton_update(s, x, f, (f, g, jax.hessian(fun)(x)), newton_admissible(s, x, f, opt), lb, opt, **kw)


def test_step_function_folds_the_line_search_into_the_iteration():
    """A rejected trial keeps x and shortens the next one (Newton halves; BFGS moves to the
    quadratic's minimizer within [0.1, 0.5] of the step); the step counter moves on
    completed steps only; after max_halvings rejections the line search gives up."""
    from jaxlme.optimizer import newton_init, newton_trial

    def fun(x):  # log cosh: from x = 3 Newton's step (about -100) overshoots far
        return jnp.sum(jnp.log(jnp.cosh(x)))

    lb = jnp.array([-jnp.inf])
    with jax.enable_x64(True):
        for hessian, halvings in (("exact", 3), ("bfgs", 3), ("exact", 40)):
            opt = NewtonOptions(hessian=hessian, max_halvings=halvings)
            s = newton_init(jnp.array([3.0]), lb)
            assert int(s.it) == -1 and np.isinf(float(s.f))
            s, ok = _judge(s, newton_trial(s, lb), fun, lb, opt)  # the start
            assert bool(ok) and int(s.it) == 0 and int(s.status) == Status.RUNNING
            assert float(s.d[0]) < -90
            alphas, rejected = [], 0
            while int(s.status) == Status.RUNNING and int(s.it) == 0:
                s, ok = _judge(s, newton_trial(s, lb), fun, lb, opt)
                if not bool(ok):
                    rejected += 1
                    assert float(s.x[0]) == 3.0
                    if int(s.it) == 0:  # still searching
                        assert int(s.nhalf) == rejected
                        alphas.append(float(s.alpha))
            ratios = np.array(alphas[1:]) / np.array(alphas[:-1])
            if hessian == "exact":
                assert alphas[0] == 0.5 and np.all(ratios == 0.5)
            else:
                assert 0.1 <= alphas[0] <= 0.5 and np.all((ratios >= 0.1) & (ratios <= 0.5))
            assert int(s.nfev) == 1 + rejected + (halvings != 3)  # the start, every trial (one evaluation each)
            if halvings == 3:  # given up
                assert rejected == 3 and int(s.it) == 1 and int(s.status) == Status.LINE_SEARCH_FAILED
                assert float(s.alpha) == 1.0 and int(s.nhalf) == 0
            else:  # accepted after a few halvings
                assert 3 < rejected < 10 and bool(ok) and float(s.x[0]) < 3.0 and float(s.alpha) == 1.0


def test_step_function_leaves_finished_and_empty_lanes_alone_and_flags_a_nonfinite_start():
    """The pool's slots that are not running (finished, or empty: status -1) come out of
    the step unchanged; a start whose criterion is not finite ends at once (one
    evaluation), not after max_halvings copies of the same point."""
    from jaxlme.optimizer import newton_init, newton_trial

    def fun(x):
        return jnp.sum((x - 1.0) ** 2)

    lb = jnp.array([0.0, 0.0])
    opt = NewtonOptions()
    with jax.enable_x64(True):
        s = newton_init(jnp.array([3.0, 2.0]), lb)
        for code in (-1, int(Status.CONVERGED)):
            idle = s._replace(status=jnp.array(code, jnp.int32))
            out, ok = _judge(idle, newton_trial(idle, lb), fun, lb, opt)
            assert not bool(ok)
            for a, b in zip(out, idle):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

        def bad(x):
            return jnp.sum(x) * jnp.nan

        st = newton_minimize(bad, jnp.array([3.0, 2.0]), lb)
        assert int(st.status) == Status.NONFINITE and int(st.nfev) == 2  # the trial and its gradient


def test_accept_noise_takes_a_flat_step_that_halves_the_gradient():
    """With accept_noise a trial that raises f by less than its rounding noise is accepted
    when it halves the projected gradient (a lane at the optimum would otherwise halve
    until it gives up); without it the same trial is rejected."""
    from jaxlme.optimizer import newton_admissible, newton_init, newton_update

    lb = jnp.array([-jnp.inf])
    with jax.enable_x64(True):
        s = newton_init(jnp.array([0.0]), lb)
        s = s._replace(
            f=jnp.array(1e6), g=jnp.array([1e-3]), H=jnp.eye(1), d=jnp.array([-1e-3]), it=jnp.array(3, jnp.int32)
        )
        xn = jnp.array([-1e-3])
        fn = jnp.array(1e6 + 1e-7)  # up by 1e-13 relative: rounding noise
        point = (fn, jnp.array([1e-4]), jnp.eye(1))
        for noise, accepted in ((True, True), (False, False)):
            opt = NewtonOptions(accept_noise=noise)
            armijo_ok, wanted = newton_admissible(s, xn, fn, opt)
            assert not bool(armijo_ok) and bool(wanted) == noise
            out, ok = newton_update(s, xn, fn, point, (armijo_ok, wanted), lb, opt)
            assert bool(ok) == accepted
            assert float(out.x[0]) == (-1e-3 if accepted else 0.0)
        # a trial that does not halve the gradient, or raises f beyond rounding noise
        # (1e-11 of 1 + |f|: 1e-5 here), is rejected either way
        opt = NewtonOptions(accept_noise=True)
        for f_trial, g_trial in ((fn, 8e-4), (jnp.array(1e6 + 1e-4), 1e-4)):
            verdict = newton_admissible(s, xn, f_trial, opt)
            out, ok = newton_update(s, xn, f_trial, (f_trial, jnp.array([g_trial]), jnp.eye(1)), verdict, lb, opt)
            assert not bool(ok)
