"""jaxlme.diff: the differentiable API, checked against finite differences, lme4's fits
(through jaxlme's own refit, itself tested against lme4) and JAX's transformation rules."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from helpers import SHARED, load_csv

import jaxlme
from jaxlme import diff

FORMULA = "y ~ x + (x | g)"


def unbalanced(seed: int = 0, k: int = 9) -> pd.DataFrame:
    """Unbalanced random-slope data: 3 to 9 rows per group, interior optimum."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(k), rng.integers(3, 10, k))
    n = len(g)
    x = rng.normal(size=n)
    b0, b1 = rng.normal(0, 1.0, k), rng.normal(0, 0.5, k)
    y = 2.0 + 0.5 * x + b0[g] + b1[g] * x + rng.normal(0, 0.7, n)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g], "w": rng.uniform(0.5, 2.0, n)})


@pytest.fixture(scope="module")
def model():
    data = unbalanced()
    pat, arrays = diff.pattern(FORMULA, data)
    return data, pat, arrays


def central(f, x: np.ndarray, v: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central difference of f at x along v."""
    return (np.asarray(f(x + h * v)) - np.asarray(f(x - h * v))) / (2 * h)


def float_view(cp):
    """The float leaves of cp and a function that puts replacements back."""
    leaves, treedef = jax.tree.flatten(cp)
    idx = [i for i, leaf in enumerate(leaves) if jnp.issubdtype(leaf.dtype, jnp.floating)]

    def rebuild(fl):
        out = list(leaves)
        for i, v in zip(idx, fl):
            out[i] = v
        return treedef.unflatten(out)

    return [leaves[i] for i in idx], rebuild


def cp_leaves(cp):
    return [leaf for leaf in jax.tree.leaves(cp) if jnp.issubdtype(leaf.dtype, jnp.floating)]


# --- structure: one builder ----------------------------------------------------------------


def _reference_models():
    cases = [
        ("Reaction ~ Days + (Days | Subject)", jaxlme.datasets.load("sleepstudy"), None),
        ("Yield ~ 1 + (1 | Batch)", jaxlme.datasets.load("Dyestuff"), None),
        ("strength ~ 1 + (1 | batch/cask)", load_csv("Pastes"), None),
        ("diameter ~ 1 + (1 | plate) + (1 | sample)", load_csv("Penicillin"), None),
        ("y ~ x + (x || g)", unbalanced(3), "w"),
    ]
    return cases


def test_diff_is_an_attribute_of_the_package():
    """``import jaxlme`` is enough: ``jaxlme.diff`` is the public module, listed in ``__all__``."""
    assert jaxlme.diff is diff and "diff" in jaxlme.__all__
    assert {"pattern", "crossprods", "criterion", "fit"} <= set(dir(jaxlme.diff))


@pytest.mark.parametrize("case", range(5))
def test_lmm_structure_equals_crossprods(case):
    formula, data, weights = _reference_models()[case]
    model = jaxlme.LMM(formula, data, weights=weights)
    pat, arrays = diff.pattern(formula, data, weights=weights)
    c = model.centering  # LMM's cross-products are those of the centred [X y]
    X = arrays.X - np.where(np.arange(arrays.X.shape[1]) == c.intercept, 0.0, c.means)
    with jax.enable_x64(True):
        cp = jax.jit(lambda y, X: diff.crossprods(pat, y=y, X=X))(arrays.y - c.y_shift, X)
    assert cp.layout == model.structure.layout
    for a, b in zip(jax.tree.leaves(cp), jax.tree.leaves(model.structure)):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-9)
    with jax.enable_x64(True):
        theta = jnp.asarray(model.fit(warn=False).theta)
        value = float(diff.criterion(theta, diff.crossprods(pat)))
    assert value == pytest.approx(model.objective(theta), rel=1e-10)


def test_crossprods_weights_default_and_explicit():
    data = unbalanced(1)
    pat, arrays = diff.pattern(FORMULA, data, weights="w")
    with jax.enable_x64(True):
        a = diff.crossprods(pat)
        b = diff.crossprods(pat, y=arrays.y, X=arrays.X, Z=arrays.Z, weights=arrays.weights)
        c = diff.crossprods(pat, weights=np.ones(pat.n))
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    assert float(c.log_det_w) == 0.0 and float(a.log_det_w) == pytest.approx(np.log(arrays.weights).sum())


# --- criterion: finite differences, adjoints, higher order -----------------------------------


def test_criterion_central_differences(model):
    data, pat, arrays = model
    rng = np.random.default_rng(1)
    w = rng.uniform(0.5, 2.0, pat.n)
    theta = np.array([0.9, 0.2, 0.6])
    Z = arrays.Z[0]
    with jax.enable_x64(True):

        def crit(theta=theta, y=arrays.y, X=arrays.X, Z=Z, weights=w, reml=True):
            return diff.criterion(theta, diff.crossprods(pat, y=y, X=X, Z=(Z,), weights=weights), reml=reml)

        for reml in (True, False):
            for name, x0 in (("theta", theta), ("y", arrays.y), ("X", arrays.X), ("Z", Z), ("weights", w)):
                v = rng.normal(size=np.shape(x0))
                exact = float(jnp.vdot(jax.grad(lambda x, n=name, r=reml: crit(**{n: x}, reml=r))(jnp.asarray(x0)), v))
                fd = float(central(lambda x, n=name, r=reml: crit(**{n: x}, reml=r), x0, v, h=1e-6))
                assert exact == pytest.approx(fd, rel=1e-6, abs=1e-7), (name, reml)


def test_crossprods_adjoint(model):
    """<J v, u> = <v, J' u> for the map (y, X, Z, weights) -> cross-products."""
    data, pat, arrays = model
    rng = np.random.default_rng(2)
    primal = (arrays.y, arrays.X, arrays.Z, rng.uniform(0.5, 2.0, pat.n))
    with jax.enable_x64(True):

        def f(y, X, Z, w):
            return cp_leaves(diff.crossprods(pat, y=y, X=X, Z=Z, weights=w))

        v = jax.tree.map(lambda a: rng.normal(size=np.shape(a)), primal)
        out, jv = jax.jvp(f, primal, v)
        u = [jnp.asarray(rng.normal(size=o.shape)) for o in out]
        (jtu,) = [jax.vjp(f, *primal)[1](u)]
        # jacfwd = jacrev in y
        Jf = jax.jacfwd(lambda y: f(y, *primal[1:]))(primal[0])
        Jr = jax.jacrev(lambda y: f(y, *primal[1:]))(primal[0])
        for a, b in zip(Jf, Jr):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        lhs = sum(float(jnp.vdot(a, b)) for a, b in zip(jv, u))
        rhs = sum(float(jnp.vdot(a, b)) for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(jtu)))
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_criterion_second_derivatives_agree(model):
    """hessian = jacrev(grad) = jacfwd(jacfwd) = jacrev(jacrev) in θ (reverse over reverse
    failed to linearize before)."""
    data, pat, arrays = model
    theta = np.array([0.9, 0.2, 0.6])
    with jax.enable_x64(True):
        cp = diff.crossprods(pat)

        def f(th):
            return diff.criterion(th, cp)

        # each compiled whole: evaluated eagerly, second derivatives dispatch op by op
        H = [jax.jit(h)(theta) for h in (jax.hessian(f), jax.jacrev(jax.grad(f)), jax.jacfwd(jax.jacfwd(f)))]
        H.append(jax.jit(jax.jacrev(jax.jacrev(f)))(theta))
        for other in H[1:]:
            np.testing.assert_allclose(other, H[0], rtol=1e-9, atol=1e-9)


