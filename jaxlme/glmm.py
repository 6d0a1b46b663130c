"""Generalized linear mixed models (lme4's ``glmer``): PIRLS, Laplace and adaptive
Gauss-Hermite quadrature on the linear model's blocked cross-products.

For a binomial or Poisson response with link g, lme4 approximates the deviance at
covariance parameters θ and fixed effects β by the Laplace approximation

    D(θ, β) = Σ devres(y, μ(u*)) + ‖u*‖² + log|Λ'Z'W(u*)ZΛ + I|,

where u* minimizes the penalized deviance Σ devres + ‖u‖² and W holds the IRLS
weights at u*.  u* is found by penalized iteratively reweighted least squares (PIRLS):
each step is a weighted penalized least-squares problem, exactly the one the linear model
solves, so it is solved by the same blocked Cholesky kernel (``jaxlme.objective``) on
cross-products built on the same sparse pattern (``jaxlme.structure``): only the
observation weights change between iterations, never the pattern.

Derivatives.  PIRLS runs to convergence outside the derivative (``stop_gradient``); two
more full Newton steps (observed-information weights) are then taken inside it.  At a
fixed point of Newton's map its Jacobian vanishes, so these two steps carry the exact
first and second derivatives of u*(θ, β): the bounded Newton optimizer
(``jaxlme.optimizer``) gets an exact autodiff gradient and Hessian of D.

As lme4 with nAGQ ≥ 1, the fit has two stages: θ alone with β from PIRLS (lme4's
nAGQ = 0 criterion), then θ and β jointly from there.  ``nagq > 1`` (one scalar
random-effects term only, as in lme4) replaces D by adaptive Gauss-Hermite quadrature
around u* with the conditional SDs from the same factor.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import messages
from ._config import x64
from .bootstrap import BootstrapResult
from .boundary import SINGULAR_TOL
from .compiled import compile_program
from .design import DataError, as_frame, build_design, formula_variables, model_matrix
from .family import Family, binomial_trials, make_family
from .formula import FormulaError, parse_formula
from .inference import interval_frame, interval_request, profile_interval, varpar_names
from .objective import block_diagonals, criterion_terms, factorize, lambda_blocks, solve_effects
from .optimizer import STATUS, NewtonOptions, Status, newton_minimize
from .params import COR_MAX, group_labels, phi_kinds, phi_to_psi, psi_to_phi, theta_from_vc, theta_scale, vc_values
from .predict import predict
from .results import LMMResult, OptSummary, fixef_and_footer
from .simulation import resolve_seed
from .structure import (
    Layout,
    StructurePattern,
    assemble_structure,
    design_pattern,
    is_small,
    structure_pattern,
    structure_values,
)

__all__ = ["GLMM", "glmm"]

PIRLS_MAXIT = 60
PIRLS_HALVINGS = 20
NEWTON_TAIL = 1  # differentiable Newton steps after the converged PIRLS (see module doc)


def _split_cbind(response: str) -> tuple[str, str] | None:
    """The two expressions of ``cbind(a, b)``, or None for another response."""
    m = re.fullmatch(r"\s*cbind\s*\((.*)\)\s*", response)
    if not m:
        return None
    inner, depth, parts, start = m.group(1), 0, [], 0
    for i, ch in enumerate(inner):
        depth += ch in "(["
        depth -= ch in ")]"
        if ch == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise FormulaError(f"cbind response {response.strip()!r} needs exactly two columns: cbind(successes, failures)")
    return parts[0].strip(), parts[1].strip()


def _eval_column(expr: str, data: pd.DataFrame) -> np.ndarray:
    """Values of a response expression on every row of ``data`` (NaN where its columns are missing)."""
    if expr in data.columns:
        col = data[expr]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise DataError(f"Response column '{expr}' must be numeric, got dtype {col.dtype}")
        return col.to_numpy(dtype=float, na_value=np.nan)
    needed = formula_variables(f"~ I({expr})")
    missing = sorted(v for v in needed if v not in data.columns)
    if missing:
        raise DataError(f"Column(s) {', '.join(map(repr, missing))} used in the response {expr!r} not found in data")
    ok = np.ones(len(data), bool)
    for v in needed:
        ok &= data[v].notna().to_numpy()
    out = np.full(len(data), np.nan)
    if ok.any():
        out[ok] = np.asarray(model_matrix(f"~ 0 + I({expr})", data.loc[ok], f"the response {expr}"), dtype=float)[:, 0]
    return out


def _rest_of_formula(text: str) -> str:
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "~" and depth == 0:
            return text[i + 1 :]
    raise FormulaError(f"formula {text!r} has no '~'")


@dataclass(frozen=True)
class _Spec:
    """What a GLMM's programs depend on besides array shapes (hashable: part of the
    compiled-program key, so same-shaped models share executables in memory and on disk)."""

    layout: Layout  # the joint (u, β) pattern's
    layout_u: Layout  # the u-only (p = 0) pattern's
    family: str
    link: str
    nagq: int


_PATTERN_FIELDS = ("index", "entry", "rows", "levs", "rest_rows", "pair_a", "pair_b", "pair_target")


def _pattern_arrays(pat: StructurePattern) -> dict:
    """A pattern's arrays as host arrays (put on the device with the model's other arrays,
    as program arguments, not constants)."""
    out = {}
    for f in _PATTERN_FIELDS:
        v = getattr(pat, f)
        out[f] = tuple(np.asarray(x) for x in v) if isinstance(v, tuple) else np.asarray(v)
    return out


class _Kernel:
    """Pure JAX functions of (θ, β) on a model's arrays ``a`` (built inside a traced program
    from the static :class:`_Spec` and the arrays handed to it)."""

    def __init__(self, spec: _Spec, a: dict):
        self.family = make_family(spec.family, spec.link)
        self.nagq = spec.nagq
        self.layout = spec.layout
        self.pat_joint = StructurePattern(spec.layout, **a["pj"])
        self.pat_u = StructurePattern(spec.layout_u, **a["pu"])
        self.y, self.wt, self.m, self.off, self.X = a["y"], a["wt"], a["m"], a["off"], a["X"]
        self.Z = a["Z"]
        self.index = a["pj"]["index"]
        self.n, self.p = spec.layout.n, spec.layout.p
        self.canonical = (spec.family, spec.link) in (("binomial", "logit"), ("poisson", "log"))
        if spec.nagq > 1:
            z, w = np.polynomial.hermite_e.hermegauss(spec.nagq)
            self.gh_z, self.gh_w = jnp.asarray(z), jnp.asarray(w / math.sqrt(2.0 * math.pi))

    # -- pieces ---------------------------------------------------------------------
    def lambdas(self, theta):

        return lambda_blocks(theta, self.layout)

    def zb(self, theta, us):
        """Z Λ u per observation."""
        out = jnp.zeros(self.n, theta.dtype)
        for Zt, idx, u, lam in zip(self.Z, self.index, us, self.lambdas(theta)):
            b = u @ lam.T
            out = out + jnp.sum(Zt * b[idx], axis=1)
        return out

    def devres(self, eta):
        mu = self.family.link.linkinv(eta)
        return self.family.dev_resid(self.y, mu, self.wt)

    def penalized(self, eta, us):
        return jnp.sum(self.devres(eta)) + sum(jnp.sum(u * u) for u in us)

    def working(self, eta, observed: bool):
        """IRLS weights and working response (η without the offset): Fisher scoring, or
        Newton's observed information where ``observed`` (non-canonical links)."""
        fam = self.family
        mu = fam.link.linkinv(eta)
        me = fam.link.mu_eta(eta)
        v = fam.variance(mu)
        w_fisher = self.wt * me * me / v

        def half_grad(e):  # ∂(devres/2)/∂η, elementwise
            mu_e = fam.link.linkinv(e)
            return -self.wt * (self.y - mu_e) * fam.link.mu_eta(e) / fam.variance(mu_e)

        if observed and not self.canonical:
            g, h = jax.jvp(half_grad, (eta,), (jnp.ones_like(eta),))
            w = jnp.where(h > 1e-12 * w_fisher, h, w_fisher)
        else:
            g, w = half_grad(eta), w_fisher
        return w, (eta - self.off) - g / w

    def structure(self, pat, w, z, X):
        sw = jnp.sqrt(w)
        vals = structure_values(jnp, pat, sw * z, sw[:, None] * X, [sw[:, None] * Zt for Zt in self.Z])
        return assemble_structure(pat, vals, jnp.zeros((), w.dtype), put=lambda a, dtype: jnp.asarray(a, dtype))

    def solve(self, theta, beta, eta, observed: bool):
        """One PLS step from η: (β, u) jointly when ``beta`` is None, else u with β fixed."""
        w, z = self.working(eta, observed)
        if beta is None:
            eff = solve_effects(theta, self.structure(self.pat_joint, w, z, self.X), reml=False)
            return eff.beta, eff.u
        s = self.structure(self.pat_u, w, z - self.X @ beta, jnp.zeros((self.n, 0), w.dtype))
        return beta, solve_effects(theta, s, reml=False).u

    def eta_of(self, theta, beta, us):
        return self.off + self.X @ beta + self.zb(theta, us)

    def zero_modes(self, dtype):
        """All-zero conditional modes, one (levels × columns) array per term."""
        return tuple(jnp.zeros((t.nlevels, t.ncols), dtype) for t in self.layout.terms)

    # -- PIRLS ----------------------------------------------------------------------
    def pirls(self, theta, beta, eta0, u0=None):
        """Converged (β, u, η, iterations) at θ by PIRLS with step halving: β and u from η0
        when ``beta`` is None, else u with β fixed, from ``u0`` (default 0)."""
        joint = beta is None
        zeros = self.zero_modes(theta.dtype)
        us0 = zeros if (joint or u0 is None) else tuple(u0)
        b0 = jnp.zeros(self.p, theta.dtype) if joint else beta

        def step(eta, us, neta, nus, t):
            return eta + t * (neta - eta), tuple(a + t * (bb - a) for a, bb in zip(us, nus))

        def body(c):
            it, b, us, eta, pd, _ = c
            nb, nus = self.solve(theta, None if joint else beta, eta, observed=False)
            neta = self.eta_of(theta, nb, nus)
            full = self.penalized(neta, nus)

            def halve(h):  # only when the full step does not decrease the penalized deviance
                t, k, _ = h
                t = 0.5 * t
                return t, k + 1, self.penalized(*step(eta, us, neta, nus, t))

            def worse(h):
                return ~(jnp.isfinite(h[2]) & (h[2] <= pd)) & (h[1] < PIRLS_HALVINGS)

            t, _, new_pd = jax.lax.while_loop(worse, halve, (jnp.array(1.0, theta.dtype), jnp.array(0), full))
            ok = jnp.isfinite(new_pd) & (new_pd <= pd)
            t = jnp.where(ok, t, 0.0)
            new_pd = jnp.where(ok, new_pd, pd)
            eta2, us2 = step(eta, us, neta, nus, t)
            b2 = b + t * (nb - b)
            done = (jnp.abs(pd - new_pd) <= 1e-11 * (1.0 + jnp.abs(new_pd))) | ~ok
            return it + 1, b2, us2, eta2, new_pd, done

        def cond(c):
            return (~c[5]) & (c[0] < PIRLS_MAXIT)

        start = (jnp.array(0), b0, zeros, eta0, jnp.array(jnp.inf, theta.dtype), jnp.array(False))
        if not joint:
            eta_start = self.eta_of(theta, beta, us0)
            start = (jnp.array(0), b0, us0, eta_start, self.penalized(eta_start, us0), jnp.array(False))
        it, b, us, eta, _, _ = jax.lax.while_loop(cond, body, start)
        return b, us, eta, it

    def converged_modes(self, theta, beta, eta0, u0=None):
        """PIRLS' converged (β, u) at θ (β free when None), outside every derivative."""
        b, us, _, _ = self.pirls(*jax.lax.stop_gradient((theta, beta, eta0, u0)))
        return jax.lax.stop_gradient((b, us))

    def modes_from(self, theta, beta, start):
        """(β, u, η) at θ with exact derivatives in θ and β: Newton steps from PIRLS'
        converged modes ``start`` (:meth:`converged_modes`), inside the derivatives."""
        joint = beta is None
        b, us = start
        if not joint:
            b = beta
        for _ in range(NEWTON_TAIL):
            eta = self.eta_of(theta, b, us)
            b, us = self.solve(theta, None if joint else beta, eta, observed=True)
        return b, us, self.eta_of(theta, b, us)

    def modes(self, theta, beta, eta0, u0=None):
        """(β, u, η) at θ (β free when None) with exact derivatives in θ and β: PIRLS to
        convergence without derivatives, then Newton steps inside them."""
        return self.modes_from(theta, beta, self.converged_modes(theta, beta, eta0, u0))

    def factor(self, theta, eta):
        w, z = self.working(eta, observed=False)
        return factorize(theta, self.structure(self.pat_u, w, z, jnp.zeros((self.n, 0), w.dtype)))

    def deviance_from(self, theta, beta, start):
        """The fitted criterion at (θ, β) from PIRLS' converged modes ``start``: its
        derivatives need no second PIRLS (the optimizer's line search keeps ``start``)."""
        b, us, eta = self.modes_from(theta, beta, start)
        f = self.factor(theta, eta)
        ldL2 = criterion_terms(f, self.pat_u.layout).ldL2
        dev = self.devres(eta)
        ussq = sum(jnp.sum(u * u) for u in us)
        if self.nagq <= 1:
            return jnp.sum(dev) + ussq + ldL2
        return self._agq(theta, us[0][:, 0], eta, dev, f, ldL2)

    def deviance(self, theta, beta, eta0, u0=None):
        """The fitted criterion at (θ, β): Laplace (nagq = 1) or AGQ; β free when None
        (``u0``: where PIRLS starts, with β given)."""
        return self.deviance_from(theta, beta, self.converged_modes(theta, beta, eta0, u0))

    def split(self, params):
        """``newton_minimize``'s ``split`` for the criterion of ``params(x) = (θ, β)``:
        the value with PIRLS' modes as its pieces, and the gradient from those pieces."""

        def value_pieces(x, eta0, u0):
            theta, beta = params(x)
            start = self.converged_modes(theta, beta, eta0, u0)
            return self.deviance_from(theta, beta, start), start

        def gradient(x, start, eta0, u0):
            return jax.grad(lambda xx: self.deviance_from(*params(xx), start))(x)

        return value_pieces, gradient

    @staticmethod
    def warm(pieces, args):
        """``newton_minimize``'s ``warm`` for :meth:`split`'s criterion with args (η0, u0):
        PIRLS starts from the last accepted point's modes (fewer iterations than from the
        start's, and the same converged modes)."""
        return args[0], pieces[1]

    def _agq(self, theta, u, eta, dev, f, ldL2):
        """lme4's glmerAGQ: per level k, -2 log of the GH rule around u*_k with SD 1/L_kk."""
        idx, z = self.index[0], self.Z[0][:, 0]
        k = self.layout.terms[0].nlevels
        sd = 1.0 / block_diagonals(f.L1)[:, 0]
        devc = jax.ops.segment_sum(dev, idx, num_segments=k) + u * u
        lam = self.lambdas(theta)[0][0, 0]

        def node(zj):
            shift = sd * zj
            e = eta + z * lam * shift[idx]
            d = jax.ops.segment_sum(self.devres(e), idx, num_segments=k) + (u + shift) ** 2
            return -0.5 * (d - devc) + 0.5 * zj * zj

        expo = jax.vmap(node)(self.gh_z)  # (nagq, k)
        log_mult = jax.scipy.special.logsumexp(expo, axis=0, b=self.gh_w[:, None])
        return jnp.sum(devc) + ldL2 - 2.0 * jnp.sum(log_mult)

    def pieces(self, theta, beta, eta0, u0=None):
        """Everything a result reports at (θ, β)."""
        b, us, eta = self.modes(theta, beta, eta0, u0)
        f = self.factor(theta, eta)
        ldL2 = criterion_terms(f, self.pat_u.layout).ldL2
        mu = self.family.link.linkinv(eta)
        dev = self.devres(eta)
        ussq = sum(jnp.sum(u * u) for u in us)
        aic = self.family.aic(self.y, self.m, mu, self.wt)
        crit = self.deviance(theta, beta, eta0, u0) if self.nagq > 1 else jnp.sum(dev) + ussq + ldL2
        return {
            "beta": b,
            "u": us,
            "eta": eta,
            "mu": mu,
            "ldL2": ldL2,
            "drsum": jnp.sum(dev),
            "ussq": ussq,
            "aic": aic,
            "criterion": crit,
        }


