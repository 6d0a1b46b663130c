"""Blocked sparse cross-products of [Z X y] — the only O(n) pass over the data.

Layout (following MixedModels.jl's blocked Cholesky): the random-effects term with the
most levels ("term 1", k1 levels of r1 columns) keeps its diagonal block as k1 small
r1×r1 matrices and its off-diagonal block against everything else as a sparse list of
(row, level, r1-vector) entries.  Every other column — the remaining random-effects
terms, then X, then y — forms the "rest" block R, held dense: it is where a crossed
design's Schur complement fills in.  Per-evaluation cost then depends only on k1, the
number of sparse entries and the size of R, never on n.

The response enters only through ``zy1`` (Z1'y) and ``ry`` (the last row of the rest
block, [Zr'y, X'y, y'y]), so refits with a new y (bootstrap) recompute just those.

Prior weights w (lme4's ``weights``: residual variance σ²/wᵢ) scale the rows of Z, X and y
by √wᵢ before the pass, so every array here, ``ObsData`` included, holds weighted rows: a
response handed to :func:`response_crossprods` must be √w·y.  The criterion's extra term
-Σ log wᵢ (lme4's ``ldW``) is the scalar leaf ``log_det_w``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np

from .design import Design

__all__ = [
    "TermLayout",
    "Layout",
    "Structure",
    "ObsData",
    "build_structure",
    "response_crossprods",
    "weighted_rows",
]

# Above this many entries in the Schur-complement pair list, use the dense update.
_MAX_PAIRS = 30_000_000


@dataclass(frozen=True)
class TermLayout:
    """Static description of one random-effects term: name, sizes and θ template."""

    name: str
    nlevels: int
    ncols: int
    correlated: bool
    offset: int  # start of the term's columns in its block (rest terms only)

    @property
    def theta_index(self) -> tuple[tuple[int, int], ...]:
        """(row, col) of Λ's free entries, lower triangle in column-major order (lme4's θ)."""
        r = self.ncols
        if not self.correlated:
            return tuple((i, i) for i in range(r))
        return tuple((i, j) for j in range(r) for i in range(j, r))

    @property
    def ntheta(self) -> int:
        return len(self.theta_index)


@dataclass(frozen=True)
class Layout:
    """Hashable shape information: part of the jit cache key, so same-shaped models share code."""

    terms: tuple[TermLayout, ...]  # terms[0] is term 1 (most levels)
    p: int
    n: int
    nnz: int  # sparse entries of the term-1 off-diagonal block, y entries included
    npairs: int  # 0 when the dense Schur update is used
    dense_schur: bool

    @property
    def rest_terms(self) -> tuple[TermLayout, ...]:
        return self.terms[1:]

    @property
    def q_rest(self) -> int:
        return sum(t.nlevels * t.ncols for t in self.rest_terms)

    @property
    def size_rest(self) -> int:
        """Rows of the dense rest block: rest random effects, fixed effects, response."""
        return self.q_rest + self.p + 1

    @property
    def ntheta(self) -> int:
        return sum(t.ntheta for t in self.terms)

    @property
    def theta_lower(self) -> np.ndarray:
        """lme4's bounds: diagonal elements of Λ are >= 0, the others unbounded."""
        lb = []
        for t in self.terms:
            lb += [0.0 if i == j else -np.inf for i, j in t.theta_index]
        return np.asarray(lb)

    def lambdas(self, theta) -> list[np.ndarray]:
        """Host (numpy) Λ_t of every term from θ of shape (..., ntheta): arrays (..., r_t, r_t)."""
        theta = np.asarray(theta, dtype=float)
        out, start = [], 0
        for t in self.terms:
            lam = np.zeros(theta.shape[:-1] + (t.ncols, t.ncols))
            for k, (i, j) in enumerate(t.theta_index):
                lam[..., i, j] = theta[..., start + k]
            out.append(lam)
            start += t.ntheta
        return out

    @property
    def theta_start(self) -> np.ndarray:
        """lme4's and MixedModels.jl's start: Λ = I."""
        return np.where(self.theta_lower == 0.0, 1.0, 0.0)


