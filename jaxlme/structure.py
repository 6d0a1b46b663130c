"""Blocked sparse cross-products of [Z X y] — the only O(n) pass over the data.

Layout (following MixedModels.jl's blocked Cholesky): the random-effects term with the
most levels ("term 1", k1 levels of r1 columns) keeps its diagonal block as k1 small
r1×r1 matrices and its off-diagonal block against everything else as a sparse list of
(row, level, r1-vector) entries.  Every other column — the remaining random-effects
terms, then X, then y — forms the "rest" block R, held dense: it is where a crossed
design's Schur complement fills in.  Per-evaluation cost then depends only on k1, the
number of sparse entries and the size of R, never on n.  Later terms on term 1's grouping
factor, side by side in lme4's order (``(x || g)`` splits into such terms), join term 1's
block when they would add many rows to R (:func:`head_size`): r1 counts their columns too.

The response enters only through ``zy1`` (Z1'y) and ``ry`` (the last row of the rest
block, [Zr'y, X'y, y'y]), so refits with a new y (bootstrap) recompute just those.

Prior weights w (lme4's ``weights``: residual variance σ²/wᵢ) scale the rows of Z, X and y
by √wᵢ before the pass, so every array here, ``ObsData`` included, holds weighted rows: a
response handed to :func:`response_crossprods` must be √w·y.  The criterion's extra term
-Σ log wᵢ (lme4's ``ldW``) is the scalar leaf ``log_det_w``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .design import Design

__all__ = [
    "TermLayout",
    "Layout",
    "head_size",
    "HEAD_MIN_ROWS",
    "LARGE_REST",
    "Structure",
    "ObsData",
    "build_structure",
    "response_crossprods",
    "weighted_rows",
    "StructurePattern",
    "structure_pattern",
    "design_pattern",
    "structure_values",
    "response_values",
    "assemble_structure",
    "CrossProducts",
    "crossproducts",
    "entry_layout",
    "Padded",
    "pad_structure",
    "level_bucket",
    "unpadded",
    "lead_sizes",
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


# Rows of the dense rest block from which later terms on term 1's grouping factor join
# term 1's block (see :func:`head_size`).  Below it the dense rows cost less per fit than
# compiling the merged block's r1 × r1 code takes once (measured: benchmarks/RESULTS.md,
# "One term-1 block for a grouping factor's terms").
HEAD_MIN_ROWS = 128


def head_size(terms) -> int:
    """How many leading terms form the block-diagonal "term 1" block: r1 = Σ r_t columns
    per level, Λ1 = blockdiag(Λ_t).

    lme4's order puts a factor's terms side by side (``(1 + x || g)`` splits into
    ``(1 | g) + (0 + x | g)``, same number of levels).  Left as separate terms, the later
    ones put k·r rows into the dense rest block; in term 1's block they are factored level
    by level, so ``(x || g)`` costs what ``(x | g)`` costs.  That pays once they would
    add at least :data:`HEAD_MIN_ROWS` rows.  The terms keep their own θ and names: only
    the blocking of the cross-products changes.

    Args:
        terms: the terms (anything with ``name``, ``nlevels`` and ``ncols``), in lme4's order.

    Returns:
        The number of terms in the term-1 block (1 when no later term joins).
    """
    h = 1
    while h < len(terms) and terms[h].name == terms[0].name and terms[h].nlevels == terms[0].nlevels:
        h += 1
    moved = terms[0].nlevels * sum(t.ncols for t in terms[1:h]) if terms else 0
    return h if moved >= HEAD_MIN_ROWS else 1


@dataclass(frozen=True)
class Layout:
    """Hashable shape information: part of the jit cache key, so same-shaped models share code.

    The number of observations ``n`` is kept for host-side use but is not part of the key
    (neither compared nor in the repr): programs read it from :attr:`Structure.nobs`, so
    models that differ only in n (subsets, resamples, another data set of the same
    design) share their compiled programs.
    """

    terms: tuple[TermLayout, ...]  # terms[0] is term 1 (most levels)
    p: int
    n: int = field(compare=False, repr=False)
    nnz: int  # sparse entries of the term-1 off-diagonal block, y entries included
    npairs: int  # 0 when the dense Schur update is used
    dense_schur: bool
    lead: int = 0  # levels of term 2 whose rest rows form a block-diagonal lead (0: none)

    @property
    def head(self) -> int:
        """Number of leading terms that form the block-diagonal "term 1" block (see :func:`head_size`)."""
        return head_size(self.terms)

    @property
    def k1(self) -> int:
        """Levels of the term-1 block."""
        return self.terms[0].nlevels

    @property
    def r1(self) -> int:
        """Columns per level of the term-1 block: those of every term in its head."""
        return sum(t.ncols for t in self.terms[: self.head])

    @property
    def rest_terms(self) -> tuple[TermLayout, ...]:
        return self.terms[self.head :]

    def split_head(self, block, axis: int = -1) -> list:
        """The term-1 block's columns (along ``axis``, e.g. of u1 or of Σ Z1²) split into
        its head terms' own, which sit side by side in lme4's order."""
        if self.head == 1:
            return [block]
        cuts = np.cumsum([t.ncols for t in self.terms[: self.head]])[:-1]
        return list(jnp.split(block, cuts, axis=axis))

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
    def lead_blocks(self) -> tuple[int, int] | None:
        """(levels, columns) of the rest block's block-diagonal lead, or None.

        When every level of term 1 meets at most one level of the first rest term ("term
        2"; term 1 nested in it), term 2's rows of the rest block stay block diagonal
        through the Schur update, and the kernel factors that lead block by block instead
        of as part of a dense matrix.
        """
        return (self.lead, self.rest_terms[0].ncols) if self.lead else None

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
    nobs: jax.Array  # () the number of observations n, as data (see Layout)
    nfixed: jax.Array  # () the number of fixed effects p, as data (``layout.p`` beyond it: padding)

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
            self.nobs,
            self.nfixed,
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


class Padded(NamedTuple):
    """A structure padded to its program's shape bucket (see :func:`pad_structure`), and
    how the model's quantities sit in the program's.

    Attributes:
        struct: the padded structure the program runs on.
        theta: positions of the model's θ entries in the program's θ (the others are
            held at 0).
        p: the model's fixed effects: the program's first p.
        columns: per model term, (program term, first column, columns, levels): where
            its random effects sit among the program's (its levels are the program
            term's first).
    """

    struct: Structure
    theta: np.ndarray
    p: int
    columns: tuple[tuple[int, int, int, int], ...]

    @property
    def ntheta(self) -> int:
        """The program's number of θ entries."""
        return self.struct.layout.ntheta

    def theta_in(self, theta, fill: float = 0.0) -> np.ndarray:
        """The model's θ-shaped vector (last axis) in the program's θ, ``fill`` elsewhere."""
        theta = np.asarray(theta, dtype=float)
        out = np.full(theta.shape[:-1] + (self.ntheta,), fill)
        out[..., self.theta] = theta
        return out

    def free(self) -> np.ndarray:
        """1.0 at the program's θ entries the model has, 0.0 at those held at 0."""
        return self.theta_in(np.ones(len(self.theta)))

    @property
    def varpar_index(self) -> np.ndarray:
        """Positions of the model's varpar = (θ, σ) in the program's (σ last in both)."""
        return np.append(self.theta, self.ntheta)

    def varpar_in(self, varpar) -> np.ndarray:
        """The model's varpar = (θ, σ) as the program's: θ placed (0 elsewhere), σ last."""
        varpar = np.asarray(varpar, dtype=float)
        return np.append(self.theta_in(varpar[:-1]), varpar[-1])

    def per_term(self, blocks) -> tuple:
        """The model's per-term (levels, columns) arrays from the program's (e.g. the
        conditional modes)."""
        return tuple(blocks[t][:k, c : c + r] for t, c, r, k in self.columns)


def unpadded(struct: Structure) -> Padded:
    """``struct`` as its own program's structure (nothing padded)."""
    lay = struct.layout
    columns = tuple((i, 0, t.ncols, t.nlevels) for i, t in enumerate(lay.terms))
    return Padded(struct, np.arange(lay.ntheta), lay.p, columns)


def pad_structure(struct: Structure) -> Padded:
    """A small model's structure padded to a shape bucket, so that many small models
    share one compiled program (compiling one takes longer than fitting it).

    Only models whose programs run in milliseconds (:func:`is_small`, at most
    :data:`PAD_MAX_LEVELS` levels in term 1) are padded:

    - A model whose terms are all on one grouping factor (``(1 | g)``, ``(x | g)``,
      ``(x || g)``, ``(1 | g) + (0 + x | g)``) becomes one term of at least 2 columns with
      a full Λ whose extra θ entries the programs hold at 0 (a zero column where the model
      has one), under a neutral name, with its levels padded by empty levels to a bucket
      (:func:`level_bucket`) and an entry at every (fixed-effect row, level).
    - Fixed-effect columns are appended, to p = 4, 8, 16, ..., orthonormal and orthogonal
      to every other column: X'X gains an identity block; Z'X and X'y explicit zero
      entries at every level, so entry and Schur-pair counts are those of a model with
      that many real columns.

    The criterion, β̂ (first rows), R_X (leading block), the conditional modes and every
    derivative in the model's θ are unchanged: the added rows of the factor are identity
    rows (log 1 = 0), zero columns add nothing, Λ entries held at 0 leave Λ the model's,
    an empty level's block of the factor is the identity and it meets nothing, and the
    degrees of freedom come from ``nfixed``.

    Args:
        struct: the model's structure.

    Returns:
        The :class:`Padded` structure (``struct`` itself for larger models).
    """
    cached = getattr(struct, "_padded", None)  # the fit, a summary and the front ends all ask
    if cached is None:
        cached = struct._padded = _padded(struct)
    return cached


# Levels of term 1 above which a small model is not padded: there its run time, which the
# padding adds to (a fixed-effect column more costs every level), nears its compile time.
PAD_MAX_LEVELS = 4096


def _padded(struct: Structure) -> Padded:
    original, lay = struct, struct.layout
    if not is_small(lay) or lay.k1 > PAD_MAX_LEVELS:
        return unpadded(struct)
    one_factor = all(t.name == lay.terms[0].name and t.nlevels == lay.k1 for t in lay.terms)
    if one_factor:
        struct, theta, columns = _one_term(struct)
    elif lay.lead:
        return unpadded(struct)
    else:
        theta, columns = unpadded(struct)[1:4:2]
    padded = _pad_fixed(struct)
    if padded is not original:  # the steps above built it on the host: one call puts it all
        padded = jax.device_put(padded)
    return Padded(padded, theta, lay.p, columns)


def level_bucket(k: int) -> int:
    """The number of levels a one-factor small model's programs are compiled for: 128 up to
    128 levels, then the next power of two (256, 512, ..., :data:`PAD_MAX_LEVELS`).

    A new bucket costs a compile; an empty level costs every evaluation of every fit its
    share of the per-level work, as much as a real level.  Doubling buckets keep that
    work under twice the model's own, with at most six buckets in all (the trade is
    measured in benchmarks/SMALL_MODELS.md)."""
    return 128 if k <= 128 else 1 << (k - 1).bit_length()


def _one_term(struct: Structure) -> tuple[Structure, np.ndarray, tuple]:
    """A one-factor model's structure as one correlated term of R = max(Σ r_t, 2) columns
    (the terms' columns side by side, lme4's order) and :func:`level_bucket` levels (the
    model's first, then empty ones), its θ positions and term columns."""
    lay = struct.layout
    k1, h, r1, p, q = lay.k1, lay.head, lay.r1, lay.p, lay.q_rest
    K = level_bucket(k1)
    total = sum(t.ncols for t in lay.terms)
    wide = TermLayout("", K, max(total, 2), True, 0)  # columns from total on: zero
    R, starts = wide.ncols, np.cumsum([0] + [t.ncols for t in lay.terms])
    pos = {ij: k for k, ij in enumerate(wide.theta_index)}
    theta = np.array([pos[c + i, c + j] for t, c in zip(lay.terms, starts) for i, j in t.theta_index])
    columns = tuple((0, int(c), t.ncols, k1) for t, c in zip(lay.terms, starts))
    # the rest block's rows of a one-factor model: per rest term, level-major blocks of r_t
    arr, ry = np.asarray(struct.arr_fixed), np.asarray(struct.ry)
    rows, levs, vals = np.asarray(struct.rows), np.asarray(struct.levs), np.asarray(struct.vals_fixed)
    rc = np.zeros((k1, total - r1), dtype=np.int64)  # rest row of (level, rest-term column)
    for t, c in zip(lay.rest_terms, starts[h:]):
        rc[:, c - r1 : c - r1 + t.ncols] = t.offset + np.arange(k1)[:, None] * t.ncols + np.arange(t.ncols)
    a11 = np.zeros((K, R, R))
    a11[:k1, :r1, :r1] = np.asarray(struct.a11)
    a11[:k1, r1:total, r1:total] = arr[rc[:, :, None], rc[:, None, :]]
    zy1 = np.zeros((K, R))
    zy1[:k1, :r1] = np.asarray(struct.zy1)
    zy1[:k1, r1:total] = ry[rc]
    # Z1' against the rest terms' rows: the sparse entries there (one level each)
    nfix = lay.nnz - k1
    wide_col = np.full(q, -1)
    wide_col[rc.ravel()] = np.tile(np.arange(r1, total), k1)
    on_rest = rows[:nfix] < q
    a11[levs[:nfix][on_rest], :r1, wide_col[rows[:nfix][on_rest]]] = vals[on_rest]
    a11[:, r1:, :r1] = np.swapaxes(a11[:, :r1, r1:], 1, 2)
    # X rows against every column: all (row, level) entries, in (row, level) order
    xv = np.zeros((p, K, R))
    on_x = ~on_rest
    xv[rows[:nfix][on_x] - q, levs[:nfix][on_x], :r1] = vals[on_x]
    xv[:, :k1, r1:total] = arr[q : q + p][:, rc]
    entries_rows = np.concatenate([np.repeat(np.arange(p), K), np.full(K, p)])
    entries_levs = np.concatenate([np.tile(np.arange(K), p), np.arange(K)])
    layout, (pa, pb, pt) = entry_layout((wide,), p, lay.n, entries_rows, entries_levs, "auto")
    arrays = (a11, entries_rows, entries_levs, xv.reshape(p * K, R), zy1, arr[q:, q:], ry[q:], (pa, pb, pt))
    return _rebuilt(struct, layout, *arrays), theta, columns


def _rebuilt(struct: Structure, layout: Layout, a11, rows, levs, vals, zy1, arr, ry, pairs) -> Structure:
    """A structure of ``layout`` on host arrays (:func:`_padded` puts the finished one on
    the device in one call) and ``struct``'s scalar leaves (log_det_w, nobs, nfixed)."""
    pa, pb, pt = pairs
    host = (_host(a11), _host(rows, np.int32), _host(levs, np.int32), _host(vals), _host(zy1), _host(arr), _host(ry))
    host += (_host(pa, np.int32), _host(pb, np.int32), _host(pt, pt.dtype))
    return Structure(layout, *host, struct.log_det_w, struct.nobs, struct.nfixed)


def _pad_fixed(struct: Structure) -> Structure:
    """The structure with fixed-effect columns appended up to p = 4, 8, 16, ... (see
    :func:`pad_structure`), or itself when that would leave the small models' size."""
    lay = struct.layout
    p = max(4, 1 << max(lay.p - 1, 0).bit_length())
    if lay.size_rest + p - lay.p >= LARGE_REST:  # stay small: the same code paths
        return struct
    extra = p - lay.p
    if extra == 0:
        return struct
    size, k1 = lay.size_rest, lay.k1  # the y row is size - 1; the added rows go before it
    arr = np.zeros((size - 1 + extra, size - 1 + extra))
    arr[: size - 1, : size - 1] = np.asarray(struct.arr_fixed)
    arr[size - 1 :, size - 1 :] = np.eye(extra)
    ry = np.asarray(struct.ry)
    ry = np.concatenate([ry[:-1], np.zeros(extra), ry[-1:]])
    # entries stay in (row, level) order: the added rows' after X's, then y's (moved down)
    rows, levs = np.asarray(struct.rows).astype(np.int64), np.asarray(struct.levs).astype(np.int64)
    rows = np.concatenate([rows[:-k1], np.repeat(np.arange(size - 1, size - 1 + extra), k1), rows[-k1:] + extra])
    levs = np.concatenate([levs[:-k1], np.tile(np.arange(k1), extra), levs[-k1:]])
    vals = np.asarray(struct.vals_fixed)
    vals = np.concatenate([vals, np.zeros((extra * k1, vals.shape[1]))])
    if lay.dense_schur:
        pa = pb = pt = np.zeros(0, np.int32)
    else:
        pa, pb, pt = _schur_pairs(rows, levs, size + extra, (lay.lead, lay.rest_terms[0].ncols) if lay.lead else None)
    layout = replace(lay, p=p, nnz=len(rows), npairs=len(pa))
    a11, zy1 = np.asarray(struct.a11), np.asarray(struct.zy1)
    return _rebuilt(struct, layout, a11, rows, levs, vals, zy1, arr, ry, (pa, pb, pt))


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
    h = layout.head
    Z1 = head_columns(jnp, obs.Z, h)
    zy1 = jax.ops.segment_sum(Z1 * y[:, None], obs.index[0], num_segments=layout.k1)
    parts = []
    for t, idx, Z in zip(layout.rest_terms, obs.index[h:], obs.Z[h:]):
        parts.append(jax.ops.segment_sum(Z * y[:, None], idx, num_segments=t.nlevels).ravel())
    parts.append(obs.X.T @ y)
    parts.append(jnp.atleast_1d(y @ y))
    return zy1, jnp.concatenate(parts)


def head_columns(xp, Z, head: int):
    """Z1 (n, r1): the columns of the ``head`` terms that form the term-1 block, side by side."""
    return Z[0] if head == 1 else xp.concatenate(list(Z[:head]), axis=1)


def _schur_pairs(rows: np.ndarray, levs: np.ndarray, size: int, lead: tuple[int, int] | None = None):
    """All pairs of sparse entries sharing a level, lower triangle, as flat target indices
    (sorted by target, for a sorted segment sum), or with ``lead`` (k, r) as indices into
    the lead's parts (:func:`lead_sizes`).  32-bit pair arrays where they fit: half the
    bytes to build and sort, a faster set-up."""
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
    if lead is not None:
        target = _lead_target(target, size, *lead)
    perm = stable_argsort(target)
    return a[perm], b[perm], target[perm]


def stable_argsort(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for non-negative integer keys, as a radix sort on
    16-bit digits when keys fit in 32 bits (NumPy sorts 16-bit keys by radix, faster than
    its stable sort of wider keys)."""
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


# Rows of the dense rest block from which a model is "large": its evaluations, not the
# compiler, set the time a fit takes.  The choices that depend on size (cheap code
# generation below it; BFGS, the analytic gradient and moment starts from it) share this
# one boundary, so every large model gets all of them together.
LARGE_REST = 400


def is_small(layout: Layout) -> bool:
    """A model whose programs run in milliseconds, so compile time is what the user waits
    for: its programs get cheaper code generation (see ``jaxlme.compiled``)."""
    return layout.size_rest < LARGE_REST and layout.n <= 200_000


def _host(a, dtype=np.float64) -> np.ndarray:
    """A contiguous host array of ``dtype``, ready for one batched ``jax.device_put`` of
    many (one call for a whole structure: each call has a fixed cost, which on small
    models is a fair part of a warm fit)."""
    return np.asarray(a, dtype=dtype, order="C")  # 0-d stays 0-d


def weighted_rows(design: Design) -> Design:
    """The design with the rows of y, X and every Z multiplied by √w (itself if unweighted)."""
    if design.weights is None:
        return design
    sw = np.sqrt(design.weights)
    terms = [replace(t, Z=t.Z * sw[:, None]) for t in design.terms]
    return replace(design, y=design.y * sw, X=design.X * sw[:, None], terms=terms)


@dataclass(frozen=True, eq=False)
class StructurePattern:
    """Everything in the cross-products that depends only on the level codes and shapes
    (host numpy): the layout, the sparse entries' (row, level) keys and the Schur pairs.
    :func:`structure_values` puts the data's values on it, with NumPy or traceably with JAX."""

    layout: Layout
    index: tuple[np.ndarray, ...]  # per term (n,) level codes
    entry: np.ndarray  # (n_rest_cols·n,) sparse entry of each rest-column value (column-major)
    rows: np.ndarray  # (nnz,) rest row of each sparse entry, y's k1 entries last
    levs: np.ndarray  # (nnz,) term-1 level of each entry
    rest_rows: tuple[np.ndarray, ...]  # per random rest column: (n,) rest row of each observation
    pair_a: np.ndarray
    pair_b: np.ndarray
    pair_target: np.ndarray


def structure_pattern(index, ncols, nlevels, names, correlated, p: int, schur: str = "auto") -> StructurePattern:
    """The value-independent part of the cross-products from the terms' level codes.

    Args:
        index: per term (n,) integer level codes, terms ordered as lme4 orders them (most
            levels first).
        ncols, nlevels, names, correlated: per term, its columns, levels, name and whether
            its Λ is a full lower triangle.
        p: number of fixed-effect columns.
        schur: "sparse", "dense" or "auto" Schur-complement update (see :func:`build_structure`).

    Returns:
        The :class:`StructurePattern`.
    """
    if schur not in ("auto", "sparse", "dense"):
        raise ValueError(f"schur must be 'auto', 'sparse' or 'dense', got {schur!r}")
    index = tuple(np.asarray(i, dtype=np.int64) for i in index)
    n = len(index[0])
    h = head_size([TermLayout(names[i], int(nlevels[i]), int(ncols[i]), True, 0) for i in range(len(index))])
    for i in range(1, h):
        if not np.array_equal(index[i], index[0]):
            raise ValueError(f"terms on grouping factor '{names[0]}' have different level codes")
    tls, offset = [], 0
    for i in range(len(index)):
        tls.append(TermLayout(names[i], int(nlevels[i]), int(ncols[i]), bool(correlated[i]), 0 if i < h else offset))
        if i >= h:
            offset += int(nlevels[i]) * int(ncols[i])
    q_rest = offset
    size = q_rest + p + 1
    k1 = tls[0].nlevels
    rest_rows = []
    for tl, idx in zip(tls[h:], index[h:]):
        for c in range(tl.ncols):
            rest_rows.append(tl.offset + idx * tl.ncols + c)
    ncol_rest = len(rest_rows) + p
    # sparse [Zr X]'Z1: aggregate (row, level) keys
    if ncol_rest:
        all_rows = np.concatenate(rest_rows + [np.full(n, q_rest + j, dtype=np.int64) for j in range(p)])
        keys = all_rows * k1 + np.tile(index[0], ncol_rest)
        ukeys, inverse = unique_keys(keys, size * k1)
        e_rows, e_levs = ukeys // k1, ukeys % k1
    else:
        inverse = np.empty(0, dtype=np.int64)
        e_rows = e_levs = np.empty(0, dtype=np.int64)
    # y entries: one per level, last.  Entries are in (row, level) order (np.unique sorts the
    # keys): with every pair present they are the dense grid (objective.dense_entries)
    rows = np.concatenate([e_rows, np.full(k1, size - 1)]).astype(np.int64)
    levs = np.concatenate([e_levs, np.arange(k1)]).astype(np.int64)
    layout, (pa, pb, pt) = entry_layout(tuple(tls), p, n, rows, levs, schur)
    return StructurePattern(layout, index, inverse.reshape(-1), rows, levs, tuple(rest_rows), pa, pb, pt)


def unique_keys(keys: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, return_inverse=True)`` for integer keys in [0, bound): by a lookup
    table when ``bound`` is not much larger than the keys (O(n), no sort: much faster on
    large partitions), else by sorting."""
    if bound > max(4 * len(keys), 1 << 22):
        return np.unique(keys, return_inverse=True)
    present = np.zeros(bound, dtype=bool)
    present[keys] = True
    ukeys = np.flatnonzero(present)
    pos = np.empty(bound, dtype=np.int64 if len(ukeys) >= 2**31 else np.int32)
    pos[ukeys] = np.arange(len(ukeys))
    return ukeys, pos[keys].astype(np.int64)


def entry_layout(terms: tuple[TermLayout, ...], p: int, n: int, rows: np.ndarray, levs: np.ndarray, schur: str):
    """The :class:`Layout` and Schur pairs of a structure whose sparse entries are (rows,
    levs), y's entries last: the dense or sparse Schur update, whichever is cheaper unless
    ``schur`` says which."""
    if schur not in ("auto", "sparse", "dense"):
        raise ValueError(f"schur must be 'auto', 'sparse' or 'dense', got {schur!r}")
    h = head_size(terms)
    k1, r1 = terms[0].nlevels, sum(t.ncols for t in terms[:h])
    size = sum(t.nlevels * t.ncols for t in terms[h:]) + p + 1
    npairs_est = _count_pairs(levs, k1)
    dense_cost = size * size * k1 * r1 / 20.0  # ~20 flops per scatter-add, in flop units
    dense_schur = npairs_est > _MAX_PAIRS or dense_cost < npairs_est * (r1 + 4)
    if schur != "auto":
        dense_schur = schur == "dense"
    lead = _nested_lead(terms, size, rows, levs)
    if dense_schur:
        pa = pb = pt = np.zeros(0, dtype=np.int32)
    else:
        pa, pb, pt = _schur_pairs(rows, levs, size, (lead, terms[h].ncols) if lead else None)
    return Layout(terms, p, n, len(rows), len(pa), bool(dense_schur), lead), (pa, pb, pt)


def lead_sizes(layout: Layout) -> tuple[int, int, int]:
    """Sizes of the three parts of a rest block with a block-diagonal lead: its k r × r
    diagonal blocks (k·r² entries), the trailing rows against the lead columns (mo·k·r)
    and the trailing square (mo²), mo = size_rest - k·r.  With the sparse Schur update
    the pairs' targets index these parts laid end to end."""
    k, r = layout.lead_blocks
    mo = layout.size_rest - k * r
    return k * r * r, mo * k * r, mo * mo


def _lead_target(pt: np.ndarray, size: int, k: int, r: int) -> np.ndarray:
    """Flat rest-block targets (row · size + column, lower triangle) as indices into the
    lead's three parts laid end to end (:func:`lead_sizes`)."""
    q, mo = k * r, size - k * r
    ra, rb = pt // size, pt % size
    in_d, in_b = ra < q, (ra >= q) & (rb < q)
    target = np.where(
        in_d,
        (ra // r) * r * r + (ra % r) * r + rb % r,
        np.where(in_b, k * r * r + (ra - q) * q + rb, k * r * r + mo * q + (ra - q) * mo + (rb - q)),
    )
    return target.astype(pt.dtype)


def _nested_lead(terms: tuple[TermLayout, ...], size: int, rows: np.ndarray, levs: np.ndarray) -> int:
    """Term 2's number of levels if its rows lead the rest block block-diagonally (each
    term-1 level's entries touch at most one term-2 level) and the rest block is large
    enough for block-wise factoring to pay (:data:`LARGE_REST`); else 0."""
    h = head_size(terms)
    if len(terms) <= h or size < LARGE_REST:
        return 0
    t2 = terms[h]
    in2 = rows < t2.nlevels * t2.ncols
    if t2.nlevels < 2 or not in2.any():
        return 0
    if in2.sum() > t2.ncols * terms[0].nlevels:  # some level has entries on two term-2 levels
        return 0
    l1, l2 = levs[in2], rows[in2] // t2.ncols
    seen = np.empty(terms[0].nlevels, dtype=l2.dtype)
    seen[l1] = l2  # one of each level's term-2 levels: nested when every entry agrees
    return t2.nlevels if np.array_equal(seen[l1], l2) else 0


def _segment_sum(xp, w, idx, num: int):
    if xp is np:
        return np.bincount(idx, w, minlength=num)
    return jax.ops.segment_sum(w, idx, num_segments=num)


def response_values(xp, pat: StructurePattern, y, X, Z) -> tuple:
    """Z1'y (k1, r1) and [Zr'y, X'y, y'y] on the pattern, with NumPy (``xp=np``) or JAX (``xp=jnp``)."""

    def zty(t, idx, Zt):  # (nlevels, ncols) Z_t'y
        return xp.stack([_segment_sum(xp, Zt[:, c] * y, idx, t.nlevels) for c in range(t.ncols)], axis=1)

    lay = pat.layout
    h = lay.head
    parts = [zty(t, i, z).reshape(-1) for t, i, z in zip(lay.rest_terms, pat.index[h:], Z[h:])]
    parts += [X.T @ y, xp.reshape(y @ y, (1,))]
    z1 = head_columns(xp, Z, h)
    return zty(TermLayout("", lay.k1, lay.r1, True, 0), pat.index[0], z1), xp.concatenate(parts)


def structure_values(xp, pat: StructurePattern, y, X, Z) -> dict:
    """The value arrays of :class:`Structure` (a11, vals_fixed, zy1, arr_fixed, ry) from
    rows y (n,), X (n, p) and per-term Z (n, r_t), already multiplied by √w.

    One implementation for the host build (``xp=np``: bincounts, no compiles) and the
    traceable one (``xp=jnp``: segment sums, differentiable in y, X and Z).
    """
    lay = pat.layout
    k1, r1, p, q = lay.k1, lay.r1, lay.p, lay.q_rest
    size = lay.size_rest
    i1, Z1 = pat.index[0], head_columns(xp, Z, lay.head)
    cols = [[None] * r1 for _ in range(r1)]
    for c in range(r1):
        for d in range(c, r1):
            cols[c][d] = cols[d][c] = _segment_sum(xp, Z1[:, c] * Z1[:, d], i1, k1)
    a11 = xp.stack([xp.stack(row, axis=-1) for row in cols], axis=-2)
    rest_vals = [Zt[:, c] for t, Zt in zip(lay.rest_terms, Z[lay.head :]) for c in range(t.ncols)]
    rest_vals += [X[:, j] for j in range(p)]
    if rest_vals:
        nu = lay.nnz - k1
        vals = xp.stack(
            [_segment_sum(xp, xp.concatenate([v * Z1[:, c] for v in rest_vals]), pat.entry, nu) for c in range(r1)],
            axis=1,
        )
    else:
        vals = xp.zeros((0, r1))
    # dense [Zr X]'[Zr X]: random rest columns against every rest column, then X'X
    m = size - 1
    nz = len(pat.rest_rows)
    n = lay.n
    rest_rows = list(pat.rest_rows) + [np.full(n, q + j, dtype=np.int64) for j in range(p)]
    if nz:
        flat = 0.0
        for a in range(nz):
            for b in range(a, len(rest_rows)):
                flat = flat + _segment_sum(xp, rest_vals[a] * rest_vals[b], rest_rows[a] * m + rest_rows[b], m * m)
        arr = flat.reshape(m, m)
        arr = _symmetric_from_upper_sums(xp, arr)
        top = arr[:q]
        bottom = xp.concatenate([arr[q:, :q], X.T @ X], axis=1)
        arr = xp.concatenate([top, bottom], axis=0)
    else:
        arr = X.T @ X
    zy1, ry = response_values(xp, pat, y, X, Z)
    return {"a11": a11, "vals_fixed": vals, "zy1": zy1, "arr_fixed": arr, "ry": ry}


def _symmetric_from_upper_sums(xp, arr):
    """The symmetric matrix whose column pairs a <= b were summed into ``arr`` (NumPy: in
    place of a second size² diagonal matrix, which costs a second at 5,000 rows)."""
    if xp is np:
        out = arr + arr.T
        out[np.diag_indices_from(out)] = np.diag(arr)
        return out
    return arr + arr.T - xp.diag(xp.diag(arr))


def design_pattern(design: Design, schur: str = "auto") -> StructurePattern:
    """:func:`structure_pattern` of a validated design."""
    ts = design.terms
    return structure_pattern(
        [t.index for t in ts],
        [t.ncols for t in ts],
        [t.nlevels for t in ts],
        [t.name for t in ts],
        [t.term.correlated for t in ts],
        design.p,
        schur,
    )


def assemble_structure(pat: StructurePattern, values: dict, log_det_w, put=None) -> Structure:
    """A :class:`Structure` from a pattern and its values (``put``: how host arrays become
    the structure's arrays, e.g. ``jnp.asarray`` inside a trace; by default host arrays,
    and the whole structure goes to the device in one ``jax.device_put``)."""
    size = pat.layout.size_rest
    index_dtype = np.int32 if size * size < 2**31 else np.int64
    if put is None:
        return jax.device_put(assemble_structure(pat, values, np.asarray(log_det_w, np.float64), _host))
    nobs = np.asarray(pat.layout.n, np.float64)  # 0-d
    nfixed = np.asarray(pat.layout.p, np.float64)
    return Structure(
        layout=pat.layout,
        a11=values["a11"],
        rows=put(pat.rows, np.int32),
        levs=put(pat.levs, np.int32),
        vals_fixed=values["vals_fixed"],
        zy1=values["zy1"],
        arr_fixed=values["arr_fixed"],
        ry=values["ry"],
        pair_a=put(pat.pair_a, np.int32),
        pair_b=put(pat.pair_b, np.int32),
        pair_target=put(pat.pair_target, index_dtype),
        log_det_w=log_det_w,
        nobs=put(nobs, np.float64),
        nfixed=put(nfixed, np.float64),
    )


@dataclass(frozen=True, eq=False)
class CrossProducts:
    """The blocked cross-products of [Z X y] as sums over rows: everything a fit needs from
    the data, of a size that does not depend on n.

    Computed from any set of rows coded by the same (global) levels, and added exactly:
    ``a + b`` holds the sums over the rows of both (the sparse entries of [Zr X]'Z1 are
    kept by their (rest row, term-1 level) key, so each part holds only the keys its rows
    meet), so partitions of a large data set are summed in any order or tree.
    :func:`build_structure` puts the in-memory path through the same value.

    Attributes:
        terms: the terms' static description (global levels), term 1 first.
        p: fixed-effect columns.
        n: rows summed (rows multiplied by √w count once each).
        keys: (nnz - k1,) sorted ``rest_row · k1 + level`` of the sparse entries.
        a11, vals, zy1, arr, ry: as :class:`Structure`'s ``a11``, ``vals_fixed``, ``zy1``,
            ``arr_fixed`` and ``ry`` (host arrays).
        log_det_w: Σ log wᵢ of the prior weights.
        zz: per term, Σ Z² of each column over the rows, without the weights (the
            optimizer's θ scale).
        y_min, y_max: the response's range (a constant response is refused).
        ones: (p,) whether each column of X is 1 in every row.
        n_dropped: rows dropped for missing values before the sums.
    """

    terms: tuple[TermLayout, ...]
    p: int
    n: int
    keys: np.ndarray
    a11: np.ndarray
    vals: np.ndarray
    zy1: np.ndarray
    arr: np.ndarray
    ry: np.ndarray
    log_det_w: float
    zz: tuple[np.ndarray, ...]
    y_min: float = np.inf
    y_max: float = -np.inf
    ones: np.ndarray | None = None
    n_dropped: int = 0

    @classmethod
    def zero(cls, terms: tuple[TermLayout, ...], p: int, n_dropped: int = 0) -> CrossProducts:
        """The sums over no rows (an empty partition)."""
        h = head_size(terms)
        k1, r1 = terms[0].nlevels, sum(t.ncols for t in terms[:h])
        size = sum(t.nlevels * t.ncols for t in terms[h:]) + p + 1
        return cls(
            terms,
            p,
            0,
            np.zeros(0, np.int64),
            np.zeros((k1, r1, r1)),
            np.zeros((0, r1)),
            np.zeros((k1, r1)),
            np.zeros((size - 1, size - 1)),
            np.zeros(size),
            0.0,
            tuple(np.zeros(t.ncols) for t in terms),
            ones=np.ones(p, bool),
            n_dropped=n_dropped,
        )

    @property
    def q_rest(self) -> int:
        """Random-effect rows of the dense rest block (terms after the head)."""
        return sum(t.nlevels * t.ncols for t in self.terms[head_size(self.terms) :])

    def __add__(self, other: CrossProducts) -> CrossProducts:
        if not isinstance(other, CrossProducts):
            return NotImplemented
        if self.terms != other.terms or self.p != other.p:
            raise ValueError("cannot add cross-products of different model structures (levels or columns differ)")
        keys = np.union1d(self.keys, other.keys)
        vals = np.zeros((len(keys), self.vals.shape[1]))
        vals[np.searchsorted(keys, self.keys)] += self.vals
        vals[np.searchsorted(keys, other.keys)] += other.vals
        ones = self.ones & other.ones if self.ones is not None and other.ones is not None else None
        return CrossProducts(
            self.terms,
            self.p,
            self.n + other.n,
            keys,
            self.a11 + other.a11,
            vals,
            self.zy1 + other.zy1,
            self.arr + other.arr,
            self.ry + other.ry,
            self.log_det_w + other.log_det_w,
            tuple(a + b for a, b in zip(self.zz, other.zz)),
            min(self.y_min, other.y_min),
            max(self.y_max, other.y_max),
            ones,
            self.n_dropped + other.n_dropped,
        )

    def __radd__(self, other):  # sum() starts from 0
        return self if isinstance(other, int) and other == 0 else NotImplemented

    def structure(self, schur: str = "auto") -> Structure:
        """The device :class:`Structure` of these sums (Schur pairs computed here, once)."""
        k1 = self.terms[0].nlevels
        size = len(self.ry)
        rows = np.concatenate([self.keys // k1, np.full(k1, size - 1)]).astype(np.int64)
        levs = np.concatenate([self.keys % k1, np.arange(k1)]).astype(np.int64)
        layout, (pa, pb, pt) = entry_layout(self.terms, self.p, self.n, rows, levs, schur)
        pat = StructurePattern(layout, (), np.empty(0, np.int64), rows, levs, (), pa, pb, pt)
        values = {"a11": self.a11, "vals_fixed": self.vals, "zy1": self.zy1, "arr_fixed": self.arr, "ry": self.ry}
        return assemble_structure(pat, {k: _host(v) for k, v in values.items()}, self.log_det_w)


def crossproducts(design: Design, unweighted_X: np.ndarray | None = None) -> CrossProducts:
    """The :class:`CrossProducts` of a design's rows (the one O(n) pass of every path).

    Args:
        design: a design whose terms carry the global number of levels (all rows of an
            in-memory model, or one partition coded by levels collected beforehand), with
            y and X as the sums should see them (centred or shifted by the caller).
        unweighted_X: X before any shift, for the all-ones column check (default ``design.X``).

    Returns:
        The sums over the design's rows.
    """
    pat = design_pattern(design, "dense")  # the Schur pairs come after the merge
    log_det_w = 0.0 if design.weights is None else float(np.sum(np.log(design.weights)))
    zz = tuple(np.sum(t.Z**2, axis=0) for t in design.terms)
    Xo = design.X if unweighted_X is None else unweighted_X
    weighted = weighted_rows(design)
    values = structure_values(np, pat, weighted.y, weighted.X, [t.Z for t in weighted.terms])
    k1 = pat.layout.terms[0].nlevels
    rows, levs = pat.rows[:-k1], pat.levs[:-k1]
    return CrossProducts(
        terms=pat.layout.terms,
        p=design.p,
        n=design.n,
        keys=rows * k1 + levs,
        a11=values["a11"],
        vals=values["vals_fixed"],
        zy1=values["zy1"],
        arr=values["arr_fixed"],
        ry=values["ry"],
        log_det_w=log_det_w,
        zz=zz,
        y_min=float(np.min(design.y)) if design.n else np.inf,
        y_max=float(np.max(design.y)) if design.n else -np.inf,
        ones=np.all(Xo == 1.0, axis=0),
        n_dropped=design.n_dropped,
    )


def build_structure(design: Design, schur: str = "auto") -> tuple[Structure, ObsData]:
    """Compute the blocked cross-products of [Z X y] from a validated design.

    ``schur`` picks the Schur-complement update of the rest block: "sparse" (segment sum over
    entry pairs sharing a term-1 level), "dense" (one matrix product), or "auto" (cheaper one).
    With prior weights the cross-products are those of the √w-scaled rows.  The sums are
    :func:`crossproducts` (:func:`structure_values` with NumPy, the code
    ``jaxlme.diff.crossprods`` traces), the same a partitioned data set adds up.
    """
    struct = crossproducts(design).structure(schur)
    design = weighted_rows(design)
    obs = ObsData(
        index=tuple(_host(t.index, np.int32) for t in design.terms),
        Z=tuple(_host(t.Z) for t in design.terms),
        X=_host(design.X),
    )
    return struct, jax.device_put(obs)