@pytest.mark.slow
def test_criterion_second_derivatives_in_data(model):
    """In y and in every float leaf of cp: forward-over-reverse = reverse-over-reverse =
    forward-over-forward, along random directions."""
    data, pat, arrays = model
    theta = np.array([0.9, 0.2, 0.6])
    rng = np.random.default_rng(9)
    with jax.enable_x64(True):
        cp = diff.crossprods(pat)
        fl, rebuild = float_view(cp)
        y = jnp.asarray(arrays.y)
        for fun, x in (
            (lambda yy: diff.criterion(theta, diff.crossprods(pat, y=yy)), y),
            (lambda leaves: diff.criterion(theta, rebuild(leaves)), fl),
        ):
            v = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), x)
            fwd_rev = jax.jit(lambda x, v, fun=fun: jax.jvp(jax.grad(fun), (x,), (v,))[1])(x, v)
            rev_rev = jax.jit(jax.grad(lambda z, v, fun=fun: jnp.vdot(*ravel(jax.grad(fun)(z), v))))(x, v)
            for u1, u2 in zip(jax.tree.leaves(fwd_rev), jax.tree.leaves(rev_rev)):
                np.testing.assert_allclose(u1, u2, rtol=1e-9, atol=1e-9)
            # forward over forward: <u, H v> for a second direction u
            u = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), x)
            along_v = jax.jit(lambda x, u, v, fun=fun: jax.jvp(lambda z: jax.jvp(fun, (z,), (v,))[1], (x,), (u,))[1])
            uHv = along_v(x, u, v)
            assert float(uHv) == pytest.approx(float(jnp.vdot(*ravel(u, fwd_rev))), rel=1e-9)


