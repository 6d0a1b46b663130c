"""Refits of many responses of one model on the device: the pool behind the bootstrap,
``fit_many`` and the bootstrap LRT.

Only the response changes between refits, so each recomputes just the y-dependent
cross-products (``zy1``, ``ry``; O(n)) and reuses the model's structure.  The refits run
as a *pool* of ``chunk_size`` vmapped lanes (sharded over all JAX devices with
``shard_map``), driven by the fit's own step (:func:`~jaxlme.optimizer.newton_trial`,
:func:`~jaxlme.optimizer.newton_update`) vmapped over the lanes:

* every iteration is branch-free and costs the same for every lane: one batch of
  ``1 + ntheta`` value-and-gradient evaluations (the trial point and forward differences
  of the autodiff gradient, which give the Hessian), then the step's accept/shorten
  decision.  The line search is folded into the iteration (a rejected trial shortens the
  next one), so no lane's line search stalls the batch, and the exact Hessian's
  expensive forward-over-reverse pass is avoided;
* lanes that have converged (or failed) are masked and *retired* by the host, and their
  slots refilled with fresh replicates ("continuous batching").  A device call returns as
  soon as half of its lanes are done (or after ``round_iters`` iterations), so one stubborn
  replicate occupies one slot for a few extra rounds instead of holding the whole chunk;
* a lane's trajectory depends only on its response (for the bootstrap: the replicate's
  random draws, :mod:`jaxlme.simulation`) and its saved state, so the refits do not depend
  on the chunk size, the number of devices or which round a lane ran in, except through
  rounding: batched arithmetic of another width rounds differently, which
  moves a refit within the optimizer's tolerance (θ by up to ~1e-4 along flat directions).

Replicates whose response or objective goes non-finite are flagged (status 5) and
counted, never raise.  ``KeyboardInterrupt`` returns the replicates finished so far.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from .boundary import boundary_escape, zero_columns
from .compiled import compile_program, compile_program_async
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
    NewtonOptions,
    NewtonState,
    Status,
    bfgs_update,
    fd_assemble,
    fd_hessian,
    fd_points,
    newton_admissible,
    newton_init,
    newton_trial,
    newton_update,
)
from .structure import Structure, response_crossprods

__all__ = ["LANE_OPTIONS", "PoolOutput", "refit_pool", "default_chunk_size", "STATUS"]

_INACTIVE = -1  # status of an empty pool slot


# The lanes' options: a short iteration budget (a lane still running at the cap is finished
# by a standalone fit, see _follow_up), forward-difference Hessians of the exact gradient,
# a saddle test loose enough for the noise those differences carry, and no settling step
# (a lane's extra Hessian of k + 1 gradients would buy digits that no bootstrap summary shows).
LANE_OPTIONS = NewtonOptions(maxiter=30, max_halvings=30, hessian="fd", saddle_tol=1e-6, settle=False)


class Lanes(NamedTuple):
    """The pool's lanes: the solver's state of each and, for the "fd" lanes, the
    fixed-effect corner of the factor at its accepted point (β̂ and σ̂ without a second
    factorization)."""

    state: NewtonState  # (B, ...) per lane
    corner: jax.Array  # (B, p + 1, p + 1)


def _lane_step(st: NewtonState, s: Structure, lb, reml: bool, opt: NewtonOptions) -> NewtonState:
    """One BFGS trial of one lane (the "bfgs" lanes, run one after another)."""
    xn = newton_trial(st, lb)
    fn, gn = jax.value_and_grad(lambda t: program_objective(t, s, reml))(xn)
    Hn = bfgs_update(st.H, xn - st.x, gn - st.g)  # no-op at the start, where xn == x
    verdict = newton_admissible(st, xn, fn, opt)
    return newton_update(st, xn, fn, (fn, gn, Hn), verdict, lb, opt, capped=opt.step_growth > 0)[0]


def _lanes_step(lanes: Lanes, struct: Structure, zy1, ry, lb, reml: bool, opt: NewtonOptions) -> Lanes:
    """One trial of every lane, with forward-difference Hessians of the exact gradient
    (the "fd" lanes).  All lanes' points are evaluated by one flat vmap (``zy1``, ``ry``:
    each lane's cross-products repeated for its k + 1 points) rather than a vmap over
    lanes of a vmap over points: a nesting that XLA's program carries as an extra batch
    dimension through every operation of the objective."""
    st = lanes.state
    xn = jax.vmap(newton_trial, in_axes=(0, None))(st, lb)
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

    def judge(s, x, f, g, H):
        return newton_update(s, x, f, (f, g, H), newton_admissible(s, x, f, opt), lb, opt)

    new, ok = jax.vmap(judge)(st, xn, fn, gn, Hn)
    return Lanes(new, jnp.where(ok[:, None, None], corners[:, 0], lanes.corner))


def _pool_round(struct, theta_lb, zy1, ry, lanes, budget, min_active, *, reml, opt):
    """Run the lanes of this device until ≤ min_active are running or ``budget`` iterations;
    returns the lanes and each lane's β̂ and σ̂ at its current θ."""
    lay = struct.layout

    def lane(st, z, r):
        return _lane_step(st, struct.with_response(z, r), theta_lb, reml, opt)

    def cond(c):
        st, k = c
        return (k < budget) & (jnp.sum(st.state.status == Status.RUNNING) > min_active)

    npts = lay.ntheta + 1
    zy1_pts, ry_pts = jnp.repeat(zy1, npts, axis=0), jnp.repeat(ry, npts, axis=0)

    def step_all(st):
        if opt.hessian == "bfgs":
            # large dense blocks: lanes one after another (BLAS already uses every core, and
            # unbatched the gradient keeps its fast recursive inverse)
            return st._replace(state=jax.lax.map(lambda a: lane(*a), (st.state, zy1, ry)))
        return _lanes_step(st, struct, zy1_pts, ry_pts, theta_lb, reml, opt)

    def body(c):
        st, k = c
        return step_all(st), k + 1

    lanes, _ = jax.lax.while_loop(cond, body, (lanes, jnp.array(0, jnp.int32)))
    if opt.hessian == "bfgs":

        def effects(x, z, r):
            return fixef_sigma(x, struct.with_response(z, r), reml)

        beta, sigma = jax.vmap(effects)(lanes.state.x, zy1, ry)
    else:  # from the factor of each lane's last accepted evaluation: no second factorization
        # to compile on the first call
        beta, sigma = jax.vmap(lambda c: effects_from_corner(c, struct, reml))(lanes.corner)
    return lanes, beta, sigma


