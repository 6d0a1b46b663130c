"""Parametric bootstrap: simulate from a fitted model, refit every replicate on the device.

Only the response changes between replicates, so each replicate recomputes just the
y-dependent cross-products (``zy1``, ``ry``; O(n)) and reuses the model's structure.  The
refits run as a *pool* of ``chunk_size`` vmapped lanes (sharded over all JAX devices with
``shard_map``), driven by a batched Newton iteration written for batching:

* every iteration is branch-free and costs the same for every lane: one batch of
  ``1 + ntheta`` value-and-gradient evaluations (the trial point and forward differences
  of the autodiff gradient, which give the Hessian), then an accept/halve decision.  The
  line search is folded into the outer iteration (a rejected step halves the step length
  for the next iteration), so there is no inner ``while_loop`` whose slowest lane stalls
  the batch, and the exact Hessian's expensive forward-over-reverse pass is avoided;
* lanes that have converged (or failed) are masked and *retired* by the host, and their
  slots refilled with fresh replicates ("continuous batching").  A device call returns as
  soon as half of its lanes are done (or after ``round_iters`` iterations), so one stubborn
  replicate occupies one slot for a few extra rounds instead of holding the whole chunk;
* a lane's trajectory depends only on its replicate's random draws (Threefry-2x32 under
  the seed's key, counters (i, j)) and its saved state, so the replicates do not depend on
  the chunk size, the number of devices or which round a lane ran in, and their refits
  only through rounding: batched arithmetic of another width rounds differently, which
  moves a refit within the optimizer's tolerance (θ by up to ~1e-4 along flat directions).

Replicates whose response or objective goes non-finite are flagged (status 5) and
counted, never raise.  ``KeyboardInterrupt`` returns the replicates finished so far.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.sharding import Mesh, PartitionSpec

try:  # the function jax.extend.random re-exports; that package also imports Pallas, a slow import
    from jax._src.random.threefry2x32 import threefry_2x32
except ImportError:  # pragma: no cover - another JAX layout
    from jax.extend.random import threefry_2x32

from . import _warnings
from .boundary import boundary_escape, zero_columns
from .compiled import LRUCache, compile_program, compile_program_async, enable_compilation_cache
from .objective import (
    effects_from_corner,
    fixef_sigma,
    objective,
    objective_and_corner,
    program_flags,
    program_objective,
)
from .optimizer import (
    BFGS_MIN_SIZE,
    MAXITER,
    STATUS,
    Status,
    _projected_gradient,
    bfgs_update,
    decrease_below_resolution,
    fd_assemble,
    fd_hessian,
    fd_points,
    newton_direction,
    noise_floor,
)
from .params import vc_frame
from .structure import ObsData, Structure, response_crossprods

if TYPE_CHECKING:  # pragma: no cover
    from .results import LMMResult

__all__ = ["BootstrapResult", "bootstrap", "simulate", "BootOptions"]

_INACTIVE = -1  # status of an empty pool slot


class BootOptions(NamedTuple):
    """Static options of the batched refit (part of the compile-cache key)."""

    gtol: float = 1e-6  # projected-gradient max-norm for convergence (as the core fit)
    maxiter: int = 30  # iterations a replicate gets in the batched loop; at the cap,
    # max|projected gradient| <= 1e-3 without negative curvature counts as "converged (no
    # further decrease)" (status 2), like the core's line-search rule, and anything else is
    # refitted on its own by the follow-up (see _follow_up)
    max_halvings: int = 30  # consecutive rejected steps before giving up
    armijo: float = 1e-4
    fd_step: float = 1e-6  # relative forward-difference step for the Hessian
    hessian: str = "fd"  # "fd": forward differences of gradients (ntheta + 1 gradients per
    # step); "bfgs": one gradient per step, the model started from the Hessian at θ̂ (large
    # dense blocks, where each gradient is expensive)


class _Lanes(NamedTuple):
    """Per-lane optimizer state (leading axis: lanes)."""

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


# ----------------------------------------------------------------------------------------
# simulation
# ----------------------------------------------------------------------------------------
class _SimParams(NamedTuple):
    beta: jax.Array  # (p,)
    sigma: jax.Array  # ()
    lams: tuple[jax.Array, ...]  # per term (r, r) relative covariance factor Λ_t


def resolve_seed(seed: int | None) -> int:
    """The integer seed a run uses: ``seed`` itself, or fresh OS entropy for None (numpy's
    convention), so a run without a seed can still be repeated from the one recorded.

    Args:
        seed: an integer (any size; negative values wrap as in ``jax.random.PRNGKey``) or None.

    Returns:
        The seed as a Python int.
    """
    if seed is None:
        return int(np.random.SeedSequence().entropy % 2**63)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer or None, got {type(seed).__name__}")
    return int(seed)


class Simulated(np.ndarray):
    """Simulated responses (an ordinary ndarray) that remember the ``seed`` they came from."""

    seed: int | None

    def __array_finalize__(self, obj) -> None:
        self.seed = getattr(obj, "seed", None)


def seed_key(seed: int) -> np.ndarray:
    """Threefry-2x32 key (two uint32 words) of an integer seed: its high and low 32 bits, as
    ``jax.random.PRNGKey`` makes it (host-side: no program to trace or compile)."""
    seed = int(seed) % 2**64
    return np.array([seed >> 32, seed & 0xFFFFFFFF], dtype=np.uint32)


def standard_normals(key: jax.Array, i: jax.Array, m: int, dtype=jnp.float64) -> jax.Array:
    """``m`` independent N(0, 1) draws for replicate ``i``: the Box-Muller transform of
    53-bit uniforms from Threefry-2x32 (``key``: :func:`seed_key`) of counters (i, j).

    One hash call over the counters, then log/sqrt/cos/sin: a smaller program, quicker to
    compile, than ``jax.random.normal``'s inverse-erf polynomial and second threefry stream,
    and no per-replicate ``fold_in`` key, which would add a second hash to lower and compile."""
    h = (m + 1) // 2
    count = jnp.arange(2 * h, dtype=jnp.uint32)
    words = threefry_2x32(key, jnp.concatenate([jnp.full(2 * h, i, jnp.uint32), count]))
    hi, lo = words[: 2 * h].astype(jnp.uint64), words[2 * h :].astype(jnp.uint64)
    bits = ((hi << 32) | lo).reshape(2, h)
    u = ((bits >> 11).astype(dtype) + 0.5) * (2.0**-53)  # in (0, 1): log(u) is finite
    r = jnp.sqrt(-2.0 * jnp.log(u[0]))
    angle = (2.0 * math.pi) * u[1]
    return jnp.concatenate([r * jnp.cos(angle), r * jnp.sin(angle)])[:m]


def _simulate_one(key, i, sp: _SimParams, obs: ObsData, sizes: tuple[tuple[int, int], ...], n: int):
    """y* = Xβ̂ + Σ_t Z_t b_t + ε with b_t ~ N(0, σ̂²Λ_tΛ_t'), ε ~ N(0, σ̂² I).

    With prior weights ``obs`` holds √w-scaled rows, so this is √w·y* for y* with
    ε_i ~ N(0, σ̂²/w_i): the response the weighted cross-products need."""
    q = sum(k * r for k, r in sizes)
    z = standard_normals(key, i, q + n, sp.beta.dtype)
    u, eps = z[:q], z[q:]
    mu = obs.X @ sp.beta
    start = 0
    for (k, r), lam, idx, Z in zip(sizes, sp.lams, obs.index, obs.Z):
        b = u[start : start + k * r].reshape(k, r) @ lam.T  # rows: Λ u_level
        start += k * r
        mu = mu + sp.sigma * jnp.sum(Z * b[idx], axis=-1)
    return mu + sp.sigma * eps


def _sim_params(result: LMMResult) -> _SimParams:
    """Host arrays (device_put by the caller: no eager JAX ops, so no small compiles)."""
    lams = result.model.layout.lambdas(np.asarray(result.theta, dtype=float))
    return _SimParams(
        np.asarray(result.effects.beta, dtype=np.float64),  # β̃: obs.X holds the centred columns
        np.asarray(result.sigma, dtype=np.float64),
        tuple(np.asarray(lam, dtype=np.float64) for lam in lams),
    )


def _sizes(layout) -> tuple[tuple[int, int], ...]:
    return tuple((t.nlevels, t.ncols) for t in layout.terms)


_SIM_COMPILED: LRUCache = LRUCache()


def simulate(result: LMMResult, n: int, seed: int | None = 0) -> Simulated:
    """Responses simulated from the fitted model (residual variance σ̂²/wᵢ for a model
    with prior weights; the formula's offset included, as in lme4's ``simulate``).

    Row ``i`` uses replicate ``i``'s draws (see :func:`standard_normals`): the same draws
    the bootstrap refits for replicate ``i`` with the same seed.

    Args:
        result: the fitted model.
        n: number of simulated responses.
        seed: integer seed, or None for fresh entropy (the seed used is kept as ``.seed``).

    Returns:
        An (n, nobs) array whose ``seed`` attribute is the seed used.
    """
    n = int(n)
    if n < 0:
        raise ValueError("n must be >= 0")
    seed = resolve_seed(seed)
    out = _simulate(result, n, seed).view(Simulated)
    out.seed = seed
    return out


def _simulate(result: LMMResult, n: int, seed: int) -> np.ndarray:
    with jax.enable_x64(True):
        model = result.model
        lay = model.layout
        if n == 0:
            return np.zeros((0, model.nobs))
        sizes = _sizes(lay)
        key = jax.device_put(seed_key(seed))
        sp = jax.device_put(_sim_params(result))
        cache_key = (lay, sizes)
        fn = _SIM_COMPILED.get(cache_key)
        if fn is None:

            def sim(key, idx, sp, obs):
                return jax.vmap(lambda i: _simulate_one(key, i, sp, obs, sizes, lay.n))(idx)

            fn = jax.jit(sim)
            _SIM_COMPILED[cache_key] = fn
        out = []
        step = max(1, int(2e7 // max(lay.n, 1)))  # bound memory: ~160 MB per call
        for s in range(0, n, step):
            idx = jax.device_put(np.arange(s, min(n, s + step), dtype=np.int32))
            out.append(np.asarray(fn(key, idx, sp, model.obs)))
        sims = np.concatenate(out, axis=0)
        w, offset = model.design.weights, model.design.offset
        if w is not None:
            sims = sims / np.sqrt(w)  # obs rows carry √w (see _simulate_one)
        sims = sims + model.centering.y_shift  # the response the centred cross-products left out
        return sims if offset is None else sims + offset


# ----------------------------------------------------------------------------------------
# the batched refit
# ----------------------------------------------------------------------------------------
def _lane_step(st: _Lanes, s: Structure, lb, reml: bool, opt: BootOptions) -> _Lanes:
    """One BFGS iteration for one lane (the "bfgs" lanes, run one after another)."""
    xn = _lane_trial(st, lb)
    fn, gn = jax.value_and_grad(lambda t: program_objective(t, s, reml))(xn)
    Hn = bfgs_update(st.H, xn - st.x, gn - st.g)  # no-op at the start, where xn == x
    finite = jnp.isfinite(fn) & jnp.all(jnp.isfinite(gn))  # (bfgs_update keeps H finite)
    # the corner is unused: the round's end solves these lanes' effects afresh
    return _lane_update(st, xn, fn, gn, Hn, st.corner, finite, lb, opt)


def _lanes_step(st: _Lanes, struct: Structure, zy1, ry, lb, reml: bool, opt: BootOptions) -> _Lanes:
    """One Newton iteration of every lane, with forward-difference Hessians of the exact
    gradient (the "fd" lanes).  All lanes' points are evaluated by one flat vmap (``zy1``,
    ``ry``: each lane's cross-products repeated for its k + 1 points) rather than a vmap
    over lanes of a vmap over points: a nesting that XLA's program carries as an extra
    batch dimension through every operation of the objective."""
    xn = jax.vmap(_lane_trial, in_axes=(0, None))(st, lb)
    pts, h = jax.vmap(lambda x: fd_points(x, opt.fd_step))(xn)
    nb, npts, k = pts.shape

    def vg(t, z, r):
        (value, corner), grad = jax.value_and_grad(objective_and_corner, has_aux=True)(
            t, struct.with_response(z, r), reml
        )
        return value, grad, corner

    fs, gs, corners = jax.vmap(vg)(pts.reshape(nb * npts, k), zy1, ry)
    fs, gs, corners = fs.reshape(nb, npts), gs.reshape(nb, npts, k), corners.reshape((nb, npts) + corners.shape[1:])
    fn, gn, Hn = jax.vmap(fd_assemble)(fs, gs, h)
    finite = jnp.isfinite(fn) & jnp.all(jnp.isfinite(Hn), axis=(1, 2))  # every g_j enters H's column j
    update = functools.partial(_lane_update, lb=lb, opt=opt)
    return jax.vmap(update)(st, xn, fn, gn, Hn, corners[:, 0], finite)


def _lane_trial(st: _Lanes, lb) -> jax.Array:
    """The lane's next trial point x + α d (d: the direction the last iteration left, α
    halved for each rejected trial since the last accepted one)."""
    return jnp.maximum(st.x + 0.5 ** st.nhalf.astype(st.x.dtype) * st.d, lb)


def _lane_update(st: _Lanes, xn, fn, gn, Hn, corner_n, finite, lb, opt: BootOptions) -> _Lanes:
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
    noise_ok = (fn <= f + 1e-11 * (1.0 + jnp.abs(f))) & (gnorm_n < 0.5 * st.gnorm)
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
    stationary = ok & (gnorm <= opt.gtol) & (min_eig >= -1e-6)
    small_change = ok & jnp.isfinite(f) & (jnp.abs(f - fn) <= 1e-14 * (1.0 + jnp.abs(fn))) & (gnorm <= 1e-3)
    if opt.hessian == "bfgs":  # as the core: a predicted decrease below f's resolution
        tiny = decrease_below_resolution(g2, d2, f2)
        small_change = small_change | (ok & tiny & (gnorm <= noise_floor(f2)))
    ls_fail = (~ok) & (nhalf >= opt.max_halvings)
    flat = (gnorm <= 1e-3) & (min_eig >= -1e-6)  # not a saddle (lanes do pass near them)
    S = Status
    stopped = jnp.where(flat, S.NO_FURTHER_DECREASE, jnp.where(ls_fail, S.LINE_SEARCH_FAILED, S.MAX_ITERATIONS))
    status = jnp.where(
        stationary,
        S.CONVERGED,
        jnp.where(small_change, S.NO_FURTHER_DECREASE, jnp.where(ls_fail | (it >= opt.maxiter), stopped, S.RUNNING)),
    )
    status = jnp.where(jnp.isfinite(f2), status, S.NONFINITE)  # the very first evaluation failed
    status = jnp.where(run, status, st.status)
    return _Lanes(x2, f2, g2, H2, d2, gnorm, nhalf, it, status.astype(st.status.dtype), corner2)


def _sim_round(struct, obs, sp, key, idx, poison, *, sizes):
    """Cross-products (Z1'y*, [Zr X y]'y*) of replicates ``idx``'s simulated responses."""
    lay = struct.layout

    def crossprods(i, bad):
        y = _simulate_one(key, i, sp, obs, sizes, lay.n)
        y = jnp.where(bad, jnp.nan, y)  # test hook: poison a replicate's response
        return response_crossprods(lay, obs, y)

    return jax.vmap(crossprods)(idx, poison)