def ravel(a, b):
    """Two pytrees of the same structure as two flat vectors."""
    return (
        jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(a)]),
        jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(b)]),
    )


def test_weighted_inverse_derivatives():
    """The criterion's G = L⁻ᵀ diag(c) L⁻¹ (fast path: custom_vmap) has a linearizable JVP
    in L and in c: against central differences, and reverse over reverse against forward."""
    from jaxlme.objective import weighted_inverse

    rng = np.random.default_rng(10)
    n = 6
    A = rng.normal(size=(n, n))
    L0 = np.linalg.cholesky(A @ A.T + n * np.eye(n))
    c0 = rng.uniform(0.5, 2.0, n)
    dL, dc = np.tril(rng.normal(size=(n, n))), rng.normal(size=n)
    with jax.enable_x64(True):
        _, tangent = jax.jvp(weighted_inverse, (L0, c0), (dL, dc))
        fd = central(lambda t: weighted_inverse(L0 + t[0] * dL, c0 + t[0] * dc), np.zeros(1), np.ones(1), 1e-6)
        np.testing.assert_allclose(tangent, fd, rtol=1e-7, atol=1e-9)

        def f(L):
            return jnp.sum(weighted_inverse(L, c0) ** 2)

        np.testing.assert_allclose(jax.jacrev(jax.grad(f))(L0), jax.jacfwd(jax.grad(f))(L0), rtol=1e-9, atol=1e-9)


def test_criterion_grad_every_cp_leaf(model):
    data, pat, arrays = model
    theta = np.array([0.9, 0.2, 0.6])
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        cp = diff.crossprods(pat)
        g = jax.grad(lambda c: diff.criterion(theta, c), allow_int=True)(cp)
        for name in ("a11", "vals_fixed", "zy1", "arr_fixed", "ry", "log_det_w"):
            leaf = getattr(cp, name)
            v = rng.normal(size=leaf.shape)
            if name in ("arr_fixed",):
                v = v + v.T  # a symmetric perturbation keeps cp a valid cross-product

            def along(t, name=name, v=v):
                return diff.criterion(theta, cp.__class__(**{**cp.__dict__, name: getattr(cp, name) + t * v}))

            fd = float(central(lambda t: along(t[0]), np.zeros(1), np.ones(1), h=1e-6))
            exact = float(jnp.vdot(getattr(g, name), v))
            assert exact == pytest.approx(fd, rel=1e-6, abs=1e-7), name


# --- fit: implicit derivatives ------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted(model):
    data, pat, arrays = model
    with jax.enable_x64(True):
        lmm = jaxlme.LMM(FORMULA, data)

        def fit_y(y, reml=True):
            return diff.fit(diff.crossprods(pat, y=y), reml=reml)

        jfit = jax.jit(fit_y, static_argnums=1)
        res = jfit(jnp.asarray(arrays.y))
    return lmm, jfit, res