@jax.tree_util.register_pytree_node_class
@dataclass
class Structure:
    """Device arrays of the blocked cross-products (a pytree; ``layout`` is static)."""

    layout: Layout
    a11: jax.Array  # (k1, r1, r1) diagonal blocks of Z1'Z1
    rows: jax.Array  # (nnz,) rest-row of each sparse entry of [Zr X y]'Z1
    levs: jax.Array  # (nnz,) term-1 level of each entry
    vals_fixed: jax.Array  # (nnz - k1, r1) entries of [Zr X]'Z1 (y entries come last)
    zy1: jax.Array  # (k1, r1) Z1'y — response dependent
    arr_fixed: jax.Array  # (size_rest - 1, size_rest - 1) [Zr X]'[Zr X]
    ry: jax.Array  # (size_rest,) [Zr X y]'y — response dependent
    pair_a: jax.Array  # (npairs,) entry index pairs sharing a level, row_a >= row_b
    pair_b: jax.Array
    pair_target: jax.Array  # (npairs,) flat index row_a * size_rest + row_b
    log_det_w: jax.Array  # () Σ log wᵢ of the prior weights (0 without weights)

    def tree_flatten(self):
        children = (
            self.a11,
            self.rows,
            self.levs,
            self.vals_fixed,
            self.zy1,
            self.arr_fixed,
            self.ry,
            self.pair_a,
            self.pair_b,
            self.pair_target,
            self.log_det_w,
        )
        return children, self.layout

    @classmethod
    def tree_unflatten(cls, layout, children):
        return cls(layout, *children)

    def with_response(self, zy1: jax.Array, ry: jax.Array) -> Structure:
        """The same structure for another response (only y-dependent arrays change)."""
        children, layout = self.tree_flatten()
        new = list(children)
        new[4], new[6] = zy1, ry
        return Structure.tree_unflatten(layout, new)


@jax.tree_util.register_pytree_node_class
@dataclass
class ObsData:
    """Per-observation arrays needed to recompute the response cross-products (rows
    multiplied by √w for a weighted model)."""

    index: tuple[jax.Array, ...]  # per term (n,) level codes
    Z: tuple[jax.Array, ...]  # per term (n, r)
    X: jax.Array  # (n, p)

    def tree_flatten(self):
        return (self.index, self.Z, self.X), None

    @classmethod
    def tree_unflatten(cls, _, children):
        return cls(*children)


def response_crossprods(layout: Layout, obs: ObsData, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Z1'y (k1, r1) and [Zr'y, X'y, y'y] for a response vector y — O(n), vmappable."""
    t1 = layout.terms[0]
    zy1 = jax.ops.segment_sum(obs.Z[0] * y[:, None], obs.index[0], num_segments=t1.nlevels)
    parts = []
    for t, idx, Z in zip(layout.rest_terms, obs.index[1:], obs.Z[1:]):
        parts.append(jax.ops.segment_sum(Z * y[:, None], idx, num_segments=t.nlevels).ravel())
    parts.append(obs.X.T @ y)
    parts.append(jnp.atleast_1d(y @ y))
    return zy1, jnp.concatenate(parts)


def _response_crossprods_np(design: Design, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Host (numpy) twin of :func:`response_crossprods` for the one-off build: no compiles."""
    y = design.y

    def zty(t) -> np.ndarray:  # (nlevels, ncols) Z_t'y
        return np.stack([np.bincount(t.index, t.Z[:, c] * y, minlength=t.nlevels) for c in range(t.ncols)], axis=1)

    parts = [zty(t).ravel() for t in design.terms[1:]] + [design.X.T @ y, np.atleast_1d(y @ y)]
    return zty(design.terms[0]), np.concatenate(parts)


def _rest_entries(design: Design, layout: Layout) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Rest-row index and value of each observation's nonzeros in [Zr X] (one array per column)."""
    rows, vals = [], []
    for tl, term in zip(layout.rest_terms, design.terms[1:]):
        for c in range(tl.ncols):
            rows.append(tl.offset + term.index * tl.ncols + c)
            vals.append(term.Z[:, c])
    q = layout.q_rest
    n = design.n
    for j in range(layout.p):
        rows.append(np.full(n, q + j, dtype=np.int64))
        vals.append(design.X[:, j])
    return rows, vals


