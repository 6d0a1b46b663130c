"""Bound-constrained Newton minimizer with autodiff Hessians, entirely inside ``lax.while_loop``.

θ is low-dimensional (a handful of covariance parameters), so the exact Hessian is cheap
relative to the number of iterations it saves.  Each iteration: projected gradient with
the active set {θ_i at its bound with ∂f/∂θ_i > 0}; an eigen-modified Newton direction on
the free set (|eigenvalues|, so saddles are escaped); a projected backtracking line
search.  Converges on the projected-gradient norm.  Everything stays on the device (no
host round-trips), so it jit-compiles, runs on GPU and vmaps over bootstrap replicates.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .structure import LARGE_REST

__all__ = [
    "NewtonOptions",
    "NewtonState",
    "newton_minimize",
    "LaneState",
    "lane_trial",
    "lane_update",
    "Status",
    "STATUS",
]


class Status(enum.IntEnum):
    """Why the optimizer stopped (an integer on the device, named on the host)."""

    RUNNING = 0
    CONVERGED = 1  # projected gradient below gtol, no negative curvature on the free set
    NO_FURTHER_DECREASE = 2  # f flat to rounding next to a small gradient: converged too
    MAX_ITERATIONS = 3
    LINE_SEARCH_FAILED = 4
    NONFINITE = 5

    @property
    def message(self) -> str:
        """The text ``OptSummary.status`` shows."""
        return STATUS[self]

    @property
    def converged(self) -> bool:
        """Whether this outcome counts as an optimum."""
        return self in (Status.CONVERGED, Status.NO_FURTHER_DECREASE)


STATUS = {
    Status.RUNNING: "running",
    Status.CONVERGED: "converged (gradient)",
    Status.NO_FURTHER_DECREASE: "converged (no further decrease)",
    Status.MAX_ITERATIONS: "max iterations",
    Status.LINE_SEARCH_FAILED: "line search failed",
    Status.NONFINITE: "non-finite objective",
}


#: Newton's iteration cap for fits and refits: a cap, not a budget (near a singular optimum
#: Newton can need 100+ steps).  One value everywhere, so a follow-up refit reuses the fit's program.
MAXITER = 300

# Rows of the dense rest block from which "auto" fits with BFGS: there the finite-difference
# Hessian's ~3·ntheta gradients per iteration cost more than BFGS's extra iterations
# (measured: benchmarks/optimizer_choice.py).  Small models keep Newton's few, cheap steps.
BFGS_MIN_SIZE = LARGE_REST
# θ components from which "auto" fits with BFGS whatever the rest block's size: the
# autodiff Hessian (forward over reverse) costs about ntheta gradients, so with many
# covariance parameters (8 for two uncorrelated 4-column terms, 20 correlated) BFGS's extra
# iterations are the cheaper way to the optimum; a few Newton steps then finish from
# BFGS's point, so the answer has Newton's precision (measured: benchmarks/DESIGN_NOTES.md).
BFGS_MIN_THETA = 8


class NewtonOptions(NamedTuple):
    """Static options of the solver (hashable: part of every compiled program's key).

    Attributes:
        gtol: converged when max|projected gradient| <= gtol.
        maxiter: iteration cap (:data:`MAXITER` for fits; the refit pool's lanes stop
            earlier and a standalone fit finishes what they leave).
        max_halvings: consecutive rejected trials before the line search gives up.
        armijo: sufficient-decrease constant of the line search.
        hessian: "exact" (autodiff Newton), "bfgs" (quasi-Newton: gradients only) or "fd"
            (forward differences of the exact gradient; the refit pool's lanes).
        fd_step: relative step of the forward differences ("fd").
        saddle_tol: a stationary point is a minimum only when the smallest eigenvalue of
            the Hessian on the free set is >= -saddle_tol.
        step_growth: BFGS only: a step's first trial moves no coordinate farther than
            step_growth (at least 1) times the last accepted step did (0: no limit).
            Where bounds cut BFGS's steps short, its model overshoots step after step and each line search
            backtracks several times; growing the allowed length from the last accepted
            one (doubling while steps succeed) keeps trials near the accepted scale.
            Not with ``warm``: there the carried inner state moves f between iterations,
            and a short first trial may then not decrease it.
    """

    gtol: float = 1e-6
    maxiter: int = MAXITER
    max_halvings: int = 40
    armijo: float = 1e-4
    hessian: str = "exact"
    fd_step: float = 1e-6
    saddle_tol: float = 1e-8
    step_growth: float = 2.0


# A lane accepts a trial that raises f by no more than its rounding noise (this fraction of
# 1 + |f|) if it halves the projected gradient: near the optimum f is flat to rounding.
_ROUNDING = 1e-11
# A lane that stops (cap or failed line search) with max|projected gradient| below this and
# no negative curvature counts as converged with no further decrease, like the fit's rule.
_FLAT_GNORM = 1e-3


class NewtonState(NamedTuple):
    x: jax.Array
    f: jax.Array
    g: jax.Array
    H: jax.Array
    it: jax.Array
    nfev: jax.Array
    status: jax.Array


def _projected_gradient(x, g, lb):
    at_bound = (x <= lb) & (g > 0)
    return jnp.where(at_bound, 0.0, g), at_bound


def free_min_eig(x, g, H, lb):
    """Smallest eigenvalue of the Hessian on the free set, relative to its largest."""
    _, active = _projected_gradient(x, g, lb)
    free = ~active
    Hf = jnp.where(free[:, None] & free[None, :], H, jnp.zeros_like(H))
    w = jnp.linalg.eigvalsh(Hf)
    return w[0] / jnp.maximum(1.0, jnp.max(jnp.abs(w)))


def _direction(x, g, H, lb):
    d, pg, _ = newton_direction(x, g, H, lb)
    return d, pg


def newton_direction(x, g, H, lb):
    """Projected Newton direction at x, the projected gradient, and the free Hessian's
    smallest eigenvalue relative to its largest (negative: a saddle), from one ``eigh``.

    The eigenvalue answers as :func:`free_min_eig` does for any threshold ≤ 0 (the active
    block is I here, 0 there).  Reductions are paired up (one product for both signs, one
    for both norms): under the bootstrap's vmap each is a kernel XLA compiles and launches.
    """
    pg, active = _projected_gradient(x, g, lb)
    free = ~active
    Hf = jnp.where(free[:, None] & free[None, :], H, jnp.eye(H.shape[0], dtype=H.dtype))
    w, V = jnp.linalg.eigh(Hf)
    wabs = jnp.abs(w)
    wmax = jnp.max(wabs)
    floor = jnp.maximum(1e-10 * wmax, 1e-12)
    d = -V @ ((V.T @ pg) / jnp.maximum(wabs, floor))
    # negative curvature at a stationary point (e.g. θ_i = 0 where f is even in θ_i):
    # move along the most negative eigenvector, downhill, else into the feasible side
    vmin = V[:, 0] * free
    at_lb, slope = jnp.stack([jnp.where(x <= lb, 1.0, 0.0), pg]) @ vmin
    s = jnp.where(slope != 0, -jnp.sign(slope), jnp.sign(at_lb - 1e-300))
    neg = w[0] < -1e-8 * jnp.maximum(1.0, wmax)
    norm_d, norm_x = jnp.sqrt(jnp.sum(jnp.stack([d, x]) ** 2, axis=1))
    d = jnp.where(neg, d + s * vmin * jnp.maximum(norm_d, 0.1 * (1.0 + norm_x)), d)
    return jnp.where(free, d, 0.0), pg, w[0] / jnp.maximum(1.0, wmax)


def noise_floor(f: jax.Array) -> jax.Array:
    """Gradient size that rounding noise in f reaches at the optimum (~1e-3 for InstEval's
    2.4e5 criterion): below it, "no further decrease" counts as converged."""
    return jnp.maximum(1e-3, 1e-8 * jnp.abs(f))


def below_resolution(x, g, H, lb, f) -> jax.Array:
    """The model's predicted decrease -g'd/2 along the next direction is below f's
    resolution: a line search there can only chase rounding noise."""
    return decrease_below_resolution(g, _direction(x, g, H, lb)[0], f)


def decrease_below_resolution(g, d, f) -> jax.Array:
    """:func:`below_resolution` for a direction d already at hand."""
    return -0.5 * jnp.dot(g, d) <= 1e-12 * (1.0 + jnp.abs(f))


def fd_points(x: jax.Array, rel_step: float) -> tuple[jax.Array, jax.Array]:
    """Rows x, x + h_1 e_1, …, x + h_k e_k and the steps h = rel_step·max(1, |x|)."""
    h = rel_step * jnp.maximum(1.0, jnp.abs(x))
    return jnp.concatenate([x[None, :], x[None, :] + jnp.diag(h)], axis=0), h


def fd_hessian(vg: Callable, x: jax.Array, rel_step: float, batched: bool = True, has_aux: bool = False):
    """f, g at x and the symmetrized forward-difference Hessian of the exact gradient.

    ``batched=False`` evaluates the points one after another (``lax.map``): for large dense
    blocks, whose gradient is fastest unbatched.  ``has_aux``: ``vg`` returns (f, g, aux),
    and aux at every point (stacked, x's first) is returned fourth.
    """
    pts, h = fd_points(x, rel_step)
    out = jax.vmap(vg)(pts) if batched else jax.lax.map(vg, pts)
    result = fd_assemble(out[0], out[1], h)
    return result + (out[2],) if has_aux else result


def fd_assemble(fs: jax.Array, gs: jax.Array, h: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """f, g and the symmetrized Hessian from values and gradients at :func:`fd_points`."""
    H = (gs[1:] - gs[0][None, :]) / h[:, None]
    return fs[0], gs[0], 0.5 * (H + H.T)


def bfgs_update(B: jax.Array, s: jax.Array, y: jax.Array) -> jax.Array:
    """Powell-damped BFGS update of a Hessian approximation B (stays positive definite)."""
    Bs = B @ s
    sBs = jnp.dot(s, Bs)
    sy = jnp.dot(s, y)
    phi = jnp.where(sy >= 0.2 * sBs, 1.0, 0.8 * sBs / jnp.where(sBs - sy > 0, sBs - sy, 1.0))
    r = phi * y + (1.0 - phi) * Bs
    sr = jnp.dot(s, r)
    tiny = 1e-300
    Bn = B - jnp.outer(Bs, Bs) / jnp.maximum(sBs, tiny) + jnp.outer(r, r) / jnp.maximum(sr, tiny)
    ok = (sBs > 1e-12 * jnp.dot(s, s) * jnp.max(jnp.abs(jnp.diagonal(B)))) & (sr > 0) & jnp.all(jnp.isfinite(Bn))
    return jnp.where(ok, 0.5 * (Bn + Bn.T), B)


def newton_minimize(
    fun: Callable[..., jax.Array],
    x0: jax.Array,
    lb: jax.Array,
    args: tuple = (),
    options: NewtonOptions = NewtonOptions(),
    H0: jax.Array | None = None,
    split: tuple[Callable, Callable] | None = None,
    warm: Callable | None = None,
) -> NewtonState:
    """Minimize ``fun(x, *args)`` subject to ``x >= lb``. Traceable: call inside jit/vmap.

    ``options.hessian == "bfgs"`` replaces the autodiff Hessian by a damped BFGS model (one
    gradient per iteration instead of a Hessian: the cheaper choice when the objective's
    dense block is large), started from ``H0`` when given (e.g. the Hessian at a nearby
    optimum) or else from a scaled identity.  ``"fd"`` takes Newton's Hessian from forward
    differences of the exact gradient (k + 1 gradients, one after another), cheaper to run and to
    compile than the autodiff Hessian when k is large.

    ``split = (value_pieces, gradient)`` (BFGS only): ``value_pieces(x, *args)`` returns
    ``fun``'s value and what ``gradient(x, pieces, *args)`` needs to finish its gradient.
    The line search keeps the pieces of its last trial, so the accepted point's gradient
    does not evaluate the objective again.

    ``warm(pieces, args)`` (with ``split``): the ``args`` for the evaluations after a step
    is accepted, given the accepted point's pieces; e.g. an inner iteration (a GLMM's
    PIRLS) then starts from the modes of the last accepted point instead of the start's.
    It must return ``args``' structure and leave ``fun``'s minimum where it is.
    """
    vg = jax.value_and_grad(fun)
    bfgs = options.hessian == "bfgs"
    if options.hessian not in ("exact", "bfgs", "fd"):
        raise ValueError(f"hessian must be 'exact', 'bfgs' or 'fd', got {options.hessian!r}")
    if split is not None and not bfgs:
        raise ValueError("split objectives need hessian='bfgs'")
    if warm is not None and split is None:
        raise ValueError("warm starts need a split objective")
    if options.step_growth < 0 or 0 < options.step_growth < 1:  # below 1 the steps would shrink to a stall
        raise ValueError(f"step_growth must be 0 (no limit) or at least 1, got {options.step_growth!r}")
    hess = jax.hessian(fun)

    def evaluate(x, s: NewtonState, fn, pieces, args):
        """f, g and the second-order model at x (s: the state the step started from; fn,
        pieces: the line search's value at x and, with ``split``, its pieces)."""
        if options.hessian == "fd":  # f, g and H from k + 1 gradients, one after another
            return fd_hessian(lambda xx: vg(xx, *args), x, options.fd_step, batched=False)
        if split is None:
            f, g = vg(x, *args)
        else:
            f, g = fn, split[1](x, pieces, *args)
        if not bfgs:
            return f, g, hess(x, *args)
        if H0 is not None:
            return f, g, bfgs_update(s.H, x - s.x, g - s.g)
        # no model yet: after the start, a scaled identity that makes the first step
        # at most ~0.5 long (θ̃ is unit scale); at the first step, Shanno-Phua's scaling
        eye = jnp.eye(x.shape[0], dtype=x.dtype)
        gmax = jnp.max(jnp.abs(g), initial=0.0)
        start = jnp.maximum(gmax / 0.5, 1.0) * eye
        dx, dg = x - s.x, g - s.g
        sy = jnp.dot(dx, dg)
        shanno = jnp.where(sy > 0, jnp.dot(dg, dg) / jnp.where(sy > 0, sy, 1.0), 1.0) * eye
        B = jnp.where(s.it == -1, start, jnp.where(s.it == 0, shanno, s.H))
        return f, g, jnp.where(s.it == -1, B, bfgs_update(B, dx, dg))

    # The start is evaluated by the loop body itself (f = inf, g = 0 gives a zero step that
    # the line search accepts), so the objective, gradient and Hessian are traced once,
    # which shortens the compile.
    x0 = jnp.maximum(x0, lb)
    n = x0.shape[0]
    state = NewtonState(
        x0,
        jnp.array(jnp.inf, x0.dtype),
        jnp.zeros_like(x0),
        jnp.eye(n, dtype=x0.dtype) if H0 is None else jnp.asarray(H0, x0.dtype),
        jnp.array(-1),
        jnp.array(0),
        jnp.array(0),
    )

    def value(x, args):
        return (fun(x, *args), ()) if split is None else split[0](x, *args)

    def line_search(x, f, g, d, args):
        """Projected backtracking from x along d: the accepted point, its f and pieces, ok,
        trials.

        (Trials take the value only: a gradient with each trial, inside ``lax.cond``, costs
        more than it saves; ``split`` saves BFGS the accepted point's second evaluation.)
        """

        def cond(c):
            alpha, k, fn, xn, ok, _ = c
            return (~ok) & (k < options.max_halvings)

        def body(c):
            alpha, k = c[0], c[1]
            xn = jnp.maximum(x + alpha * d, lb)
            fn, pieces = value(xn, args)
            decrease = jnp.dot(g, xn - x)
            ok = jnp.isfinite(fn) & (fn <= f + options.armijo * jnp.minimum(decrease, 0.0))
            ok = ok & ((fn < f) | (decrease < 0))
            # BFGS backtracks to the minimizer of the quadratic through f, the slope and fn,
            # kept within [0.1, 0.5] of the rejected step, in fewer evaluations than halving.
            # Newton halves: its steps are well scaled, and halving takes fewer iterations.
            slope = decrease / alpha
            curv = (fn - f - decrease) / alpha**2
            quad = -slope / jnp.where(curv > 0, 2.0 * curv, 1.0)
            usable = jnp.isfinite(fn) & jnp.isfinite(f) & (curv > 0) & (slope < 0) & bfgs
            nxt = jnp.where(usable, jnp.clip(quad, 0.1 * alpha, 0.5 * alpha), 0.5 * alpha)
            return nxt, k + 1, fn, xn, ok, pieces

        start = (jnp.array(1.0, x.dtype), jnp.array(0))
        if split is None:
            init = start + (f, x, jnp.array(False), ())
        else:  # the first trial outside the loop: its pieces need no placeholder to start from
            init = body(start)
        _, k, fn, xn, ok, pieces = jax.lax.while_loop(cond, body, init)
        return xn, fn, pieces, ok, k

    fixed_args = args
    capped = bfgs and options.step_growth > 0 and warm is None

    def cond(c):
        return c[0].status == Status.RUNNING

    def body(c):
        # the args ride in the loop's carry only when ``warm`` changes them: constants
        # closed over stay visible to the compiler as loop invariants
        s, radius = c[0], c[1]
        args = c[2] if warm is not None else fixed_args
        d, _ = _direction(s.x, s.g, s.H, lb)
        if capped:  # the first trial no longer than step_growth x the last accepted step
            d = d * jnp.minimum(1.0, radius / jnp.maximum(jnp.max(jnp.abs(d), initial=0.0), 1e-300))
        xn, fn, pieces, ok, k = line_search(s.x, s.f, s.g, d, args)
        fe, ge, He = evaluate(xn, s, fn, pieces, args)
        if warm is not None:
            args = jax.tree_util.tree_map(lambda new, old: jnp.where(ok, new, old), warm(pieces, args), args)
        x = jnp.where(ok, xn, s.x)
        f = jnp.where(ok, fe, s.f)
        g = jnp.where(ok, ge, s.g)
        H = jnp.where(ok, He, s.H)
        pg, _ = _projected_gradient(x, g, lb)
        gnorm = jnp.max(jnp.abs(pg), initial=0.0)
        step = jnp.max(jnp.abs(x - s.x), initial=0.0)
        small_change = jnp.abs(s.f - f) <= 1e-14 * (1.0 + jnp.abs(f))
        it = s.it + 1
        loose = (gnorm <= options.gtol) & (free_min_eig(x, g, H, lb) >= -options.saddle_tol)
        stationary = loose  # BFGS: its steps are not quadratically convergent
        if not bfgs:
            # Newton converges quadratically: once |g| ≤ gtol, one more step costs one
            # Hessian and brings θ to rounding level, so fits of affinely transformed data
            # (y + c, a·y) end at the same θ instead of a step apart.
            settled = (gnorm <= 1e-3 * options.gtol) | (step <= 1e-3 * options.gtol * (1.0 + jnp.max(jnp.abs(x))))
            stationary = loose & settled
            small_change = small_change & ~loose  # f stops changing before θ settles
        near = gnorm <= noise_floor(f)
        if bfgs:
            # On large models BFGS can stop with |g| above the floor where the predicted
            # decrease g'B⁻¹g/2 is below f's resolution: that counts as converged by itself,
            # also when the line search has just failed.
            tiny = below_resolution(x, g, H, lb, f)
            small_change = small_change | tiny
            near = near | tiny
        S = Status
        status = jnp.where(
            stationary,
            S.CONVERGED,
            jnp.where(
                ~ok,
                jnp.where(loose, S.CONVERGED, jnp.where(near, S.NO_FURTHER_DECREASE, S.LINE_SEARCH_FAILED)),
                jnp.where(
                    small_change & near,
                    S.NO_FURTHER_DECREASE,
                    jnp.where(it >= options.maxiter, jnp.where(loose, S.CONVERGED, S.MAX_ITERATIONS), S.RUNNING),
                ),
            ),
        )
        status = jnp.where(jnp.isfinite(f), status, S.NONFINITE)
        state = NewtonState(x, f, g, H, it, s.nfev + k + (split is None), status)
        if capped:
            radius = jnp.where(step > 0, options.step_growth * step, radius)
        return (state, radius) + ((args,) if warm is not None else ())

    init = (state, jnp.array(jnp.inf, x0.dtype)) + ((args,) if warm is not None else ())
    return jax.lax.while_loop(cond, body, init)[0]


class LaneState(NamedTuple):
    """The solver's state for batched refits, one row per lane (leading axis: lanes).

    A lane takes one trial per iteration (its line search folded into the iterations:
    a rejected trial halves the next one's step), so vmapped lanes do the same work each
    iteration and none waits on another's inner loop.
    """

    x: jax.Array  # (B, k)
    f: jax.Array  # (B,)  +inf before the first accepted evaluation
    g: jax.Array  # (B, k)
    H: jax.Array  # (B, k, k)
    d: jax.Array  # (B, k) Newton direction at (x, g, H): the next trial is x + alpha d
    gnorm: jax.Array  # (B,) max |projected g| at x
    nhalf: jax.Array  # (B,) consecutive rejected trials: the next trial's step is 2^-nhalf
    it: jax.Array  # (B,) iterations used
    status: jax.Array  # (B,) 0 running, 1-5 as optimizer.STATUS, -1 empty slot
    corner: jax.Array  # (B, p+1, p+1) fixed-effect corner of the factor at x ("fd" lanes)


def lane_trial(st: LaneState, lb) -> jax.Array:
    """The lane's next trial point x + α d (d: the direction the last iteration left, α
    halved for each rejected trial since the last accepted one)."""
    return jnp.maximum(st.x + 0.5 ** st.nhalf.astype(st.x.dtype) * st.d, lb)


def lane_update(st: LaneState, xn, fn, gn, Hn, corner_n, finite, lb, opt: NewtonOptions) -> LaneState:
    """Accept or reject a lane's trial and compute its next direction and status.

    One ``eigh`` per iteration gives both the next direction and the curvature test of the
    convergence rules.  Under the vmap every reduction is a kernel, which the first call
    compiles and every iteration launches, so the lane logic keeps them few.  A lane that
    is not running (status ≠ 0) comes out unchanged: masking here rather than selecting
    between old and new states afterwards saves a select per state array, and compile time."""
    x, f, g, H = st.x, st.f, st.g, st.H
    decrease = jnp.dot(jnp.where(jnp.isfinite(f), g, 0.0), xn - x)
    armijo_ok = (fn <= f + opt.armijo * jnp.minimum(decrease, 0.0)) & ((fn < f) | (decrease < 0))
    # near the optimum f is flat to rounding: accept a step that does not raise f beyond
    # its rounding noise and shrinks the projected gradient (else lanes stall halving)
    gnorm_n = jnp.max(jnp.abs(_projected_gradient(xn, gn, lb)[0]), initial=0.0)
    noise_ok = (fn <= f + _ROUNDING * (1.0 + jnp.abs(f))) & (gnorm_n < 0.5 * st.gnorm)
    run = st.status == Status.RUNNING  # finished and empty lanes keep their state (and are not counted)
    ok = finite & (armijo_ok | noise_ok) & run
    x2 = jnp.where(ok, xn, x)
    f2 = jnp.where(ok, fn, f)
    g2 = jnp.where(ok, gn, g)
    H2 = jnp.where(ok, Hn, H)
    corner2 = jnp.where(ok, corner_n, st.corner)
    gnorm = jnp.where(ok, gnorm_n, st.gnorm)
    nhalf = jnp.where(ok, 0, st.nhalf + run)
    it = st.it + run
    d2, _, min_eig = newton_direction(x2, g2, H2, lb)
    stationary = ok & (gnorm <= opt.gtol) & (min_eig >= -opt.saddle_tol)
    small_change = ok & jnp.isfinite(f) & (jnp.abs(f - fn) <= 1e-14 * (1.0 + jnp.abs(fn))) & (gnorm <= _FLAT_GNORM)
    if opt.hessian == "bfgs":  # as the core: a predicted decrease below f's resolution
        tiny = decrease_below_resolution(g2, d2, f2)
        small_change = small_change | (ok & tiny & (gnorm <= noise_floor(f2)))
    ls_fail = (~ok) & (nhalf >= opt.max_halvings)
    flat = (gnorm <= _FLAT_GNORM) & (min_eig >= -opt.saddle_tol)  # not a saddle (lanes do pass near them)
    S = Status
    stopped = jnp.where(flat, S.NO_FURTHER_DECREASE, jnp.where(ls_fail, S.LINE_SEARCH_FAILED, S.MAX_ITERATIONS))
    status = jnp.where(
        stationary,
        S.CONVERGED,
        jnp.where(small_change, S.NO_FURTHER_DECREASE, jnp.where(ls_fail | (it >= opt.maxiter), stopped, S.RUNNING)),
    )
    status = jnp.where(jnp.isfinite(f2), status, S.NONFINITE)  # the very first evaluation failed
    status = jnp.where(run, status, st.status)
    return LaneState(x2, f2, g2, H2, d2, gnorm, nhalf, it, status.astype(st.status.dtype), corner2)