def _objective_program(theta, beta, eta0, a, spec: _Spec):
    return _Kernel(spec, a).deviance(theta, beta, eta0)


def _start_program(x, scale, eta0, a, spec: _Spec):
    """The fit's start x = (θ̃, β) from x's θ̃ (θ = θ̃·scale): β from PIRLS at θ (lme4's
    nAGQ = 0 estimate there).  A program of its own: inside the curvature program, the
    joint PIRLS of a nested model (a rest block with a lead) fails to compile on jaxlib
    0.10.2 (LAPACK's potrf "not registered")."""
    nt = spec.layout.ntheta
    beta = _Kernel(spec, a).pirls(x[:nt] * scale, None, eta0)[0]
    return jnp.concatenate([x[:nt], beta])


def _curvature_program(x, scale, eta0, a, spec: _Spec):
    """At x = (θ̃, β), θ = θ̃·scale: where PIRLS with β given starts the modes (u0), the
    criterion's Hessian in x (central differences of the exact gradient) and the result's
    pieces.  One program for the fit's start (the BFGS model) and its end (vcov): the
    gradient through PIRLS is the costliest code to compile, so it is compiled once here
    and once in the fit's program."""
    k = _Kernel(spec, a)
    nt = spec.layout.ntheta
    theta, beta = x[:nt] * scale, x[nt:]
    u0 = k.pirls(theta, beta, eta0)[1]

    def fun(xx, e, u):
        return k.deviance(xx[:nt] * scale, xx[nt:], e, u)

    return u0, _fd_hessian(fun, x, eta0, u0), k.pieces(theta, beta, eta0, u0)


