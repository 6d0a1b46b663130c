"""Variance explained by a fitted model: Nakagawa & Schielzeth's R² and the ICC.

The definitions are those of R's ``performance::r2_nakagawa`` and ``performance::icc``
(through ``insight::get_variance``) for a linear mixed model:

* fixed-effects variance σ²_f: the sample variance (n − 1 denominator) of Xβ̂ over the
  fitting rows (no offset);
* random-effects variance σ²_r: for each random-effects term with covariance Σ, the mean
  over the fitting rows of x_i' Σ x_i, where x_i holds the row's values of the term's
  columns *taken from the fixed-effects model matrix* (an intercept column is supplied if X
  has none; a random-effect column that is not a fixed-effect column is left out, with a
  warning, as performance does).  For a random intercept this is just its variance; for a
  random slope it is the variance averaged over the observed covariate values.  Terms with
  one level per observation are excluded;
* residual variance σ²: the residual variance σ̂².

Marginal R² = σ²_f / (σ²_f + σ²_r + σ²), conditional R² = (σ²_f + σ²_r) / (σ²_f + σ²_r + σ²),
adjusted ICC = σ²_r / (σ²_r + σ²), unadjusted ICC = σ²_r / (σ²_f + σ²_r + σ²).

As in performance, a singular fit (a variance parameter θ bounded at 0 with |θ| < 1e-5) has
no random-effects variance: R² is then the marginal one with σ²_r left out and the
conditional R² and the ICCs are NaN, each with a warning.  One deliberate difference:
performance (0.10) sums σ²_r only over the first term of a grouping factor that appears in
several terms (``(x || g)``, ``(1 | g) + (0 + x | g)``: it drops ``g.1``); jaxlme sums over
every term, which is the definition above.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from .results import LMMResult

__all__ = ["variance_components", "r2", "icc", "SINGULAR_TOLERANCE"]

SINGULAR_TOLERANCE = 1e-5  # performance/insight's default `tolerance` on θ at its bound of 0


def _singular(res: LMMResult, tolerance: float) -> bool:
    lower = res.model.layout.theta_lower
    return bool(np.any(np.abs(res.theta[lower == 0]) < tolerance))


def variance_components(res: LMMResult, tolerance: float = SINGULAR_TOLERANCE) -> pd.Series:
    """The variances behind :func:`r2` and :func:`icc` (``insight::get_variance``).

    Args:
        res: a fitted model.
        tolerance: θ components bounded at 0 and smaller than this in absolute value make
            the fit singular, and the random-effects variance NaN (insight's ``tolerance``).

    Returns:
        A Series with ``fixed``, ``random`` and ``residual`` variances (see the module
        docstring for their definitions).
    """
    d = res.model.design
    X = np.asarray(d.X, dtype=float)
    xnames = list(d.xnames)
    n = X.shape[0]
    fitted_fixed = X @ res.fixef.to_numpy()
    var_fixed = float(np.var(fitted_fixed, ddof=1)) if n > 1 else float("nan")
    if _singular(res, tolerance):
        var_random = float("nan")
    else:
        cols = dict(zip(xnames, X.T))
        if not any(c.startswith("(Intercept)") for c in xnames):
            cols["(Intercept)"] = np.ones(n)
        var_random, dropped = 0.0, []
        for t, cov in zip(d.terms, res.covariance_matrices().values()):
            if t.nlevels == n:  # an observation-level term is not a between-group variance
                continue
            keep = [c for c in t.columns if c in cols]
            dropped += [f"{c} | {t.name}" for c in t.columns if c not in cols]
            if not keep:
                continue
            Z = np.column_stack([cols[c] for c in keep])
            S = cov.loc[keep, keep].to_numpy()
            var_random += float(np.einsum("ij,jk,ik->", Z, S, Z)) / n
        if dropped:
            warnings.warn(
                f"random-effect column(s) {', '.join(dropped)} are not fixed-effect columns and are left out of "
                "the random-effects variance (as performance::r2_nakagawa does)",
                stacklevel=3,
            )
    return pd.Series({"fixed": var_fixed, "random": var_random, "residual": res.sigma**2}, name="variance_components")


def r2(res: LMMResult, tolerance: float = SINGULAR_TOLERANCE) -> pd.Series:
    """Nakagawa & Schielzeth's marginal and conditional R² (``performance::r2_nakagawa``).

    The marginal R² is the share of the total variance explained by the fixed effects, the
    conditional R² the share explained by the fixed and random effects together.

    Args:
        res: a fitted model.
        tolerance: singularity tolerance on θ (see :func:`variance_components`).

    Returns:
        A Series with ``marginal`` and ``conditional``; for a singular fit the marginal R²
        leaves the random effects out and the conditional R² is NaN (with a warning).
    """
    v = variance_components(res, tolerance)
    f, r, e = v["fixed"], v["random"], v["residual"]
    if np.isnan(r):
        warnings.warn(
            "singular fit: random-effect variances not available; the marginal R² does not account for "
            "random effects and the conditional R² is NaN (as performance::r2_nakagawa)",
            stacklevel=2,
        )
        return pd.Series({"marginal": f / (f + e), "conditional": float("nan")}, name="r2")
    total = f + r + e
    return pd.Series({"marginal": f / total, "conditional": (f + r) / total}, name="r2")


def icc(res: LMMResult, tolerance: float = SINGULAR_TOLERANCE) -> pd.Series:
    """Adjusted and unadjusted intraclass correlation (``performance::icc``).

    The adjusted ICC is the share of the random effects in the variance left after the
    fixed effects, σ²_r / (σ²_r + σ²); the unadjusted ICC their share of the total,
    σ²_r / (σ²_f + σ²_r + σ²).

    Args:
        res: a fitted model.
        tolerance: singularity tolerance on θ (see :func:`variance_components`).

    Returns:
        A Series with ``adjusted`` and ``unadjusted``; both NaN (with a warning) for a
        singular fit, where performance gives NA.
    """
    v = variance_components(res, tolerance)
    f, r, e = v["fixed"], v["random"], v["residual"]
    if np.isnan(r):
        warnings.warn("singular fit: random-effect variances not available; the ICC is NaN", stacklevel=2)
    return pd.Series({"adjusted": r / (r + e), "unadjusted": r / (f + r + e)}, name="icc")