def _pool_round(struct, theta_lb, zy1, ry, lanes, budget, min_active, *, reml, opt):
    """Run the lanes of this device until ≤ min_active are running or ``budget`` iterations;
    returns the lanes and each lane's β̂ and σ̂ at its current θ."""
    lay = struct.layout

    def lane(st, z, r):
        return _lane_step(st, struct.with_response(z, r), theta_lb, reml, opt)

    def cond(c):
        st, k = c
        return (k < budget) & (jnp.sum(st.status == Status.RUNNING) > min_active)

    npts = lay.ntheta + 1
    zy1_pts, ry_pts = jnp.repeat(zy1, npts, axis=0), jnp.repeat(ry, npts, axis=0)

    def step_all(st):
        if opt.hessian == "bfgs":
            # large dense blocks: lanes one after another (BLAS already uses every core, and
            # unbatched the gradient keeps its fast recursive inverse)
            return jax.lax.map(lambda a: lane(*a), (st, zy1, ry))
        return _lanes_step(st, struct, zy1_pts, ry_pts, theta_lb, reml, opt)

    def body(c):
        st, k = c
        return step_all(st), k + 1

    lanes, _ = jax.lax.while_loop(cond, body, (lanes, jnp.array(0, jnp.int32)))
    if opt.hessian == "bfgs":

        def effects(x, z, r):
            return fixef_sigma(x, struct.with_response(z, r), reml)

        beta, sigma = jax.vmap(effects)(lanes.x, zy1, ry)
    else:  # from the factor of each lane's last accepted evaluation: no second factorization
        # to compile on the first call
        beta, sigma = jax.vmap(lambda c: effects_from_corner(c, lay, reml))(lanes.corner)
    return lanes, beta, sigma


