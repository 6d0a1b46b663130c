"""Differentiable mixed models: pure JAX functions from data to criterion, estimates and draws.

``jaxlme.LMM`` builds its cross-products with NumPy and steers its fits from the host; this
module exposes the same computation as pure functions over pytrees, so that the response,
the fixed-effects matrix, the random-effects model matrices and the prior weights can be
traced, differentiated, vmapped and sharded:

>>> pat, arrays = diff.pattern("Reaction ~ Days + (Days | Subject)", data)   # doctest: +SKIP
>>> with jax.enable_x64(True):                                                # doctest: +SKIP
...     cp = diff.crossprods(pat, y=arrays.y)          # O(n), traceable
...     res = diff.fit(cp)                             # θ̂, β̂, σ̂, b̂, differentiable in cp
...     dy = jax.grad(lambda y: diff.fit(diff.crossprods(pat, y=y)).beta[1])(arrays.y)

Everything that does not depend on the values (level codes, the sparse pattern of the
blocked cross-products, the static layout) is computed once by :func:`pattern`;
:func:`crossprods` puts values on it with the same code ``LMM`` runs in NumPy.

Derivatives of the fit use the implicit function theorem, not the optimizer's loop: at the
optimum the projected gradient of the criterion vanishes, so on the free set
dθ̂ = -H⁻¹ ∂(∂f/∂θ)/∂data; a θ on its lower bound has zero derivative.  β̂, σ̂ and the
conditional modes are then ordinary functions of (θ̂, data).

Everything here computes in float64 and refuses to run otherwise: enable it with
``with jax.enable_x64(True):`` around the code that calls these functions (or globally,
``jax.config.update("jax_enable_x64", True)``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._config import x64
from .design import build_design
from .objective import lambda_blocks, objective, solve_effects
from .optimizer import NewtonOptions, newton_minimize
from .params import theta_scale
from .structure import (
    Layout,
    Structure,
    StructurePattern,
    assemble_structure,
    design_pattern,
    structure_values,
)

__all__ = [
    "Arrays",
    "Fit",
    "NewtonOptions",
    "Pattern",
    "criterion",
    "crossprods",
    "fit",
    "pattern",
    "profiled",
    "simulate",
]


class Arrays(NamedTuple):
    """The differentiable inputs of a model, as :func:`pattern` read them from the data.

    Attributes:
        y: (n,) response (net of the formula's offset, if any).
        X: (n, p) fixed-effects model matrix.
        Z: per random-effects term (n, r_t) model-matrix columns, terms in lme4's order.
        weights: (n,) prior weights, or None for an unweighted model.
    """

    y: np.ndarray
    X: np.ndarray
    Z: tuple[np.ndarray, ...]
    weights: np.ndarray | None


@dataclass(frozen=True, eq=False)
class Pattern:
    """The non-differentiable part of a model: level codes, sparse layout, names.

    Static under ``jit`` (hashed by identity), so build it once, outside the traced code.

    Attributes:
        structure: the cross-products' value-independent pattern.
        xnames: fixed-effect column names.
        terms: random-effects term names, in lme4's order (the order of ``Fit.b``).
        levels: per term, the level labels (rows of that term's ``Fit.b``).
        columns: per term, its column names.
        data: the :class:`Arrays` read from the data (defaults of :func:`crossprods`).
    """

    structure: StructurePattern
    xnames: tuple[str, ...]
    terms: tuple[str, ...]
    levels: tuple[tuple, ...]
    columns: tuple[tuple[str, ...], ...]
    data: Arrays

    @property
    def layout(self) -> Layout:
        return self.structure.layout

    @property
    def n(self) -> int:
        return self.layout.n

    @property
    def theta_lower(self) -> np.ndarray:
        """Lower bounds of θ (0 for the diagonal of each Λ_t, -inf elsewhere)."""
        return self.layout.theta_lower


jax.tree_util.register_static(Pattern)


class Fit(NamedTuple):
    """A fit (a pytree; every float field differentiable in the cross-products).

    Attributes:
        theta: (ntheta,) relative covariance parameters θ̂ (lme4's order).
        beta: (p,) fixed effects β̂.
        sigma: residual standard deviation σ̂.
        b: per term (k_t, r_t) conditional modes of the random effects.
        objective: REML criterion or ML deviance at θ̂ (lme4's scale).
        status: optimizer status code (1, 2: converged; see ``jaxlme.optimizer.STATUS``).
        iterations: optimizer iterations.
    """

    theta: jax.Array
    beta: jax.Array
    sigma: jax.Array
    b: tuple[jax.Array, ...]
    objective: jax.Array
    status: jax.Array
    iterations: jax.Array


_X64_HINT = 'wrap the call in `with jax.enable_x64(True):` or run `jax.config.update("jax_enable_x64", True)`'


def _require_float64(name: str, tree) -> None:
    """Raise instead of silently computing in float32."""
    if jax.dtypes.canonicalize_dtype(np.float64) != np.float64:
        raise TypeError(f"jaxlme.diff.{name} computes in float64, but JAX's x64 mode is off: {_X64_HINT}")
    for leaf in jax.tree.leaves(tree):
        dtype = getattr(leaf, "dtype", None)
        if dtype is not None and jnp.issubdtype(dtype, jnp.floating) and dtype != np.float64:
            raise TypeError(f"jaxlme.diff.{name} got a {dtype} input; it needs float64 arrays ({_X64_HINT})")


@x64
def pattern(formula: str, data, *, weights=None) -> tuple[Pattern, Arrays]:
    """Read a model's formula and data once, on the host.

    Args:
        formula: lme4-style formula, e.g. ``"y ~ x + (x | g)"``.
        data: DataFrame (or dict of columns).
        weights: Prior weights (lme4's ``weights``): a column name or one value > 0 per row.

    Returns:
        ``(pattern, arrays)``: the static :class:`Pattern` and the data's :class:`Arrays`
        (NumPy float64), the default inputs of :func:`crossprods`.
    """
    design = build_design(formula, data, warn=False, weights=weights)
    arrays = Arrays(
        y=np.asarray(design.y, dtype=np.float64),
        X=np.asarray(design.X, dtype=np.float64),
        Z=tuple(np.asarray(t.Z, dtype=np.float64) for t in design.terms),
        weights=None if design.weights is None else np.asarray(design.weights, dtype=np.float64),
    )
    pat = Pattern(
        structure=design_pattern(design),
        xnames=tuple(design.xnames),
        terms=tuple(t.name for t in design.terms),
        levels=tuple(tuple(t.levels) for t in design.terms),
        columns=tuple(tuple(t.columns) for t in design.terms),
        data=arrays,
    )
    return pat, arrays


def crossprods(pat: Pattern, *, y=None, X=None, Z=None, weights=None) -> Structure:
    """The blocked cross-products of [Z X y] on a fixed pattern: the model's only O(n) pass.

    Traceable and differentiable in ``y``, ``X``, ``Z`` and ``weights`` (any order); the
    same code ``jaxlme.LMM`` runs with NumPy.

    Args:
        pat: the model's :class:`Pattern`.
        y: (n,) response; default the data's.
        X: (n, p) fixed-effects matrix; default the data's.
        Z: per term (n, r_t) random-effects columns; default the data's.
        weights: (n,) prior weights > 0; default the data's (None: unweighted).

    Returns:
        The cross-products (a pytree) that :func:`criterion` and :func:`fit` take.
    """
    d = pat.data
    y = d.y if y is None else y
    X = d.X if X is None else X
    Z = d.Z if Z is None else tuple(Z)
    weights = d.weights if weights is None else weights
    _require_float64("crossprods", (y, X, Z, weights))
    lay = pat.layout
    y, X = jnp.asarray(y), jnp.asarray(X)
    Z = tuple(jnp.asarray(z) for z in Z)
    if y.shape != (lay.n,):
        raise ValueError(f"y must have shape ({lay.n},), got {y.shape}")
    if X.shape != (lay.n, lay.p):
        raise ValueError(f"X must have shape ({lay.n}, {lay.p}), got {X.shape}")
    if len(Z) != len(lay.terms) or any(z.shape != (lay.n, t.ncols) for z, t in zip(Z, lay.terms)):
        want = ", ".join(f"({lay.n}, {t.ncols})" for t in lay.terms)
        raise ValueError(f"Z must be one array per term with shapes {want}, got {[z.shape for z in Z]}")
    if weights is None:
        log_det_w = jnp.zeros((), jnp.float64)
    else:
        weights = jnp.asarray(weights)
        if weights.shape != (lay.n,):
            raise ValueError(f"weights must have shape ({lay.n},), got {weights.shape}")
        sw = jnp.sqrt(weights)
        y, X, Z = y * sw, X * sw[:, None], tuple(z * sw[:, None] for z in Z)
        log_det_w = jnp.sum(jnp.log(weights))
    values = structure_values(jnp, pat.structure, y, X, Z)
    return assemble_structure(pat.structure, values, log_det_w, put=lambda a, dtype: jnp.asarray(a, dtype))


def criterion(theta, cp: Structure, *, reml: bool = True) -> jax.Array:
    """REML criterion (``reml=True``) or ML deviance at θ, on lme4's scale.

    Differentiable to any order, forward and reverse mode, in θ and in every float leaf
    of ``cp``.

    Args:
        theta: (ntheta,) relative covariance parameters in lme4's order.
        cp: cross-products from :func:`crossprods`.
        reml: REML criterion or ML deviance.

    Returns:
        The scalar criterion.
    """
    _require_float64("criterion", (theta, cp))
    theta = jnp.asarray(theta)
    if theta.shape != (cp.layout.ntheta,):
        raise ValueError(f"theta must have shape ({cp.layout.ntheta},), got {theta.shape}")
    return objective(theta, cp, reml)


def _theta_scale(cp: Structure) -> jax.Array:
    """:func:`jaxlme.params.theta_scale` (as ``LMM`` scales its optimizer), read off the
    diagonal of the cross-products; constant to derivatives."""
    lay = cp.layout
    diag_rest = jnp.diagonal(cp.arr_fixed)
    zz1 = jnp.sum(jnp.diagonal(cp.a11, axis1=1, axis2=2), axis=0)  # the head terms' columns side by side
    zz = lay.split_head(zz1)
    zz += [
        jnp.sum(diag_rest[t.offset : t.offset + t.nlevels * t.ncols].reshape(t.nlevels, t.ncols), axis=0)
        for t in lay.rest_terms
    ]
    return jax.lax.stop_gradient(theta_scale(zz, lay.n, lay, xp=jnp))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _solve(cp: Structure, theta0, reml: bool, options: NewtonOptions):
    """The optimizer's θ̂ (no derivative: the caller attaches the implicit one); one
    compiled program per layout, also when called outside ``jit``."""
    cp = jax.lax.stop_gradient(cp)
    lay = cp.layout
    scale = _theta_scale(cp)
    lb = jnp.asarray(lay.theta_lower)
    start = jnp.asarray(lay.theta_start) * scale if theta0 is None else jax.lax.stop_gradient(jnp.asarray(theta0))
    if start.shape != (lay.ntheta,):
        raise ValueError(f"theta0 must have shape ({lay.ntheta},), got {start.shape}")

    def fun(theta_tilde, s):
        return objective(theta_tilde * scale, s, reml)

    state = newton_minimize(fun, jnp.maximum(start, lb) / scale, lb, (cp,), options)
    return state.x * scale, state.status, state.it


def _active(theta: jax.Array, lay: Layout) -> jax.Array:
    """θ components held on their lower bound (zero derivative)."""
    lb = jnp.asarray(lay.theta_lower)
    return jnp.isfinite(lb) & (jax.lax.stop_gradient(theta) <= lb)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _implicit(theta_star: jax.Array, cp: Structure, reml: bool) -> jax.Array:
    """θ̂ = theta_star in value; its derivative in ``cp`` by the implicit function theorem
    on the projected stationarity condition (``theta_star`` carries no derivative)."""
    return theta_star


@_implicit.defjvp
def _implicit_jvp(reml, primals, tangents):
    theta_star, cp = primals
    _, dcp = tangents
    # the primal goes through the wrapper again, so the rule's own derivative (second
    # order) sees θ̂ move with cp
    theta = _implicit(theta_star, cp, reml)
    free = ~_active(theta_star, cp.layout)

    def grad_theta(th, c):
        return jax.grad(objective)(th, c, reml)

    _, dg = jax.jvp(lambda c: grad_theta(theta, c), (cp,), (dcp,))
    H = jax.jacfwd(grad_theta)(theta, cp)
    both = free[:, None] & free[None, :]
    Hf = jnp.where(both, H, jnp.eye(H.shape[0], dtype=H.dtype))
    dtheta = jnp.linalg.solve(Hf, jnp.where(free, -dg, 0.0))
    return theta, jnp.where(free, dtheta, 0.0)


def fit(cp: Structure, *, reml: bool = True, theta0=None, options: NewtonOptions = NewtonOptions()) -> Fit:
    """Fit by REML or ML with jaxlme's bounded Newton solver, traceable (jit, vmap).

    θ̂'s derivative in ``cp`` comes from the implicit function theorem at the optimum (the
    solver's iterations are not differentiated); a θ on its lower bound has derivative 0.
    β̂, σ̂ and the conditional modes are differentiated through θ̂ and ``cp``.  Unlike
    ``LMM.fit`` there are no host-side restarts (boundary escapes, BFGS polishing): check
    ``status`` (1 or 2: converged).

    Args:
        cp: cross-products from :func:`crossprods`.
        reml: REML (default) or maximum likelihood.
        theta0: starting θ (default lme4's Λ = I, in unit-RMS Z columns); not differentiated.
        options: the solver's :class:`NewtonOptions` (``hessian="exact"`` or ``"bfgs"``).

    Returns:
        The :class:`Fit`.
    """
    _require_float64("fit", (cp, theta0))
    theta_star, status, it = _solve(cp, theta0, reml, options)
    theta = _implicit(theta_star, cp, reml)
    eff = solve_effects(theta, cp, reml)
    return Fit(theta, eff.beta, eff.sigma, tuple(eff.b), objective(theta, cp, reml), status, it)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _profiled(cp: Structure, theta0, reml: bool, options: NewtonOptions) -> jax.Array:
    theta, _, _ = _solve(cp, theta0, reml, options)
    return objective(theta, cp, reml)


@_profiled.defjvp
def _profiled_jvp(reml, options, primals, tangents):
    cp, theta0 = primals
    dcp, _ = tangents
    theta_star, _, _ = _solve(cp, theta0, reml, options)
    theta = _implicit(theta_star, cp, reml)  # differentiable, for derivatives of this rule
    return jax.jvp(lambda c: objective(theta, c, reml), (cp,), (dcp,))


def profiled(cp: Structure, *, reml: bool = True, theta0=None, options: NewtonOptions = NewtonOptions()) -> jax.Array:
    """The criterion at θ̂, min over θ of :func:`criterion`, as a function of the data.

    Its first derivative is the criterion's partial derivative in ``cp`` at θ̂ (the
    envelope theorem: ∂f/∂θ = 0 at a free optimum, dθ̂ = 0 on a bound), which needs no
    derivative of θ̂; second derivatives go through θ̂'s implicit derivative.

    Args:
        cp: cross-products from :func:`crossprods`.
        reml: REML criterion (default) or ML deviance.
        theta0: starting θ for the solver (not differentiated).
        options: the solver's :class:`NewtonOptions`.

    Returns:
        The scalar profiled criterion.
    """
    _require_float64("profiled", (cp, theta0))
    return _profiled(cp, theta0, reml, options)


def simulate(key: jax.Array, res: Fit, pat: Pattern, arrays: Arrays | None = None) -> jax.Array:
    """One response drawn from the fitted model, reparameterised (differentiable bootstrap).

    y* = Xβ̂ + Σ_t Z_t b*_t + σ̂ ε/√w with b*_t = σ̂ u_t Λ_t', u_t and ε standard normal:
    lme4's ``simulate`` with new random effects, written so that y* is a differentiable
    function of θ̂, β̂, σ̂, X, Z and the weights for a fixed ``key``.

    Args:
        key: a ``jax.random`` key.
        res: the :class:`Fit` to draw from.
        pat: the model's :class:`Pattern`.
        arrays: the model's :class:`Arrays` (default the data's).

    Returns:
        (n,) simulated response.
    """
    arrays = pat.data if arrays is None else arrays
    _require_float64("simulate", (res, arrays))
    lay = pat.layout
    keys = jax.random.split(key, len(lay.terms) + 1)
    lams = lambda_blocks(res.theta, lay)
    mean = jnp.asarray(arrays.X) @ res.beta
    for k, t, lam, idx, Zt in zip(keys[1:], lay.terms, lams, pat.structure.index, arrays.Z):
        u = jax.random.normal(k, (t.nlevels, t.ncols), dtype=jnp.float64)
        b = res.sigma * (u @ lam.T)
        mean = mean + jnp.sum(jnp.asarray(Zt) * b[idx], axis=1)
    eps = jax.random.normal(keys[0], (lay.n,), dtype=jnp.float64)
    scale = res.sigma if arrays.weights is None else res.sigma / jnp.sqrt(jnp.asarray(arrays.weights))
    return mean + scale * eps
