"""The profiled deviance and REML criterion as pure, differentiable JAX functions of θ.

Bates et al. (2015), section 3: with Λθ the relative covariance factor and

    [Λ'Z'ZΛ + I   Λ'Z'X   Λ'Z'y]
    [X'ZΛ         X'X     X'y  ]  =  L L'
    [y'ZΛ         y'X     y'y  ]

the profiled ML deviance is  log|L_Z|² + n (1 + log(2π r²/n))  and the REML criterion
log|L_Z|² + log|L_X|² + (n-p)(1 + log(2π r²/(n-p))), where r = L[y, y].  With prior
weights the cross-products are of √w-scaled rows and both subtract Σ log wᵢ (lme4's ldW).  L is computed
blockwise on the layout of ``structure``: closed-form r1×r1 Cholesky factors for term 1,
a sparse (or dense) Schur-complement update, then one dense Cholesky for the rest.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap
from jax.custom_derivatives import SymbolicZero

from .structure import LARGE_REST, Layout, Structure, is_small, lead_sizes

__all__ = [
    "Factor",
    "lambda_blocks",
    "factorize",
    "objective",
    "objective_analytic",
    "program_flags",
    "program_objective",
    "uses_analytic_gradient",
    "value_and_gradient",
    "objective_pieces",
    "objective_gradient",
    "solve_effects",
    "criterion_terms",
    "fixef_sigma",
    "unprofiled_deviance",
    "unprofiled_value_and_grad",
    "reml_flag",
]

_LOG2PI = math.log(2.0 * math.pi)  # a Python float: jnp here would be float32 at import


def lambda_blocks(theta: jax.Array, layout: Layout) -> list[jax.Array]:
    """Lower-triangular Λ_t (r_t × r_t) of every term from the flat θ vector (lme4's order).

    Each block is a constant 0/1 placement matrix times the term's θ segment: one small
    product, whose derivative is one product too.  (An indexed ``.at[].set`` made a scatter
    per call, and a gather and a scatter-add per derivative, which XLA on CPU expands into
    loops.)
    """
    blocks, start = [], 0
    for t in layout.terms:
        m, r = len(t.theta_index), t.ncols
        seg = theta[start : start + m]
        if r == 1:
            blocks.append(seg.reshape(1, 1))
        else:
            place = np.zeros((r * r, m))
            for k, (i, j) in enumerate(t.theta_index):
                place[i * r + j, k] = 1.0
            lam = jnp.matmul(place.astype(theta.dtype), seg, precision=jax.lax.Precision.HIGHEST)
            blocks.append(lam.reshape(r, r))
        start += m
    return blocks


def term1_lambda(lams: list[jax.Array], layout: Layout) -> jax.Array:
    """Λ1 of the term-1 block: blockdiag(Λ_t) of the head terms (``Layout.head``), from
    :func:`lambda_blocks`'s per-term list (a placement product: no scatter)."""
    h = layout.head
    if h == 1:
        return lams[0]
    r1 = layout.r1
    out, start = jnp.zeros((r1, r1), lams[0].dtype), 0
    for lam in lams[:h]:
        r = lam.shape[0]
        left = np.zeros((r1, r))
        left[start : start + r] = np.eye(r)
        out = out + left.astype(lam.dtype) @ lam @ left.T.astype(lam.dtype)
        start += r
    return out


def block_diagonals(L: jax.Array) -> jax.Array:
    """Diagonals (k, r) of (k, r, r) blocks, by a mask (jnp.diagonal's derivative is a
    scatter, a loop on CPU)."""
    r = L.shape[-1]
    return jnp.sum(L * jnp.eye(r, dtype=L.dtype), axis=-1)


def _loop_cholesky(m: jax.Array) -> jax.Array:
    """Batched Cholesky of (k, r, r) SPD blocks, one column per step of a ``fori_loop``.

    Not LAPACK's batched potrf: jaxlib 0.10's CPU kernels split a batch over the intra-op
    thread pool (``ParallelBatchMap``), where the triangular solves of its derivative can
    deadlock.  The loop is the same left-looking algorithm, differentiable and vmappable,
    with no custom call.
    """
    r = m.shape[-1]
    rows = jnp.arange(r)

    def column(j, L):
        s = m[:, :, j] - jnp.einsum("kic,kc->ki", L, L[:, j, :])  # m_ij - Σ_c<j L_ic L_jc
        d = jnp.sqrt(s[:, j])
        col = jnp.where(rows[None, :] >= j, s / d[:, None], 0.0)
        return L.at[:, :, j].set(col)

    return jax.lax.fori_loop(0, r, column, jnp.zeros_like(m))


def small_cholesky(m: jax.Array) -> jax.Array:
    """Batched Cholesky of (k, r, r) SPD blocks; unrolled closed form for small r (vectorizes),
    a column loop beyond (see :func:`_loop_cholesky`)."""
    r = m.shape[-1]
    if r == 1:
        return jnp.sqrt(m)
    if r > 4:
        return _loop_cholesky(m)
    L = [[None] * r for _ in range(r)]
    for j in range(r):
        s = m[:, j, j]
        for k in range(j):
            s = s - L[j][k] ** 2
        L[j][j] = jnp.sqrt(s)
        for i in range(j + 1, r):
            s = m[:, i, j]
            for k in range(j):
                s = s - L[i][k] * L[j][k]
            L[i][j] = s / L[j][j]
    zero = jnp.zeros_like(m[:, 0, 0])
    return jnp.stack([jnp.stack([L[i][j] if j <= i else zero for j in range(r)], -1) for i in range(r)], -2)


def small_forward(L: jax.Array, b: jax.Array) -> jax.Array:
    """Solve L x = b for batched lower-triangular L (m, r, r) and b (m, r)."""
    r = L.shape[-1]
    if r == 1:
        return b / L[:, 0, :]
    xs = []
    for i in range(r):
        s = b[:, i]
        for k in range(i):
            s = s - L[:, i, k] * xs[k]
        xs.append(s / L[:, i, i])
    return jnp.stack(xs, -1)


def small_backward(L: jax.Array, b: jax.Array) -> jax.Array:
    """Solve L' x = b for batched lower-triangular L (m, r, r) and b (m, r)."""
    r = L.shape[-1]
    if r == 1:
        return b / L[:, 0, :]
    xs = [None] * r
    for i in reversed(range(r)):
        s = b[:, i]
        for k in range(i + 1, r):
            s = s - L[:, k, i] * xs[k]
        xs[i] = s / L[:, i, i]
    return jnp.stack(xs, -1)


def _apply_lambda_rows(m: jax.Array, lams: list[jax.Array], layout: Layout) -> jax.Array:
    """Λ̃' M, where Λ̃ = blockdiag(I_k ⊗ Λ_t for rest terms, I) acts on the rows of M."""
    return _lambda_rows(m, lams, layout.rest_terms)


def _lambda_rows(m: jax.Array, lams, terms) -> jax.Array:
    """Λ̃' M for Λ̃ = blockdiag(I_k ⊗ Λ_t for the given terms, I) on the rows of M."""
    pieces, start = [], 0
    for t, lam in zip(terms, lams):
        size = t.nlevels * t.ncols
        block = m[start : start + size]
        if t.ncols == 1:
            pieces.append(block * lam[0, 0])
        else:
            b3 = block.reshape(t.nlevels, t.ncols, -1)
            pieces.append(jnp.einsum("dc,kdn->kcn", lam, b3).reshape(size, -1))
        start += size
    pieces.append(m[start:])
    return jnp.concatenate(pieces, axis=0)


class Factor(NamedTuple):
    """Blocked Cholesky factor: term-1 blocks, the sparse L21 core, and the dense rest."""

    L1: jax.Array  # (k1, r1, r1)
    C: jax.Array  # (nnz, r1) entries of [Zr X y]'Z1 Λ1 L1^{-T} (before Λ̃' on the left)
    L: jax.Array  # (size_rest, size_rest) lower Cholesky of the rest block


def factorize(theta: jax.Array, s: Structure) -> Factor:
    """Blocked Cholesky of the penalized cross-product matrix at θ."""
    L1, C, m = _blocks(theta, s)
    return Factor(L1, C, lower_cholesky(m, s.layout.lead_blocks))


def _blocks(theta: jax.Array, s: Structure) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Term-1 factors L1, the sparse L21 core C, and the rest block to factor (lower triangle
    valid).  With dense Schur products C is computed densely and its sparse entries read
    from that (unused by the criterion, whose programs then never compute them)."""
    L1, C, low = _term1_schur(theta, s)
    return L1, C, _rest_matrix(low, theta, s.layout)


def _term1_schur(theta: jax.Array, s: Structure) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Term 1's factors L1, the sparse L21 core C and A_RR - C C' (the Schur complement
    before Λ̃), computed densely where :func:`_dense_term1_pays`, else entry by entry.  A
    reader that does not use C (the criterion) never computes its sparse entries: XLA drops
    them from the program."""
    if _dense_term1_pays(s.layout):
        L1, Cd = _dense_term1(theta, s)
        return L1, _sparse_entries(Cd, s), _dense_schur_low(Cd, s)
    L1, C = _term1(theta, s)
    return L1, C, _schur_low(C, s)


def _dense_c(theta: jax.Array, s: Structure) -> jax.Array:
    """C as the dense (size_rest, k1·r1) matrix, by the rule :func:`_term1_schur` uses."""
    if _dense_term1_pays(s.layout):
        return _dense_term1(theta, s)[1]
    return dense_entries(_term1(theta, s)[1], s)


# Share of the (rest row, term-1 level) grid that C's entries must fill for the dense
# term-1 products to pay: they work on the whole grid, the solve per entry on the entries.
DENSE_TERM1_MIN_FILL = 0.5


def _dense_term1_pays(lay: Layout) -> bool:
    """Whether C is computed densely (:func:`_dense_term1`): with dense Schur products, rest
    terms (crossed models) and entries that fill at least :data:`DENSE_TERM1_MIN_FILL` of
    the grid (fully crossed designs).  With term 1 alone, C's entries are already the dense
    matrix and a solve per entry is as cheap; on a sparse grid (many term-1 levels, each
    meeting few levels of the rest terms) the dense products multiply mostly zeros."""
    return lay.dense_schur and lay.q_rest > 0 and lay.nnz >= DENSE_TERM1_MIN_FILL * lay.size_rest * lay.k1


def _term1_projector(L1: jax.Array, lam1: jax.Array) -> jax.Array:
    """(k1, r1, r1) per-level P = L1⁻¹ Λ1': C's entries of level k are the rows of E_k P_k'.

    The r1 solves per level (one per row of Λ1) run as one unrolled solve over k1·r1
    systems: an r1 times smaller program than a solve per row, the same arithmetic."""
    k, r = L1.shape[0], lam1.shape[0]
    Lr = jnp.broadcast_to(L1[:, None], (k, r, r, r)).reshape(k * r, r, r)
    rows = jnp.broadcast_to(lam1[None], (k, r, r)).reshape(k * r, r)
    return jnp.swapaxes(small_forward(Lr, rows).reshape(k, r, r), 1, 2)


def _dense_term1(theta: jax.Array, s: Structure) -> tuple[jax.Array, jax.Array]:
    """Term 1's factors L1 and C as a dense (size_rest, k1·r1) matrix, computed densely:
    one small product per level in place of a solve per sparse entry (whose gathers and
    their reverse-mode scatters are serial loops on CPU)."""
    lay = s.layout
    k1, r1 = lay.k1, lay.r1
    L1 = _term1_factor(theta, s)
    P = _term1_projector(L1, term1_lambda(lambda_blocks(theta, lay), lay))
    E = dense_entries(_entries(s), s).reshape(lay.size_rest, k1, r1)
    # a broadcast product and sum rather than a batched matrix product: XLA fuses it into
    # one loop, where r1 × r1 products per level would each be a call
    return L1, jnp.sum(E[:, :, None, :] * P[None], axis=-1).reshape(lay.size_rest, k1 * r1)


def _dense_schur_low(Cd: jax.Array, s: Structure) -> jax.Array:
    """A_RR - C C' for dense C (the dense case of :func:`_schur_low`)."""
    return _fixed_rows(s) - gram(Cd)


@jax.custom_jvp
def gram(c: jax.Array) -> jax.Array:
    """c c'.  Its tangent is written T + T' with T = dc c', so reverse mode pulls a
    cotangent H back with one product, (H + H') c, where JAX's rule for the product takes
    two (H c and H' c); derivatives of any order follow from the rule."""
    return c @ c.T


@gram.defjvp
def _gram_jvp(primals, tangents):
    (c,), (dc,) = primals, tangents
    t = dc @ c.T
    return gram(c), t + t.T


def _fixed_rows(s: Structure) -> jax.Array:
    """[Zr X y]'[Zr X y] with y's row last (lower triangle exact); a concatenation, not an
    indexed update, which would be a scatter (a loop on CPU) under the bootstrap's vmap."""
    return jnp.concatenate([jnp.pad(s.arr_fixed, ((0, 0), (0, 1))), s.ry[None, :].astype(s.arr_fixed.dtype)], axis=0)


def _term1(theta: jax.Array, s: Structure) -> tuple[jax.Array, jax.Array]:
    """Term 1's factors L1 and C = [Zr X y]'Z1 Λ1 L1^{-T}, entry-wise (the sparse L21 core)."""
    L1 = _term1_factor(theta, s)
    return L1, small_forward(L1[s.levs], _entries(s) @ term1_lambda(lambda_blocks(theta, s.layout), s.layout))


def _term1_factor(theta: jax.Array, s: Structure) -> jax.Array:
    """Term 1's diagonal blocks Λ1' A11 Λ1 + I = L1 L1', closed form per level."""
    lam1 = term1_lambda(lambda_blocks(theta, s.layout), s.layout)
    m11 = jnp.einsum("ba,kbc,cd->kad", lam1, s.a11, lam1) + jnp.eye(lam1.shape[0])
    return small_cholesky(m11)


def _entries(s: Structure) -> jax.Array:
    """(nnz, r1) entries of [Zr X y]'Z1, y's last."""
    return jnp.concatenate([s.vals_fixed, s.zy1], axis=0)


def _schur_low(C: jax.Array, s: Structure) -> jax.Array:
    """A_RR - C C' on the unscaled rest rows: the Schur complement before Λ̃ (lower triangle exact)."""
    lay = s.layout
    size = lay.size_rest
    if lay.dense_schur:
        return _dense_schur_low(dense_entries(C, s), s)
    if lay.lead:  # pairs target the lead's parts: the dense matrix those parts make
        return _lead_matrix(_low_parts(C, s))
    arr = _fixed_rows(s)
    prods = jnp.sum(C[s.pair_a] * C[s.pair_b], axis=-1)
    schur = jax.ops.segment_sum(prods, s.pair_target, num_segments=size * size, indices_are_sorted=True)
    return arr - schur.reshape(size, size)  # lower triangle only


def dense_entries(C: jax.Array, s: Structure) -> jax.Array:
    """(nnz, r1) entries at (rest row, term-1 level) = (``s.rows``, ``s.levs``), such as C or
    [Zr X y]'Z1, as a dense (size_rest, k1·r1) matrix (zero where no entry)."""
    lay = s.layout
    k1, r1 = lay.k1, lay.r1
    if lay.nnz == lay.size_rest * k1:
        # every rest row meets every level (e.g. one term: [X y]'Z1), and build_structure
        # orders entries by (row, level): C is already that matrix, so no scatter (a loop
        # on CPU, and compile time to spend)
        return C.reshape(lay.size_rest, k1 * r1)
    Cd = jnp.zeros((lay.size_rest, k1, r1), C.dtype).at[s.rows, s.levs].add(C)
    return Cd.reshape(lay.size_rest, k1 * r1)


def _sparse_entries(Cd: jax.Array, s: Structure) -> jax.Array:
    """The (nnz, r1) entries of a dense (size_rest, k1·r1) matrix: the inverse of
    :func:`dense_entries` on its pattern."""
    lay = s.layout
    r1 = lay.r1
    if lay.nnz == lay.size_rest * lay.k1:  # entries ordered by (row, level)
        return Cd.reshape(lay.nnz, r1)
    return Cd.reshape(lay.size_rest, -1, r1)[s.rows, s.levs]


def _rest_matrix(low: jax.Array, theta: jax.Array, lay: Layout) -> jax.Array:
    """Λ̃'(A_RR - C C')Λ̃ + I on the random-effect rows: the rest block to factor."""
    size, q = lay.size_rest, lay.q_rest
    rest_lams = lambda_blocks(theta, lay)[lay.head :]
    unit = jnp.concatenate([jnp.ones(q, theta.dtype), jnp.zeros(size - q, theta.dtype)])
    if all(t.ncols == 1 for t in lay.rest_terms):
        # scalar terms: Λ̃ is diagonal, so Λ̃'MΛ̃ + I fuses into one elementwise pass (the
        # Cholesky factorization reads only the lower triangle, so that is all that is valid)
        lam_vec = _lambda_vector(theta, lay)
        return low * (lam_vec[:, None] * lam_vec[None, :]) + jnp.diag(unit)
    m = jnp.tril(low) + jnp.tril(low, -1).T  # Λ̃ mixes rows within a level: symmetrize first
    m = _apply_lambda_rows(m, rest_lams, lay)
    return _apply_lambda_rows(m.T, rest_lams, lay).T + jnp.diag(unit)


@jax.custom_jvp
def _symmetric_tangent(m: jax.Array) -> jax.Array:
    """Identity on m; its tangent becomes the symmetric matrix that a lower-triangle tangent stands for."""
    return m


@_symmetric_tangent.defjvp
def _symmetric_tangent_jvp(primals, tangents):
    (m,), (dm,) = primals, tangents
    # the primal goes through the wrapper again so that higher derivatives are symmetric too
    return _symmetric_tangent(m), jnp.tril(dm) + jnp.tril(dm, -1).T


def lower_cholesky(m: jax.Array, lead: tuple[int, int] | None = None) -> jax.Array:
    """Cholesky factor of the symmetric matrix given by m's lower triangle (upper never read).

    The primal skips symmetrizing (LAPACK reads one triangle); derivatives see the
    symmetric tangent that JAX's Cholesky rule assumes.

    Args:
        m: (size, size) matrix, lower triangle valid.
        lead: ``Layout.lead_blocks``: (k, r) when m's leading k·r rows form k diagonal
            r × r blocks (zero between blocks), which are then factored block by block and
            only the trailing rows densely: O(k r³ + size² k r) in place of O(size³).

    Returns:
        The dense lower-triangular factor L.
    """
    if lead is None:
        return jax.lax.linalg.cholesky(_symmetric_tangent(m), symmetrize_input=False)
    k, r = lead
    q = k * r
    f = _lead_cholesky(RestParts(diagonal_blocks(m[:q, :q], k, r), m[q:, :q], m[q:, q:]))
    return _lead_matrix(RestParts(f.LD, f.LB, f.LE))


def _lead_matrix(parts: RestParts) -> jax.Array:
    """The dense lower triangle [[blockdiag(D), 0], [B, E]] of a rest block's parts."""
    q, size = parts.B.shape[1], parts.B.shape[1] + parts.E.shape[0]
    top = jnp.concatenate([embed_blocks(parts.D), jnp.zeros((q, size - q), parts.E.dtype)], axis=1)
    return jnp.concatenate([top, jnp.concatenate([parts.B, parts.E], axis=1)], axis=0)


def diagonal_blocks(M: jax.Array, k: int, r: int) -> jax.Array:
    """The k diagonal r × r blocks (k, r, r) of a (k·r, k·r) matrix, as a gather of those
    entries alone (a mask over the whole matrix makes XLA compute all of M's producers)."""
    return jnp.moveaxis(jnp.diagonal(M.reshape(k, r, k, r), axis1=0, axis2=2), -1, 0)


def embed_blocks(B: jax.Array) -> jax.Array:
    """The block-diagonal (k·r, k·r) matrix of blocks B (k, r, r)."""
    k, r = B.shape[0], B.shape[-1]
    return (jnp.eye(k, dtype=B.dtype)[:, None, :, None] * B[:, :, None, :]).reshape(k * r, k * r)


def _block_inverse(L: jax.Array) -> jax.Array:
    """Inverses (k, r, r) of batched lower-triangular blocks L (k, r, r)."""
    r = L.shape[-1]
    if r == 1:
        return 1.0 / L
    eye = jnp.eye(r, dtype=L.dtype)
    return jnp.stack([small_forward(L, jnp.broadcast_to(eye[c], L.shape[:2])) for c in range(r)], axis=-1)


def pattern_inverse(L: jax.Array, c: jax.Array, lead: tuple[int, int] | None) -> jax.Array:
    """G = L⁻ᵀ diag(c) L⁻¹ on the pattern of the factored matrix (see :func:`weighted_inverse`).

    With a block-diagonal lead (``lower_cholesky``'s ``lead``), L = [[L_D, 0], [B, E]] and
    G's lead rows are computed only on the diagonal blocks, where the factored matrix can
    be nonzero (elsewhere zeros): G_EE = G(E), T = B L_D⁻¹, G_ED = -G_EE T and the blocks
    of G_DD = L_D⁻ᵀ diag(c_D) L_D⁻¹ + Tᵀ G_EE T.  Every use of G is an inner product
    with a change of that matrix, so the entries left out never count.
    """
    if lead is None:
        return weighted_inverse(L, c)
    k, r = lead
    q = k * r
    LD = diagonal_blocks(L[:q, :q], k, r)
    G = _lead_inverse(LeadFactor(LD, _block_inverse(LD), L[q:, :q], L[q:, q:]), c)
    top = jnp.concatenate([embed_blocks(G.D), G.B.T], axis=1)
    return jnp.concatenate([top, jnp.concatenate([G.B, G.E], axis=1)], axis=0)


class CriterionTerms(NamedTuple):
    ldL2: jax.Array  # log det of the random-effects part of L, squared
    ldRX2: jax.Array  # log det of the fixed-effects part of L, squared
    pwrss: jax.Array  # penalized residual sum of squares r²


def criterion_terms(f: Factor, lay: Layout) -> CriterionTerms:
    q, p = lay.q_rest, lay.p
    d1 = block_diagonals(f.L1)
    d = jnp.diagonal(f.L)
    ldL2 = 2.0 * (jnp.sum(jnp.log(d1)) + jnp.sum(jnp.log(d[:q])))
    ldRX2 = 2.0 * jnp.sum(jnp.log(d[q : q + p]))
    return CriterionTerms(ldL2, ldRX2, d[-1] ** 2)


def reml_flag(reml: bool) -> jax.Array:
    """The criterion as data: a 0-d array, 1.0 for REML and 0.0 for ML.

    Every function of the criterion takes ``reml`` as a Python bool or as this flag.
    jaxlme's fit and Satterthwaite programs take the flag as an argument, so one
    compiled program serves both criteria (like n, see ``Structure.nobs``).
    """
    return jax.device_put(np.float64(1.0 if reml else 0.0))


def _reml_weight(reml: bool | jax.Array) -> float | jax.Array:
    """1.0 under REML, 0.0 under ML, for a Python bool or a :func:`reml_flag`."""
    if isinstance(reml, (bool, np.bool_)):
        return 1.0 if reml else 0.0
    return jnp.asarray(reml, jnp.float64)


def _dof(s: Structure, reml: bool | jax.Array) -> jax.Array:
    """The degrees of freedom that multiply log σ²: n - p (REML) or n (ML), from the
    structure's ``nobs`` leaf (n is data, not part of a program's key)."""
    return s.nobs - s.nfixed * _reml_weight(reml)


def _row_weights(s: Structure, reml: bool | jax.Array) -> tuple[float, float | jax.Array, jax.Array]:
    """Weights c of 2·log L_ii for the rest block's Z, X and y rows in the criterion.

    ML: ldL2 + n log r²  ->  (1, 0, n);  REML: ldL2 + ldRX2 + (n-p) log r²  ->  (1, 1, n-p).
    """
    return (1.0, _reml_weight(reml), _dof(s, reml))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def weighted_chol_logdiag(m: jax.Array, c: jax.Array, lead=None) -> jax.Array:
    """Σ_i c_i · 2 log L_ii for the Cholesky factor L of m.

    Only m's lower triangle is read (it stands for the symmetric matrix it determines).
    A weighted sum of logdets of m's leading blocks, so its derivative is <G, dm> with
    G = L⁻ᵀ diag(c) L⁻¹ (see weighted_inverse), several times cheaper
    than differentiating through the Cholesky factorization itself.  The weights c (one
    per row, see :func:`_expand`) are an argument, not a constant: the criterion's
    degrees of freedom are data (``Structure.nobs``, :func:`reml_flag`).  ``lead``: see
    :func:`lower_cholesky`.
    """
    return _logdiag(lower_cholesky(m, lead), c)


def _logdiag(L: jax.Array, c: jax.Array) -> jax.Array:
    return 2.0 * jnp.sum(c * jnp.log(jnp.diagonal(L)))


def _expand(weights, dtype) -> jax.Array:
    """Per-row weights from (count, c) runs (c a float or a 0-d array)."""
    return jnp.concatenate([jnp.full(k, c, dtype) for k, c in weights if k])


def _logdiag_jvp(lead, primals, tangents) -> tuple[jax.Array, jax.Array, jax.Array]:
    """L, the weighted log-diagonal sum and its tangent <G, dm> + Σ dc_i · 2 log L_ii."""
    (m, c), (dm, dc) = primals[:2], tangents[:2]
    L = lower_cholesky(m, lead)
    G = pattern_inverse(L, c, lead)
    G_low = 2.0 * jnp.tril(G) - jnp.diag(jnp.diagonal(G))  # m_ij, i > j, stands for both m_ij and m_ji
    logd = 2.0 * jnp.log(jnp.diagonal(L))
    return L, jnp.sum(c * logd), jnp.sum(G_low * dm) + jnp.sum(dc * logd)


@weighted_chol_logdiag.defjvp
def _weighted_chol_logdiag_jvp(lead, primals, tangents):
    _, value, tangent = _logdiag_jvp(lead, primals, tangents)
    return value, tangent


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _logdiag_and_corner(m: jax.Array, c: jax.Array, k: int, lead) -> tuple[jax.Array, jax.Array]:
    """weighted_chol_logdiag and, from the same factorization, the trailing k × k corner of
    L, which carries no derivative (a by-product, as through ``stop_gradient``)."""
    L = lower_cholesky(m, lead)
    return _logdiag(L, c), L[-k:, -k:]


@_logdiag_and_corner.defjvp
def _logdiag_and_corner_jvp(k, lead, primals, tangents):
    L, value, tangent = _logdiag_jvp(lead, primals, tangents)
    corner = L[-k:, -k:]
    return (value, corner), (tangent, jnp.zeros_like(corner))


_INVERSE_BLOCK = 128  # below this size one triangular solve against I is as fast as recursing


@jax.custom_jvp
def weighted_inverse(L: jax.Array, c: jax.Array) -> jax.Array:
    """G = L⁻ᵀ diag(c) L⁻¹ for lower-triangular L (see :func:`_weighted_inverse_fast`).

    Its derivative is that of the direct formula, in plain JAX: the fast path is a
    ``custom_vmap``, which JAX cannot linearize, so this rule is what lets derivatives of
    the objective's derivative (reverse over reverse, ``lax.custom_root``) be taken.
    """
    return _weighted_inverse_fast(L, c)


def _weighted_inverse_jvp(primals, tangents):
    L, c = primals
    dL, dc = tangents
    # G = Y' C Y with Y = L⁻¹: dY = -Y dL Y, so Y' C dY = -G dL Y and dG = that plus its
    # transpose, plus Y' dC Y when c moves
    G = weighted_inverse(L, c)
    out = jnp.zeros_like(G)
    if not (isinstance(dL, SymbolicZero) and isinstance(dc, SymbolicZero)):
        Y = jax.lax.linalg.triangular_solve(L, jnp.eye(L.shape[-1], dtype=L.dtype), left_side=True, lower=True)
    if not isinstance(dL, SymbolicZero):
        half = -(G @ jnp.tril(dL) @ Y)
        out = out + half + half.T
    if not isinstance(dc, SymbolicZero):
        out = out + Y.T @ (dc[:, None] * Y)
    return G, out


weighted_inverse.defjvp(_weighted_inverse_jvp, symbolic_zeros=True)


@custom_vmap
def _weighted_inverse_fast(L: jax.Array, c: jax.Array) -> jax.Array:
    """G = L⁻ᵀ diag(c) L⁻¹ for lower-triangular L, by recursive 2×2 blocking.

    With L = [[A, 0], [B, D]]:  G22 = G(D, c2),  T = B A⁻¹,  G21 = -G22 T,
    G11 = G(A, c1) - Tᵀ G21.  About (5/6) n³ flops, against 3 n³ for forming L⁻¹ with one
    triangular solve and multiplying out.

    Under ``vmap`` the direct formula is used instead: batched, the recursion's triangular
    solves hang jax 0.10.2's CPU runtime (all threads idle) from three levels deep.
    """
    return _weighted_inverse_recursive(L, c)


@_weighted_inverse_fast.def_vmap
def _weighted_inverse_vmap(axis_size, in_batched, L, c):
    L_batched, c_batched = in_batched
    if not (L_batched or c_batched):
        return _weighted_inverse_recursive(L, c), False
    L = L if L_batched else jnp.broadcast_to(L, (axis_size,) + L.shape)
    c = c if c_batched else jnp.broadcast_to(c, (axis_size,) + c.shape)
    eye = jnp.broadcast_to(jnp.eye(L.shape[-1], dtype=L.dtype), L.shape)
    Y = jax.lax.linalg.triangular_solve(L, eye, left_side=True, lower=True)
    return jnp.swapaxes(Y, -1, -2) @ (c[..., :, None] * Y), True


def _weighted_inverse_recursive(L: jax.Array, c: jax.Array) -> jax.Array:
    n = L.shape[0]
    if n <= _INVERSE_BLOCK:
        Y = jax.lax.linalg.triangular_solve(L, jnp.eye(n, dtype=L.dtype), left_side=True, lower=True)
        return Y.T @ (c[:, None] * Y)
    h = n // 2
    A, B, D = L[:h, :h], L[h:, :h], L[h:, h:]
    G22 = _weighted_inverse_recursive(D, c[h:])
    T = jax.lax.linalg.triangular_solve(A, B, left_side=False, lower=True)  # T A = B
    G21 = -(G22 @ T)
    G11 = _weighted_inverse_recursive(A, c[:h]) - T.T @ G21
    return jnp.concatenate([jnp.concatenate([G11, G21.T], 1), jnp.concatenate([G21, G22], 1)], 0)


def objective(theta: jax.Array, s: Structure, reml: bool = True) -> jax.Array:
    """REML criterion (reml=True) or ML deviance at θ, on lme4's scale. Pure and differentiable
    (any order, in θ and in the structure's arrays), by JAX's rules throughout."""
    lay = s.layout
    L1, _, m = _blocks(theta, s)
    rest = weighted_chol_logdiag(m, _expand(_weights(s, reml), m.dtype), lay.lead_blocks)
    return _log_det1(L1) + rest + _constant(s, reml) - s.log_det_w


def objective_and_corner(theta: jax.Array, s: Structure, reml: bool = True) -> tuple[jax.Array, jax.Array]:
    """``objective`` and the fixed-effect corner of the rest block's factor, L[q:, q:] ((p+1)²,
    with y's row last), from the same factorization; the corner carries no derivative.
    For ``value_and_grad(..., has_aux=True)``: :func:`effects_from_corner` turns the corner at
    the optimum into β̂ and σ̂ without factorizing term 1 and the Schur complement again."""
    lay = s.layout
    L1, _, m = _blocks(theta, s)
    rest, corner = _logdiag_and_corner(m, _expand(_weights(s, reml), m.dtype), lay.p + 1, lay.lead_blocks)
    return _log_det1(L1) + rest + _constant(s, reml) - s.log_det_w, corner


def effects_from_corner(corner: jax.Array, s: Structure, reml: bool = True) -> tuple[jax.Array, jax.Array]:
    """β̂ and σ̂ from the corner :func:`objective_and_corner` returns (``s``: the structure it
    was computed on)."""
    return rx_beta(corner, s.layout, 0)[1], jnp.sqrt(corner[-1, -1] ** 2 / _dof(s, reml))


# Rows of the rest block from which jaxlme's own programs use the analytic θ-gradient.
# Reverse-mode autodiff scatters the gradient back through every Schur pair; the analytic
# gradient replaces that by one gather pass.  It pays only with the compiler options those
# programs get (``compiled.fast_compile_options(native_reductions=True)``) -- under
# XLA CPU's defaults its pass is slower -- so plain ``objective`` keeps autodiff.  With
# dense Schur products (no pairs) it gains nothing and costs time.
ANALYTIC_GRADIENT_MIN_SIZE = LARGE_REST


def uses_analytic_gradient(layout: Layout) -> bool:
    """Whether jaxlme's programs differentiate this layout with ``value_and_gradient``."""
    return layout.size_rest >= ANALYTIC_GRADIENT_MIN_SIZE and not layout.dense_schur


def program_flags(layout: Layout) -> dict[str, bool]:
    """``compile_program``'s flags for a program that differentiates ``program_objective``:
    cheap code generation for small models, XLA's own reductions for the analytic pair pass."""
    return {"small": is_small(layout), "native_reductions": uses_analytic_gradient(layout)}


def program_objective(theta: jax.Array, s: Structure, reml: bool = True) -> jax.Array:
    """The objective as jaxlme's compiled programs (fit, bootstrap) differentiate it:
    ``objective_analytic`` where :func:`uses_analytic_gradient`, else ``objective``.
    Same values either way."""
    if uses_analytic_gradient(s.layout):
        return objective_analytic(theta, s, reml)
    return objective(theta, s, reml)


def _weights(s: Structure, reml: bool) -> tuple[tuple[int, float | jax.Array], ...]:
    cz, cx, cy = _row_weights(s, reml)
    return ((s.layout.q_rest, cz), (s.layout.p, cx), (1, cy))


def _criterion_weights(s: Structure, reml: bool) -> Callable[[jax.Array], jax.Array]:
    """The criterion's row weights c as ``weighted_value_and_gradient`` takes them."""
    return lambda L: _expand(_weights(s, reml), L.dtype)


def _log_det1(L1: jax.Array) -> jax.Array:
    return 2.0 * jnp.sum(jnp.log(block_diagonals(L1)))


def _constant(s: Structure, reml: bool) -> jax.Array:
    dof = _dof(s, reml)
    return dof * (1.0 + _LOG2PI - jnp.log(dof))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def objective_analytic(theta: jax.Array, s: Structure, reml: bool = True) -> jax.Array:
    """The objective, with its θ-gradient from ``value_and_gradient`` (same value)."""
    return objective(theta, s, reml)


def _objective_analytic_jvp(reml, primals, tangents):
    theta, s = primals
    dtheta, ds = tangents
    if not all(isinstance(t, SymbolicZero) for t in jax.tree.leaves(ds)):
        # a derivative in the data as well: plain autodiff
        return jax.jvp(
            lambda t, ss: objective(t, ss, reml),
            (theta, s),
            (_instantiate(dtheta, theta), jax.tree.map(_instantiate, ds, s)),
        )
    value, grad = value_and_gradient(theta, s, reml)
    if isinstance(dtheta, SymbolicZero):
        return value, jnp.zeros_like(value)
    return value, jnp.dot(grad, dtheta)


objective_analytic.defjvp(_objective_analytic_jvp, symbolic_zeros=True)


def _instantiate(t, primal):
    if not isinstance(t, SymbolicZero):
        return t
    primal = jnp.asarray(primal)
    if jnp.issubdtype(primal.dtype, jnp.inexact):
        return jnp.zeros(primal.shape, primal.dtype)
    return np.zeros(primal.shape, jax.dtypes.float0)


def value_and_gradient(theta: jax.Array, s: Structure, reml: bool = True) -> tuple[jax.Array, jax.Array]:
    """The objective and its θ-gradient from one factorization, without reverse-mode
    through the Schur pairs (see :func:`weighted_value_and_gradient`)."""
    value, grad, _ = weighted_value_and_gradient(theta, s, _criterion_weights(s, reml))
    return value + _constant(s, reml) - s.log_det_w, grad


def weighted_value_and_gradient(
    theta: jax.Array, s: Structure, weights: Callable[[jax.Array], jax.Array]
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """f = log|L1|² + Σ c_i·2 log L_ii(m), its θ-gradient with c held fixed, and the rest
    block's factor L; c = ``weights(L)`` (the objective's row weights, or weights read off
    L itself, as the Satterthwaite deviance's pwrss/σ²).

    With f = log|L1|² + Σ c_i·2 log L_ii(m) + const, m = Λ̃'(A_RR − S)Λ̃ + I and
    S = Σ over pairs of entries sharing a term-1 level of v_a' W_k v_b, W_k = Λ1 M_k⁻¹ Λ1':
    ∂f/∂m = G (``weighted_inverse``); its pull-back through Λ̃ gives the rest terms'
    derivatives and H = ∂f/∂(A_RR − S); term 1's derivative is then
    −Σ_pairs H_t v_a' ∂W_k v_b, one gather pass over the pairs with ∂W_k from forward mode
    on the k1 small blocks, in place of reverse-mode autodiff's scatter back through
    every pair.

    Two halves, :func:`weighted_value_pieces` and :func:`gradient_from_pieces`, so that an
    optimizer can take the gradient at a line search's accepted point from the
    factorization the search already made.
    """
    value, pieces = weighted_value_pieces(theta, s, weights)
    L = pieces.L.LE if isinstance(pieces.L, LeadFactor) else pieces.L  # same trailing rows
    return value, gradient_from_pieces(theta, s, pieces, weights), L


class Pieces(NamedTuple):
    """What the gradient needs from an evaluation at θ: two size_rest² matrices, or with a
    block-diagonal lead and sparse Schur pairs, their parts (:class:`RestParts`)."""

    low: jax.Array | RestParts  # A_RR − S, the Schur complement before Λ̃ (lower triangle exact)
    L: jax.Array | LeadFactor  # lower Cholesky factor of the rest block m


class RestParts(NamedTuple):
    """A rest block whose leading k·r rows are k diagonal r × r blocks (``Layout.lead``),
    held as its three nonzero parts, so that no step touches the zeros between blocks."""

    D: jax.Array  # (k, r, r) the lead's diagonal blocks (lower triangles valid)
    B: jax.Array  # (mo, k·r) the trailing rows against the lead's columns
    E: jax.Array  # (mo, mo) the trailing rows' square block (lower triangle valid)


class LeadFactor(NamedTuple):
    """Cholesky factor [[blockdiag(LD), 0], [LB, LE]] of a :class:`RestParts` matrix."""

    LD: jax.Array  # (k, r, r)
    Dinv: jax.Array  # (k, r, r) LD⁻¹
    LB: jax.Array  # (mo, k·r)
    LE: jax.Array  # (mo, mo)


def _low_parts(C: jax.Array, s: Structure) -> RestParts:
    """A_RR − C C' in lead parts (sparse Schur pairs targeting the parts; see
    ``structure.lead_sizes``)."""
    lay = s.layout
    k, r = lay.lead_blocks
    q = k * r
    nd, nb, ne = lead_sizes(lay)
    mo = lay.size_rest - q
    arr, ry = s.arr_fixed, s.ry.astype(s.arr_fixed.dtype)
    prods = jnp.sum(C[s.pair_a] * C[s.pair_b], axis=-1)
    schur = jax.ops.segment_sum(prods, s.pair_target, num_segments=nd + nb + ne, indices_are_sorted=True)
    D = diagonal_blocks(arr[:q, :q], k, r) - schur[:nd].reshape(k, r, r)
    B = jnp.concatenate([arr[q:, :q], ry[None, :q]], axis=0) - schur[nd : nd + nb].reshape(mo, q)
    E = jnp.concatenate([jnp.pad(arr[q:, q:], ((0, 0), (0, 1))), ry[None, q:]], axis=0)
    return RestParts(D, B, E - schur[nd + nb :].reshape(mo, mo))


def _symmetric_blocks(D: jax.Array) -> jax.Array:
    """Blocks (k, r, r) made symmetric from their lower triangles."""
    r = D.shape[-1]
    low = D * np.tril(np.ones((r, r)))
    return low + jnp.swapaxes(low * (1.0 - np.eye(r)), -1, -2)


def _rest_parts(low: RestParts, theta: jax.Array, lay: Layout) -> RestParts:
    """:func:`_rest_matrix` on lead parts: Λ̃'(A_RR − C C')Λ̃ + I on the random rows."""
    k, r = lay.lead_blocks
    q, size = k * r, lay.size_rest
    mo = size - q
    lams = lambda_blocks(theta, lay)[lay.head :]
    lam2, others = lams[0], lay.rest_terms[1:]
    q_o = lay.q_rest - q  # random rows among the trailing ones
    unit = jnp.concatenate([jnp.ones(q_o, theta.dtype), jnp.zeros(mo - q_o, theta.dtype)])
    if r == 1:
        D = low.D * lam2[0, 0] ** 2 + 1.0
        B = low.B * lam2[0, 0]
    else:
        D = jnp.einsum("ba,kbc,cd->kad", lam2, _symmetric_blocks(low.D), lam2) + jnp.eye(r, dtype=theta.dtype)
        B = jnp.sum(low.B.reshape(mo, k, r, 1) * lam2, axis=2).reshape(mo, q)
    if all(t.ncols == 1 for t in others):
        lam_o = jnp.concatenate(
            [jnp.full(t.nlevels, lam[0, 0]) for t, lam in zip(others, lams[1:])] + [jnp.ones(mo - q_o, theta.dtype)]
        )
        return RestParts(D, B * lam_o[:, None], low.E * (lam_o[:, None] * lam_o[None, :]) + jnp.diag(unit))
    E = jnp.tril(low.E) + jnp.tril(low.E, -1).T
    E = _lambda_rows(_lambda_rows(E, lams[1:], others).T, lams[1:], others).T
    return RestParts(D, _lambda_rows(B, lams[1:], others), E + jnp.diag(unit))


def _lead_cholesky(m: RestParts) -> LeadFactor:
    """Cholesky factor of a rest block in lead parts: block by block, then the trailing square."""
    LD = small_cholesky(m.D)
    Dinv = _block_inverse(LD)
    mo, q = m.B.shape
    k, r = Dinv.shape[0], Dinv.shape[-1]
    LB = jnp.sum(m.B.reshape(mo, k, 1, r) * Dinv, axis=-1).reshape(mo, q)  # B LD⁻ᵀ per block
    E = m.E - LB @ LB.T
    # a one-row trailing square (the GLMM's y row alone) in closed form: LAPACK's calls on
    # 1 × 1 matrices fail to compile inside the GLMM's programs (jaxlib 0.10.2)
    LE = small_cholesky(E[None])[0] if mo <= _CLOSED_FORM else lower_cholesky(E)
    return LeadFactor(LD, Dinv, LB, LE)


_CLOSED_FORM = 1  # trailing squares up to this size are factored and inverted in closed form


def _lead_logdiag(f: LeadFactor, c: jax.Array) -> jax.Array:
    """Σ c_i · 2 log L_ii over the lead's blocks and the trailing factor."""
    q = f.LB.shape[1]
    lead = jnp.sum(c[:q] * jnp.log(block_diagonals(f.LD).reshape(-1)))
    return 2.0 * (lead + jnp.sum(c[q:] * jnp.log(jnp.diagonal(f.LE))))


def _lead_inverse(f: LeadFactor, c: jax.Array) -> RestParts:
    """G = L⁻ᵀ diag(c) L⁻¹ on the lead parts (see :func:`pattern_inverse`): with T = LB LD⁻¹,
    G_E = G(LE), G_B = -G_E T and the blocks G_D = LD⁻ᵀ diag(c_D) LD⁻¹ - Tᵀ G_B."""
    mo, q = f.LB.shape
    k, r = f.Dinv.shape[0], f.Dinv.shape[-1]
    if mo <= _CLOSED_FORM:
        Einv = _block_inverse(f.LE[None])[0]
        GE = Einv.T @ (c[q:, None] * Einv)
    else:
        GE = weighted_inverse(f.LE, c[q:])
    T = jnp.sum(f.LB.reshape(mo, k, r, 1) * f.Dinv, axis=2)  # LB LD⁻¹ per block
    GB = -(GE @ T.reshape(mo, q))
    cD = c[:q].reshape(k, r, 1, 1)
    GD = jnp.sum(f.Dinv[:, :, :, None] * cD * f.Dinv[:, :, None, :], axis=1) - jnp.sum(
        T[:, :, :, None] * GB.reshape(mo, k, 1, r), axis=0
    )
    return RestParts(GD, GB, GE)


def _lower_cotangent(G: RestParts) -> RestParts:
    """G as the cotangent of a lower-triangle-valid matrix: 2 below the diagonal, 1 on it,
    0 above (an entry below the diagonal stands for itself and its mirror)."""
    r, mo = G.D.shape[-1], G.E.shape[0]
    low_d = np.tril(np.full((r, r), 2.0), -1) + np.eye(r)
    low_e = jnp.tril(jnp.full((mo, mo), 2.0, G.E.dtype), -1) + jnp.eye(mo, dtype=G.E.dtype)
    return RestParts(G.D * low_d, 2.0 * G.B, G.E * low_e)


def weighted_value_pieces(
    theta: jax.Array, s: Structure, weights: Callable[[jax.Array], jax.Array]
) -> tuple[jax.Array, Pieces]:
    """f at θ (see :func:`weighted_value_and_gradient`) and the pieces its gradient reuses."""
    lay = s.layout
    if _lead_parts(lay):
        L1, C = _term1(theta, s)
        low = _low_parts(C, s)
        f = _lead_cholesky(_rest_parts(low, theta, lay))
        return _log_det1(L1) + _lead_logdiag(f, weights(f.LE)), Pieces(low, f)
    L1, _, low = _term1_schur(theta, s)
    L = lower_cholesky(_rest_matrix(low, theta, lay), lay.lead_blocks)
    value = _log_det1(L1) + 2.0 * jnp.sum(weights(L) * jnp.log(jnp.diagonal(L)))
    return value, Pieces(low, L)


def _lead_parts(lay: Layout) -> bool:
    """Whether evaluations work on the rest block's lead parts (a lead and Schur pairs)."""
    return bool(lay.lead) and not lay.dense_schur


def gradient_from_pieces(
    theta: jax.Array, s: Structure, pieces: Pieces, weights: Callable[[jax.Array], jax.Array]
) -> jax.Array:
    """The θ-gradient of :func:`weighted_value_pieces`'s f, from its pieces at the same θ."""
    lay = s.layout
    size = lay.size_rest
    low, L = pieces
    if _lead_parts(lay):
        _, pull_back = jax.vjp(lambda lo, th: _rest_parts(lo, th, lay), low, theta)
        Hp, grad_rest = pull_back(_lower_cotangent(_lead_inverse(L, weights(L.LE))))
        H = jnp.concatenate([Hp.D.reshape(-1), Hp.B.reshape(-1), Hp.E.reshape(-1)])[s.pair_target]
        grad_det1 = jax.grad(lambda th: _log_det1(_term1_factor(th, s)))(theta)
        return grad_rest + grad_det1 - _schur_gradient(H, theta, s)
    c = weights(L)
    scalar = all(t.ncols == 1 for t in lay.rest_terms)
    # ∂f/∂m on the lower triangle: m_ij, i > j, stands for both m_ij and m_ji
    row = jax.lax.broadcasted_iota(jnp.int32, (size, size), 0)
    col = jax.lax.broadcasted_iota(jnp.int32, (size, size), 1)
    G_low = jnp.where(row > col, 2.0, jnp.where(row == col, 1.0, 0.0)) * pattern_inverse(L, c, lay.lead_blocks)
    if scalar:
        # Λ̃ diagonal: m = low ⊙ λλ' + I, so H = G_low ⊙ λλ' and ∂f/∂λ_i = (Kλ + K'λ)_i
        # with K = G_low ⊙ low (written out: cheaper than the generic pull-back)
        lam = _lambda_vector(theta, lay)
        K = G_low * low
        u = K @ lam + lam @ K
        sums, start = [], 0
        for t in lay.rest_terms:
            sums.append(jnp.sum(u[start : start + t.nlevels])[None])
            start += t.nlevels
        n1 = theta.shape[0] - len(lay.rest_terms)
        grad_rest = jnp.concatenate([jnp.zeros(n1, theta.dtype)] + sums)
        if lay.dense_schur:
            H = G_low * (lam[:, None] * lam[None, :])
        else:
            t = s.pair_target
            H = G_low.reshape(-1)[t] * lam[t // size] * lam[t % size]
    else:
        _, pull_back = jax.vjp(lambda lo, th: _rest_matrix(lo, th, lay), low, theta)
        H, grad_rest = pull_back(G_low)
        if not lay.dense_schur:
            H = H.reshape(-1)[s.pair_target]
    grad_det1 = jax.grad(lambda th: _log_det1(_term1_factor(th, s)))(theta)
    return grad_rest + grad_det1 - _schur_gradient(H, theta, s)


def objective_pieces(theta: jax.Array, s: Structure, reml: bool = True) -> tuple[jax.Array, Pieces]:
    """The objective (lme4's scale) and the pieces :func:`objective_gradient` reuses."""
    value, pieces = weighted_value_pieces(theta, s, _criterion_weights(s, reml))
    return value + _constant(s, reml) - s.log_det_w, pieces


def objective_gradient(theta: jax.Array, s: Structure, pieces: Pieces, reml: bool = True) -> jax.Array:
    """The objective's θ-gradient from :func:`objective_pieces` at the same θ."""
    return gradient_from_pieces(theta, s, pieces, _criterion_weights(s, reml))


def _lambda_vector(theta: jax.Array, lay: Layout) -> jax.Array:
    """Diagonal of Λ̃ (rest terms all scalar): θ_j on term j's rows, 1 on X and y."""
    rest_lams = lambda_blocks(theta, lay)[lay.head :]
    return jnp.concatenate(
        [jnp.full(t.nlevels, lam[0, 0]) for t, lam in zip(lay.rest_terms, rest_lams)]
        + [jnp.ones(lay.size_rest - lay.q_rest, theta.dtype)]
    )


def _schur_gradient(H: jax.Array, theta: jax.Array, s: Structure) -> jax.Array:
    """∂/∂θ of <H, S(θ)> for a fixed H whose upper triangle is zero: the full matrix for
    dense products, else its values at the pair targets."""
    lay = s.layout
    if lay.dense_schur:  # dense products: reverse mode is matrix products, no scatter

        def inner(th):
            return jnp.sum(H * gram(_dense_c(th, s)))

        return jax.grad(inner)(theta)
    n1 = sum(t.ntheta for t in lay.terms[: lay.head])

    def W(th1):  # (k1, r1, r1): Λ1 M_k⁻¹ Λ1' = P'P with P = L1⁻¹ Λ1'
        th = jnp.concatenate([th1, theta[n1:]])  # W reads term 1's entries only
        P = _term1_projector(_term1_factor(th, s), term1_lambda(lambda_blocks(th, lay), lay))
        return jnp.einsum("kic,kid->kcd", P, P)

    dW = jax.jacfwd(W)(theta[:n1])  # (k1, r1, r1, n1)
    v = _entries(s)
    va, vb = v[s.pair_a], v[s.pair_b]
    outer = va[:, :, None] * vb[:, None, :]  # (npairs, r1, r1)
    per_pair = jnp.sum(outer[..., None] * dW[s.levs[s.pair_a]], axis=(1, 2))  # (npairs, n1)
    g1 = jnp.sum(H[:, None] * per_pair, axis=0)
    return jnp.concatenate([g1, jnp.zeros(theta.shape[0] - n1, theta.dtype)])


def unprofiled_deviance(varpar: jax.Array, struct: Structure, reml: bool = True) -> jax.Array:
    """Deviance (REML criterion or -2 logLik) as a function of (θ, σ), not profiled over σ:
    Satterthwaite's and the profile's criterion.

    The rest block's log-determinants and log r² are weighted sums of 2 log L_ii, so they
    go through ``weighted_chol_logdiag`` and its cheap analytic derivative rather than
    through the Cholesky factorization (a much faster Hessian on large models).
    """
    theta, sigma = varpar[:-1], varpar[-1]
    lay = struct.layout
    L1, _, mat = _blocks(theta, struct)
    ld1 = _log_det1(L1)
    q, p = lay.q_rest, lay.p
    lead = lay.lead_blocks
    logdets = weighted_chol_logdiag(mat, _expand(((q, 1.0), (p, _reml_weight(reml)), (1, 0.0)), mat.dtype), lead)
    log_pwrss = weighted_chol_logdiag(mat, _expand(((q, 0.0), (p, 0.0), (1, 1.0)), mat.dtype), lead)
    m = _dof(struct, reml)
    ld_w = struct.log_det_w  # prior weights' Σ log w (lme4's ldW)
    return ld1 + logdets + m * (_LOG2PI + 2.0 * jnp.log(sigma)) + jnp.exp(log_pwrss) / sigma**2 - ld_w


def unprofiled_value_and_grad(
    varpar: jax.Array, struct: Structure, reml: bool = True
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """:func:`unprofiled_deviance` and its gradient in (θ, σ) without reverse mode through
    the Schur pairs (large sparse-Schur models; see :func:`weighted_value_and_gradient`),
    and R_X (Var(β̂) = σ² (R_X R_X')⁻¹) from the same factorization.

    The deviance is log|L1|² + Σ_{Z,X rows} c_i·2 log L_ii + pwrss/σ² + m log(2πσ²), and
    d(pwrss/σ²) = (pwrss/σ²)·d(2 log L_yy): the analytic gradient with y's weight pwrss/σ².
    """
    theta, sigma = varpar[:-1], varpar[-1]
    lay = struct.layout
    q, p = lay.q_rest, lay.p
    cz, cx, m = _row_weights(struct, reml)  # m: the dof that multiplies log σ²

    def weights(L):
        return _expand(((q, cz), (p, cx), (1, L[-1, -1] ** 2 / sigma**2)), L.dtype)

    value, grad_theta, L = weighted_value_and_gradient(theta, struct, weights)
    pwrss = L[-1, -1] ** 2
    value = value - pwrss / sigma**2 * jnp.log(pwrss) + pwrss / sigma**2 + m * (_LOG2PI + 2.0 * jnp.log(sigma))
    value = value - struct.log_det_w
    grad_sigma = 2.0 * m / sigma - 2.0 * pwrss / sigma**3
    return value, jnp.concatenate([grad_theta, grad_sigma[None]]), L[-p - 1 : -1, -p - 1 : -1]


class Effects(NamedTuple):
    beta: jax.Array  # (p,) fixed effects
    b: tuple[jax.Array, ...]  # per term (k_t, r_t) conditional modes Λ_t u_t
    u: tuple[jax.Array, ...]  # per term (k_t, r_t) spherical modes
    sigma: jax.Array
    RX: jax.Array  # (p, p) lower factor with vcov(β) = σ² (RX RX')^{-1}
    pwrss: jax.Array
    ldL2: jax.Array
    ldRX2: jax.Array


def fixef_sigma(theta: jax.Array, s: Structure, reml: bool = True) -> tuple[jax.Array, jax.Array]:
    """β̂ and σ̂ at θ alone (what a bootstrap replicate keeps): the fixed-effect rows are
    the last of the rest block, so β needs only its p × p corner, RX' β = L_yX', and not
    the conditional modes :func:`solve_effects` back-substitutes (a smaller program)."""
    L = factorize(theta, s).L
    return effects_from_corner(L[s.layout.q_rest :, s.layout.q_rest :], s, reml)


def rx_beta(L: jax.Array, lay: Layout, q: int | None = None) -> tuple[jax.Array, jax.Array]:
    """RX (the fixed-effect corner of the rest block's factor L, whose fixed-effect rows
    start at ``q``, by default q_rest) and β̂ = RX'⁻¹ L_yX'."""
    q, p = lay.q_rest if q is None else q, lay.p
    RX = L[q : q + p, q : q + p]
    return RX, jax.scipy.linalg.solve_triangular(RX, L[-1, q : q + p], lower=True, trans="T")


def solve_effects(theta: jax.Array, s: Structure, reml: bool = True) -> Effects:
    """Fixed effects, conditional modes and σ at θ, from the blocked factor."""
    lay = s.layout
    f = factorize(theta, s)
    ct = criterion_terms(f, lay)
    q, p, size = lay.q_rest, lay.p, lay.size_rest
    Lm = f.L[: size - 1, : size - 1]
    ly = f.L[size - 1, : size - 1]
    ur_beta = jax.scipy.linalg.solve_triangular(Lm, ly, lower=True, trans="T")
    beta = ur_beta[q:]
    lams = lambda_blocks(theta, lay)
    h = lay.head
    # back-substitute term 1: L1' u1 = C_y - C_rest' Λ̃ [u_rest; β]
    t_vec = _apply_lambda_rows(ur_beta[:, None], [lam.T for lam in lams[h:]], lay)[:, 0]
    k1 = lay.k1
    nfix = lay.nnz - k1
    contrib = f.C[:nfix] * t_vec[s.rows[:nfix], None]
    rhs = f.C[nfix:] - jax.ops.segment_sum(contrib, s.levs[:nfix], num_segments=k1)
    u1 = small_backward(f.L1, rhs)
    # the term-1 block's columns are the head terms' columns side by side
    us = lay.split_head(u1, axis=1)
    start = 0
    for t in lay.rest_terms:
        size_t = t.nlevels * t.ncols
        us.append(ur_beta[start : start + size_t].reshape(t.nlevels, t.ncols))
        start += size_t
    bs = tuple(u @ lam.T for u, lam in zip(us, lams))
    sigma = jnp.sqrt(ct.pwrss / _dof(s, reml))
    RX = f.L[q : q + p, q : q + p]
    return Effects(beta, bs, tuple(us), sigma, RX, ct.pwrss, ct.ldL2, ct.ldRX2)
