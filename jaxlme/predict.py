"""Predictions from a fitted model and conditional variances of the random effects.

``predict`` rebuilds the fixed-effects and random-effects model matrices for new data from
the specs kept on the design (formulaic's ModelSpecs, or ``design.ColumnsSpec`` for plain
column lists), so factor levels, contrasts and stateful
transforms (``center(x)``, ``scale(x)``, ...) are applied exactly as in fitting.
``ranef_condvar`` gives lme4's ``ranef(fit, condVar = TRUE)`` "postVar" arrays.
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .design import DataError, for_formulaic, r_name
from .structure import weighted_rows

if TYPE_CHECKING:  # pragma: no cover
    from .results import LMMResult

__all__ = ["predict", "ranef_condvar", "ranef_condsd", "MAX_DENSE_Q"]

MAX_DENSE_Q = 6000  # largest number of random effects for the dense conditional-variance route


def _clean(exc: Exception) -> str:
    return re.sub(r"\x1b\[[0-9;]*m|⧛|⧚", "", str(exc))


def _required(spec) -> set[str]:
    try:
        return set(spec.required_variables)
    except Exception:  # pragma: no cover - older formulaic
        return set()


def _check_columns(newdata: pd.DataFrame, needed: set[str], what: str) -> None:
    missing = sorted(v for v in needed if v not in newdata.columns)
    if missing:
        raise DataError(f"newdata is missing column(s) {', '.join(repr(m) for m in missing)} needed for {what}")


def _matrix(spec, newdata: pd.DataFrame, names: list[str], what: str) -> np.ndarray:
    """Model matrix for ``newdata`` from a fitted ModelSpec, columns in ``names`` (R-style)."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mm = spec.get_model_matrix(for_formulaic(newdata), na_action="ignore")
    except Exception as exc:
        raise DataError(f"cannot build {what} for newdata: {_clean(exc)}") from None
    for w in caught:
        msg = _clean(w.message)
        if "categories outside" in msg or "not seen in original" in msg:
            unseen = msg[msg.find("{") : msg.find("}") + 1] if "{" in msg else ""
            raise DataError(f"cannot build {what} for newdata: factor level(s) {unseen} not seen in fitting")
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    cols = {r_name(c): i for i, c in enumerate(mm.columns)}
    absent = [n for n in names if n not in cols]
    if absent:
        raise DataError(f"{what} for newdata lacks column(s) {absent} (got {list(cols)})")
    arr = np.asarray(mm, dtype=float)
    if arr.shape[0] != len(newdata):
        raise DataError(f"{what} for newdata has {arr.shape[0]} rows, newdata has {len(newdata)}")
    return arr[:, [cols[n] for n in names]]


def _level_codes(newdata: pd.DataFrame, term) -> tuple[np.ndarray, np.ndarray]:
    """Level index of each row of ``newdata`` in the fitted levels (-1: new), matched by
    value (``term.keys``), not by text; and the rows' labels."""
    group = term.term.group
    keys = term.keys if term.keys is not None else term.levels
    if len(group) == 1:
        raw = newdata[group[0]]
        na = raw.isna().to_numpy()
        labels = np.array(["" if pd.isna(v) else str(v) for v in raw], dtype=object)
        codes = keys.get_indexer(pd.Index(raw))
    else:
        parts = [newdata[g] for g in group]
        na = np.zeros(len(newdata), bool)
        for p in parts:
            na |= p.isna().to_numpy()
        labels = np.array([":".join(str(v) for v in tup) for tup in zip(*parts)], dtype=object)
        codes = keys.get_indexer(pd.MultiIndex.from_arrays([p.to_numpy(dtype=object) for p in parts]))
    codes = np.asarray(codes, dtype=np.int64)
    codes[na] = -1
    return codes, labels


def predict(
    res: LMMResult,
    newdata: pd.DataFrame | None = None,
    random_effects: bool = True,
    allow_new_levels: bool = False,
) -> pd.Series:
    """Predictions (lme4's ``predict.merMod``), indexed like ``newdata``.

    ``random_effects=True`` gives conditional predictions Xβ̂ + Zb̂ (lme4's default),
    ``False`` population-level predictions Xβ̂ (``re.form = NA``).  Levels of a grouping
    factor not seen in fitting raise a DataError naming them unless ``allow_new_levels``,
    in which case they get zero random effects (the population prediction for that term).
    Rows with missing values in the needed columns give NaN.  Without ``newdata``, returns
    the fitted values (or Xβ̂) on the fitting rows.
    """
    d = res.model.design
    beta = res.fixef.to_numpy()
    if newdata is None:
        if random_effects:
            return pd.Series(res.fitted.to_numpy(), index=d.rows, name="predicted")
        return pd.Series(d.X @ beta + (0.0 if d.offset is None else d.offset), index=d.rows, name="predicted")
    if isinstance(newdata, dict):
        newdata = pd.DataFrame(newdata)
    if not isinstance(newdata, pd.DataFrame):
        raise DataError(f"newdata must be a pandas DataFrame (or a dict of columns), got {type(newdata).__name__}")
    if len(newdata) == 0:
        return pd.Series([], index=newdata.index, name="predicted", dtype=float)
    _check_columns(newdata, _required(d.fixed_spec), "the fixed effects")
    if random_effects:
        for t in d.terms:
            _check_columns(newdata, _required(t.spec) | set(t.term.group), f"random-effects term {t.term}")
    X = _matrix(d.fixed_spec, newdata, list(d.xnames), "the fixed-effects model matrix")
    out = X @ beta
    for spec in d.offset_specs:  # lme4's predictions include the offset, computed from newdata
        _check_columns(newdata, _required(spec), "the offset")
        out = out + _matrix(spec, newdata, list(spec.column_names), "the offset")[:, 0]
    if random_effects:
        for t, b in zip(d.terms, res.effects.b):  # term by term: a factor may have several
            codes, labels = _level_codes(newdata, t)
            new = codes < 0
            if new.any() and not allow_new_levels:
                bad = list(dict.fromkeys(labels[new]))
                shown = ", ".join(repr(b) for b in bad[:10]) + (" ..." if len(bad) > 10 else "")
                raise DataError(
                    f"new level(s) {shown} of grouping factor '{t.name}' not in the fitted data; "
                    "use allow_new_levels=True to predict them with zero random effects"
                )
            Z = _matrix(t.spec, newdata, list(t.columns), f"the model matrix of {t.term}")
            b = np.asarray(b)
            bz = np.where(new[:, None], 0.0, b[np.where(new, 0, codes)])
            # a new level contributes nothing, even where Z itself is NaN
            contrib = np.einsum("ij,ij->i", np.where(new[:, None], 0.0, Z), bz)
            out = out + contrib
    return pd.Series(out, index=newdata.index, name="predicted")