class NoBar:
    """The progress bar's interface doing nothing (``progress=False``)."""

    def update(self, k: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(n: int, progress: bool, desc: str = "bootstrap"):
    """tqdm's bar, shown once a run passes 2 s; with ``progress=False`` not even imported."""
    if not progress:
        return NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=n, desc=desc, unit="rep", delay=2.0, leave=False)


def _shapes_of_crossprods(lay, chunk: int, sharding) -> tuple[jax.ShapeDtypeStruct, jax.ShapeDtypeStruct]:
    """Shapes of the simulation program's outputs, to compile the pool round against."""
    return (
        jax.ShapeDtypeStruct((chunk, lay.k1, lay.r1), jnp.float64, sharding=sharding),
        jax.ShapeDtypeStruct((chunk, lay.size_rest), jnp.float64, sharding=sharding),
    )


def _lane_bytes(layout) -> int:
    """Rough peak device memory of one lane (float64), for the default chunk size."""
    k1, r1 = layout.k1, layout.r1
    per_eval = layout.size_rest**2 + layout.nnz * r1 * 3 + k1 * r1**2 * 4
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


REPLICATED, BATCHED = PartitionSpec(), PartitionSpec("b")


def sharded(fn, devices: tuple, in_specs: tuple, out_specs: tuple):
    """``fn`` as a program over ``devices``: batch arguments split along their first axis."""
    if len(devices) == 1:
        return fn
    mesh = Mesh(np.asarray(devices), ("b",))
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)


