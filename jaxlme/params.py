"""The variance parameters: their names, their scale and where the optimizer starts.

θ holds, term by term, the lower-triangular factor Λ of each random-effects term's
covariance relative to σ² (lme4's order: column-major lower triangle).  This module names
those parameters the way lme4 does (``sd_Days|Subject``, ``cor_Days.(Intercept)|Subject``,
term labels made unique as lme4's ``make.unique``), scales them so the optimizer sees
unit-scale columns, and computes starting values.  Everything that names or starts θ reads
it, so the fit, the bootstrap, profiles and the statsmodels front end agree.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .structure import unique_keys

__all__ = [
    "group_labels",
    "varpar_name",
    "vc_values",
    "vc_frame",
    "theta_from_vc",
    "theta_scale",
    "moment_start",
    "crossproducts_start",
    "phi_kinds",
    "psi_to_phi",
    "phi_to_psi",
    "COR_MAX",
]


def group_labels(terms) -> list[str]:
    """lme4's label of each random-effects term (``as.data.frame(VarCorr(fit))$grp``).

    The grouping factor's name, with ``.1``, ``.2``, ... appended to its later terms (R's
    ``make.unique``): ``(1 | g) + (0 + x | g)`` gives ``g`` and ``g.1``, and ``(x || g)``
    (split into those two terms) the same.  ``terms`` are the design's terms, in lme4's
    order.  Every name of a variance parameter (varcorr, confint, bootstrap) is built
    from these labels, so a factor's terms are never merged.

    Args:
        terms: ``Design.terms`` (anything with a ``name``), in order.

    Returns:
        One label per term.
    """
    seen: dict[str, int] = {}
    taken = {t.name for t in terms}
    out = []
    for t in terms:
        k = seen.get(t.name, 0)
        label = t.name
        if k:
            label = f"{t.name}.{k}"
            while label in taken:  # make.unique also skips names already in use
                k += 1
                label = f"{t.name}.{k}"
        seen[t.name] = k + 1
        taken.add(label)
        out.append(label)
    return out


def varpar_name(label: str, columns, i: int, j: int) -> str:
    """Name of one variance parameter of a term: ``sd_x|g`` (i == j) or ``cor_y.x|g`` for
    the correlation of columns i > j (lme4's ``confint(oldNames = FALSE)`` form, with the
    term's label from :func:`group_labels`, so ``sd_Days|Subject.1`` stays distinct)."""
    if i == j:
        return f"sd_{columns[i]}|{label}"
    return f"cor_{columns[i]}.{columns[j]}|{label}"


def vc_values(layout, theta, sigma, undefined: float = np.nan) -> np.ndarray:
    """Variance parameters on the data's scale, in θ's order: the SD σ·|Λ_t row i| where θ
    holds a diagonal entry (i, i), the correlation of columns i and j where it holds (i, j).

    Args:
        layout: the model's layout.
        theta: (..., ntheta) θ (any leading batch shape).
        sigma: (...) residual SDs.
        undefined: the correlation where an SD is 0 (lme4 prints NaN there).

    Returns:
        (..., ntheta) SDs and correlations, named by :func:`varpar_name` in this order.
    """
    theta = np.asarray(theta, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    out = np.empty(theta.shape)
    k = 0
    for tl, lam in zip(layout.terms, layout.lambdas(theta)):
        cov = lam @ np.swapaxes(lam, -1, -2)
        sd = np.sqrt(np.maximum(np.diagonal(cov, axis1=-2, axis2=-1), 0.0))
        for i, j in tl.theta_index:
            if i == j:
                out[..., k] = sigma * sd[..., i]
            else:
                den = sd[..., i] * sd[..., j]
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[..., k] = np.where(den > 0, cov[..., i, j] / np.where(den > 0, den, 1.0), undefined)
            k += 1
    return out


def vc_frame(layout, terms, labels, theta: np.ndarray, sigma: np.ndarray) -> pd.DataFrame:
    """SDs and correlations of every random-effects term, and σ, one row per (θ, σ): each
    term's SDs, then its correlations (column-major, as lme4's ``VarCorr``), named by
    :func:`varpar_name`.

    Args:
        layout: the model's layout.
        terms: the design's terms (their ``columns``), in the layout's order.
        labels: the terms' labels (:func:`group_labels`).
        theta: (n, ntheta) θ.
        sigma: (n,) residual SDs.

    Returns:
        DataFrame with one column per variance parameter and ``sigma``.
    """
    values = vc_values(layout, theta, sigma)
    cols: dict[str, np.ndarray] = {}
    k = 0
    for tl, term, label in zip(layout.terms, terms, labels):
        at = {ij: k + m for m, ij in enumerate(tl.theta_index)}
        k += len(tl.theta_index)
        names, r = list(term.columns), tl.ncols
        for i in range(r):
            cols[varpar_name(label, names, i, i)] = values[:, at[(i, i)]]
        if tl.correlated:
            for j in range(r):
                for i in range(j + 1, r):
                    cols[varpar_name(label, names, i, j)] = values[:, at[(i, j)]]
    cols["sigma"] = np.asarray(sigma, dtype=float)
    return pd.DataFrame(cols)


def theta_from_vc(vc: jax.Array, sigma: jax.Array, layout) -> tuple[jax.Array, jax.Array]:
    """The inverse of :func:`vc_values` on the device (differentiable): Λ_t = diag(s)
    chol(R) / σ from the SDs s and correlations R of each term, in θ's order.

    Args:
        vc: (ntheta,) SDs and correlations in θ's order.
        sigma: the residual SD.
        layout: the model's layout.

    Returns:
        (θ, σ).
    """
    parts, start = [], 0
    for tl in layout.terms:
        idx = tl.theta_index
        vals = vc[start : start + len(idx)]
        start += len(idx)
        r = tl.ncols
        s = jnp.stack([vals[k] for k, (i, j) in enumerate(idx) if i == j])
        if tl.correlated and r > 1:
            R = jnp.eye(r, dtype=vc.dtype)
            for k, (i, j) in enumerate(idx):
                if i != j:
                    R = R.at[i, j].set(vals[k]).at[j, i].set(vals[k])
            if r == 2:  # closed form: no Cholesky to differentiate through
                rho = R[1, 0]
                C = jnp.array([[1.0, 0.0], [0.0, 0.0]], vc.dtype)
                C = C.at[1, 0].set(rho).at[1, 1].set(jnp.sqrt(1.0 - rho**2))
            else:
                C = jnp.linalg.cholesky(R)
            lam = s[:, None] * C / sigma
        else:
            lam = jnp.diag(s) / sigma
        parts.append(jnp.stack([lam[i, j] for i, j in idx]))
    return jnp.concatenate(parts), sigma


def theta_scale(zz, n, layout, xp=np) -> np.ndarray:
    """Per-θ scale 1/rms(Z column of Λ's row), so the optimizer sees unit-scale columns.

    Λ = S⁻¹Λ̃ keeps Λ lower triangular, so θ = θ̃·scale elementwise with the same bounds.

    Args:
        zz: per term, Σ Z² of each column over the rows (unweighted).
        n: the rows.
        layout: the model's layout.
        xp: the array namespace: ``numpy``, or ``jax.numpy`` inside a traced function.

    Returns:
        (ntheta,) scales.
    """
    scales = []
    for s, tl in zip(zz, layout.terms):
        rms = xp.sqrt(xp.asarray(s) / n)
        rms = xp.where(xp.isfinite(rms) & (rms > 0), rms, 1.0)
        scales += [1.0 / rms[i] for i, _ in tl.theta_index]
    return xp.stack(scales) if scales else xp.zeros(0)


def moment_start(design, layout, theta_scale: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Starting θ: method-of-moments variances when every term is scalar, else
    Λ = diag(1/rms(Z)) (lme4's and MixedModels.jl's Λ = I, in unit-scale columns).

    For a term t with column z, each level's least-squares effect on the OLS residuals e,
    b̂_g = Σz·e / Σz², spread around their mean (Σz²-weighted) by about
    Σ_j c_tj τ_j² + σ²·(k_t - 1)/Σ_g Σz²: every term j's effects reach b̂_g through the
    rows g shares with j's levels (:func:`_coupling`; c_tt ≈ 1 - 1/k_t, 1/B for a factor
    whose levels each hold B of t's, 0 for a balanced crossed factor or an orthogonal
    column of the same factor), and mean(e²) ≈ σ² + Σ_j τ_j² mean(z_j²).  Solved for τ²
    and σ² (negative solutions held at their floor), they give θ = τ/σ, kept at least 0.1
    so the optimizer starts inside.  The OLS fit's own shrinkage of e is ignored, so this is a start, not an
    estimate: close enough to save BFGS most of its evaluations.  Anything non-finite
    falls back to Λ = I.

    Args:
        design: the model's design (X, and each term's Z column and level index).
        layout: the model's layout.
        theta_scale: per-θ scale (:func:`theta_scale`).
        y: the response (√w-scaled for weighted fits).

    Returns:
        (ntheta,) starting θ.
    """
    start = layout.theta_start * theta_scale
    if any(t.ncols > 1 for t in layout.terms):
        # moments for the scalar terms beside Λ = I for the others start worse (measured:
        # benchmarks/bench_big.py)
        return start
    y = np.asarray(y, dtype=float)
    X = design.X
    resid = y - X @ np.linalg.lstsq(X, y, rcond=None)[0] if X.shape[1] else y - y.mean()
    total = float(np.mean(resid**2))
    sums, terms = [], design.terms
    for term in terms:
        z = term.Z[:, 0]
        sums.append(
            (
                np.bincount(term.index, weights=z * z, minlength=term.nlevels),
                np.bincount(term.index, weights=z * resid, minlength=term.nlevels),
            )
        )

    met: dict[tuple[int, int], tuple] = {}  # per pair of factors: the level pairs, shared by their terms

    def pair(t: int, j: int):  # (g, l, (Z_t'Z_j)_gl) over the level pairs the rows meet
        a, b = terms[t], terms[j]
        zz = a.Z[:, 0] * b.Z[:, 0]
        if a.index is b.index or np.array_equal(a.index, b.index):  # one factor: g meets g only
            levels = np.arange(a.nlevels)
            return levels, levels, np.bincount(a.index, weights=zz, minlength=a.nlevels)
        key = (id(a.index), id(b.index))  # the terms of one factor share its codes
        if key not in met:
            keys, inverse = unique_keys(a.index * b.nlevels + b.index, a.nlevels * b.nlevels)
            met[key] = (keys // b.nlevels, keys % b.nlevels, inverse)
        g, l_, inverse = met[key]
        return g, l_, np.bincount(inverse, weights=zz, minlength=len(g))

    theta = _moment_solve(total, sums, _coupling(sums, pair), len(y))
    return start if theta is None else theta


def crossproducts_start(cp, layout, theta_scale: np.ndarray) -> np.ndarray:
    """:func:`moment_start` from summed cross-products (a model without rows): the same
    moment equations, with the OLS residuals' sums Z'e = Z'y − Z'Xβ̂ and e'e read off the
    sums of the (centred, √w-scaled) rows.  Equal to :func:`moment_start` up to rounding.

    Args:
        cp: the model's summed cross-products (``jaxlme.structure.CrossProducts``).
        layout: the model's layout.
        theta_scale: per-θ scale (:func:`theta_scale`).

    Returns:
        (ntheta,) starting θ.
    """
    start = layout.theta_start * theta_scale
    if any(t.ncols > 1 for t in layout.terms) or cp.p == 0:
        return start
    q, p, k1 = layout.q_rest, cp.p, layout.k1
    XtX, Xty = cp.arr[q:, q:], cp.ry[q : q + p]
    try:
        beta = np.linalg.solve(XtX, Xty)
    except np.linalg.LinAlgError:
        return start
    total = float(cp.ry[-1] - beta @ Xty) / cp.n
    rows, levs = cp.keys // k1, cp.keys % k1
    sel = rows >= q
    moments = []
    for j in range(layout.head):  # the term-1 block's columns, one scalar term each
        zx1 = np.zeros((k1, p))  # Z1'X per level
        zx1[levs[sel], rows[sel] - q] = cp.vals[sel, j]
        moments.append((cp.a11[:, j, j], cp.zy1[:, j] - zx1 @ beta))
    for t in layout.rest_terms:
        idx = t.offset + np.arange(t.nlevels)
        moments.append((np.diag(cp.arr)[idx], cp.ry[idx] - cp.arr[np.ix_(idx, np.arange(q, q + p))] @ beta))
    h = layout.head
    offsets = [None] * h + [t.offset for t in layout.rest_terms]

    def pair(t: int, j: int):  # (g, l, (Z_t'Z_j)_gl) from the blocks of the sums
        if j < h:  # both in the term-1 block: one factor, level g meets level g only
            levels = np.arange(k1)
            return levels, levels, cp.a11[:, t, j]
        lo, kj = offsets[j], layout.terms[j].nlevels
        if t < h:  # term-1 column against a rest term: the sparse entries in its rows
            on = (rows >= lo) & (rows < lo + kj)
            return levs[on], rows[on] - lo, cp.vals[on, t]
        kt = layout.terms[t].nlevels
        block = cp.arr[np.ix_(lo + np.arange(kj), offsets[t] + np.arange(kt))].T  # lower triangle (j > t)
        g, l_ = np.nonzero(block)
        return g, l_, block[g, l_]

    theta = _moment_solve(total, moments, _coupling(moments, pair), cp.n)
    return start if theta is None else theta


def _coupling(sums, pair) -> np.ndarray:
    """c_tj of :func:`moment_start`: how much of term j's variance reaches the weighted
    spread of term t's per-level effects around their weighted mean.  ``sums``: per term
    (Σz² per level, …); ``pair(t, j)`` (t < j): the level pairs (g, l) the rows meet and
    their Σ z_t z_j.

    With b̂_g = Σ_l S_gl u_l / w_g (S = Z_t'Z_j, w_g = Σz²_g, W = Σ_g w_g) and the u_l
    independent with variance τ_j², the spread's expectation is τ_j² times
    c_tj = (Σ_gl S_gl² / w_g - Σ_l (Σ_g S_gl)² / W) / W: what every level of t shares
    (a balanced crossed factor's effects, seen alike by all) leaves the spread alone."""
    k = len(sums)
    w = [np.asarray(s[0], dtype=float) for s in sums]
    total = [max(float(np.sum(v)), 1e-300) for v in w]
    c = np.diag([1.0 - float(np.sum(v**2)) / W**2 for v, W in zip(w, total)])
    for t in range(k):
        for j in range(t + 1, k):
            g, l_, s = pair(t, j)
            s = np.asarray(s, dtype=float)
            for a, b, at, bt in ((t, j, g, l_), (j, t, l_, g)):
                wa = w[a][at]
                ok = wa > 0
                shared = np.bincount(bt[ok], weights=s[ok], minlength=len(w[b]))
                c[a, b] = (np.sum(s[ok] ** 2 / wa[ok]) - np.sum(shared**2) / total[a]) / total[a]
    return c


def _moment_solve(total: float, sums, coupling: np.ndarray, n: int) -> np.ndarray | None:
    """θ = τ/σ from the moment equations of :func:`moment_start`: ``sums`` holds per term
    (Σz² per level, Σz·e per level), ``coupling`` the c_tj, ``n`` the rows; None where they
    do not determine a start."""
    between, noise, spread = [], [], []
    for w, ze in sums:
        ok = w > 0
        if ok.sum() < 2:
            return None
        b, w = ze[ok] / w[ok], w[ok]
        between.append(float(np.sum(w * (b - np.sum(w * b) / np.sum(w)) ** 2) / np.sum(w)))
        noise.append(float((ok.sum() - 1) / np.sum(w)))  # the spread of k means around theirs
        spread.append(float(np.sum(w) / n))  # mean z² over the rows
    k = len(sums)
    # unknowns (τ_1², ..., τ_k², σ²): k spread equations and the residuals' mean square
    A = np.zeros((k + 1, k + 1))
    A[:k, :k], A[:k, k] = coupling, noise
    A[k, :k], A[k, k] = spread, 1.0
    rhs = np.array(between + [total])
    if total <= 0 or not np.all(np.isfinite(A)) or not np.all(np.isfinite(rhs)):
        return None
    held = np.zeros(k, dtype=bool)  # τ² held at the floor
    for _ in range(k + 1):  # hold negative solutions at the floor, solve for the rest
        free = np.append(~held, True)
        v = np.zeros(k + 1)
        # the held ones stay 0, their own equations dropped
        v[free] = np.linalg.lstsq(A[np.ix_(free, free)], rhs[free], rcond=None)[0]
        neg = ~held & (v[:k] <= 0)
        if not neg.any():
            break
        held |= neg
    sigma2 = max(v[k], 0.05 * total)
    # no term's share of the rows' variance above the whole (an ill-determined system)
    tau2 = np.clip(v[:k], 0.01 * sigma2, total / np.maximum(spread, 1e-300))
    theta = np.sqrt(tau2 / sigma2)
    if not np.all(np.isfinite(theta)):
        return None
    return np.maximum(theta, 0.1)  # kept inside, so the optimizer starts off the boundary


#: Correlations are profiled and bounded inside (-COR_MAX, COR_MAX): atanh is finite there.
COR_MAX = 1.0 - 1e-7


def phi_kinds(layout, sigma: bool = True) -> np.ndarray:
    """The kind of each variance parameter φ in θ's order (0 = SD, 1 = correlation), then
    2 for σ when ``sigma`` (generalized models have none).

    Args:
        layout: the model's layout.
        sigma: append σ's kind.

    Returns:
        Integer array, one entry per φ.
    """
    kinds = [0 if i == j else 1 for tl in layout.terms for i, j in tl.theta_index]
    return np.array(kinds + [2] * bool(sigma))


def psi_to_phi(psi: jax.Array, kinds: jax.Array) -> jax.Array:
    """φ from the unconstrained ψ the profiles optimize over: correlations tanh(ψ), σ exp(ψ),
    SDs ψ itself (bounded below by 0)."""
    return jnp.where(kinds == 1, jnp.tanh(psi), jnp.where(kinds == 2, jnp.exp(psi), psi))


def phi_to_psi(phi: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """The inverse of :func:`psi_to_phi` (host side; correlations clipped to ±COR_MAX)."""
    out = np.array(phi, dtype=float, copy=True)
    out[kinds == 1] = np.arctanh(np.clip(out[kinds == 1], -COR_MAX, COR_MAX))
    out[kinds == 2] = np.log(out[kinds == 2])
    return out