def _fit_program(x0, scale, H0, eta0, u0, a, spec: _Spec, options: NewtonOptions):
    """(θ̃, β) start -> optimizer state.  BFGS starts from the |eigenvalues| of the Hessian
    ``H0`` at the start (positive definite): a scaled identity needs many more iterations
    when the parameters' scales differ (β of a covariate in metres next to θ); PIRLS at
    every point starts from the modes ``u0`` at the start: fewer iterations than from 0."""
    k = _Kernel(spec, a)
    nt = spec.layout.ntheta
    p = spec.layout.p
    lb = jnp.concatenate([jnp.asarray(spec.layout.theta_lower), jnp.full(p, -jnp.inf)])

    def fun(x, e, u0):
        return k.deviance(x[:nt] * scale, x[nt:], e, u0)

    H0 = _abs_eigenvalues(H0)
    split = k.split(lambda x: (x[:nt] * scale, x[nt:]))
    return newton_minimize(fun, x0, lb, (eta0, u0), options, H0=H0, split=split, warm=k.warm)


def _profile_program(y0, k, value, kinds, eta0, a, spec: _Spec, options: NewtonOptions):
    """Minimize the criterion over y = (ψ of the variance parameters, β) with y_k held at
    ``value`` (k = -1: nothing held), from y0.  ψ: SDs as they are, atanh of correlations
    (:func:`jaxlme.params.psi_to_phi`).  One compiled program serves every profile point.

    BFGS starts from the |eigenvalues| of the criterion's Hessian at y0, whose row and
    column k are replaced by the identity's: the held coordinate then never moves."""
    kern = _Kernel(spec, a)
    nv = kinds.shape[0]
    idx = jnp.arange(y0.shape[0])
    held = idx == k
    one = jnp.ones((), y0.dtype)
    lb = jnp.concatenate([jnp.where(kinds == 0, 0.0, -jnp.inf), jnp.full(y0.shape[0] - nv, -jnp.inf)])

    def params(y):
        y = jnp.where(held, value, y)
        theta, _ = theta_from_vc(psi_to_phi(y[:nv], kinds), one, spec.layout)
        return theta, y[nv:]

    y0 = jnp.where(held, value, y0)
    u0 = kern.pirls(*params(y0), eta0)[1]

    def fun(y, e, u):
        return kern.deviance(*params(y), e, u)

    H0 = _abs_eigenvalues(_fd_hessian(fun, y0, eta0, u0))
    free = ~held
    H0 = jnp.where(free[:, None] & free[None, :], H0, jnp.eye(y0.shape[0], dtype=y0.dtype))
    return newton_minimize(fun, y0, lb, (eta0, u0), options, H0=H0, split=kern.split(params), warm=kern.warm)


def _abs_eigenvalues(H: jax.Array) -> jax.Array:
    """H with its eigenvalues replaced by their absolute values (floored at 1e-8 of the
    largest): a positive-definite start for BFGS with H's scales and directions."""
    w, V = jnp.linalg.eigh(H)
    floor = 1e-8 * jnp.maximum(jnp.max(jnp.abs(w)), 1.0)
    return (V * jnp.maximum(jnp.abs(w), floor)) @ V.T


def _fd_hessian(fun, x, *args):
    """Symmetrized central differences of the exact gradient of ``fun(x, *args)``."""
    h = HESSIAN_STEP * jnp.maximum(1.0, jnp.abs(x))
    pts = jnp.concatenate([x + jnp.diag(h), x - jnp.diag(h)])
    grads = jax.vmap(jax.grad(fun), in_axes=(0,) + (None,) * len(args))(pts, *args)
    n = x.shape[0]
    H = (grads[:n] - grads[n:]) / (2.0 * h[:, None])
    return 0.5 * (H + H.T)


# Relative step of the central differences of the exact gradient that give the criterion's
# Hessian in (θ, β) for vcov: truncation error O(h²) ~ 1e-8, rounding ~1e-16/h ~ 1e-12.
HESSIAN_STEP = 1e-4


