"""Responses simulated from a fitted model, on the device and reproducibly.

Replicate i's draws are Threefry-2x32 normals under the seed's key with counters (i, j),
so a replicate is the same whatever the chunk, the device or the order it is drawn in, and
``simulate(n)`` is a prefix of ``simulate(n + 1)``.  For the bootstrap the draws never
leave the device: :class:`DeviceSimulated` turns each replicate's response straight into the
y-dependent cross-products the refit pool needs.  Models fitted without rows (summed
cross-products) draw those cross-products directly from their distribution.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .compiled import LRUCache, compile_program_async
from .objective import (
    program_flags,
)
from .structure import ObsData, Structure, response_crossprods

try:  # the function jax.extend.random re-exports; that package also imports Pallas, a slow import
    from jax._src.random.threefry2x32 import threefry_2x32
except ImportError:  # pragma: no cover - another JAX layout
    from jax.extend.random import threefry_2x32

if TYPE_CHECKING:  # pragma: no cover
    from .results import LMMResult

from .pool import BATCHED, REPLICATED, device_key, sharded

__all__ = [
    "simulate",
    "Simulated",
    "resolve_seed",
    "seed_key",
    "standard_normals",
    "crossproducts_gram",
    "draw_crossproducts",
]


class SimParams(NamedTuple):
    """The fitted parameters responses are simulated from."""

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


def _simulate_one(key, i, sp: SimParams, obs: ObsData, sizes: tuple[tuple[int, int], ...], n: int):
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


def sim_params(result: LMMResult) -> SimParams:
    """Host arrays (device_put by the caller: no eager JAX ops, so no small compiles)."""
    lams = result.model.layout.lambdas(np.asarray(result.theta, dtype=float))
    return SimParams(
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
        sp = jax.device_put(sim_params(result))
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


def _sim_round(struct, obs, sp, key, idx, *, sizes):
    """Cross-products (Z1'y*, [Zr X y]'y*) of replicates ``idx``'s simulated responses."""
    lay = struct.layout

    def crossprods(i):
        return response_crossprods(lay, obs, _simulate_one(key, i, sp, obs, sizes, lay.n))

    return jax.vmap(crossprods)(idx)


class DeviceSimulated:
    """The bootstrap's responses: replicate i's draws from the fitted model under the
    seed's key, simulated on the device (no response crosses the host boundary)."""

    def __init__(self, result: LMMResult, seed: int, poison=()):
        self.sp = sim_params(result)
        self.key = seed_key(seed)
        # for tests: these replicates' cross-products are replaced by NaN after the program
        # ran (outside it, so the compiled simulation is the production one)
        self.poison = frozenset(int(i) for i in poison)

    def start(self, model, devices: tuple, struct, obs, put_rep, put_bat, chunk: int) -> None:
        """Place the constants and start compiling the program (on a background thread)."""
        sizes = _sizes(model.layout)
        self.sp, self.key = put_rep((self.sp, self.key))
        self.struct, self.obs, self.put = struct, obs, put_bat
        fn = sharded(
            functools.partial(_sim_round, sizes=sizes), devices, (REPLICATED,) * 4 + (BATCHED,), (BATCHED, BATCHED)
        )
        args = (struct, obs, self.sp, self.key, put_bat(np.zeros(chunk, np.int32)))
        flags = dict(program_flags(model.layout), disk=len(devices) == 1)
        self._compiled = compile_program_async(
            "bootstrap_sim", fn, args, key=(sizes, device_key(devices)), threads=1, **flags
        )

    def __call__(self, idx: np.ndarray):
        """Cross-products (Z1'y, [Zr X y]'y) of the responses of replicates ``idx`` (one per lane)."""
        program = self._compiled()
        zy1, ry = program(self.struct, self.obs, self.sp, self.key, self.put(idx))
        bad = np.array([int(i) in self.poison for i in idx], dtype=bool)
        if bad.any():
            zy1, ry = (
                self.put(np.where(bad.reshape((-1,) + (1,) * (a.ndim - 1)), np.nan, np.asarray(a))) for a in (zy1, ry)
            )
        return zy1, ry


# Largest q + p for which the bootstrap of a model without rows draws its responses'
# cross-products from an eigendecomposition of [Z X]'[Z X] (dense, O((q + p)^3) once).
MAX_DRAWN_SIZE = 6000


def crossproducts_gram(struct: Structure) -> np.ndarray:
    """[Z1 Zr X]'[Z1 Zr X] (√w-scaled, centred rows) as a dense matrix from the blocked
    cross-products: Z1's columns level-major, then the rest block's rows."""
    lay = struct.layout
    k1, r1 = lay.k1, lay.r1
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


def draw_crossproducts(M, eig, sp: SimParams, layout, n_obs: int, rng: np.random.Generator):
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
    bs = [sigma * rng.standard_normal((t.nlevels, t.ncols)) @ np.asarray(L).T for t, L in zip(layout.terms, sp.lams)]
    h = layout.head  # the term-1 block's columns: the head terms' side by side, level-major
    parts = [np.concatenate(bs[:h], axis=1).reshape(-1)] + [b.reshape(-1) for b in bs[h:]]
    gamma = np.concatenate(parts + [np.asarray(sp.beta)])
    z = rng.standard_normal(len(lam))
    v = U @ (np.sqrt(np.where(positive, lam, 0.0)) * z)
    Mg = M @ gamma
    chi2 = rng.chisquare(n_obs - int(positive.sum())) if n_obs > positive.sum() else 0.0
    yy = gamma @ Mg + 2.0 * sigma * gamma @ v + sigma**2 * (float(z[positive] @ z[positive]) + chi2)
    aty = Mg + sigma * v
    q1 = layout.k1 * layout.r1
    return aty[:q1].reshape(layout.k1, layout.r1), np.concatenate([aty[q1:], [yy]])


class DrawnCrossProducts:
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
        self.sp, self.seed, self.model = sim_params(result), int(seed), model

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