class _NoBar:
    def update(self, k: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(n: int, progress: bool, desc: str = "bootstrap"):
    """tqdm's bar, shown once a run passes 2 s; with ``progress=False`` not even imported."""
    if not progress:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=n, desc=desc, unit="rep", delay=2.0, leave=False)


def _shapes_of_crossprods(lay, chunk: int, sharding) -> tuple[jax.ShapeDtypeStruct, jax.ShapeDtypeStruct]:
    """Shapes of the simulation program's outputs, to compile the pool round against."""
    t1 = lay.terms[0]
    return (
        jax.ShapeDtypeStruct((chunk, t1.nlevels, t1.ncols), jnp.float64, sharding=sharding),
        jax.ShapeDtypeStruct((chunk, lay.size_rest), jnp.float64, sharding=sharding),
    )


def _lane_bytes(layout) -> int:
    """Rough peak device memory of one lane (float64), for the default chunk size."""
    t1 = layout.terms[0]
    per_eval = layout.size_rest**2 + layout.nnz * t1.ncols * 3 + t1.nlevels * t1.ncols**2 * 4
    per_eval += layout.npairs * 2
    evals = layout.ntheta + 1
    sim = layout.n * (2 + sum(t.ncols for t in layout.terms))
    return 8 * (6 * evals * per_eval + sim)