def _schur_pairs(rows: np.ndarray, levs: np.ndarray, size: int):
    """All pairs of sparse entries sharing a level, lower triangle, as flat target indices
    (sorted by target, for a sorted segment sum).  32-bit pair arrays where they fit: half
    the set-up time on InstEval (2.1 M pairs)."""
    order = np.argsort(levs.astype(np.int64) * size + rows, kind="stable")
    levs_s = levs[order]
    starts = np.searchsorted(levs_s, levs_s, side="left")
    counts = np.arange(len(levs_s)) - starts + 1  # entry p pairs with positions starts..p
    total = int(counts.sum())
    it = np.int32 if max(total, len(rows)) < 2**31 else np.int64
    order, starts, counts = order.astype(it), starts.astype(it), counts.astype(it)
    a_sorted = np.repeat(np.arange(len(levs_s), dtype=it), counts)
    offsets = np.arange(total, dtype=it) - np.repeat((np.cumsum(counts, dtype=np.int64) - counts).astype(it), counts)
    b_sorted = np.repeat(starts, counts) + offsets
    a, b = order[a_sorted], order[b_sorted]
    tt = np.int32 if size * size < 2**31 else np.int64
    target = rows[a].astype(tt) * tt(size) + rows[b].astype(tt)
    perm = stable_argsort(target)
    return a[perm], b[perm], target[perm]