def _simulate(key, x, a, spec: _Spec):
    """One response from the fitted model at x = (θ, β): u ~ N(0, I), η = offset + Xβ + ZΛu,
    y ~ binomial(trials = prior weights, μ)/trials or Poisson(μ) (as lme4's ``simulate``)."""
    k = _Kernel(spec, a)
    nt = spec.layout.ntheta
    keys = jax.random.split(key, len(spec.layout.terms) + 1)
    us = tuple(jax.random.normal(kk, (t.nlevels, t.ncols), x.dtype) for kk, t in zip(keys[:-1], spec.layout.terms))
    mu = k.family.link.linkinv(k.eta_of(x[:nt], x[nt:], us))
    if spec.family == "binomial":
        trials = jnp.round(a["wt"])
        return jax.random.binomial(keys[-1], trials, jnp.clip(mu, 0.0, 1.0)).astype(x.dtype) / trials
    return jax.random.poisson(keys[-1], mu).astype(x.dtype)


# one program per spec and shape (a jit made inside ``simulate`` would compile on every call)
_simulate_many = jax.jit(jax.vmap(_simulate, in_axes=(0, None, None, None)), static_argnums=3)


def _eta_start_traced(y, wt, family: Family):
    mu = (wt * y + 0.5) / (wt + 1.0) if family.name == "binomial" else y + 0.1
    return family.link.linkfun(mu)


def _boot_program(keys, x_hat, scale, a, spec: _Spec, options: NewtonOptions):
    """Refits of responses simulated at x_hat = (θ, β), vmapped over ``keys`` (one lane per
    replicate, each started at the fit): x (θ, β), criterion, status, iterations."""
    nt, p = spec.layout.ntheta, spec.layout.p
    lb = jnp.concatenate([jnp.asarray(spec.layout.theta_lower), jnp.full(p, -jnp.inf)])
    unscale = jnp.concatenate([scale, jnp.ones(p, scale.dtype)])

    def one(key):
        y = _simulate(key, x_hat * unscale, a, spec)
        a_rep = dict(a, y=y)
        k = _Kernel(spec, a_rep)
        eta0 = _eta_start_traced(y, a["wt"], k.family)

        def fun(x, e, u0):
            return k.deviance(x[:nt] * scale, x[nt:], e, u0)

        split = k.split(lambda x: (x[:nt] * scale, x[nt:]))
        st = newton_minimize(fun, x_hat, lb, (eta0, k.zero_modes(x_hat.dtype)), options, split=split, warm=k.warm)
        return st.x * unscale, st.f, st.status, st.it

    return jax.vmap(one)(keys)


@dataclass
class _Fitted:
    """Conditional modes as the linear model's result holds them (for ``jaxlme.predict``)."""

    b: tuple
    u: tuple