def device_key(devices: tuple) -> tuple:
    """The devices as (platform, id) pairs: part of a sharded program's cache key."""
    return tuple((d.platform, d.id) for d in devices)


def _given_round(struct, obs, ys):
    """Cross-products of the given responses ``ys`` (lanes × n)."""
    return jax.vmap(lambda y: response_crossprods(struct.layout, obs, y))(ys)


class GivenResponses:
    """Given responses (m × n, already net of offset and centring, √w-scaled): each refill
    transfers the lanes' rows and forms their cross-products on the device."""

    def __init__(self, ys: np.ndarray):
        self.ys = np.ascontiguousarray(ys, dtype=np.float64)

    def start(self, model, devices: tuple, struct, obs, put_rep, put_bat, chunk: int) -> None:
        self.struct, self.obs, self.put = struct, obs, put_bat
        fn = sharded(_given_round, devices, (REPLICATED, REPLICATED, BATCHED), (BATCHED, BATCHED))
        args = (struct, obs, put_bat(np.zeros((chunk, self.ys.shape[1]))))
        flags = dict(program_flags(model.layout), disk=len(devices) == 1)
        self._compiled = compile_program_async(
            "fit_many_crossprods", fn, args, key=device_key(devices), threads=1, **flags
        )

    def __call__(self, idx: np.ndarray):
        return self._compiled()(self.struct, self.obs, self.put(self.ys[idx]))


