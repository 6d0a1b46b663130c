"""Bound-constrained Newton minimizer with autodiff Hessians, entirely on the device.

θ is low-dimensional (a handful of covariance parameters), so the exact Hessian is cheap
relative to the number of iterations it saves.  Each step: projected gradient with
the active set {θ_i at its bound with ∂f/∂θ_i > 0}; an eigen-modified Newton direction on
the free set (|eigenvalues|, so saddles are escaped); a projected backtracking line
search.  Converges on the projected-gradient norm.

One step function serves every caller: :func:`newton_trial` proposes a point and
:func:`newton_update` judges it (the line search folded into the iteration), so a fit
runs them in a ``while_loop`` (:func:`newton_minimize`) and the refit pool
(:mod:`jaxlme.pool`) runs them vmapped over lanes of replicates.  Everything stays on the
device (no host round-trips), so it jit-compiles, runs on GPU and vmaps.
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
    "newton_init",
    "newton_trial",
    "newton_admissible",
    "newton_shorten",
    "newton_update",
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
        maxiter: cap on completed steps (:data:`MAXITER` for fits; the refit pool's lanes
            stop earlier and a standalone fit finishes what they leave).
        max_halvings: consecutive rejected trials before the line search gives up.
        armijo: sufficient-decrease constant of the line search.
        hessian: "exact" (autodiff Newton), "bfgs" (quasi-Newton: gradients only) or "fd"
            (forward differences of the exact gradient).
        fd_step: relative step of the forward differences ("fd").
        fd_refresh: "fd" only: after an accepted step no longer than this (max |Δx|),
            keep the last Hessian and evaluate the gradient alone (a chord step: one
            gradient instead of k + 1); a longer step, and the start, get a new one.  Near
            an optimum the Hessian barely changes over such a step, so the chord steps
            still gain digits each (0: a new Hessian after every step).  Under ``vmap``
            the choice becomes a select that evaluates both, so it saves nothing there.
        saddle_tol: a stationary point is a minimum only when the smallest eigenvalue of
            the Hessian on the free set is >= -saddle_tol.
        step_growth: BFGS only: a step's first trial moves no coordinate farther than
            step_growth (at least 1) times the last accepted step did (0: no limit).
            Where bounds cut BFGS's steps short, its model overshoots step after step and each line search
            backtracks several times; growing the allowed length from the last accepted
            one (doubling while steps succeed) keeps trials near the accepted scale.
            Not with ``warm``: there the carried inner state moves f between iterations,
            and a short first trial may then not decrease it.
        settle: Newton ("exact", "fd"): once max|projected gradient| <= gtol, take steps
            until θ settles at rounding level (one more Hessian, as Newton converges
            quadratically), so fits of affinely transformed data end at the same θ.
        accept_noise: also accept a trial that raises f by no more than its rounding noise
            (a 1e-11 fraction of 1 + |f|) when it halves the projected gradient.  Near the
            optimum f is flat to rounding, so whether a settling step passes the Armijo
            test is chance: without this a fit may halve its last step many times, and a
            lane of the pool hold its slot doing so.  Such trials need their derivatives.
    """

    gtol: float = 1e-6
    maxiter: int = MAXITER
    max_halvings: int = 40
    armijo: float = 1e-4
    hessian: str = "exact"
    fd_step: float = 1e-6
    fd_refresh: float = 0.0
    saddle_tol: float = 1e-8
    step_growth: float = 2.0
    settle: bool = True
    accept_noise: bool = True


# accept_noise's bound: a trial may raise f by this fraction of 1 + |f| (f's rounding noise)
_ROUNDING = 1e-11