class GLMM:
    """A generalized linear mixed model (lme4's ``glmer``): formula, data and family, with
    the design and sparse pattern built once.

    >>> model = GLMM("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp)  # doctest: +SKIP
    >>> res = model.fit()                                                                 # doctest: +SKIP
    """

    @x64
    def __init__(
        self,
        formula: str,
        data,
        family: str = "binomial",
        link: str | None = None,
        *,
        weights=None,
        offset=None,
        nagq: int = 1,
        warn: bool = True,
    ) -> None:
        """Validate the data against the family and build the model's arrays.

        Args:
            formula: lme4-style formula.  Binomial responses are 0/1, proportions (with
                ``weights`` = trials) or ``cbind(successes, failures)``; ``offset(expr)``
                terms enter the linear predictor with coefficient 1.
            data: DataFrame (or dict of columns, or an Arrow/interchange table).
            family: "binomial" or "poisson".
            link: the link (binomial: logit, probit, cloglog, log; poisson: log,
                identity, sqrt); None for the canonical one.
            weights: prior weights (a column name or one value per row); for a binomial
                proportion, the number of trials.
            offset: an extra offset, a column name or one value per row (lme4's
                ``offset =``), added to any ``offset()`` terms of the formula.
            nagq: 1 for the Laplace approximation; > 1 for adaptive Gauss-Hermite
                quadrature with that many nodes (one scalar random-effects term only).
            warn: warn about dropped rows and aliased columns.
        """
        t0 = time.perf_counter()
        self.family = make_family(family, link)
        nagq = int(nagq)
        if nagq < 1:
            raise ValueError(f"nagq must be >= 1, got {nagq} (lme4's nAGQ = 0 criterion is the fit's first stage)")
        self.nagq = nagq
        self.formula = formula
        frame = as_frame(data)
        parsed = parse_formula(formula)
        self.response_name = parsed.response.strip()
        if offset is not None:
            values = frame[offset] if isinstance(offset, str) else np.asarray(offset, dtype=float)
            if isinstance(offset, str) and offset not in frame.columns:
                raise DataError(f"offset column '{offset}' not found in data")
            values = np.asarray(values, dtype=float)
            if values.shape != (len(frame),):
                raise DataError(f"offset must have one value per data row ({len(frame)}), got shape {values.shape}")
            frame = frame.assign(_jaxlme_offset=values)
            formula_fit = f"{formula} + offset(_jaxlme_offset)"
        else:
            formula_fit = formula
        pieces = _split_cbind(parsed.response)
        trials = None
        if pieces is not None:
            if self.family.name != "binomial":
                raise FormulaError(f"cbind(...) responses are binomial; the {self.family.name} family takes counts")
            succ, fail = (_eval_column(e, frame) for e in pieces)
            for e, v in zip(pieces, (succ, fail)):
                bad = np.isfinite(v) & ((v < 0) | (np.abs(v - np.round(v)) > 1e-7))
                if bad.any():
                    raise DataError(f"cbind column '{e}' must hold whole numbers >= 0 ({int(bad.sum())} row(s) do not)")
            n_tr = succ + fail
            if np.any(n_tr == 0):
                raise DataError(
                    f"{int(np.sum(n_tr == 0))} row(s) of {parsed.response.strip()} have no trials "
                    "(successes + failures = 0); drop them"
                )
            with np.errstate(invalid="ignore", divide="ignore"):
                frame = frame.assign(_jaxlme_y=succ / n_tr, _jaxlme_trials=n_tr)
            formula_fit = "_jaxlme_y ~" + _rest_of_formula(formula_fit)
            trials = n_tr
        elif not parsed.response.strip().isidentifier():  # incidence / size: R's arithmetic, not nesting
            frame = frame.assign(_jaxlme_y=_eval_column(parsed.response.strip(), frame))
            formula_fit = "_jaxlme_y ~" + _rest_of_formula(formula_fit)
        user_w = None
        if weights is not None:
            user_w = frame[weights] if isinstance(weights, str) else weights
            if isinstance(weights, str) and weights not in frame.columns:
                raise DataError(f"weights column '{weights}' not found in data")
            user_w = np.asarray(user_w, dtype=float)
        w_all = trials if user_w is None else (user_w if trials is None else user_w * trials)
        design = build_design(formula_fit, frame, warn=warn, weights=w_all)
        # the formula as the user wrote it (summaries, the bootstrap's report), not the one fitted
        design = dataclasses.replace(design, formula=dataclasses.replace(design.formula, text=formula))
        self.design = design
        self.data = data
        self._data_index = frame.index
        y = design.y + (design.offset if design.offset is not None else 0.0)
        wt = np.ones(design.n) if design.weights is None else design.weights
        self.family.check_response(y, self.response_name, None if trials is not None else design.weights)
        if self.family.name == "binomial" and trials is None and design.weights is not None:
            k = y * wt
            if np.any(np.abs(k - np.round(k)) > 1e-3):
                messages.warn(f"non-integer #successes in a binomial glmm: '{self.response_name}' times the weights")
        if trials is not None:
            n_rows = frame["_jaxlme_trials"].to_numpy(dtype=float)
            n_used = n_rows[frame.index.get_indexer(design.rows)]
        else:
            n_used = np.ones(design.n)
        m = binomial_trials(n_used, wt) if self.family.name == "binomial" else n_used
        self.y, self.prior_weights, self.trials = y, wt, m
        self._eta0 = None  # the start η, computed on first use
        self.offset = np.zeros(design.n) if design.offset is None else design.offset
        ts = design.terms
        pat_joint = design_pattern(design)
        pat_u = structure_pattern(
            [t.index for t in ts],
            [t.ncols for t in ts],
            [t.nlevels for t in ts],
            [t.name for t in ts],
            [t.term.correlated for t in ts],
            0,
        )
        lay = pat_joint.layout
        if nagq > 1 and not (len(lay.terms) == 1 and lay.terms[0].ncols == 1):
            raise ValueError(
                "nagq > 1 (adaptive Gauss-Hermite quadrature) needs a single scalar random-effects term "
                f"such as (1 | g); this model has {' + '.join(str(t.term) for t in design.terms)}"
            )
        self._spec = _Spec(lay, pat_u.layout, self.family.name, self.family.link.name, nagq)
        with jax.enable_x64(True):
            host = {
                "y": y,
                "wt": wt,
                "m": m,
                "off": self.offset,
                "X": design.X,
                "Z": tuple(t.Z for t in ts),
                "pj": _pattern_arrays(pat_joint),
                "pu": _pattern_arrays(pat_u),
            }
            self._arrays = jax.device_put(host)  # one batched call
        self.layout = lay
        self.setup_seconds = time.perf_counter() - t0
        self.theta_scale = theta_scale([np.sum(t.Z**2, axis=0) for t in design.terms], len(design.y), self.layout)
        if self.family.name == "binomial":
            self._check_separation(warn)

    @property
    def nobs(self) -> int:
        """Observations used (rows with missing values dropped)."""
        return self.design.n

    def __repr__(self) -> str:
        groups = ", ".join(f"{t.name}: {t.nlevels}" for t in self.layout.terms)
        return (
            f"GLMM({self.formula!r}, family={self.family.name}({self.family.link.name}), nobs={self.nobs}, "
            f"groups={{{groups}}})"
        )

    def _check_separation(self, warn: bool) -> None:
        """Warn when a fixed-effect column separates the outcomes (all-0 or all-1 rows at
        one of its values), as glm warns that fitted probabilities are 0 or 1."""
        if not warn:
            return
        y, X = self.y, self.design.X
        for j, name in enumerate(self.design.xnames):
            col = X[:, j]
            if name == "(Intercept)" or np.ptp(col) == 0:
                continue
            vals = np.unique(col)
            if len(vals) == 2:
                for v in vals:
                    sel = col == v
                    if np.all(y[sel] == 0) or np.all(y[sel] == 1):
                        messages.warn(
                            f"complete separation: the response '{self.response_name}' is "
                            f"{int(y[sel][0])} in every row where '{name}' is {v:g}; its estimate and SE are "
                            "not finite in truth (the fit stops where the likelihood flattens)"
                        )
                        return

    # -- programs ---------------------------------------------------------------------
    def _compiled(self, name: str, fn, args: tuple, static: dict):
        """``compile_program`` for this model's spec (same-shaped models share it)."""
        prog, seconds = compile_program(name, fn, args, dict(static, spec=self._spec), small=is_small(self.layout))
        return prog, seconds

    def _eta_start(self) -> np.ndarray:
        """R's ``family$initialize`` start: μ = (w·y + 1/2)/(w + 1) (binomial), y + 1/10 (poisson)."""
        if self._eta0 is None:
            with jax.enable_x64(True):
                eta = _eta_start_traced(jnp.asarray(self.y), jnp.asarray(self.prior_weights), self.family)
                self._eta0 = np.asarray(eta)
        return self._eta0

    @x64
    def objective(self, theta, beta=None) -> float:
        """The fitted criterion at θ and β (lme4's Laplace or AGQ deviance, ``devfun``);
        with ``beta=None`` β is profiled by PIRLS (lme4's nAGQ = 0 criterion)."""
        theta = jnp.asarray(np.asarray(theta, dtype=float).reshape(-1))
        if theta.shape[0] != self.layout.ntheta:
            raise ValueError(f"theta must have {self.layout.ntheta} elements, got {theta.shape[0]}")
        b = None if beta is None else jnp.asarray(np.asarray(beta, dtype=float).reshape(-1))
        args = (theta, b, jnp.asarray(self._eta_start()), self._arrays)
        prog, _ = self._compiled("glmm_objective", _objective_program, args, {})
        return float(prog(*args))

    @x64
    def fit(self, *, theta0=None, gtol: float = 1e-6, maxiter: int = 200, warn: bool = True) -> GLMMResult:
        """Fit by maximum likelihood (Laplace or AGQ).

        θ starts at lme4's Λ = I (or ``theta0``) and β at PIRLS' estimate there (lme4's
        nAGQ = 0 β); then θ and β are optimized jointly, as lme4's second stage, by the
        bounded quasi-Newton solver with exact gradients (PIRLS' fixed point differentiated).

        Args:
            theta0: starting θ (default: lme4's Λ = I).
            gtol: projected-gradient tolerance of the solver.
            maxiter: iteration cap.
            warn: warn about non-convergence and singular fits.

        Returns:
            The fitted :class:`GLMMResult`.
        """
        lay = self.layout
        t0 = time.perf_counter()
        start = lay.theta_start * self.theta_scale if theta0 is None else np.asarray(theta0, dtype=float).reshape(-1)
        if start.shape[0] != lay.ntheta:
            raise ValueError(f"theta0 must have {lay.ntheta} elements, got {start.shape[0]}")
        start = np.maximum(start, lay.theta_lower)
        eta0 = jnp.asarray(self._eta_start())
        options = NewtonOptions(gtol=gtol, maxiter=maxiter, hessian="bfgs")
        x_start = jnp.asarray(np.concatenate([start / self.theta_scale, np.zeros(self.design.p)]))
        scale = jnp.asarray(self.theta_scale)
        args = (x_start, scale, eta0, self._arrays)
        start_x, compile_s = self._compiled("glmm_start", _start_program, args, {})
        x0 = start_x(*args)  # stays on the device
        curvature, seconds = self._compiled("glmm_curvature", _curvature_program, (x0, scale, eta0, self._arrays), {})
        compile_s += seconds
        u0, H0, _ = curvature(x0, scale, eta0, self._arrays)
        args = (x0, scale, H0, eta0, u0, self._arrays)
        run, seconds = self._compiled("glmm_fit", _fit_program, args, {"options": options})
        compile_s += seconds
        state = jax.device_get(run(*args))
        nt = lay.ntheta
        # vcov's Hessian and the pieces at the optimum, in (θ, β) unscaled
        x_hat = jnp.asarray(np.concatenate([np.asarray(state.x[:nt]) * self.theta_scale, state.x[nt:]]))
        unit = jnp.asarray(np.ones(lay.ntheta))
        _, H, pieces = jax.device_get(curvature(x_hat, unit, eta0, self._arrays))
        fit_s = time.perf_counter() - t0
        theta = np.asarray(state.x[:nt]) * self.theta_scale
        lb = np.concatenate([lay.theta_lower, np.full(self.design.p, -np.inf)])
        g = np.asarray(state.g)
        pg = np.where((np.asarray(state.x) <= lb) & (g > 0), 0.0, g)
        status = int(state.status)
        opt = OptSummary(
            optimizer="bounded quasi-Newton (BFGS) in (θ, β), exact gradients through PIRLS",
            theta_initial=start,
            theta_final=theta,
            objective=float(state.f),
            gradient_norm=float(np.max(np.abs(pg))) if pg.size else 0.0,
            iterations=int(state.it),
            evaluations=int(state.nfev),
            status=STATUS.get(status, str(status)),
            converged=Status(status).converged,
            fit_seconds=fit_s,
            compile_seconds=compile_s,
            setup_seconds=self.setup_seconds,
            gtol=gtol,
            code=status,
        )
        res = GLMMResult(self, opt, pieces, np.asarray(H))
        if warn:
            messages.fit_outcome(opt, res.singular)
        return res