def test_fit_matches_lmm(model, fitted):
    data, pat, arrays = model
    lmm, jfit, res = fitted
    ref = lmm.fit(warn=False)
    assert int(res.status) in (1, 2)
    np.testing.assert_allclose(res.theta, ref.theta, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(res.beta, ref.fixef.values, rtol=1e-7)
    assert float(res.sigma) == pytest.approx(ref.sigma, rel=1e-7)
    assert float(res.objective) == pytest.approx(ref.objective, abs=1e-8)
    blup = ref.ranef["g"].loc[[str(v) for v in pat.levels[0]]].to_numpy()
    np.testing.assert_allclose(res.b[0], blup, rtol=1e-6, atol=1e-8)


def _refit_outputs(lmm, y, reml=True):
    r = lmm.refit(y, reml=reml, warn=False)
    return np.concatenate([r.theta, r.fixef.values, [r.sigma], r.ranef["g"].to_numpy().ravel()])


@pytest.mark.slow
def test_fit_derivatives_match_refit_differences(model, fitted):
    """dθ̂/dy, dβ̂/dy, dσ̂/dy and dBLUP/dy against central differences of LMM.refit."""
    data, pat, arrays = model
    lmm, jfit, res = fitted
    with jax.enable_x64(True):

        def outputs(y):
            f = diff.fit(diff.crossprods(pat, y=y))
            return jnp.concatenate([f.theta, f.beta, f.sigma[None], f.b[0].ravel()])

        J = np.asarray(jax.jit(jax.jacfwd(outputs))(jnp.asarray(arrays.y)))
        Jr = np.asarray(jax.jit(jax.jacrev(outputs))(jnp.asarray(arrays.y)))
    np.testing.assert_allclose(J, Jr, rtol=1e-9, atol=1e-12)
    rng = np.random.default_rng(4)
    for _ in range(2):
        v = rng.normal(size=pat.n)
        fd = central(lambda y: _refit_outputs(lmm, y), arrays.y, v, h=1e-4)
        np.testing.assert_allclose(J @ v, fd, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_fit_derivatives_in_X_Z_weights(model):
    data, pat, arrays = model
    rng = np.random.default_rng(5)
    w0 = rng.uniform(0.5, 2.0, pat.n)
    with jax.enable_x64(True):

        def out(X, Z, w):
            # a tight solver: the differences divide θ̂'s rounding by h
            f = diff.fit(diff.crossprods(pat, X=X, Z=(Z,), weights=w), options=diff.NewtonOptions(gtol=1e-9))
            return jnp.concatenate([f.theta, f.beta, f.sigma[None]])

        jout = jax.jit(out)
        primal = (arrays.X, arrays.Z[0], w0)
        for i in range(3):
            v = rng.normal(size=primal[i].shape)
            tangents = tuple(v if j == i else np.zeros_like(p) for j, p in enumerate(primal))
            exact = np.asarray(jax.jit(lambda *a: jax.jvp(out, primal, a)[1])(*tangents))
            fd = central(lambda x, i=i: jout(*(x if j == i else p for j, p in enumerate(primal))), primal[i], v, 1e-4)
            np.testing.assert_allclose(exact, fd, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_ift_residual(model, fitted):
    """At θ̂(y) the gradient vanishes, and so does its total derivative in y."""
    data, pat, arrays = model
    lmm, jfit, res = fitted
    with jax.enable_x64(True):

        def stationarity(y):
            cp = diff.crossprods(pat, y=y)
            th = diff.fit(cp).theta
            return jax.grad(diff.criterion)(th, cp)

        y = jnp.asarray(arrays.y)
        assert float(jnp.max(jnp.abs(jax.jit(stationarity)(y)))) < 1e-5
        J = np.asarray(jax.jit(jax.jacfwd(stationarity))(y))
        partial = jax.jit(jax.jacfwd(lambda yy: jax.grad(diff.criterion)(res.theta, diff.crossprods(pat, y=yy))))(y)
        partial = np.asarray(partial)
    assert np.max(np.abs(partial)) > 1e-2  # θ̂ has to move for the total derivative to vanish
    assert np.max(np.abs(J)) < 1e-8 * np.max(np.abs(partial))


@pytest.mark.slow
def test_fit_adjoint_and_second_order(model):
    data, pat, arrays = model
    rng = np.random.default_rng(6)
    with jax.enable_x64(True):

        def sigma(y):
            return diff.fit(diff.crossprods(pat, y=y)).sigma

        y = jnp.asarray(arrays.y)
        v, u = rng.normal(size=pat.n), rng.normal(size=pat.n)
        Hv = jax.jit(lambda y, v: jax.jvp(jax.grad(sigma), (y,), (v,))[1])(y, v)
        Hu = jax.jit(lambda y, u: jax.jvp(jax.grad(sigma), (y,), (u,))[1])(y, u)
        assert float(jnp.vdot(Hv, u)) == pytest.approx(float(jnp.vdot(Hu, v)), rel=1e-8)  # symmetric
        g = jax.jit(jax.grad(sigma))
        # h = 1e-3: the gradient carries the solver's rounding (~1e-10), 1e-4 would amplify it
        fd = central(lambda yy: np.asarray(g(jnp.asarray(yy))), np.asarray(y), v, 1e-3)
        np.testing.assert_allclose(Hv, fd, rtol=1e-5, atol=1e-6 * np.max(np.abs(Hv)))
        rr = jax.jit(lambda y, v: jax.grad(lambda yy: jnp.vdot(jax.grad(sigma)(yy), v))(y))(y, v)
        np.testing.assert_allclose(rr, Hv, rtol=1e-8, atol=1e-12)


# --- profiled: envelope --------------------------------------------------------------------


@pytest.mark.slow
def test_profiled_envelope(model):
    data, pat, arrays = model
    rng = np.random.default_rng(7)
    with jax.enable_x64(True):
        y = jnp.asarray(arrays.y)

        def prof(y, reml):
            return diff.profiled(diff.crossprods(pat, y=y), reml=reml)

        for reml in (True, False):
            g = jax.jit(jax.grad(prof), static_argnums=1)(y, reml)
            theta = diff.fit(diff.crossprods(pat, y=y), reml=reml).theta
            partial = jax.grad(lambda yy, t=theta, r=reml: diff.criterion(t, diff.crossprods(pat, y=yy), reml=r))(y)
            np.testing.assert_allclose(g, partial, rtol=1e-10, atol=1e-10)
            v = rng.normal(size=pat.n)
            fd = central(lambda yy, r=reml: float(prof(jnp.asarray(yy), r)), np.asarray(y), v, 1e-4)
            assert float(jnp.vdot(g, v)) == pytest.approx(float(fd), rel=1e-6)
        # second order goes through θ̂: jacfwd(grad) against differences of the gradient
        gfun = jax.jit(jax.grad(lambda yy: prof(yy, False)))
        Hv = jax.jit(lambda yy, vv: jax.jvp(jax.grad(lambda z: prof(z, False)), (yy,), (vv,))[1])(y, v)
        fd = central(lambda yy: np.asarray(gfun(jnp.asarray(yy))), np.asarray(y), v, 1e-3)
        np.testing.assert_allclose(Hv, fd, rtol=1e-5, atol=1e-6 * np.max(np.abs(Hv)))
        # jax.hessian (forward over reverse) of the profiled criterion along v
        h = jax.jit(jax.hessian(lambda a: prof(y + a[0] * v, False)))(jnp.zeros(1))
        assert float(h[0, 0]) == pytest.approx(float(jnp.vdot(v, Hv)), rel=1e-8)


# --- boundary fit ---------------------------------------------------------------------------


def test_boundary_fit_dyestuff2():
    data = pd.read_csv(SHARED / "Dyestuff2.csv") if (SHARED / "Dyestuff2.csv").exists() else None
    if data is None:
        data = jaxlme.datasets.load("Dyestuff2")
    pat, arrays = diff.pattern("Yield ~ 1 + (1 | Batch)", data)
    with jax.enable_x64(True):

        def out(y):
            f = diff.fit(diff.crossprods(pat, y=y))
            return f.theta, f.beta, f.status

        theta, beta, status = jax.jit(out)(jnp.asarray(arrays.y))
        assert float(theta[0]) == 0.0 and int(status) in (1, 2)
        Jt, Jb = jax.jit(jax.jacrev(lambda y: out(y)[:2]))(jnp.asarray(arrays.y))
    np.testing.assert_array_equal(np.asarray(Jt), 0.0)
    np.testing.assert_allclose(np.asarray(Jb), 1.0 / pat.n, rtol=1e-12)


# --- transformations: vmap, jit, shard_map ---------------------------------------------------


@pytest.mark.slow
def test_vmap_fit_equals_refit_loop(model, fitted):
    data, pat, arrays = model
    lmm, jfit, res = fitted
    rng = np.random.default_rng(8)
    ys = arrays.y[None, :] + rng.normal(0, 0.5, (4, pat.n))
    with jax.enable_x64(True):
        batch = jax.jit(jax.vmap(lambda y: diff.fit(diff.crossprods(pat, y=y))))(jnp.asarray(ys))
        # and the derivative, vmapped
        dbeta = jax.jit(jax.vmap(jax.grad(lambda y: diff.fit(diff.crossprods(pat, y=y)).beta[1])))(jnp.asarray(ys))
    for i, y in enumerate(ys):
        r = lmm.refit(y, warn=False)
        np.testing.assert_allclose(batch.theta[i], r.theta, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(batch.beta[i], r.fixef.values, rtol=1e-7)
        assert float(batch.sigma[i]) == pytest.approx(r.sigma, rel=1e-7)
        np.testing.assert_allclose(batch.b[0][i], r.ranef["g"].to_numpy(), rtol=1e-6, atol=1e-8)
    assert np.all(np.isfinite(np.asarray(dbeta)))


def test_simulate_reparameterised(model, fitted):
    data, pat, arrays = model
    lmm, jfit, res = fitted
    key = jax.random.PRNGKey(0)
    with jax.enable_x64(True):
        ys = jax.vmap(lambda k: diff.simulate(k, res, pat, arrays))(jax.random.split(key, 4000))
        # the mean is Xβ̂, exactly differentiable in β̂: dy*/dβ = X
        J = jax.jacfwd(lambda beta: diff.simulate(key, res._replace(beta=beta), pat, arrays))(res.beta)
        # σ̂ scales the draw linearly: y* - Xβ̂ is proportional to σ̂
        y1 = diff.simulate(key, res, pat, arrays)
        y2 = diff.simulate(key, res._replace(sigma=2 * res.sigma), pat, arrays)
    np.testing.assert_allclose(J, arrays.X, rtol=1e-14)
    mean = arrays.X @ np.asarray(res.beta)
    np.testing.assert_allclose(np.asarray(y2) - mean, 2 * (np.asarray(y1) - mean), rtol=1e-12, atol=1e-12)
    # marginal covariance σ²(Z Λ Λ'Z' + I): compare the sample's diagonal loosely
    Z = arrays.Z[0]
    lam = np.array([[res.theta[0], 0.0], [res.theta[1], res.theta[2]]])
    var = float(res.sigma) ** 2 * (np.sum((Z @ lam) ** 2, axis=1) + 1.0)
    np.testing.assert_allclose(np.asarray(ys).var(axis=0), var, rtol=0.12)
    np.testing.assert_allclose(np.asarray(ys).mean(axis=0), mean, atol=0.15 * np.sqrt(var.max()))


def test_float64_required(model):
    data, pat, arrays = model
    with jax.enable_x64(False):
        with pytest.raises(TypeError, match="x64 mode is off"):
            diff.crossprods(pat)
    with jax.enable_x64(True):
        cp = diff.crossprods(pat)
        with pytest.raises(TypeError, match="float32"):
            diff.criterion(jnp.ones(3, jnp.float32), cp)
        with pytest.raises(TypeError, match="float32"):
            diff.crossprods(pat, y=arrays.y.astype(np.float32))
        with pytest.raises(ValueError, match="y must have shape"):
            diff.crossprods(pat, y=arrays.y[:-1])


def test_objective_function_refuses_float32(model):
    """LMM.objective_function: float32 θ (x64 off, or float32 inside a trace) is an error, not a
    criterion silently computed in float32."""
    data, _, _ = model
    f = jaxlme.LMM(FORMULA, data).objective_function()
    with jax.enable_x64(False):
        with pytest.raises(TypeError, match="float64"):
            f(np.ones(3))
        with pytest.raises(TypeError, match="float64"):
            jax.grad(f)(jnp.ones(3))
    with jax.enable_x64(True):
        with pytest.raises(TypeError, match="float32"):
            jax.jit(f)(jnp.ones(3, jnp.float32))
        assert np.isfinite(f(np.ones(3))) and jax.grad(f)(np.ones(3)).dtype == jnp.float64


SHARD_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, pandas as pd
    from jax.sharding import Mesh, PartitionSpec as P
    from jaxlme import diff
    data = pd.read_csv({path!r})
    pat, arrays = diff.pattern("y ~ x + (x | g)", data)
    assert len(jax.devices()) == 4
    mesh = Mesh(np.array(jax.devices()), ("b",))
    rng = np.random.default_rng(0)
    ys = arrays.y[None, :] + rng.normal(0, 0.5, (8, pat.n))
    with jax.enable_x64(True):
        def one(y):
            f = diff.fit(diff.crossprods(pat, y=y))
            return jnp.concatenate([f.theta, f.beta, jax.grad(lambda z: diff.fit(diff.crossprods(pat, y=z)).sigma)(y)])
        sharded = jax.jit(jax.shard_map(jax.vmap(one), mesh=mesh, in_specs=P("b"), out_specs=P("b"), check_vma=False))
        a = np.asarray(sharded(jnp.asarray(ys)))
        b = np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(ys)))
    np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10)  # batches of 2 vs 8 iterate differently
    print("OK", a.shape)
    """
)


@pytest.mark.slow
def test_shard_map_over_vmapped_fits(tmp_path):
    path = tmp_path / "data.csv"
    unbalanced().to_csv(path, index=False)
    script = tmp_path / "shard.py"
    script.write_text(SHARD_SCRIPT.format(path=str(path)))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK (8, " in out.stdout


def test_criterion_rejects_bad_theta(model):
    data, pat, arrays = model
    with jax.enable_x64(True), warnings.catch_warnings():
        cp = diff.crossprods(pat)
        with pytest.raises(ValueError, match="theta must have shape"):
            diff.criterion(jnp.ones(2), cp)