class NewtonState(NamedTuple):
    """The solver's state between trials (as arrays with a leading lane axis in the pool).

    The line search is folded into the iteration: each :func:`newton_update` judges one
    trial point.  A fit runs the trials in a ``while_loop``, the refit pool runs them
    vmapped over lanes (so no lane waits on another's line search), and both get the same
    acceptance, step-length and convergence rules.

    Attributes:
        x: the last accepted point.
        f: the criterion at x (+inf before the first accepted evaluation).
        g: the gradient at x.
        H: the Hessian at x, or BFGS's model of it.
        d: the projected Newton direction at (x, g, H), before BFGS's step limit.
        alpha: the next trial's step length along d (1 after a completed step).
        nhalf: consecutive rejected trials.
        radius: BFGS's step limit, ``step_growth`` times the last accepted step (+inf: none).
        it: completed steps (accepted, or a line search given up), from -1: the start's
            evaluation completes step 0.
        nfev: criterion evaluations.
        status: a :class:`Status` code (-1: an empty slot of the refit pool).
    """

    x: jax.Array
    f: jax.Array
    g: jax.Array
    H: jax.Array
    d: jax.Array
    alpha: jax.Array
    nhalf: jax.Array
    radius: jax.Array
    it: jax.Array
    nfev: jax.Array
    status: jax.Array


def _projected_gradient(x, g, lb):
    at_bound = (x <= lb) & (g > 0)
    return jnp.where(at_bound, 0.0, g), at_bound