def default_chunk_size(layout, n: int, ndev: int = 1, memory_bytes: float = 1e9, max_chunk: int = 256) -> int:
    """Pool size: a power of two, ≤ max_chunk (known-good on CPU), ≤ the memory budget,
    and about n/16 so the pool refills many times and the full-width tail is short (a
    larger pool spends its time on lanes that have already converged); rounded to a
    multiple of ndev."""
    by_mem = max(1, int(memory_bytes // _lane_bytes(layout)))
    want = max(16, 2 ** math.ceil(math.log2(max(1, n / 16))))
    c = max(1, min(by_mem, max_chunk, want))
    return int(math.ceil(c / ndev) * ndev)


# ----------------------------------------------------------------------------------------
# where the responses come from: simulated on the device, or given
# ----------------------------------------------------------------------------------------
_REP, _BAT = PartitionSpec(), PartitionSpec("b")


def _sharded(fn, devices: tuple, in_specs: tuple, out_specs: tuple):
    """``fn`` as a program over ``devices``: batch arguments split along their first axis."""
    if len(devices) == 1:
        return fn
    mesh = Mesh(np.asarray(devices), ("b",))
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)


def _where(devices: tuple) -> tuple:
    return tuple((d.platform, d.id) for d in devices)


class _Simulated:
    """The bootstrap's responses: replicate i's draws from the fitted model under the
    seed's key, simulated on the device (no response crosses the host boundary)."""

    def __init__(self, result: LMMResult, seed: int, poison=()):
        self.sp = _sim_params(result)
        self.key = seed_key(seed)
        self.poison = frozenset(int(i) for i in poison)  # test hook: these replicates go NaN

    def start(self, model, devices: tuple, struct, obs, put_rep, put_bat, chunk: int) -> None:
        """Place the constants and start compiling the program (on a background thread)."""
        sizes = _sizes(model.layout)
        self.sp, self.key = put_rep((self.sp, self.key))
        self.struct, self.obs, self.put = struct, obs, put_bat
        fn = _sharded(functools.partial(_sim_round, sizes=sizes), devices, (_REP,) * 4 + (_BAT, _BAT), (_BAT, _BAT))
        args = (struct, obs, self.sp, self.key, put_bat(np.zeros(chunk, np.int32)), put_bat(np.zeros(chunk, bool)))
        flags = dict(program_flags(model.layout), disk=len(devices) == 1)
        self._compiled = compile_program_async(
            "bootstrap_sim", fn, args, key=(sizes, _where(devices)), threads=1, **flags
        )

    def __call__(self, idx: np.ndarray):
        """Cross-products (Z1'y, [Zr X y]'y) of the responses of replicates ``idx`` (one per lane)."""
        poison = np.array([int(i) in self.poison for i in idx], dtype=bool)
        program = self._compiled()
        return program(self.struct, self.obs, self.sp, self.key, self.put(idx), self.put(poison))


# Largest q + p for which the bootstrap of a model without rows draws its responses'
# cross-products from an eigendecomposition of [Z X]'[Z X] (dense, O((q + p)^3) once).
MAX_DRAWN_SIZE = 6000


def crossproducts_gram(struct: Structure) -> np.ndarray:
    """[Z1 Zr X]'[Z1 Zr X] (√w-scaled, centred rows) as a dense matrix from the blocked
    cross-products: Z1's columns level-major, then the rest block's rows."""
    lay = struct.layout
    t1 = lay.terms[0]
    k1, r1 = t1.nlevels, t1.ncols
    q1, m = k1 * r1, lay.size_rest - 1
    M = np.zeros((q1 + m, q1 + m))
    a11 = np.asarray(struct.a11)
    for c in range(r1):
        for d in range(r1):
            M[np.arange(k1) * r1 + c, np.arange(k1) * r1 + d] = a11[:, c, d]
    rows, levs = np.asarray(struct.rows)[:-k1], np.asarray(struct.levs)[:-k1]  # y's entries last
    vals = np.asarray(struct.vals_fixed)
    for c in range(r1):
        M[q1 + rows, levs * r1 + c] = vals[:, c]
        M[levs * r1 + c, q1 + rows] = vals[:, c]
    M[q1:, q1:] = np.asarray(struct.arr_fixed)
    return M


def draw_crossproducts(M, eig, sp: _SimParams, layout, n_obs: int, rng: np.random.Generator):
    """One simulated response's cross-products (Z1'y*, [Zr'y*, X'y*, y*'y*]) drawn without
    the rows, exactly in distribution.

    With A = [Z X] (the model's rows), y* = Aγ + σε, γ = (b, β̃), b ~ N(0, σ²ΛΛ'),
    ε ~ N(0, I_n): A'y* = A'Aγ + σv with v = A'ε ~ N(0, A'A); and
    y*'y* = γ'A'Aγ + 2σγ'v + σ²ε'ε, where ε'ε = ‖Pε‖² + ‖(I − P)ε‖² (P the projection on
    A's columns) splits into v'(A'A)⁺v, a function of v, and an independent σ²χ²(n − rank A).
    Drawing v = U Λ^½ z (A'A = UΛU') gives v'(A'A)⁺v = Σ_{λ>0} z_i²: the joint law of
    (A'y*, y*'y*) is that of the per-row simulation's.
    """
    lam, U = eig
    positive = lam > lam.max() * 1e-12
    sigma = float(sp.sigma)
    parts = []
    for t, L in zip(layout.terms, sp.lams):
        u = rng.standard_normal((t.nlevels, t.ncols))
        parts.append((sigma * u @ np.asarray(L).T).reshape(-1))
    gamma = np.concatenate(parts + [np.asarray(sp.beta)])
    z = rng.standard_normal(len(lam))
    v = U @ (np.sqrt(np.where(positive, lam, 0.0)) * z)
    Mg = M @ gamma
    chi2 = rng.chisquare(n_obs - int(positive.sum())) if n_obs > positive.sum() else 0.0
    yy = gamma @ Mg + 2.0 * sigma * gamma @ v + sigma**2 * (float(z[positive] @ z[positive]) + chi2)
    aty = Mg + sigma * v
    t1 = layout.terms[0]
    q1 = t1.nlevels * t1.ncols
    return aty[:q1].reshape(t1.nlevels, t1.ncols), np.concatenate([aty[q1:], [yy]])


class _DrawnCrossProducts:
    """The bootstrap's responses for a model without rows (fitted from summed
    cross-products): each replicate's cross-products drawn by :func:`draw_crossproducts`
    on the host, replicate i from its own generator (seed, i), so chunking does not matter."""

    def __init__(self, result: LMMResult, seed: int):
        model = result.model
        M = crossproducts_gram(model.structure)
        if M.shape[0] > MAX_DRAWN_SIZE:
            raise ValueError(
                f"the parametric bootstrap of a model without rows draws from a dense {M.shape[0]}-square "
                f"[Z X]'[Z X] (limit {MAX_DRAWN_SIZE}): fit the rows in memory to bootstrap this model"
            )
        self.M, self.eig = M, np.linalg.eigh(M)
        self.sp, self.seed, self.model = _sim_params(result), int(seed), model

    def start(self, model, devices: tuple, struct, obs, put_rep, put_bat, chunk: int) -> None:
        self.put = put_bat

    def __call__(self, idx: np.ndarray):
        draws = [
            draw_crossproducts(
                self.M,
                self.eig,
                self.sp,
                self.model.layout,
                self.model.nobs,
                np.random.default_rng([self.seed, int(i)]),
            )
            for i in idx
        ]
        return self.put((np.stack([d[0] for d in draws]), np.stack([d[1] for d in draws])))


def _given_round(struct, obs, ys):
    """Cross-products of the given responses ``ys`` (lanes × n)."""
    return jax.vmap(lambda y: response_crossprods(struct.layout, obs, y))(ys)


class _Given:
    """Given responses (m × n, already net of offset and centring, √w-scaled): each refill
    transfers the lanes' rows and forms their cross-products on the device."""

    def __init__(self, ys: np.ndarray):
        self.ys = np.ascontiguousarray(ys, dtype=np.float64)

    def start(self, model, devices: tuple, struct, obs, put_rep, put_bat, chunk: int) -> None:
        self.struct, self.obs, self.put = struct, obs, put_bat
        fn = _sharded(_given_round, devices, (_REP, _REP, _BAT), (_BAT, _BAT))
        args = (struct, obs, put_bat(np.zeros((chunk, self.ys.shape[1]))))
        flags = dict(program_flags(model.layout), disk=len(devices) == 1)
        self._compiled = compile_program_async("fit_many_crossprods", fn, args, key=_where(devices), threads=1, **flags)

    def __call__(self, idx: np.ndarray):
        return self._compiled()(self.struct, self.obs, self.put(self.ys[idx]))


# ----------------------------------------------------------------------------------------
# the pool: refit one model to many responses
# ----------------------------------------------------------------------------------------
def _pool_program(model, reml: bool, opt: BootOptions, devices: tuple, pool_args: tuple):
    """The compiled pool-round program for this layout, options, chunk and devices (cached
    in memory; single-device programs also on disk, see ``jaxlme.compiled``)."""
    pool_fn = _sharded(
        functools.partial(_pool_round, reml=reml, opt=opt),
        devices,
        (_REP, _REP, _BAT, _BAT, _BAT, _REP, _REP),
        (_BAT, _BAT, _BAT),
    )
    flags = dict(program_flags(model.layout), disk=len(devices) == 1)
    return compile_program("bootstrap", pool_fn, pool_args, key=(bool(reml), opt, _where(devices)), **flags)[0]


class PoolOutput(NamedTuple):
    """Per-response answers of :func:`refit_pool` (row i: response i; NaN/-1 where not done)."""

    beta: np.ndarray  # (n, p) the model's β (not the centred β̃)
    sigma: np.ndarray  # (n,)
    theta: np.ndarray  # (n, ntheta)
    objective: np.ndarray  # (n,) REML criterion or ML deviance
    status: np.ndarray  # (n,) optimizer.STATUS codes; -1 not completed
    iterations: np.ndarray  # (n,)
    interrupted: bool
    chunk_size: int
    n_devices: int


def refit_pool(
    model,
    reml: bool,
    n: int,
    source,
    theta_start: np.ndarray,
    *,
    chunk_size: int | None = None,
    devices=None,
    progress: bool = True,
    round_iters: int = 8,
    gtol: float = 1e-6,
    maxiter: int = MAXITER,
    memory_bytes: float = 1e9,
    desc: str = "refits",
    _on_round=None,
    _lane_iters=None,
) -> PoolOutput:
    """Refit ``model``'s design to ``n`` responses: the batched lanes, then the follow-ups.

    The one implementation behind :func:`bootstrap` (responses simulated on the device)
    and ``LMM.fit_many`` (given responses): ``source`` maps the lanes' response indices to
    their cross-products (:class:`_Simulated`, :class:`_Given`).  Every lane starts at
    ``theta_start``; lanes left unconverged, or converged on a zero diagonal of a
    vector-valued term, are refitted one at a time by the core fit (see :func:`_follow_up`,
    :func:`_leave_edges`).  ``KeyboardInterrupt`` returns what was finished (``interrupted``).

    Args:
        model: the :class:`~jaxlme.LMM` whose structure every response shares.
        reml: REML criterion or ML deviance.
        n: number of responses.
        source: ``start(...)`` then ``source(idx)`` -> the lanes' cross-products.
        theta_start: every lane's starting θ.
        chunk_size, devices, progress, round_iters, gtol, maxiter, memory_bytes: as for
            :func:`bootstrap`.
        desc: the progress bar's label.

    Returns:
        A :class:`PoolOutput`.
    """
    with jax.enable_x64(True):
        lay = model.layout
        devs = tuple(jax.devices() if devices is None else devices)
        ndev = len(devs)
        chunk = default_chunk_size(lay, n, ndev, memory_bytes) if chunk_size is None else int(chunk_size)
        chunk = int(math.ceil(max(chunk, 1) / ndev) * ndev)
        bfgs = lay.size_rest >= BFGS_MIN_SIZE
        lane_iters = min(int(maxiter), BootOptions().maxiter if _lane_iters is None else int(_lane_iters))
        opt = BootOptions(gtol=float(gtol), maxiter=lane_iters, hessian="bfgs" if bfgs else "fd")
        k = lay.ntheta
        theta_start = np.maximum(np.asarray(theta_start, dtype=np.float64).reshape(k), lay.theta_lower)
        lb = np.asarray(lay.theta_lower, dtype=np.float64)
        H_start = _hessian_at(model.structure, theta_start, reml, opt.fd_step) if bfgs else np.eye(k)

        if ndev > 1:
            from jax.sharding import NamedSharding

            mesh = Mesh(np.asarray(devs), ("b",))
            rep_sh, bat_sh = NamedSharding(mesh, _REP), NamedSharding(mesh, _BAT)
            lane_sharding = bat_sh

            def put_rep(tree):
                return jax.device_put(tree, rep_sh)

            def put(tree):
                return jax.device_put(tree, bat_sh)
        else:
            lane_sharding = jax.sharding.SingleDeviceSharding(devs[0])

            def put(tree):
                return jax.device_put(tree, devs[0])

            put_rep = put
        struct, obs, lb = put_rep((model.structure, model.obs, lb))

        # host-side pool
        idx = np.zeros(chunk, np.int32)
        lanes = _Lanes(
            x=np.tile(theta_start, (chunk, 1)),
            f=np.full(chunk, np.inf),
            g=np.zeros((chunk, k)),
            H=np.tile(H_start, (chunk, 1, 1)),
            d=np.zeros((chunk, k)),  # g = 0 before the first evaluation: no step
            gnorm=np.zeros(chunk),
            nhalf=np.zeros(chunk, np.int32),
            it=np.zeros(chunk, np.int32),
            status=np.full(chunk, _INACTIVE, np.int32),
            corner=np.full((chunk, lay.p + 1, lay.p + 1), np.nan),
        )
        out_beta = np.full((n, lay.p), np.nan)
        out_sigma = np.full(n, np.nan)
        out_theta = np.full((n, k), np.nan)
        out_obj = np.full(n, np.nan)
        out_status = np.full(n, _INACTIVE, np.int32)
        out_iter = np.zeros(n, np.int32)
        next_rep, done = 0, 0
        stubborn: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # response -> (zy1, ry)
        edges: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # converged on a zero diagonal
        pool = zy1 = ry = None
        interrupted = False
        bar = _progress_bar(n, progress, desc)
        try:
            while done < n:
                empty = np.flatnonzero(lanes.status == _INACTIVE)
                take = empty[: max(0, n - next_rep)]
                if take.size:
                    new = np.arange(next_rep, next_rep + take.size, dtype=np.int32)
                    next_rep += take.size
                    idx[take] = new
                    lanes.x[take] = theta_start
                    lanes.f[take] = np.inf
                    lanes.g[take] = 0.0
                    lanes.H[take] = H_start
                    lanes.d[take] = 0.0
                    lanes.gnorm[take] = 0.0
                    lanes.corner[take] = np.nan
                    lanes.nhalf[take] = 0
                    lanes.it[take] = 0
                    lanes.status[take] = 0
                running = int(np.sum(lanes.status == Status.RUNNING))
                # refill when half the pool is idle, unless nothing is left to refill with
                min_active = (chunk // 2) // ndev if next_rep < n else 0
                if pool is None:  # the source compiles on a background thread meanwhile
                    source.start(model, devs, struct, obs, put_rep, put, chunk)
                    shapes = _shapes_of_crossprods(lay, chunk, lane_sharding)
                    pool_args = (struct, lb, *shapes, put(lanes), np.int32(0), np.int32(0))
                    pool = _pool_program(model, reml, opt, devs, pool_args)
                if take.size:  # the lanes' cross-products (every lane's: no scatter)
                    zy1, ry = source(idx)
                budget = np.int32(round_iters if running else 0)
                out = pool(struct, lb, zy1, ry, put(lanes), budget, np.int32(min_active))
                new_lanes, beta, sigma = jax.device_get(out)
                lanes = _Lanes(*(np.array(a) for a in new_lanes))
                fin = np.flatnonzero(lanes.status > 0)
                left = fin[np.isin(lanes.status[fin], (Status.MAX_ITERATIONS, Status.LINE_SEARCH_FAILED))]
                # lanes that stopped on a zero diagonal of a vector-valued term's Λ: checked
                # afterwards for a spurious boundary optimum (boundary.py)
                edge = [i for i in fin if lanes.status[i] in (1, 2) and zero_columns(lanes.x[i], lay)]
                if left.size or edge:  # the follow-ups refit these from their cross-products
                    zy1_h, ry_h = jax.device_get((zy1, ry))
                    stubborn.update((int(idx[i]), (zy1_h[i], ry_h[i])) for i in left)
                    edges.update((int(idx[i]), (zy1_h[i], ry_h[i])) for i in edge)
                if fin.size:
                    r = idx[fin]
                    out_beta[r] = model.centering.beta(beta[fin])  # lanes fit the centred β̃
                    out_sigma[r] = sigma[fin]
                    out_theta[r] = lanes.x[fin]
                    out_obj[r] = lanes.f[fin]
                    out_status[r] = lanes.status[fin]
                    out_iter[r] = lanes.it[fin]
                    lanes.status[fin] = _INACTIVE
                    done += fin.size
                    bar.update(fin.size)
                if _on_round is not None:  # test hook (e.g. to simulate Ctrl-C)
                    _on_round(done)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
    out = (out_status, out_beta, out_sigma, out_theta, out_obj, out_iter)
    if not interrupted:
        _follow_up(model, reml, theta_start, stubborn, int(maxiter), *out)
        _leave_edges(model, reml, edges, int(maxiter), *out)
    return PoolOutput(out_beta, out_sigma, out_theta, out_obj, out_status, out_iter, interrupted, chunk, ndev)


# ----------------------------------------------------------------------------------------
# the driver
# ----------------------------------------------------------------------------------------
def bootstrap(
    result: LMMResult,
    n: int,
    seed: int | None = 0,
    *,
    chunk_size: int | None = None,
    devices=None,
    progress: bool = True,
    round_iters: int = 8,
    gtol: float = 1e-6,
    maxiter: int = MAXITER,
    memory_bytes: float = 1e9,
    _poison=(),
    _on_round=None,
    _lane_iters=None,
) -> BootstrapResult:
    """Parametric bootstrap of a fitted model: simulate ``n`` responses and refit each.

    Parameters: ``seed`` fixes the simulated responses independently of ``chunk_size`` and
    the devices (None: fresh entropy, recorded as the result's ``seed``); their refits agree
    across chunk sizes to the optimizer's tolerance (batched arithmetic rounds differently,
    so θ can differ by ~1e-4 along a flat direction); ``chunk_size`` lanes
    are refitted at a time (default from ``memory_bytes``); ``devices`` (default: all of
    JAX's devices) share each chunk; ``progress`` shows a tqdm bar on runs longer than
    ~2 s.  Refits start at the fitted θ and use the same criterion (REML or ML) as
    ``result``.
    """
    n = int(n)
    if n < 0:
        raise ValueError("n must be >= 0")
    seed = resolve_seed(seed)
    enable_compilation_cache()
    t_start = time.perf_counter()
    rows = result.model.design.has_rows  # else: fitted from summed cross-products
    pool = refit_pool(
        result.model,
        result.reml,
        n,
        _Simulated(result, seed, _poison) if rows else _DrawnCrossProducts(result, seed),
        np.asarray(result.theta, dtype=float),
        chunk_size=chunk_size,
        devices=devices,
        progress=progress,
        round_iters=round_iters,
        gtol=gtol,
        maxiter=maxiter,
        memory_bytes=memory_bytes,
        desc="bootstrap",
        _on_round=_on_round,
        _lane_iters=_lane_iters,
    )
    completed = np.flatnonzero(pool.status > 0)
    if pool.interrupted:
        _warnings.warn(f"bootstrap interrupted: returning the {completed.size} of {n} replicates completed so far")
    elapsed = time.perf_counter() - t_start
    boot = BootstrapResult._build(
        result,
        replicate=completed,
        fixef=pool.beta[completed],
        sigma=pool.sigma[completed],
        theta=pool.theta[completed],
        objective=pool.objective[completed],
        status=pool.status[completed],
        iterations=pool.iterations[completed],
        n_requested=n,
        seed=int(seed),
        interrupted=pool.interrupted,
        elapsed=elapsed,
        chunk_size=pool.chunk_size,
        n_devices=pool.n_devices,
    )
    if boot.n_failed:
        _warnings.warn(f"{boot.n_failed} of {boot.n} bootstrap replicates failed: {boot.failure_reasons()}")
    return boot


@jax.jit(static_argnums=(2, 3))
def _fd_hessian_program(theta: jax.Array, struct: Structure, reml: bool, step: float) -> jax.Array:
    return fd_hessian(jax.value_and_grad(lambda t: objective(t, struct, reml)), theta, step)[2]


def _hessian_at(struct: Structure, theta: np.ndarray, reml: bool, step: float) -> np.ndarray:
    """Forward-difference Hessian (of exact gradients) of the fitted criterion at θ̂, made
    positive definite: the BFGS lanes' starting model, so replicates near θ̂ converge in a
    few steps."""
    H = np.asarray(_fd_hessian_program(jnp.asarray(theta), struct, bool(reml), float(step)))
    w, V = np.linalg.eigh(H)
    if not np.all(np.isfinite(w)):
        return np.eye(len(theta))
    w = np.maximum(np.abs(w), 1e-8 * max(1.0, np.abs(w).max()))
    return (V * w) @ V.T


def _leave_edges(model, reml, edges, maxiter, status, beta, sigma, theta, obj, iters) -> None:
    """Replicates whose lane converged on a zero diagonal of a vector-valued term's Λ
    (``edges``: replicate -> its cross-products): where :func:`boundary.boundary_escape`
    finds a lower point the replicate is refitted from there with the core fit, which
    keeps checking; a genuine boundary optimum costs a few criterion evaluations, batched
    over the replicates (:func:`_escapes`)."""
    if not edges:
        return
    with jax.enable_x64(True):
        for r, escape in sorted(_escapes(model, reml, edges, theta).items()):
            if escape is None:
                continue
            zy1, ry = edges[r]
            struct = model.structure.with_response(jax.device_put(zy1), jax.device_put(ry))
            fit = model._refit_structure(struct, reml, escape[0], maxiter)
            if fit.converged and fit.objective < obj[r]:
                _store(fit, r, status, beta, sigma, theta, obj, iters)


_EDGE_BATCH = 128  # criterion evaluations per device call of the boundary checks


def _escapes(model, reml, edges, theta, max_passes: int = 8) -> dict:
    """:func:`boundary.boundary_escape` of every replicate in ``edges`` at its θ, with the
    criterion evaluations of all replicates batched into vmapped device calls.

    Each pass runs every unfinished replicate's check against the values known so far; an
    unknown point is recorded and answers +inf, which ends or skips that branch (the check
    treats non-finite values as failures).  Its points then follow from earlier values at
    most three deep (θ; the candidates or the column's quadratic form; the form's
    candidates), so a few passes replay each check exactly as with a direct criterion, and
    a small replicate costs a share of a batched call instead of one device round trip per
    point.  A check unfinished after ``max_passes`` runs directly."""
    lay, scale = model.layout, model.theta_scale
    known: dict[int, dict[bytes, float]] = {r: {} for r in edges}
    out: dict = {}
    pending = sorted(edges)
    for _ in range(max_passes):
        if not pending:
            break
        requests: list[tuple[int, np.ndarray]] = []
        unfinished = []
        for r in pending:
            missing: list[np.ndarray] = []

            def criterion(point, values=known[r], missing=missing) -> float:
                point = np.asarray(point, dtype=np.float64)
                value = values.get(point.tobytes())
                if value is None:
                    missing.append(point.copy())
                    return np.inf
                return value

            try:
                with np.errstate(invalid="ignore"):  # inf - inf in a form of placeholders
                    escape = boundary_escape(theta[r], lay, criterion, scale)
            except np.linalg.LinAlgError:  # a form built from placeholder values
                escape = None
            if missing:
                requests += [(r, p) for p in missing]
                unfinished.append(r)
            else:
                out[r] = escape
        for (r, point), value in zip(requests, _criteria(model, reml, edges, requests)):
            known[r][point.tobytes()] = value
        pending = unfinished
    for r in pending:  # pragma: no cover - deeper than boundary_escape goes
        zy1, ry = edges[r]
        struct = model.structure.with_response(jax.device_put(zy1), jax.device_put(ry))
        out[r] = boundary_escape(theta[r], lay, model._criterion(struct, reml), scale)
    return out


def _edge_criteria_program(points, zy1, ry, struct, *, reml):
    return jax.vmap(lambda t, z, y: objective(t, struct.with_response(z, y), reml))(points, zy1, ry)


def _criteria(model, reml, edges, requests) -> list[float]:
    """The criterion at each (replicate, θ) of ``requests``, ``_EDGE_BATCH`` per device call."""
    if not requests:
        return []
    values: list[float] = []
    for s in range(0, len(requests), _EDGE_BATCH):
        part = requests[s : s + _EDGE_BATCH]
        part = part + [part[0]] * (_EDGE_BATCH - len(part))  # one compiled shape
        points = np.stack([p for _, p in part])
        zy1 = np.stack([edges[r][0] for r, _ in part])
        ry = np.stack([edges[r][1] for r, _ in part])
        args = (points, zy1, ry, model.structure)
        program, _ = compile_program(
            "bootstrap_edges", _edge_criteria_program, args, {"reml": bool(reml)}, **program_flags(model.layout)
        )
        got = np.asarray(program(*jax.device_put(args[:3]), model.structure))
        values += [float(v) for v in got[: len(requests) - s]]
    return values


def _store(fit, r, status, beta, sigma, theta, obj, iters) -> None:
    """Replicate ``r``'s entries from a converged core refit ``fit``."""
    beta[r] = fit.fixef.to_numpy()
    sigma[r] = fit.sigma
    theta[r] = fit.theta
    obj[r] = fit.objective
    status[r] = fit.opt.code if fit.opt.converged else Status.NO_FURTHER_DECREASE
    iters[r] += fit.opt.iterations


def _follow_up(model, reml, theta_start, stubborn, maxiter, status, beta, sigma, theta, obj, iters) -> None:
    """Second pass for the replicates the batched loop left unconverged (status 3/4, e.g.
    lanes slowed down near a saddle of the Cholesky parametrization): refit each on its own
    with the core fit (exact-Hessian Newton for small models), started where the batched
    loop stopped and from the lanes' start (the fitted θ for the bootstrap), keeping the best
    converged answer.  The pool's
    iteration cap thus bounds how long one stubborn lane can hold up the batch, and the
    refits reuse the fit's compiled program (``stubborn``: replicate -> its cross-products).
    """
    for r, (zy1, ry) in sorted(stubborn.items()):
        with jax.enable_x64(True):  # float64 cross-products, as the fit's program expects
            struct = model.structure.with_response(jax.device_put(zy1), jax.device_put(ry))
        fits = [model._refit_structure(struct, reml, t0, maxiter) for t0 in (theta[r], theta_start)]
        fits = [f for f in fits if f.converged]
        if not fits:
            continue
        fit = min(fits, key=lambda f: f.objective)
        if not (np.isfinite(obj[r]) and obj[r] < fit.objective - 1e-6):
            _store(fit, r, status, beta, sigma, theta, obj, iters)


# ----------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------
@dataclass(eq=False)
class BootstrapResult:
    """Replicates of a parametric bootstrap (one row per completed replicate).

    ``fixef`` (fixed effects), ``sigma``, ``theta``, ``vc`` (random-effect SDs,
    correlations and sigma), ``objective``, ``status``/``converged``/``iterations``;
    ``ci()`` for intervals, ``to_frame()`` for everything in one DataFrame, ``summary()``.
    Statistics use converged, finite replicates only.
    """

    result: LMMResult = field(repr=False)
    fixef: pd.DataFrame = field(repr=False)
    sigma: pd.Series = field(repr=False)
    theta: pd.DataFrame = field(repr=False)
    vc: pd.DataFrame = field(repr=False)
    objective: pd.Series = field(repr=False)
    status: pd.Series = field(repr=False)
    iterations: pd.Series = field(repr=False)
    n_requested: int = 0
    seed: int = 0
    interrupted: bool = False
    elapsed: float = 0.0
    chunk_size: int = 0
    n_devices: int = 1

    @classmethod
    def _build(cls, result, *, replicate, fixef, sigma, theta, objective, status, iterations, **kw):
        lay = result.model.layout
        index = pd.Index(replicate, name="replicate")
        xnames = list(result.fixef.index)
        theta_names = []
        labels = result.group_labels
        for t, term, label in zip(lay.terms, result.model.design.terms, labels):
            c = list(term.columns)
            theta_names += [f"{label}.{c[i]}" if i == j else f"{label}.{c[i]}.{c[j]}" for i, j in t.theta_index]
        vc = vc_frame(result.model.layout, result.model.design.terms, labels, theta, sigma)
        vc.index = index
        return cls(
            result=result,
            fixef=pd.DataFrame(fixef, index=index, columns=xnames),
            sigma=pd.Series(sigma, index=index, name="sigma"),
            theta=pd.DataFrame(theta, index=index, columns=theta_names),
            vc=vc,
            objective=pd.Series(objective, index=index, name="objective"),
            status=pd.Series(status, index=index, name="status"),
            iterations=pd.Series(iterations, index=index, name="iterations"),
            **kw,
        )

    # -- counts ------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Replicates completed (converged or not)."""
        return len(self.status)

    @property
    def converged(self) -> pd.Series:
        return self.status.isin([1, 2]).rename("converged")

    @property
    def finite(self) -> pd.Series:
        ok = np.isfinite(self.fixef.to_numpy()).all(axis=1) & np.isfinite(self.theta.to_numpy()).all(axis=1)
        ok &= np.isfinite(self.sigma.to_numpy()) & np.isfinite(self.objective.to_numpy())
        return pd.Series(ok, index=self.status.index, name="finite")

    @property
    def usable(self) -> pd.Series:
        """Converged with finite estimates: the replicates statistics are computed from."""
        return (self.converged & self.finite).rename("usable")

    @property
    def n_failed(self) -> int:
        """Replicates that did not converge or went non-finite."""
        return int((~self.usable).sum())

    @property
    def outcome(self) -> pd.Series:
        """Each replicate's outcome in words: the optimizer's status, or "non-finite estimates"."""
        text = self.status.map(lambda c: STATUS.get(int(c), f"status {int(c)}"))
        return text.where(self.finite, "non-finite estimates").rename("outcome")

    def failure_reasons(self) -> str:
        """The failed replicates' outcomes with their counts, e.g. "3 max iterations"."""
        counts = self.outcome[~self.usable].value_counts()
        return ", ".join(f"{k} {reason}" for reason, k in counts.items())

    @property
    def n_nonfinite(self) -> int:
        return int((~self.finite).sum())

    # -- tables ------------------------------------------------------------------------
    def estimates(self) -> pd.Series:
        """The original fit's values of the bootstrapped parameters (same order as ``ci``)."""
        r = self.result
        one = vc_frame(r.model.layout, r.model.design.terms, r.group_labels, r.theta[None, :], np.array([r.sigma]))
        return pd.concat([r.fixef, one.iloc[0]]).rename("estimate")

    def parameters(self, usable_only: bool = True) -> pd.DataFrame:
        """Fixed effects, random-effect SDs/correlations and sigma, one row per replicate."""
        df = pd.concat([self.fixef, self.vc], axis=1)
        return df[self.usable] if usable_only else df

    def to_frame(self) -> pd.DataFrame:
        """Everything per replicate: parameters, θ, objective, status, iterations, converged."""
        theta = self.theta.add_prefix("theta_")
        return pd.concat(
            [self.parameters(False), theta, self.objective, self.status, self.iterations, self.converged], axis=1
        )

    def ci(self, level: float = 0.95, method: str = "percentile") -> pd.DataFrame:
        """Bootstrap intervals: ``percentile`` (equal tails) or ``shortest`` (narrowest
        interval holding ``level`` of the replicates).  Rows: fixed effects, SDs,
        correlations, sigma; columns: estimate, lower, upper."""
        if not 0 < level < 1:
            raise ValueError("level must be in (0, 1)")
        samples = self.parameters(True)
        lo, hi = {}, {}
        for c in samples.columns:
            v = samples[c].to_numpy()
            v = v[np.isfinite(v)]
            lo[c], hi[c] = _interval(v, level, method)
        out = pd.DataFrame({"estimate": self.estimates(), "lower": pd.Series(lo), "upper": pd.Series(hi)})
        out.attrs.update(level=level, method=method, n=len(samples))
        return out

    def summary(self, level: float = 0.95, method: str = "percentile") -> str:
        """Text report: counts, then estimate, bootstrap mean, bias, SE and interval per parameter."""
        r = self.result
        samples = self.parameters(True)
        ci = self.ci(level, method)
        tab = pd.DataFrame(
            {
                "Estimate": ci["estimate"],
                "Boot mean": samples.mean(),
                "Bias": samples.mean() - ci["estimate"],
                "Boot SE": samples.std(ddof=1),
                f"{100 * (1 - level) / 2:g} %": ci["lower"],
                f"{100 * (1 + level) / 2:g} %": ci["upper"],
            }
        )
        lines = [
            f"Parametric bootstrap [jaxlme]: {self.n} replicates (seed {self.seed}), "
            f"{r.method} refits of {r.model.design.formula.text}",
            f"  converged: {int(self.usable.sum())}   failed/non-converged: {self.n_failed}"
            f" (non-finite: {self.n_nonfinite})"
            + (f"   INTERRUPTED after {self.n} of {self.n_requested}" if self.interrupted else ""),
            f"  {self.elapsed:.2f} s, chunk size {self.chunk_size}, {self.n_devices} device(s)",
            "",
            f"{method} intervals, level {level:g}:",
            tab.to_string(float_format=lambda v: f"{v:.4f}"),
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"<BootstrapResult {self.n}/{self.n_requested} replicates, seed={self.seed}, "
            f"failed={self.n_failed}{', interrupted' if self.interrupted else ''}>"
        )

    def __str__(self) -> str:
        return self.summary()


def _interval(v: np.ndarray, level: float, method: str) -> tuple[float, float]:
    if v.size == 0:
        return np.nan, np.nan
    if method == "percentile":
        a = (1 - level) / 2
        lo, hi = np.quantile(v, [a, 1 - a])
        return float(lo), float(hi)
    if method == "shortest":
        s = np.sort(v)
        m = int(math.ceil(level * s.size))  # replicates the interval must hold
        m = min(max(m, 1), s.size)
        widths = s[m - 1 :] - s[: s.size - m + 1]
        i = int(np.argmin(widths))
        return float(s[i]), float(s[i + m - 1])
    raise ValueError(f"method must be 'percentile' or 'shortest', got {method!r}")


__all__ += ["default_chunk_size", "STATUS"]