class _GLMMProfile:
    """The profiled criterion of one GLMM fit in y = (ψ of the variance parameters, β)."""

    def __init__(self, res: GLMMResult):
        m = res.model
        self.res, self.model = res, m
        self.kinds = phi_kinds(m.layout, sigma=False)
        self.nv = len(self.kinds)
        phi = vc_values(m.layout, res.theta, 1.0, undefined=0.0)
        self.options = NewtonOptions(gtol=1e-7, maxiter=200, hessian="bfgs")
        self.eta0 = jnp.asarray(m._eta_start())
        y = np.concatenate([phi_to_psi(phi, self.kinds), res.fixef.to_numpy()])
        st = self._run(y, -1, 0.0)  # polish the optimum in y: D̂ is the lowest value seen
        self.y_hat = np.asarray(st.x)
        self.dev_hat = min(float(st.f), res.objective)
        self.phi_hat = np.asarray(psi_to_phi(jnp.asarray(self.y_hat[: self.nv]), self.kinds))
        nt = m.layout.ntheta
        # first bracketing steps of the interval search: β's Wald SEs; for an SD, the SE of
        # its θ entry (the SD itself for a scalar term, a scale for others); 0.2 for a
        # correlation
        se_beta = res.stderr.to_numpy()
        try:
            se_theta = np.sqrt(np.abs(np.diag(2.0 * np.linalg.inv(res.hessian))[:nt]))
        except np.linalg.LinAlgError:
            se_theta = np.full(nt, np.nan)
        self.steps = np.concatenate([np.where(self.kinds == 0, se_theta, 0.2), se_beta])

    def _run(self, y0, k: int, value: float):
        args = (jnp.asarray(y0), jnp.asarray(k), jnp.asarray(float(value)), jnp.asarray(self.kinds))
        args = args + (self.eta0, self.model._arrays)
        prog, _ = self.model._compiled("glmm_profile", _profile_program, args, {"options": self.options})
        return prog(*args)

    def deviance(self, i: int, value: float) -> float:
        """D with parameter i (φ's order, then β's) held at ``value`` on its natural scale."""
        psi = float(phi_to_psi(np.array([value]), self.kinds[i : i + 1])[0]) if i < self.nv else value
        return float(self._run(self.y_hat, i, psi).f)

    def interval(self, i: int, z: float) -> tuple[float, float]:
        """The profile interval of parameter i (φ's order, then β's)."""
        kind = int(self.kinds[i]) if i < self.nv else -1
        center = float(self.phi_hat[i]) if i < self.nv else float(self.y_hat[i])
        lo_b, hi_b = {0: (0.0, np.inf), 1: (-COR_MAX, COR_MAX)}.get(kind, (-np.inf, np.inf))
        lo, hi = profile_interval(
            lambda v: self.deviance(i, v), self.dev_hat, center, float(self.steps[i]), lo_b, hi_b, z
        )
        if kind == 1:  # the bound itself when the profile never reaches ±z
            lo, hi = (-1.0 if lo == -COR_MAX else lo), (1.0 if hi == COR_MAX else hi)
        return lo, hi