def ranef_condvar(res: LMMResult) -> dict[str, np.ndarray]:
    """Conditional covariance matrices of the random effects given the data (lme4's condVar).

    Returns ``{group: array (nlevels, r, r)}``: entry ``[k]`` is Var(b_k | y) for level ``k``
    (levels in the order of ``res.ranef[group].index``, columns in the order of
    ``res.ranef[group].columns``), evaluated at the estimates, i.e. the diagonal blocks of
    σ² Λ (Λ'Z'ZΛ + I)⁻¹ Λ' as in lme4's ``attr(ranef(fit, condVar=TRUE)[[g]], "postVar")``
    (the uncertainty in β̂ and θ̂ is not included).  A factor in several terms
    (``(1 | g) + (0 + x | g)``, or ``(x || g)``, which lme4 splits so) has one entry whose
    columns are those of ``res.ranef[g]``: the matrix holds the conditional covariances
    between its terms too (lme4 reports each term's block alone; the diagonals agree).
    Models with more than ``MAX_DENSE_Q`` random effects in several terms
    raise a ValueError (a single-term model is always block-diagonal and cheap).
    """
    d = weighted_rows(res.model.design)  # Z'WZ for prior weights
    lams = res.model.layout.lambdas(res.theta)
    s2 = res.sigma**2
    out = {}
    if len(d.terms) == 1:
        t, lam = d.terms[0], lams[0]
        r = t.ncols
        ZL = t.Z @ lam  # (n, r)
        M = np.zeros((t.nlevels, r, r))
        np.add.at(M, t.index, ZL[:, :, None] * ZL[:, None, :])
        M += np.eye(r)
        Minv = np.linalg.inv(M)
        out[t.name] = s2 * np.einsum("ab,kbc,dc->kad", lam, Minv, lam)
        return out
    sizes = [t.nlevels * t.ncols for t in d.terms]
    q = sum(sizes)
    if q > MAX_DENSE_Q:
        raise ValueError(
            f"conditional variances use a dense {q}x{q} matrix here; the model has q = {q} random "
            f"effects in {len(d.terms)} terms, more than MAX_DENSE_Q = {MAX_DENSE_Q}"
        )
    ZL = np.zeros((d.n, q))
    offs = np.cumsum([0] + sizes)
    rows = np.arange(d.n)
    for t, lam, o in zip(d.terms, lams, offs):
        zl = t.Z @ lam
        for c in range(t.ncols):
            ZL[rows, o + t.index * t.ncols + c] = zl[:, c]
    M = ZL.T @ ZL + np.eye(q)
    Minv = np.linalg.inv(M)
    # u = Λ⁻¹b per factor: the factor's terms' columns side by side, levels shared
    for name in dict.fromkeys(t.name for t in d.terms):
        ks = [i for i, t in enumerate(d.terms) if t.name == name]
        k = d.terms[ks[0]].nlevels
        idx = np.concatenate(
            [offs[i] + np.arange(k)[:, None] * d.terms[i].ncols + np.arange(d.terms[i].ncols) for i in ks], axis=1
        )  # (k, r): position in u of each level's columns
        lam = _block_diag([lams[i] for i in ks])
        diag = Minv[idx[:, :, None], idx[:, None, :]]  # (k, r, r)
        out[name] = s2 * np.einsum("ab,kbc,dc->kad", lam, diag, lam)
    return out


def _block_diag(blocks: list[np.ndarray]) -> np.ndarray:
    r = sum(b.shape[0] for b in blocks)
    out, o = np.zeros((r, r)), 0
    for b in blocks:
        out[o : o + b.shape[0], o : o + b.shape[0]] = b
        o += b.shape[0]
    return out


def ranef_condsd(res: LMMResult) -> dict[str, pd.DataFrame]:
    """Conditional standard deviations of the random effects: ``{group: DataFrame}`` shaped
    like ``res.ranef[group]`` (levels × columns), the square roots of the diagonals of
    :func:`ranef_condvar` (what a caterpillar plot's error bars need)."""
    out = {}
    for name, cv in ranef_condvar(res).items():
        ref = res.ranef[name]
        sd = np.sqrt(np.maximum(np.diagonal(cv, axis1=1, axis2=2), 0.0))
        out[name] = pd.DataFrame(sd, index=ref.index.copy(), columns=list(ref.columns))
    return out