def stable_argsort(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for non-negative integer keys, as a radix sort on
    16-bit digits when keys fit in 32 bits (NumPy sorts 16-bit keys by radix: InstEval's
    2.1 M pair targets in 35 ms instead of 75-160 ms)."""
    if keys.size == 0 or keys.min() < 0 or keys.max() >= 2**32:
        return np.argsort(keys, kind="stable")
    keys = keys.astype(np.uint32, copy=False)
    perm = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    if keys.max() >= 2**16:
        perm = perm[np.argsort((keys[perm] >> 16).astype(np.uint16), kind="stable")]
    return perm


def _count_pairs(levs: np.ndarray, k1: int) -> int:
    c = np.bincount(levs, minlength=k1).astype(np.int64)
    return int((c * (c + 1) // 2).sum())


def is_small(layout: Layout) -> bool:
    """A model whose programs run in milliseconds, so compile time is what the user waits
    for: its programs get cheaper code generation (see ``jaxlme.compiled``)."""
    return layout.size_rest < 400 and layout.n <= 200_000


def _put(a, dtype=np.float64) -> jax.Array:
    return jax.device_put(np.ascontiguousarray(a, dtype=dtype))


def weighted_rows(design: Design) -> Design:
    """The design with the rows of y, X and every Z multiplied by √w (itself if unweighted)."""
    if design.weights is None:
        return design
    sw = np.sqrt(design.weights)
    terms = [replace(t, Z=t.Z * sw[:, None]) for t in design.terms]
    return replace(design, y=design.y * sw, X=design.X * sw[:, None], terms=terms)


def build_structure(design: Design, schur: str = "auto") -> tuple[Structure, ObsData]:
    """Compute the blocked cross-products of [Z X y] from a validated design.

    ``schur`` picks the Schur-complement update of the rest block: "sparse" (segment sum over
    entry pairs sharing a term-1 level), "dense" (one matrix product), or "auto" (cheaper one).
    With prior weights the cross-products are those of the √w-scaled rows.
    """
    if schur not in ("auto", "sparse", "dense"):
        raise ValueError(f"schur must be 'auto', 'sparse' or 'dense', got {schur!r}")
    log_det_w = 0.0 if design.weights is None else float(np.sum(np.log(design.weights)))
    design = weighted_rows(design)
    terms = design.terms
    tls, offset = [], 0
    for i, t in enumerate(terms):
        tls.append(TermLayout(t.name, t.nlevels, t.ncols, t.term.correlated, 0 if i == 0 else offset))
        if i > 0:
            offset += t.nlevels * t.ncols
    p, n = design.p, design.n
    q_rest = offset
    size = q_rest + p + 1
    t1 = terms[0]
    k1, r1 = t1.nlevels, t1.ncols

    # term-1 diagonal blocks
    a11 = np.empty((k1, r1, r1))
    for c in range(r1):
        for d in range(c, r1):
            a11[:, c, d] = a11[:, d, c] = np.bincount(t1.index, t1.Z[:, c] * t1.Z[:, d], minlength=k1)

    pre_layout = Layout(tuple(tls), p, n, 0, 0, False)
    rest_rows, rest_vals = _rest_entries(design, pre_layout)

    # sparse [Zr X]'Z1: aggregate (row, level) keys
    if rest_rows:
        all_rows = np.concatenate(rest_rows)
        all_levs = np.tile(t1.index, len(rest_rows))
        keys = all_rows * k1 + all_levs
        ukeys, inverse = np.unique(keys, return_inverse=True)
        vals = np.empty((len(ukeys), r1))
        for c in range(r1):
            w = np.concatenate([v * t1.Z[:, c] for v in rest_vals])
            vals[:, c] = np.bincount(inverse, w, minlength=len(ukeys))
        e_rows, e_levs = ukeys // k1, ukeys % k1
    else:
        vals = np.empty((0, r1))
        e_rows = e_levs = np.empty(0, dtype=np.int64)
    # y entries: one per level, last.  Entries are in (row, level) order (np.unique sorts the
    # keys): with every pair present they are the dense grid (objective._dense_entries)
    rows = np.concatenate([e_rows, np.full(k1, size - 1)]).astype(np.int64)
    levs = np.concatenate([e_levs, np.arange(k1)]).astype(np.int64)
    nnz = len(rows)

    # dense [Zr X]'[Zr X]
    arr = np.zeros((size - 1, size - 1))
    nz = len(rest_rows) - p  # rest random-effect columns
    if nz:
        flat = np.zeros((size - 1) * (size - 1))
        for a in range(nz):
            for b in range(a, len(rest_rows)):
                w = rest_vals[a] * rest_vals[b]
                idx = rest_rows[a] * (size - 1) + rest_rows[b]
                flat += np.bincount(idx, w, minlength=flat.size)
        arr = flat.reshape(size - 1, size - 1)
        arr = arr + arr.T - np.diag(np.diag(arr))  # only a <= b column pairs were summed
    arr[q_rest:, q_rest:] = design.X.T @ design.X

    npairs_est = _count_pairs(levs, k1)
    dense_cost = size * size * k1 * r1 / 20.0  # ~20 flops per scatter-add, in flop units
    dense_schur = npairs_est > _MAX_PAIRS or dense_cost < npairs_est * (r1 + 4)
    if schur != "auto":
        dense_schur = schur == "dense"
    if dense_schur:
        pa = pb = pt = np.zeros(0, dtype=np.int32)
        npairs = 0
    else:
        pa, pb, pt = _schur_pairs(rows, levs, size)
        npairs = len(pa)
    layout = Layout(tuple(tls), p, n, nnz, npairs, bool(dense_schur))

    # jax.device_put of host arrays: jnp.asarray would compile a small program per array
    index_dtype = np.int32 if size * size < 2**31 else np.int64
    obs = ObsData(
        index=tuple(_put(t.index, np.int32) for t in terms),
        Z=tuple(_put(t.Z) for t in terms),
        X=_put(design.X),
    )
    zy1, ry = _response_crossprods_np(design, layout)
    struct = Structure(
        layout=layout,
        a11=_put(a11),
        rows=_put(rows, np.int32),
        levs=_put(levs, np.int32),
        vals_fixed=_put(vals),
        zy1=_put(zy1),
        arr_fixed=_put(arr),
        ry=_put(ry),
        pair_a=_put(pa, np.int32),
        pair_b=_put(pb, np.int32),
        pair_target=_put(pt, index_dtype),
        log_det_w=jax.device_put(np.asarray(log_det_w, dtype=np.float64)),  # 0-d: _put makes 1-d
    )
    return struct, obs