def newton_direction(x, g, H, lb):
    """Projected Newton direction at x, the projected gradient, and the free Hessian's
    smallest eigenvalue relative to its largest (negative: a saddle), from one ``eigh``.

    The eigenvalue answers as that of the Hessian with the active block zeroed does, for any
    threshold ≤ 0 (the active block is I here, 0 there).  Reductions are paired up (one
    product for both signs, one for both norms): under the bootstrap's vmap each is a kernel
    XLA compiles and launches.
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


def decrease_below_resolution(g, d, f) -> jax.Array:
    """The model's predicted decrease -g'd/2 along the direction d is below f's resolution:
    a line search there can only chase rounding noise."""
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


def newton_init(x0: jax.Array, lb: jax.Array, H0: jax.Array | None = None, xp=jnp) -> NewtonState:
    """The state before the start's evaluation: the first trial is x0 itself (d = 0), and
    it is accepted when f(x0) is finite.

    Args:
        x0: the start (moved onto the bounds where below them).
        lb: lower bounds.
        H0: the starting Hessian model (BFGS); None for the identity.
        xp: the array namespace: ``jax.numpy`` inside a program, ``numpy`` for a state
            built on the host (the refit pool's empty lanes: no device call to compile).

    Returns:
        A running :class:`NewtonState`.
    """
    x0 = xp.maximum(x0, lb)
    dt = x0.dtype
    H = xp.eye(x0.shape[-1], dtype=dt) if H0 is None else xp.asarray(H0, dt)
    i32 = xp.int32
    return NewtonState(
        x0,
        xp.array(xp.inf, dt),
        xp.zeros_like(x0),
        H,
        xp.zeros_like(x0),
        xp.array(1.0, dt),
        xp.array(0, i32),
        xp.array(xp.inf, dt),
        xp.array(-1, i32),
        xp.array(0, i32),
        xp.array(int(Status.RUNNING), i32),
    )


#: A trial point this close to a lower bound is put on it (x is O(1): jaxlme optimizes
#: θ̃ = θ / scale).  Rounding would otherwise leave a coordinate at 1e-16 where the step
#: aimed at the bound, and the tests that hold at the bound (the active set, the side a
#: negative-curvature step takes) would not apply there.
BOUND_SNAP = 1e-12


def newton_trial(s: NewtonState, lb: jax.Array) -> jax.Array:
    """The next trial point: x + alpha·d projected onto the bounds (within
    :data:`BOUND_SNAP` of a bound: on it), d first shortened to the step limit ``radius``."""
    d = s.d * jnp.minimum(1.0, s.radius / jnp.maximum(jnp.max(jnp.abs(s.d), initial=0.0), 1e-300))
    x = jnp.maximum(s.x + s.alpha * d, lb)
    return jnp.where(x - lb < BOUND_SNAP, lb, x)


def newton_admissible(s: NewtonState, xn: jax.Array, fn: jax.Array, opt: NewtonOptions) -> tuple[jax.Array, jax.Array]:
    """Whether the trial xn (criterion fn) decreases f sufficiently (Armijo), and whether
    its derivatives are needed to judge it (also a trial within f's rounding noise, with
    ``accept_noise``): a fit evaluates them only then."""
    decrease = jnp.dot(s.g, xn - s.x)
    finite = jnp.isfinite(fn)
    armijo_ok = finite & (fn <= s.f + opt.armijo * jnp.minimum(decrease, 0.0)) & ((fn < s.f) | (decrease < 0))
    if not opt.accept_noise:
        return armijo_ok, armijo_ok
    return armijo_ok, armijo_ok | (finite & (fn <= s.f + _ROUNDING * (1.0 + jnp.abs(s.f))))


def newton_shorten(s: NewtonState, xn: jax.Array, fn: jax.Array, opt: NewtonOptions) -> jax.Array:
    """The step length after the trial xn (criterion fn) is rejected.

    BFGS backtracks to the minimizer of the quadratic through f, the slope and fn, kept
    within [0.1, 0.5] of the rejected step: fewer evaluations than halving.  Newton halves:
    its steps are well scaled, and halving takes fewer iterations.
    """
    if opt.hessian != "bfgs":
        return 0.5 * s.alpha
    decrease = jnp.dot(s.g, xn - s.x)
    slope = decrease / s.alpha
    curv = (fn - s.f - decrease) / s.alpha**2
    quad = -slope / jnp.where(curv > 0, 2.0 * curv, 1.0)
    usable = jnp.isfinite(fn) & jnp.isfinite(s.f) & (curv > 0) & (slope < 0)
    return jnp.where(usable, jnp.clip(quad, 0.1 * s.alpha, 0.5 * s.alpha), 0.5 * s.alpha)


def newton_update(
    s: NewtonState,
    xn: jax.Array,
    fn: jax.Array,
    point: tuple[jax.Array, jax.Array, jax.Array],
    verdict: tuple[jax.Array, jax.Array],
    lb: jax.Array,
    opt: NewtonOptions,
    *,
    capped: bool = False,
    count_point: bool = False,
) -> tuple[NewtonState, jax.Array]:
    """Judge one trial: accept it, or shorten the step (giving up after ``max_halvings``
    rejections); after a completed step, the next direction and the status.

    One ``eigh`` gives both the next direction and the curvature test.  A state that is
    not running comes out unchanged (a finished or empty lane of the pool).

    Args:
        s: the state the trial was taken from.
        xn, fn: the trial point (:func:`newton_trial`) and the criterion there.
        point: (f, g, H) at xn: value, gradient and Hessian (or BFGS's updated model);
            only read where :func:`newton_admissible` asked for them.
        verdict: :func:`newton_admissible`'s answer at xn.
        lb: lower bounds.
        opt: the solver's options.
        capped: keep BFGS's step limit (``opt.step_growth``).
        count_point: count one more evaluation per completed step (evaluating ``point``
            took one beyond ``fn``'s).

    Returns:
        The next state and whether the trial was accepted.
    """
    fe, gn, Hn = point
    armijo_ok, wanted = verdict
    bfgs = opt.hessian == "bfgs"
    run = s.status == Status.RUNNING
    ok = armijo_ok
    if opt.accept_noise:  # within f's rounding noise (wanted), and the projected gradient halved
        gnorm_n = jnp.max(jnp.abs(_projected_gradient(xn, gn, lb)[0]), initial=0.0)
        gnorm_s = jnp.max(jnp.abs(_projected_gradient(s.x, s.g, lb)[0]), initial=0.0)
        ok = ok | (wanted & (gnorm_n < 0.5 * gnorm_s))
    ok = ok & jnp.all(jnp.isfinite(gn)) & jnp.all(jnp.isfinite(Hn)) & run
    # no accepted point yet: the trial was the start itself, and repeating it cannot help
    exhausted = run & ~ok & ((s.nhalf + 1 >= opt.max_halvings) | ~jnp.isfinite(s.f))
    done = ok | exhausted
    x = jnp.where(ok, xn, s.x)
    f = jnp.where(ok, fe, s.f)
    g = jnp.where(ok, gn, s.g)
    H = jnp.where(ok, Hn, s.H)
    d, pg, min_eig = newton_direction(x, g, H, lb)
    gnorm = jnp.max(jnp.abs(pg), initial=0.0)
    step = jnp.max(jnp.abs(x - s.x), initial=0.0)
    small_change = jnp.abs(s.f - f) <= 1e-14 * (1.0 + jnp.abs(f))
    it = s.it + done
    loose = (gnorm <= opt.gtol) & (min_eig >= -opt.saddle_tol)
    stationary = loose
    if opt.settle and not bfgs:
        # Newton converges quadratically: once |g| ≤ gtol, one more step costs one Hessian
        # and brings θ to rounding level (BFGS's steps are not quadratically convergent).
        settled = (gnorm <= 1e-3 * opt.gtol) | (step <= 1e-3 * opt.gtol * (1.0 + jnp.max(jnp.abs(x))))
        stationary = loose & settled
        small_change = small_change & ~loose  # f stops changing before θ settles
    near = gnorm <= noise_floor(f)
    if bfgs:
        # On large models BFGS can stop with |g| above the floor where the predicted
        # decrease g'B⁻¹g/2 is below f's resolution: that counts as converged by itself,
        # also when the line search has just failed.
        tiny = decrease_below_resolution(g, d, f)
        small_change = small_change | tiny
        near = near | tiny
    S = Status
    on_accept = jnp.where(
        stationary,
        S.CONVERGED,
        jnp.where(
            small_change & near,
            S.NO_FURTHER_DECREASE,
            jnp.where(it >= opt.maxiter, jnp.where(loose, S.CONVERGED, S.MAX_ITERATIONS), S.RUNNING),
        ),
    )
    # a line search given up next to a small gradient: flat to rounding, unless a saddle
    flat = near & (min_eig >= -opt.saddle_tol)
    on_fail = jnp.where(loose, S.CONVERGED, jnp.where(flat, S.NO_FURTHER_DECREASE, S.LINE_SEARCH_FAILED))
    status = jnp.where(ok, on_accept, jnp.where(exhausted, on_fail, S.RUNNING))
    status = jnp.where(done & ~jnp.isfinite(f), S.NONFINITE, status)
    status = jnp.where(run, status, s.status).astype(s.status.dtype)
    alpha = jnp.where(done, jnp.ones_like(s.alpha), jnp.where(run, newton_shorten(s, xn, fn, opt), s.alpha))
    nhalf = jnp.where(done, 0, s.nhalf + run).astype(s.nhalf.dtype)
    radius = s.radius
    if capped:
        radius = jnp.where(ok & (step > 0), opt.step_growth * step, radius)
    nfev = s.nfev + run + (done & count_point)
    new = NewtonState(x, f, g, H, d, alpha, nhalf, radius, it.astype(s.it.dtype), nfev.astype(s.nfev.dtype), status)
    return new, ok


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

    Runs :func:`newton_trial` / :func:`newton_update` in a ``while_loop`` until the status
    leaves RUNNING.  Trials rejected on their value alone cost that value: the derivatives
    are evaluated once per step, at the trial that passes.

    ``options.hessian == "bfgs"`` replaces the autodiff Hessian by a damped BFGS model (one
    gradient per iteration instead of a Hessian: the cheaper choice when the objective's
    dense block is large), started from ``H0`` when given (e.g. the Hessian at a nearby
    optimum) or else from a scaled identity.  ``"fd"`` takes Newton's Hessian from forward
    differences of the exact gradient (k + 1 gradients, one after another), cheaper to run and to
    compile than the autodiff Hessian when k is large.

    ``split = (value_pieces, gradient)`` (BFGS only): ``value_pieces(x, *args)`` returns
    ``fun``'s value and what ``gradient(x, pieces, *args)`` needs to finish its gradient.
    The accepted trial's pieces give its gradient without a second evaluation.

    ``warm(pieces, args)`` (with ``split``): the ``args`` for the evaluations after a step
    is accepted, given the accepted point's pieces; e.g. an inner iteration (a GLMM's
    PIRLS) then starts from the modes of the last accepted point instead of the start's.
    It must return ``args``' structure and leave ``fun``'s minimum where it is.

    Args:
        fun: the criterion.
        x0: the start.
        lb: lower bounds (-inf: none).
        args: further arguments of ``fun``.
        options: the solver's options.
        H0, split, warm: as above.

    Returns:
        The final :class:`NewtonState`.
    """
    vg = jax.value_and_grad(fun)
    bfgs = options.hessian == "bfgs"
    if options.hessian not in ("exact", "bfgs", "fd"):
        raise ValueError(f"hessian must be 'exact', 'bfgs' or 'fd', got {options.hessian!r}")
    if split is not None and not bfgs:
        raise ValueError("split objectives need hessian='bfgs'")
    if warm is not None and split is None:
        raise ValueError("warm starts need a split objective")
    if options.fd_refresh < 0:
        raise ValueError(f"fd_refresh must be >= 0, got {options.fd_refresh!r}")
    if options.step_growth < 0 or 0 < options.step_growth < 1:  # below 1 the steps would shrink to a stall
        raise ValueError(f"step_growth must be 0 (no limit) or at least 1, got {options.step_growth!r}")
    hess = jax.hessian(fun)

    def evaluate(x, s: NewtonState, fn, pieces, args):
        """f, g and the second-order model at x (s: the state the step started from; fn,
        pieces: the criterion at x and, with ``split``, its pieces)."""
        if options.hessian == "fd":  # f, g and H from k + 1 gradients, one after another

            def fresh(_):
                return fd_hessian(lambda xx: vg(xx, *args), x, options.fd_step, batched=False)

            if options.fd_refresh <= 0:
                return fresh(None)

            def chord(_):
                return (*vg(x, *args), s.H)

            short = (s.it >= 0) & (jnp.max(jnp.abs(x - s.x), initial=0.0) <= options.fd_refresh)
            return jax.lax.cond(short, chord, fresh, None)
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

    def value(x, args):
        return (fun(x, *args), ()) if split is None else split[0](x, *args)

    fixed_args = args
    capped = bfgs and options.step_growth > 0 and warm is None

    def body(c):
        # the args ride in the loop's carry only when ``warm`` changes them: constants
        # closed over stay visible to the compiler as loop invariants
        s = c[0]
        args = c[1] if warm is not None else fixed_args

        def trial(s):
            xn = newton_trial(s, lb)
            fn, pieces = value(xn, args)
            return xn, fn, pieces, newton_admissible(s, xn, fn, options)

        def searching(lc):
            s, (_, _, _, verdict) = lc
            # stop before the rejection that gives up: newton_update then records the outcome
            return ~verdict[1] & (s.nhalf + 1 < options.max_halvings) & jnp.isfinite(s.f)

        def rejected(lc):  # what newton_update does with a trial it rejects, short of giving up
            s, (xn, fn, _, _) = lc
            s = s._replace(alpha=newton_shorten(s, xn, fn, options), nhalf=s.nhalf + 1, nfev=s.nfev + 1)
            return s, trial(s)

        # the trials rejected on their value alone run in an inner loop, so the derivatives
        # are evaluated outside any conditional and the step's update is traced once
        s, (xn, fn, pieces, verdict) = jax.lax.while_loop(searching, rejected, (s, trial(s)))
        point = evaluate(xn, s, fn, pieces, args)  # (discarded where the line search gave up)
        s, ok = newton_update(s, xn, fn, point, verdict, lb, options, capped=capped, count_point=split is None)
        if warm is None:
            return (s,)
        args = jax.tree_util.tree_map(lambda new, old: jnp.where(ok, new, old), warm(pieces, args), args)
        return s, args

    state = newton_init(x0, lb, H0)
    init = (state,) + ((args,) if warm is not None else ())
    return jax.lax.while_loop(lambda c: c[0].status == Status.RUNNING, body, init)[0]
