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

    For a term with column z, each level's least-squares effect on the OLS
    residuals e, b̂_g = Σz·e / Σz², has variance about τ² + σ²/Σz²; those moment equations
    with var(e) ≈ σ² + Σ_j τ_j², solved by a few fixed-point sweeps, give θ = τ/σ, kept at
    least 0.1 so the optimizer starts inside.  Each factor is treated as if alone, so this
    is a start, not an estimate, close enough to save BFGS most of its evaluations on large
    crossed models.  Anything non-finite falls back to Λ = I.

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
    sums = []
    for term in design.terms:
        z = term.Z[:, 0]
        sums.append(
            (
                np.bincount(term.index, weights=z * z, minlength=term.nlevels),
                np.bincount(term.index, weights=z * resid, minlength=term.nlevels),
            )
        )
    theta = _moment_solve(total, sums)
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
    theta = _moment_solve(total, moments)
    return start if theta is None else theta


def _moment_solve(total: float, sums) -> np.ndarray | None:
    """θ = τ/σ from the per-term moment equations (see :func:`moment_start`): ``sums`` holds
    per term (Σz² per level, Σz·e per level); None where they do not determine a start."""
    moments = []  # (between-level variance of b̂, its noise per unit σ²)
    for w, ze in sums:
        ok = w > 0
        if ok.sum() < 2:
            return None
        b, w = ze[ok] / w[ok], w[ok]
        between = float(np.sum(w * (b - np.sum(w * b) / np.sum(w)) ** 2) / np.sum(w))
        moments.append((between, float(ok.sum() / np.sum(w))))
    sigma2 = total
    for _ in range(20):
        tau2 = [max(b - sigma2 * noise, 0.01 * sigma2) for b, noise in moments]
        sigma2 = max(total - sum(tau2), 0.05 * total)
    theta = np.sqrt(np.asarray(tau2) / sigma2)
    if total <= 0 or not np.all(np.isfinite(theta)):
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