@dataclass(eq=False)
class GLMMResult:
    """A fitted generalized linear mixed model, with the linear model's names: ``fixef``,
    ``stderr``, ``vcov``, ``coefs()``, ``varcorr``, ``ranef``, ``fitted``, ``predict``,
    ``loglike``, ``aic``, ``bic``, ``deviance``, ``summary()``, ``converged``,
    ``singular``, ``opt``."""

    model: GLMM
    opt: OptSummary
    pieces: dict = field(repr=False)
    hessian: np.ndarray = field(repr=False)  # of the criterion in (θ, β) at the optimum

    def __post_init__(self) -> None:
        d, lay = self.model.design, self.model.layout
        self.theta = np.asarray(self.opt.theta_final, dtype=float)
        self.objective = float(self.pieces["criterion"])
        self.converged = bool(self.opt.converged)
        self.nobs = d.n
        self.sigma = 1.0  # binomial and poisson: no dispersion parameter
        self.singular = bool(np.any(self.theta[lay.theta_lower == 0] < SINGULAR_TOL))
        self.npar = d.p + lay.ntheta
        # lme4: logLik = -(aic + ‖u‖² + log|L|²)/2 for the Laplace fit (the family's constants
        # included); for nAGQ > 1 lme4 reports -criterion/2, whose deviance residuals lack them
        if self.model.nagq == 1:
            self.loglike = -0.5 * float(self.pieces["aic"] + self.pieces["ussq"] + self.pieces["ldL2"])
        else:
            self.loglike = -0.5 * self.objective
        self.aic = -2.0 * self.loglike + 2.0 * self.npar
        self.bic = -2.0 * self.loglike + np.log(self.nobs) * self.npar
        lams = lay.lambdas(self.theta)
        us = tuple(np.asarray(u) for u in self.pieces["u"])
        self.effects = _Fitted(tuple(u @ lam.T for u, lam in zip(us, lams)), us)

    @property
    def family(self) -> Family:
        """The response family and link."""
        return self.model.family

    @property
    def deviance(self) -> float:
        """-2 logLik (lme4's summary "deviance" column)."""
        return -2.0 * self.loglike

    @property
    def df_resid(self) -> int:
        """Observations minus parameters (θ and β), lme4's ``df.residual``."""
        return self.nobs - self.npar

    @property
    def fixef(self) -> pd.Series:
        """Fixed-effects estimates β̂ (link scale)."""
        return pd.Series(np.asarray(self.pieces["beta"], dtype=float), index=self.model.design.xnames, name="fixef")

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance of β̂ as lme4's ``vcov`` (``use.hessian = TRUE``): the β block of
        2·H⁻¹, H the Hessian of the criterion in (θ, β) (exact here, by autodiff; lme4
        differences it), or σ²(RX'RX)⁻¹ from the final PIRLS where H is not positive definite."""
        if "_vcov" not in self.__dict__:
            nt, xn = self.model.layout.ntheta, self.model.design.xnames
            H = self.hessian
            try:
                np.linalg.cholesky(H)
                V = 2.0 * np.linalg.inv(H)[nt:, nt:]
            except np.linalg.LinAlgError:
                messages.warn("the Hessian of the criterion is not positive definite: vcov from the final PIRLS step")
                V = self._rx_vcov()
            self.__dict__["_vcov"] = pd.DataFrame(V, index=xn, columns=xn)
        return self.__dict__["_vcov"]

    def _rx_vcov(self) -> np.ndarray:
        m = self.model
        with jax.enable_x64(True):
            k = _Kernel(m._spec, m._arrays)
            eta = jnp.asarray(self.pieces["eta"])
            w, z = k.working(eta, observed=False)
            eff = solve_effects(jnp.asarray(self.theta), k.structure(k.pat_joint, w, z, k.X), reml=False)
            RX = np.asarray(eff.RX)
        RXinv = np.linalg.inv(RX)
        return RXinv.T @ RXinv

    @property
    def stderr(self) -> pd.Series:
        """Standard errors of β̂."""
        return pd.Series(np.sqrt(np.diag(self.vcov.to_numpy())), index=self.model.design.xnames, name="stderr")

    def coefs(self, level: float = 0.95) -> pd.DataFrame:
        """Wald z tests and intervals of the fixed effects (glmer's summary table).

        Args:
            level: coverage of the Wald interval.

        Returns:
            DataFrame indexed by coefficient: estimate, se, z, p (two-sided), lower, upper.
        """
        from scipy import special

        est, se = self.fixef, self.stderr
        z = est / se
        q = float(special.ndtri(0.5 + level / 2))
        return pd.DataFrame(
            {
                "estimate": est,
                "se": se,
                "z": z,
                "p": 2.0 * special.ndtr(-np.abs(z.to_numpy())),
                "lower": est - q * se,
                "upper": est + q * se,
            }
        )

    # -- random effects: the linear model's tables --------------------------------------
    @property
    def group_labels(self) -> list[str]:
        """lme4's label of each random-effects term (see :func:`jaxlme.results.group_labels`)."""
        return group_labels(self.model.design.terms)

    @property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes b̂ per grouping factor (lme4's ``ranef``), one row per level."""
        return LMMResult.ranef.func(self)

    def covariance_matrices(self) -> dict[str, pd.DataFrame]:
        """Σ_t = Λ_t Λ_t' of each term, keyed by its label."""
        return LMMResult.covariance_matrices(self)

    @property
    def varcorr(self) -> pd.DataFrame:
        """SDs and correlations of the random effects (lme4's ``as.data.frame(VarCorr())``,
        which has no residual row for binomial and Poisson fits)."""
        vc = LMMResult._varcorr(self)
        return vc[vc["group"] != "Residual"].reset_index(drop=True)

    @property
    def ngroups(self) -> dict[str, int]:
        """Levels of each grouping factor."""
        return {t.name: t.nlevels for t in self.model.design.terms}

    # -- per observation -------------------------------------------------------------
    @property
    def linear_predictor(self) -> pd.Series:
        """η = Xβ̂ + Zb̂ + offset per row used in the fit."""
        return pd.Series(np.asarray(self.pieces["eta"]), index=self.model.design.rows, name="eta")

    @property
    def fitted(self) -> pd.Series:
        """Conditional means μ = g⁻¹(η) (lme4's ``fitted``: proportions for binomial)."""
        return pd.Series(np.asarray(self.pieces["mu"]), index=self.model.design.rows, name="fitted")

    @property
    def pearson_residuals(self) -> pd.Series:
        """(y - μ)·√w / √V(μ) (lme4's ``residuals(fit, "pearson")``)."""
        mu = np.asarray(self.pieces["mu"])
        with jax.enable_x64(True):
            v = np.asarray(self.family.variance(jnp.asarray(mu)))
        r = (self.model.y - mu) * np.sqrt(self.model.prior_weights / v)
        return pd.Series(r, index=self.model.design.rows, name="pearson_residuals")

    def predict(self, newdata=None, type: str = "link", re_form=None, allow_new_levels: bool = False):  # noqa: A002
        """Predictions (lme4's ``predict.merMod``) on the link or the response scale.

        Args:
            newdata: rows to predict (DataFrame or dict); None: the fitting rows.
            type: "link" (η) or "response" (μ = g⁻¹(η)).
            re_form: random-effects terms to condition on: None (all), "~0"/"NA" (none) or a
                formula of some terms, as :func:`jaxlme.predict.predict`.
            allow_new_levels: predict unseen levels with zero random effects.

        Returns:
            A Series ``predicted`` indexed like ``newdata`` (or the fitting rows).
        """
        if type not in ("link", "response"):
            raise ValueError(f"type must be 'link' or 'response', got {type!r}")
        if newdata is None and re_form is None:
            out = self.linear_predictor.rename("predicted")
        else:
            out = predict(self, newdata, re_form=re_form, allow_new_levels=allow_new_levels)
        if type == "response":
            with jax.enable_x64(True):
                out = pd.Series(
                    np.asarray(self.family.link.linkinv(jnp.asarray(out.to_numpy(dtype=float)))),
                    index=out.index,
                    name="predicted",
                )
        return out

    # -- parametric bootstrap ------------------------------------------------------------
    def simulate(self, n: int, seed: int | None = 0) -> np.ndarray:
        """(n, nobs) responses simulated from the fitted model (new random effects each; lme4's
        ``simulate``): binomial as proportions of the trials, Poisson as counts."""

        m = self.model
        x = jnp.asarray(np.concatenate([self.theta, self.fixef.to_numpy()]))
        with jax.enable_x64(True):
            keys = jax.random.split(jax.random.PRNGKey(resolve_seed(seed)), int(n))
            return np.asarray(_simulate_many(keys, x, m._arrays, m._spec))

    @x64
    def confint(
        self,
        method: str = "profile",
        level: float = 0.95,
        parm=None,
        *,
        nsim: int = 500,
        seed: int | None = 0,
    ) -> pd.DataFrame:
        """Confidence intervals, as lme4's ``confint`` of a glmer fit: rows for the random
        effects' SDs and correlations (``sd_x|g``, ``cor_x.y|g``), then the fixed effects;
        columns ``lower``, ``upper``.

        * "profile": where the signed root of the profiled criterion,
          ζ(v) = sign(v - v̂) √(D(v) - D̂), is ±z, every other parameter (θ and β) re-optimized
          at each v (lme4's ``profile`` of the Laplace or AGQ deviance).  An SD whose profile
          stays below z down to 0 gets the lower limit 0, as in lme4.
        * "wald": β̂ ± z·SE for the fixed effects; NaN for the variance parameters, as lme4.
        * "boot": percentile intervals of ``bootstrap(nsim, seed=seed)``.

        Args:
            method: "profile", "wald" or "boot".
            level: coverage, in (0, 1).
            parm: names of the rows wanted (default: all).
            nsim: bootstrap replicates ("boot").
            seed: bootstrap seed ("boot").

        Returns:
            DataFrame indexed by parameter name with ``lower`` and ``upper``.
        """
        vnames = varpar_names(self)[:-1]  # no residual SD in binomial and Poisson models
        xnames = list(self.model.design.xnames)
        allnames = vnames + xnames
        m, wanted, z = interval_request(method, level, allnames, parm)
        lower = pd.Series(np.nan, index=allnames)
        upper = pd.Series(np.nan, index=allnames)
        if m == "wald":
            est, se = self.fixef.to_numpy(), self.stderr.to_numpy()
            lower[xnames], upper[xnames] = est - z * se, est + z * se
        elif m == "boot":
            ci = self.bootstrap(nsim, seed=seed).ci(level)
            for name in allnames:
                if name in ci.index:
                    lower[name], upper[name] = float(ci.loc[name, "lower"]), float(ci.loc[name, "upper"])
        else:
            prof = _GLMMProfile(self)
            for i, name in enumerate(allnames):
                if name in wanted:
                    lower[name], upper[name] = prof.interval(i, z)
        return interval_frame(lower, upper, wanted, m, level)

    def bootstrap(self, n: int, seed: int | None = 0, chunk_size: int = 64):
        """Parametric bootstrap (lme4's ``bootMer``): ``n`` responses simulated from the fit,
        each refitted (θ and β, from the fit's estimates) in vmapped lanes of one compiled
        program, ``chunk_size`` replicates at a time.

        Args:
            n: number of replicates.
            seed: seed of the simulated responses (None: fresh entropy, recorded).
            chunk_size: replicates refitted per program call.

        Returns:
            A :class:`jaxlme.bootstrap.BootstrapResult` (``fixef``, ``vc``, ``theta``,
            ``ci()``, ``summary()``; ``sigma`` is 1: binomial and Poisson have no dispersion).
        """

        m = self.model
        seed = resolve_seed(seed)
        n, chunk = int(n), max(1, min(int(chunk_size), int(n)))
        t0 = time.perf_counter()
        with jax.enable_x64(True):
            keys = np.asarray(jax.random.split(jax.random.PRNGKey(seed), n))
            pad = (-n) % chunk
            keys = np.concatenate([keys, keys[: pad or 0]]) if pad else keys
            x_hat = jnp.asarray(np.concatenate([self.theta / m.theta_scale, self.fixef.to_numpy()]))
            scale = jnp.asarray(m.theta_scale)
            options = NewtonOptions(hessian="bfgs", maxiter=200)
            args = (jnp.asarray(keys[:chunk]), x_hat, scale, m._arrays)
            prog, _ = m._compiled("glmm_boot", _boot_program, args, {"options": options})
            outs = [
                jax.device_get(prog(jnp.asarray(keys[i : i + chunk]), x_hat, scale, m._arrays))
                for i in range(0, len(keys), chunk)
            ]
        x, f, status, it = (np.concatenate([o[j] for o in outs])[:n] for j in range(4))
        nt = m.layout.ntheta
        return BootstrapResult._build(
            self,
            replicate=np.arange(n),
            fixef=x[:, nt:],
            sigma=np.ones(n),
            theta=x[:, :nt],
            objective=f,
            status=status,
            iterations=it,
            n_requested=n,
            seed=seed,
            elapsed=time.perf_counter() - t0,
            chunk_size=chunk,
            n_devices=1,
        )

    @property
    def method(self) -> str:
        """The likelihood approximation: "Laplace" or "AGQ(n)"."""
        return "Laplace" if self.model.nagq == 1 else f"AGQ({self.model.nagq})"

    # -- text ------------------------------------------------------------------------
    def summary(self, correlation: bool | None = None) -> str:
        """glmer's summary layout: criterion, family, fit statistics, scaled residuals,
        random effects, fixed effects with z tests, correlation of the fixed effects."""
        d = self.model.design
        nagq = self.model.nagq
        how = "Laplace Approximation" if nagq == 1 else f"Adaptive Gauss-Hermite Quadrature, nAGQ = {nagq}"
        out = [f"Generalized linear mixed model fit by maximum likelihood ({how}) [glmerMod]"]
        out.append(f" Family: {self.family.name}  ( {self.family.link.name} )")
        out.append(f"Formula: {self.model.formula}")
        if d.n_dropped:
            out.append(f"  ({d.n_dropped} observation(s) deleted due to missingness)")
        out.append("")
        out.append(f"{'AIC':>10} {'BIC':>10} {'logLik':>10} {'deviance':>10} {'df.resid':>9}")
        out.append(f"{self.aic:10.1f} {self.bic:10.1f} {self.loglike:10.1f} {self.deviance:10.1f} {self.df_resid:9d}")
        out.append("")
        out.append("Scaled residuals:")
        q = np.quantile(self.pearson_residuals, [0, 0.25, 0.5, 0.75, 1.0])
        out.append("    " + " ".join(f"{h:>8}" for h in ["Min", "1Q", "Median", "3Q", "Max"]))
        out.append("    " + " ".join(f"{v:8.4f}" for v in q))
        out.append("")
        out.append("Random effects:")
        out.append("\n".join(LMMResult._varcorr_text(self).splitlines()[:-1]))  # no residual line
        groups = ", ".join(f"{k}, {v}" for k, v in self.ngroups.items())
        out.append(f"Number of obs: {self.nobs}, groups:  {groups}")
        out.append("")
        out.append("Fixed effects:")
        ct = self.coefs()
        fe = pd.DataFrame({"Estimate": ct["estimate"], "Std. Error": ct["se"], "z value": ct["z"], "Pr(>|z|)": ct["p"]})
        out += fixef_and_footer(self, fe, correlation)
        return "\n".join(out)

    def __repr__(self) -> str:
        return (
            f"<GLMMResult {self.family.name}({self.family.link.name}) {self.model.formula!r}: "
            f"deviance={self.deviance:.4f}, converged={self.converged}, singular={self.singular}>"
        )

    def __str__(self) -> str:
        return self.summary()


def glmm(
    formula: str,
    data,
    family: str = "binomial",
    link: str | None = None,
    *,
    weights=None,
    offset=None,
    nagq: int = 1,
    **fit_kwargs,
) -> GLMMResult:
    """Fit a generalized linear mixed model in one call (lme4's ``glmer``).

    Args:
        formula: lme4-style formula, e.g. ``"cbind(k, n - k) ~ x + (1 | g)"``.
        data: DataFrame (or dict of columns).
        family: "binomial" or "poisson".
        link: link name; None for the canonical link.
        weights: prior weights (binomial proportions: the trials).
        offset: extra offset (column name or values), added to the formula's ``offset()``.
        nagq: 1 (Laplace) or the number of adaptive Gauss-Hermite nodes (one scalar term).
        **fit_kwargs: passed to :meth:`GLMM.fit`.

    Returns:
        The fitted :class:`GLMMResult`.
    """
    return GLMM(formula, data, family, link, weights=weights, offset=offset, nagq=nagq).fit(**fit_kwargs)


def lrt(*results: GLMMResult, names=None) -> pd.DataFrame:
    """Likelihood-ratio tests of nested GLMMs (lme4's ``anova(m1, m2, ...)``).

    Models are sorted by their number of parameters; each row is tested against the one
    before it: Chisq = 2 Δ logLik (clamped at 0), Df = Δ npar, p = P(χ²_Df > Chisq).

    Args:
        *results: two or more :class:`GLMMResult` of the same family, fitted to the same
            observations (or one list of them).
        names: row names (default: the formulas).

    Returns:
        A DataFrame with columns npar, AIC, BIC, logLik, deviance, Chisq, Df, p.
    """
    from scipy import special

    if len(results) == 1 and isinstance(results[0], (list, tuple)):
        results = tuple(results[0])
    if len(results) < 2:
        raise ValueError("lrt needs at least two fitted models to compare")
    for r in results:
        if not isinstance(r, GLMMResult):
            raise TypeError(f"lrt of GLMMs compares GLMMResult objects, got {type(r).__name__}")
    first = results[0]
    for r in results[1:]:
        if r.family.name != first.family.name or r.nobs != first.nobs or not np.array_equal(r.model.y, first.model.y):
            raise ValueError("lrt needs models of one family fitted to the same observations and response")
        if r.model.nagq != first.model.nagq:
            raise ValueError("lrt needs models fitted with the same nagq (their likelihoods differ otherwise)")
    names = [r.model.formula for r in results] if names is None else [str(n) for n in names]
    if len(names) != len(results) or len(set(names)) != len(names):
        raise ValueError("names must be unique, one per model")
    order = sorted(range(len(results)), key=lambda i: results[i].npar)
    rows = []
    prev = None
    for i in order:
        r = results[i]
        row = {"npar": r.npar, "AIC": r.aic, "BIC": r.bic, "logLik": r.loglike, "deviance": r.deviance}
        if prev is None:
            row.update(Chisq=np.nan, Df=np.nan, p=np.nan)
        else:
            chisq = max(2.0 * (r.loglike - prev.loglike), 0.0)
            df = r.npar - prev.npar
            row.update(Chisq=chisq, Df=df, p=float(special.chdtrc(df, chisq)) if df > 0 else np.nan)
        rows.append(row)
        prev = r
    return pd.DataFrame(rows, index=[names[i] for i in order])
