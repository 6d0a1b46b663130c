"""F tests of the fixed effects: lmerTest's ``contestMD`` and its ``anova()`` tables.

* :func:`f_test`: H0: Lβ = 0 for a (k, p) contrast matrix.  Satterthwaite (lmerTest's
  ``contestMD``): F = β̂'L'(LVL')⁻¹Lβ̂/q over the q positive eigenvalues of LVL', each
  eigen-contrast with its own Satterthwaite df ν_m, combined into the denominator df
  2E/(E − q) with E = Σ ν_m/(ν_m − 2).  Kenward–Roger (pbkrtest's ``KRmodcomp``): the Wald
  statistic with the adjusted covariance, scaled, with KR's denominator df.
* :func:`anova_table`: one F test per fixed-effect term (intercept excluded) with the
  hypothesis matrices lmerTest builds for types I, II and III.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._config import x64
from .inference import satterthwaite

if TYPE_CHECKING:  # pragma: no cover
    from .results import LMMResult

__all__ = ["f_test", "DDF_CHOICES", "ANOVA_COLUMNS"]

DDF_CHOICES = ("satterthwaite", "kenward-roger")
ANOVA_COLUMNS = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
_EPS = float(np.sqrt(np.finfo(float).eps))


def _ddf_key(ddf: str) -> str:
    key = str(ddf).lower().replace("_", "-")
    if key not in DDF_CHOICES:
        raise ValueError(f"unknown ddf {ddf!r}: use one of {', '.join(map(repr, DDF_CHOICES))}")
    return key


def _fstat_ddf(nu: np.ndarray, tol: float = 1e-8) -> float:
    """lmerTest's ``get_Fstat_ddf``: the denominator df of an F built from q t statistics."""
    if len(nu) == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(np.mean(nu))
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2.0)))
    return 2.0 * E / (E - len(nu))


def _row(F: float, ndf: float, ddf: float, sigma: float, scale: float = 1.0) -> dict:
    """lmerTest's ``mk_Ftable``: Mean Sq = F σ² of the unscaled F, Sum Sq = Mean Sq · NumDF."""
    from scipy import special

    ms = F * sigma**2
    Fs = F * scale
    p = float(special.fdtrc(ndf, ddf, Fs)) if np.isfinite(Fs) and ndf > 0 else np.nan
    return {"Sum Sq": ms * ndf, "Mean Sq": ms, "NumDF": ndf, "DenDF": ddf, "F value": Fs, "Pr(>F)": p}


def _contest_satterthwaite(res: LMMResult, L: np.ndarray) -> dict:
    beta = res.fixef.to_numpy()
    if L.shape[0] == 1:
        s = satterthwaite(res, L)
        t = float(s["estimate"].iloc[0] / s["se"].iloc[0])
        return _row(t**2, 1, float(s["df"].iloc[0]), res.sigma)
    V = res.vcov.to_numpy()
    d, P = np.linalg.eigh(L @ V @ L.T)
    d, P = d[::-1], P[:, ::-1]  # decreasing, as R's eigen()
    pos = d > max(_EPS * d[0], 0.0)
    q = int(np.sum(pos))
    if q == 0:
        return _row(np.nan, np.nan, np.nan, res.sigma)
    PtL = (P.T @ L)[:q]
    s = satterthwaite(res, PtL)
    if q == 1:
        t = float(s["estimate"].iloc[0] / s["se"].iloc[0])
        return _row(t**2, 1, float(s["df"].iloc[0]), res.sigma)
    F = float(np.sum((PtL @ beta) ** 2 / d[:q]) / q)
    return _row(F, q, _fstat_ddf(s["df"].to_numpy()), res.sigma)


def _contest(res: LMMResult, L: np.ndarray, ddf: str, kr=None) -> dict:
    """One row of an F table for H0: Lβ = 0 (lmerTest's ``contestMD``)."""
    if L.shape[0] == 0:
        return _row(np.nan, np.nan, np.nan, res.sigma)
    if ddf == "kenward-roger":
        from .kenward_roger import kr_ftest, kr_parts

        kr = kr_parts(res) if kr is None else kr
        if np.linalg.matrix_rank(L) == L.shape[0]:
            out = kr_ftest(res, L, kr)
            return _row(out["F_unscaled"], out["NumDF"], out["DenDF"], res.sigma, out["scaling"])
        # pbkrtest cannot invert L Φ L' of a rank-deficient L: lmerTest falls back likewise
        warnings.warn("Unable to compute Kenward-Roger F-test: using Satterthwaite instead", stacklevel=3)
    return _contest_satterthwaite(res, L)


def _as_matrix(res: LMMResult, L) -> np.ndarray:
    xnames = list(res.model.design.xnames)
    if isinstance(L, pd.Series):
        L = L.to_frame().T
    if isinstance(L, pd.DataFrame):
        unknown = [c for c in L.columns if c not in xnames]
        if unknown:
            raise ValueError(f"contrast matrix L has column(s) {unknown} that are not fixed effects")
        L = L.reindex(columns=xnames, fill_value=0.0)
    L = np.atleast_2d(np.asarray(L, dtype=float))
    if L.ndim != 2 or L.shape[1] != len(xnames):
        raise ValueError(f"contrast matrix L must have {len(xnames)} columns (one per fixed effect), got {L.shape[-1]}")
    if not np.all(np.isfinite(L)):
        raise ValueError("contrast matrix L has missing or infinite entries")
    return L


@x64
def f_test(res: LMMResult, L, ddf: str = "satterthwaite") -> pd.Series:
    """F test of H0: Lβ = 0, as lmerTest's ``contestMD``.

    Args:
        res: a fit (REML for ``ddf="kenward-roger"``).
        L: (k, p) contrasts of the fixed effects: an array with one column per fixed
            effect, or a DataFrame (or Series for one row) with fixed-effect names as
            columns, missing ones counting as 0.
        ddf: "satterthwaite" (eigen-decomposition of LVL', one Satterthwaite df per
            eigen-contrast, combined as lmerTest) or "kenward-roger" (pbkrtest's scaled F
            with the adjusted covariance and KR's df).

    Returns:
        Series with ``F`` (the F value), ``NumDF``, ``DenDF`` and ``p``, and also ``Sum Sq``
        and ``Mean Sq`` as lmerTest reports them (Mean Sq = unscaled F · σ²).
    """
    key = _ddf_key(ddf)
    row = _contest(res, _as_matrix(res, L), key)
    return pd.Series(
        {
            "F": row["F value"],
            "NumDF": row["NumDF"],
            "DenDF": row["DenDF"],
            "p": row["Pr(>F)"],
            "Sum Sq": row["Sum Sq"],
            "Mean Sq": row["Mean Sq"],
        },
        name="F test",
    )
