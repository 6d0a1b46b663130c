"""Leaving spurious boundary optima of the Cholesky parametrization.

θ holds the lower-triangular factor Λ of each term's relative covariance, with lme4's
bounds: diagonal entries ≥ 0.  A point where a diagonal entry λ_jj sits at 0 can satisfy
the bounded problem's optimality conditions without being a local minimum of the model:
the covariance ΛΛ' depends on column j of Λ only through cc', so

* when column j's entries below the diagonal are not all zero, moving λ_jj below 0 is the
  same model as moving it above 0 with those entries negated: a positive derivative in
  λ_jj, which the bound accepts, is a descent direction after the sign flip;
* when the whole column is zero, the criterion is flat to first order in c and the
  question is the second-order form c'Gc (G = ∂criterion/∂Σ on rows j..r): a negative
  eigenvalue of G is a direction that leaves the boundary downhill.

:func:`boundary_escape` checks both at a converged θ and returns a better start, so the
fit restarts from it instead of reporting "converged" at a point that is not an optimum.

The other edge of the parameter space is σ → 0 (an exact fit, θ = σ_b/σ running off to
infinity): :func:`degenerate_fit` names it so no test statistic is reported there.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["boundary_escape", "zero_columns", "ZERO_DIAGONAL", "SINGULAR_TOL", "EXACT_FIT_TOL", "degenerate_fit"]

SINGULAR_TOL = 1e-4  # lme4's isSingular() tolerance on θ components bounded at 0

# θ_jj at or below this (in units of the term's θ scale) counts as on the boundary.
ZERO_DIAGONAL = 1e-6
# Step lengths tried along an escape direction, in units of the θ scale.
_STEPS = (1e-3, 1e-2, 0.1, 0.3, 1.0)


def zero_columns(theta: np.ndarray, layout, single: bool = False) -> list[tuple[int, list[int]]]:
    """Columns of correlated multi-column terms whose diagonal θ is (numerically) zero.

    Args:
        theta: θ in lme4's order.
        layout: the model's ``Layout``.
        single: also the one-entry columns (scalar terms, ``||`` terms' diagonals).  There
            the criterion is even in θ_jj, so θ_jj = 0 is always stationary: a minimum or,
            with negative curvature, a saddle that a method without second derivatives
            (BFGS) can stop on.

    Returns:
        One ``(diagonal position, [positions of the column's entries, diagonal first])``
        per such column (positions index θ).
    """
    out, start = [], 0
    for t in layout.terms:
        pos = {ij: start + k for k, ij in enumerate(t.theta_index)}
        if t.correlated and t.ncols > 1:
            for j in range(t.ncols):
                column = [pos[(i, j)] for i in range(j, t.ncols)]
                if theta[column[0]] <= ZERO_DIAGONAL:
                    out.append((column[0], column))
        elif single:
            out += [(pos[(j, j)], [pos[(j, j)]]) for j in range(t.ncols) if theta[pos[(j, j)]] <= ZERO_DIAGONAL]
        start += t.ntheta
    return out


def _column_form(base: np.ndarray, column: list[int], s: np.ndarray, criterion, h: float = 1e-2) -> np.ndarray:
    """G with criterion(base with column = h·s·u) ≈ criterion(base) + u'Gu, from the
    criterion at h·s·e_k and h·s·(e_k + e_l): exact for the quadratic it is near zero."""
    fb = float(criterion(base))

    def at(u: np.ndarray) -> float:
        point = base.copy()
        point[column] = h * s * u
        return float(criterion(point))

    m = len(column)
    eye = np.eye(m)
    single = np.array([at(eye[k]) for k in range(m)])
    G = np.diag(single - fb)
    for k in range(m):
        for l in range(k + 1, m):
            G[k, l] = G[l, k] = (at(eye[k] + eye[l]) - single[k] - single[l] + fb) / 2.0
    return G


def boundary_escape(
    theta: np.ndarray,
    layout,
    criterion: Callable[[np.ndarray], float],
    scale: np.ndarray,
    rtol: float = 1e-10,
    single: bool = False,
) -> tuple[np.ndarray, float] | None:
    """A θ with a lower criterion next to a boundary point θ, or None when none is found.

    Args:
        theta: a converged θ.
        layout: the model's ``Layout``.
        criterion: θ -> REML criterion or ML deviance (the fit's own).
        scale: per-θ scale (1/RMS of the matching Z column), so steps are comparable.
        rtol: a candidate must lower the criterion by more than ``rtol * max(1, |f|)``.
        single: check one-entry columns too (see :func:`zero_columns`).

    Returns:
        ``(theta_start, value)`` for the best candidate found, or None.
    """
    theta = np.asarray(theta, dtype=float)
    f0 = float(criterion(theta))
    if not np.isfinite(f0):
        return None
    best, best_f = None, f0 - rtol * max(1.0, abs(f0))

    def consider(candidate: np.ndarray) -> None:
        nonlocal best, best_f
        value = float(criterion(candidate))
        if np.isfinite(value) and value < best_f:
            best, best_f = candidate, value

    for diag, column in zero_columns(theta, layout, single):
        c = theta[column]
        s = scale[column]
        if np.any(np.abs(c[1:]) > ZERO_DIAGONAL * s[1:]):
            # first order: λ_jj < 0 is λ_jj > 0 with the column's other entries negated
            for step in _STEPS:
                candidate = theta.copy()
                candidate[column] = np.concatenate([[step * s[0]], -c[1:]])
                consider(candidate)
            continue
        # second order: the column is zero; the form c'Gc on rows j..r, by differences
        base = theta.copy()
        base[column] = 0.0
        G = _column_form(base, column, s, criterion)
        w, v = np.linalg.eigh(G)
        if not np.isfinite(w).all() or w[0] >= 0:
            continue
        u = v[:, 0] if v[0, 0] >= 0 else -v[:, 0]  # λ_jj ≥ 0
        for step in _STEPS:
            candidate = base.copy()
            candidate[column] = step * s * u / max(np.abs(u).max(), 1e-12)
            candidate[diag] = max(candidate[diag], 0.0)
            consider(candidate)
    return None if best is None else (best, best_f)


# Residual SD below this fraction of the response's SD: the model reproduces the data
# (an exact fit), where θ = σ_b/σ runs off towards infinity and every test statistic with it.
EXACT_FIT_TOL = 1e-6


def degenerate_fit(sigma: float, y: np.ndarray, spread: float | None = None) -> str | None:
    """Why a fit is degenerate, or None: a residual SD that is zero or not finite, or
    negligible next to the response's spread (the fixed and random effects reproduce y).

    Args:
        sigma: the fitted residual standard deviation.
        y: the response the model was fitted to.
        spread: the response's SD when ``y`` is not at hand (a fit from cross-products;
            None there when unknown: only a non-finite σ is then reported).

    Returns:
        A one-line reason, or None for an ordinary fit.
    """
    if spread is None:
        spread = float(np.std(y)) if len(y) else 0.0
    if not np.isfinite(sigma):
        return f"the residual standard deviation is {sigma}"
    if sigma <= EXACT_FIT_TOL * spread:
        return (
            f"residual standard deviation {sigma:.3g} is ~0 next to the response's SD {spread:.3g}: "
            "the model reproduces the data exactly, so variance ratios and tests are meaningless"
        )
    return None