def _pool_program(model, reml: bool, opt: NewtonOptions, devices: tuple, pool_args: tuple):
    """The compiled pool-round program for this layout, options, chunk and devices (cached
    in memory; single-device programs also on disk, see ``jaxlme.compiled``)."""
    pool_fn = sharded(
        functools.partial(_pool_round, reml=reml, opt=opt),
        devices,
        (REPLICATED, REPLICATED, BATCHED, BATCHED, BATCHED, REPLICATED, REPLICATED),
        (BATCHED, BATCHED, BATCHED),
    )
    flags = dict(program_flags(model.layout), disk=len(devices) == 1)
    return compile_program("bootstrap", pool_fn, pool_args, key=(bool(reml), opt, device_key(devices)), **flags)[0]


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
    their cross-products (:class:`DeviceSimulated`, :class:`GivenResponses`).  Every lane starts at
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
        lane_iters = min(int(maxiter), LANE_OPTIONS.maxiter if _lane_iters is None else int(_lane_iters))
        opt = LANE_OPTIONS._replace(gtol=float(gtol), maxiter=lane_iters, hessian="bfgs" if bfgs else "fd")
        k = lay.ntheta
        theta_start = np.maximum(np.asarray(theta_start, dtype=np.float64).reshape(k), lay.theta_lower)
        lb = np.asarray(lay.theta_lower, dtype=np.float64)
        H_start = _hessian_at(model.structure, theta_start, reml, opt.fd_step) if bfgs else np.eye(k)

        if ndev > 1:
            from jax.sharding import NamedSharding

            mesh = Mesh(np.asarray(devs), ("b",))
            rep_sh, bat_sh = NamedSharding(mesh, REPLICATED), NamedSharding(mesh, BATCHED)
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

        # host-side pool: a fresh lane's state, tiled; empty slots until filled
        idx = np.zeros(chunk, np.int32)
        fresh = newton_init(theta_start, np.asarray(lay.theta_lower, dtype=np.float64), H_start, xp=np)
        st = NewtonState(*(np.repeat(np.asarray(a)[None], chunk, axis=0) for a in fresh))
        st.status[:] = _INACTIVE
        corner = np.full((chunk, lay.p + 1, lay.p + 1), np.nan)
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
        bar = progress_bar(n, progress, desc)
        try:
            while done < n:
                empty = np.flatnonzero(st.status == _INACTIVE)
                take = empty[: max(0, n - next_rep)]
                if take.size:
                    new = np.arange(next_rep, next_rep + take.size, dtype=np.int32)
                    next_rep += take.size
                    idx[take] = new
                    for field, value in zip(st, fresh):
                        field[take] = value
                    corner[take] = np.nan
                running = int(np.sum(st.status == Status.RUNNING))
                # refill when half the pool is idle, unless nothing is left to refill with
                min_active = (chunk // 2) // ndev if next_rep < n else 0
                if pool is None:  # the source compiles on a background thread meanwhile
                    source.start(model, devs, struct, obs, put_rep, put, chunk)
                    shapes = _shapes_of_crossprods(lay, chunk, lane_sharding)
                    pool_args = (struct, lb, *shapes, put(Lanes(st, corner)), np.int32(0), np.int32(0))
                    pool = _pool_program(model, reml, opt, devs, pool_args)
                if take.size:  # the lanes' cross-products (every lane's: no scatter)
                    zy1, ry = source(idx)
                budget = np.int32(round_iters if running else 0)
                out = pool(struct, lb, zy1, ry, put(Lanes(st, corner)), budget, np.int32(min_active))
                new_lanes, beta, sigma = jax.device_get(out)
                st, corner = NewtonState(*(np.array(a) for a in new_lanes.state)), np.array(new_lanes.corner)
                fin = np.flatnonzero(st.status > 0)
                left = fin[np.isin(st.status[fin], (Status.MAX_ITERATIONS, Status.LINE_SEARCH_FAILED))]
                # lanes that stopped on a zero diagonal of a vector-valued term's Λ (or, BFGS
                # lanes, on any zero θ_jj: a scalar's saddle): checked afterwards for a
                # spurious boundary optimum (boundary.py)
                edge = [i for i in fin if st.status[i] in (1, 2) and zero_columns(st.x[i], lay, bfgs)]
                if left.size or edge:  # the follow-ups refit these from their cross-products
                    zy1_h, ry_h = jax.device_get((zy1, ry))
                    stubborn.update((int(idx[i]), (zy1_h[i], ry_h[i])) for i in left)
                    edges.update((int(idx[i]), (zy1_h[i], ry_h[i])) for i in edge)
                if fin.size:
                    r = idx[fin]
                    out_beta[r] = model.centering.beta(beta[fin])  # lanes fit the centred β̃
                    out_sigma[r] = sigma[fin]
                    out_theta[r] = st.x[fin]
                    out_obj[r] = st.f[fin]
                    out_status[r] = st.status[fin]
                    out_iter[r] = st.it[fin]
                    st.status[fin] = _INACTIVE
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
        _leave_edges(model, reml, edges, int(maxiter), bfgs, *out)
    return PoolOutput(out_beta, out_sigma, out_theta, out_obj, out_status, out_iter, interrupted, chunk, ndev)


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


def _leave_edges(model, reml, edges, maxiter, single, status, beta, sigma, theta, obj, iters) -> None:
    """Replicates whose lane converged on a zero diagonal of a vector-valued term's Λ, or
    with ``single`` on any zero θ_jj (``edges``: replicate -> its cross-products): where
    :func:`boundary.boundary_escape`
    finds a lower point the replicate is refitted from there with the core fit, which
    keeps checking; a genuine boundary optimum costs a few criterion evaluations, batched
    over the replicates (:func:`_escapes`)."""
    if not edges:
        return
    with jax.enable_x64(True):
        for r, escape in sorted(_escapes(model, reml, edges, theta, single).items()):
            if escape is None:
                continue
            zy1, ry = edges[r]
            struct = model.structure.with_response(jax.device_put(zy1), jax.device_put(ry))
            fit = model._refit_structure(struct, reml, escape[0], maxiter)
            if fit.converged and fit.objective < obj[r]:
                _store(fit, r, status, beta, sigma, theta, obj, iters)


_EDGE_BATCH = 128  # criterion evaluations per device call of the boundary checks


def _escapes(model, reml, edges, theta, single: bool, max_passes: int = 8) -> dict:
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
                    escape = boundary_escape(theta[r], lay, criterion, scale, single=single)
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
        out[r] = boundary_escape(theta[r], lay, model._criterion(struct, reml), scale, single=single)
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
