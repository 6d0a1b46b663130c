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

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import messages
from ._config import x64
from .design import ColumnsSpec, dummy_name, r_name
from .inference import satterthwaite
from .kenward_roger import kr_ftest, kr_parts

if TYPE_CHECKING:  # pragma: no cover
    from .results import LMMResult

__all__ = ["f_test", "anova_table", "hypotheses", "DDF_CHOICES", "ANOVA_COLUMNS"]

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


def _eigen_contrasts(L: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """lmerTest's contestMD reduction: the rows P'L of the positive eigenvalues d of LVL'
    (decreasing, as R's eigen()); one row is kept as it is (contest1D)."""
    if L.shape[0] == 1:
        return L, np.array([float(L[0] @ V @ L[0])])
    d, P = np.linalg.eigh(L @ V @ L.T)
    d, P = d[::-1], P[:, ::-1]
    q = int(np.sum(d > max(_EPS * d[0], 0.0)))
    return (P.T @ L)[:q], d[:q]


def _contests(res: LMMResult, Ls: list[np.ndarray], ddf: str, kr=None) -> list[dict]:
    """One F-table row per contrast matrix (lmerTest's ``contestMD``); the Satterthwaite df
    of every eigen-contrast of every matrix come from one ``satterthwaite`` call."""
    rows: list[dict | None] = [None] * len(Ls)
    satt = []
    for i, L in enumerate(Ls):
        if L.shape[0] == 0:
            rows[i] = _row(np.nan, np.nan, np.nan, res.sigma)
            continue
        if ddf == "kenward-roger":
            kr = kr_parts(res) if kr is None else kr
            if np.linalg.matrix_rank(L) == L.shape[0]:
                out = kr_ftest(res, L, kr)
                rows[i] = _row(out["F_unscaled"], out["NumDF"], out["DenDF"], res.sigma, out["scaling"])
                continue
            # pbkrtest cannot invert L Φ L' of a rank-deficient L: lmerTest falls back likewise
            messages.warn("Unable to compute Kenward-Roger F-test: using Satterthwaite instead")
        satt.append(i)
    if not satt:
        return rows
    V = res.vcov.to_numpy()
    beta = res.fixef.to_numpy()
    reduced = [_eigen_contrasts(Ls[i], V) for i in satt]
    stacked = np.vstack([PtL for PtL, _ in reduced if PtL.shape[0]] or [np.zeros((0, len(beta)))])
    df_all = satterthwaite(res, stacked)["df"].to_numpy() if stacked.shape[0] else np.zeros(0)
    start = 0
    for i, (PtL, d) in zip(satt, reduced):
        q = PtL.shape[0]
        nu = df_all[start : start + q]
        start += q
        if q == 0:
            rows[i] = _row(np.nan, np.nan, np.nan, res.sigma)
            continue
        F = float(np.sum((PtL @ beta) ** 2 / d) / q)  # q = 1: the squared t statistic
        rows[i] = _row(F, q, _fstat_ddf(nu), res.sigma)
    return rows


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
    row = _contests(res, [_as_matrix(res, L)], key)[0]
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


# ---------------------------------------------------------------------------------------
# Terms of the fixed-effects formula and their columns (R's ``assign``)
# ---------------------------------------------------------------------------------------
class _Term:
    """One fixed-effect term: R's label, its columns in X, its variables and which of them
    are one-column numbers (R's dataClasses "numeric", used by lmerTest's containment)."""

    def __init__(self, label: str, cols: list[int], variables: tuple[str, ...], numeric: frozenset[str]) -> None:
        self.label = label
        self.cols = cols
        self.variables = variables
        self.numeric = numeric

    @property
    def order(self) -> int:
        return len(self.variables)


class _TermMap:
    """The fixed-effect terms of a design, each X column's term, and each X column as a
    monomial (numeric parts, (variable, level) indicators) when every factor is coded by
    indicators (treatment contrasts, or all levels where a margin is missing); ``levels``
    holds each factor's levels.  ``monomials[j]`` is None for a column of another coding."""

    def __init__(self, intercept: int | None, terms: list[_Term], monomials: list, levels: dict, term_of: list):
        self.intercept = intercept
        self.terms = terms
        self.monomials = monomials
        self.levels = levels
        self.term_of = term_of  # per X column: index into terms, or -1 for the intercept


def _parse_column(name: str, factors: list[tuple[str, str, tuple | None]]):
    """A formulaic column name as (numeric parts, (var, level) indicators), or None for a
    coding other than indicators.  ``factors``: (expr, kind, levels) in the term's order."""
    pos, num, cats = 0, [], []
    for k, (expr, kind, levels) in enumerate(factors):
        if k:
            if not name.startswith(":", pos):
                return None
            pos += 1
        if not name.startswith(expr, pos):
            return None
        pos += len(expr)
        inner = None
        if name.startswith("[", pos):
            ends = (j for j in range(pos + 1, len(name)) if name[j] == "]" and name[j + 1 : j + 2] in ("", ":"))
            end = next(ends, None)
            if end is None:
                return None
            inner, pos = name[pos + 1 : end], end + 1
        if kind == "categorical":
            strs = [str(v) for v in levels]
            if inner is not None and inner.startswith("T.") and inner[2:] in strs:
                cats.append((expr, inner[2:]))
            elif inner is not None and inner in strs:
                cats.append((expr, inner))
            else:
                return None
        else:
            num.append((expr, inner))
    if pos != len(name):
        return None
    return frozenset(num), tuple(cats)


def _term_map(res: LMMResult) -> _TermMap:
    """lmerTest's term -> columns map of the fitted X, from the design's model spec."""

    d = res.model.design
    spec = d.fixed_spec
    index = {nm: j for j, nm in enumerate(d.xnames)}
    # per term: (label, [(expr, kind, levels)], [raw column names]); renaming python -> R
    raw_terms: list[tuple[str, list, list[str]]] = []
    if isinstance(spec, ColumnsSpec):
        rename = str
        levels_of = spec.levels or (None,) * len(spec.variables)
        first = next((i for i, lv in enumerate(levels_of) if lv is not None), None)
        if spec.intercept:
            raw_terms.append(("1", [], ["Intercept"]))
        for i, (name, lv) in enumerate(zip(spec.variables, levels_of)):
            if lv is None:
                raw_terms.append((name, [(name, "numerical", None)], [name]))
            else:
                full = not spec.intercept and i == first
                cols = [dummy_name(name, v, full) for v in (lv if full else lv[1:])]
                raw_terms.append((name, [(name, "categorical", tuple(lv))], cols))
    else:
        ms = spec.spec
        rename = spec._rename
        for ets in ms.structure:
            facs = []
            for f in ets.term.factors:
                expr = str(f.expr)
                kind, state = ms.encoder_state.get(expr, (None, {}))
                kind = getattr(kind, "value", str(kind))
                if kind == "categorical":
                    contr = state.get("contrasts")
                    cls = type(getattr(contr, "contrasts", None)).__name__
                    lv = tuple(state.get("categories", ()))
                    facs.append((expr, "categorical" if cls in ("TreatmentContrasts", "NoneType") else "other", lv))
                elif kind == "constant" or str(ets.term) == "1":
                    facs = []
                else:
                    facs.append((expr, "numerical", None))
            raw_terms.append((str(ets.term), facs, list(ets.columns)))
    terms: list[_Term] = []
    monomials: list = [None] * d.p
    term_of = [-2] * d.p
    levels: dict[str, tuple] = {}
    intercept = None
    for label, facs, cols in raw_terms:
        present = [(c, index.get(r_name(rename(c)))) for c in cols]
        if label == "1":
            for _, j in present:
                if j is not None:
                    intercept, term_of[j], monomials[j] = j, -1, (frozenset(), ())
            continue
        idx = [j for _, j in present if j is not None]
        parse_facs = [(e, "categorical" if k == "other" else k, lv) for e, k, lv in facs]
        multi = set()
        for c, j in present:
            mono = _parse_column(c, parse_facs)
            if j is not None:
                term_of[j] = len(terms)
                coded = mono is not None and not any(k == "other" for _, k, _ in facs)
                monomials[j] = mono if coded else None
            if mono is not None:
                multi |= {e for e, sub in mono[0] if sub is not None}
        for e, k, lv in facs:
            if k != "numerical":
                levels[rename(e)] = tuple(str(v) for v in lv)
        variables = tuple(rename(e) for e, _, _ in facs)
        numeric = frozenset(rename(e) for e, k, _ in facs if k == "numerical" and e not in multi)
        terms.append(_Term(rename(label), idx, variables, numeric))
    if any(t == -2 for t in term_of):
        missing = [d.xnames[j] for j, t in enumerate(term_of) if t == -2]
        raise ValueError(f"cannot tell which formula term the fixed-effect column(s) {missing} come from")
    # monomials speak in R's variable names, as do the levels
    monomials = [
        None if m is None else (frozenset((rename(e), s) for e, s in m[0]), tuple((rename(e), lv) for e, lv in m[1]))
        for m in monomials
    ]
    return _TermMap(intercept, terms, monomials, levels, term_of)


# ---------------------------------------------------------------------------------------
# Hypothesis matrices of types I, II and III (lmerTest's contrast_utils.R)
# ---------------------------------------------------------------------------------------
def _doolittle_L(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """The unit lower-triangular factor of lmerTest's ``doolittle`` (LU without pivoting,
    a zero pivot below ``eps`` zeroes its column, entries below ``eps`` set to 0)."""
    n = x.shape[0]
    L, U = np.eye(n), np.zeros((n, n))
    for i in range(n):
        U[i] = x[i] - L[i, :i] @ U[:i]
        if i + 1 < n:
            L[i + 1 :, i] = 0.0 if abs(U[i, i]) < eps else (x[i + 1 :, i] - L[i + 1 :, :i] @ U[:i, i]) / U[i, i]
    L[np.abs(L) < eps] = 0.0
    return L


def _zapsmall(x: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's ``zapsmall``: round to ``digits`` significant digits of the largest entry."""
    mx = float(np.max(np.abs(x))) if x.size else 0.0
    dec = max(0, digits - int(np.ceil(np.log10(mx)))) if mx > 0 else digits
    return np.round(x, dec)


def _containment(tm: _TermMap) -> list[list[int]]:
    """lmerTest's ``containment``: for each term, the terms whose variables strictly include
    its own, with the same one-column numeric variables."""
    out = []
    for t in tm.terms:
        out.append(
            [k for k, u in enumerate(tm.terms) if set(t.variables) < set(u.variables) and t.numeric == u.numeric]
        )
    return out


def _type1(X: np.ndarray, tm: _TermMap) -> list[np.ndarray]:
    p = X.shape[1]
    Lt = np.ones((1, 1)) if p == 1 else _doolittle_L(X.T @ X).T
    return [Lt[t.cols] for t in tm.terms]


def _type2(X: np.ndarray, tm: _TermMap) -> list[np.ndarray]:
    p = X.shape[1]
    if p <= 1 or len(tm.terms) <= 1:
        return _type1(X, tm)
    contained = _containment(tm)
    out = []
    for k, t in enumerate(tm.terms):
        if not contained[k]:  # marginal: the term's own coefficients
            out.append(np.eye(p)[t.cols])
            continue
        cols_term = list(t.cols) + [j for u in contained[k] for j in tm.terms[u].cols]
        order = [j for j in range(p) if j not in cols_term] + cols_term
        Xn = X[:, order]
        Lc = _doolittle_L(Xn.T @ Xn).T
        rows = [i for i, j in enumerate(order) if tm.term_of[j] == k]
        inv = np.argsort(order)
        out.append(Lc[rows][:, inv])
    return out


def _expand(mono, levels: dict) -> dict:
    """A monomial (numeric parts, indicators) in the canonical basis where each factor's
    first level is written as 1 − Σ (indicators of its other levels)."""
    num, cats = mono
    out = {frozenset(): 1.0}
    for var, lvl in cats:
        lv = levels[var]
        new: dict = {}
        for key, c in out.items():
            if lvl != lv[0]:
                k2 = key | {(var, lvl)}
                new[k2] = new.get(k2, 0.0) + c
            else:
                new[key] = new.get(key, 0.0) + c
                for other in lv[1:]:
                    k2 = key | {(var, other)}
                    new[k2] = new.get(k2, 0.0) - c
        out = new
    return {(num, key): c for key, c in out.items() if c != 0.0}


def _type3(X: np.ndarray, tm: _TermMap, xnames: list[str]) -> list[np.ndarray]:
    """lmerTest's ``extract_contrasts_type3`` for indicator-coded factors.  R projects each
    column of the over-parametrized design (all cells of every term) on X by least squares;
    when those columns lie in X's span that projection is exact and follows from the coding
    alone, which is what is computed here (no data needed).  Otherwise (empty cells,
    non-hierarchical formulas) R's answer depends on the data rows: ValueError."""
    p = X.shape[1]
    if p <= 1 or len(tm.terms) <= 1:
        return _type1(X, tm)
    bad = [xnames[j] for j, m in enumerate(tm.monomials) if m is None]
    if bad:
        raise ValueError(
            f"type III tests need factors coded by treatment contrasts; column(s) {bad} use another coding"
        )
    # the over-parametrized design: the intercept, then every cell of every term
    rd: list[tuple[int, tuple]] = []  # (term index or -1, monomial)
    if tm.intercept is not None:
        rd.append((-1, (frozenset(), ())))
    for k, t in enumerate(tm.terms):
        monos = [tm.monomials[j] for j in t.cols]
        nums = sorted({m[0] for m in monos}, key=lambda s: sorted(map(str, s)))
        catvars = [v for v in t.variables if v in tm.levels]
        cells = [()]
        for v in catvars:
            cells = [c + ((v, lv),) for c in cells for lv in tm.levels[v]]
        if not monos:
            raise ValueError(f"type III: all columns of term {t.label!r} were dropped as aliased")
        rd += [(k, (num, cell)) for num in nums for cell in cells]
    keys: dict = {}
    cx = [_expand(m, tm.levels) for m in tm.monomials]
    cr = [_expand(m, tm.levels) for _, m in rd]
    for e in cx + cr:
        for key in e:
            keys.setdefault(key, len(keys))
    Xc = np.zeros((len(keys), p))
    for j, e in enumerate(cx):
        for key, c in e.items():
            Xc[keys[key], j] = c
    Rc = np.zeros((len(keys), len(rd)))
    for j, e in enumerate(cr):
        for key, c in e.items():
            Rc[keys[key], j] = c
    B, *_ = np.linalg.lstsq(Xc, Rc, rcond=None)
    resid = np.abs(Xc @ B - Rc).max(axis=0)
    if np.linalg.matrix_rank(Xc) < p or np.any(resid > 1e-8):
        outside = sorted({tm.terms[rd[i][0]].label for i in np.flatnonzero(resid > 1e-8) if rd[i][0] >= 0})
        raise ValueError(
            f"type III hypotheses of term(s) {outside} depend on the data (empty cells or a formula without the "
            "terms' margins); use type=1 or type=2"
        )
    L0 = _zapsmall(B.T)  # rows: cells of the over-parametrized design; columns: X
    contained = _containment(tm)
    for k in sorted(range(len(tm.terms)), key=lambda k: -tm.terms[k].order):
        if contained[k]:
            cols = tm.terms[k].cols
            xc = L0[:, [j for u in contained[k] for j in tm.terms[u].cols]]
            y = L0[:, cols]
            coef, *_ = np.linalg.lstsq(xc, y, rcond=None)
            L0[:, cols] = _zapsmall(y - xc @ coef)
    # R keeps the rows of the cells that are columns of X (matched by name), in X's order
    where = {(k, m): i for i, (k, m) in enumerate(rd)}
    rows = [where[(tm.term_of[j] if tm.term_of[j] >= 0 else -1, tm.monomials[j])] for j in range(p)]
    L = L0[rows]
    out = []
    for t in tm.terms:
        Lt = L[:, t.cols].T
        out.append(Lt[np.abs(Lt).sum(axis=1) > 1e-8])
    return out


_TYPES = {"1": 1, "2": 2, "3": 3, "i": 1, "ii": 2, "iii": 3}


def hypotheses(res: LMMResult, type=3) -> dict[str, np.ndarray]:  # noqa: A002
    """lmerTest's hypothesis matrices of each fixed-effect term (the ``hypotheses``
    attribute of its anova table).

    Args:
        res: a fit.
        type: 1, 2 or 3 (or "I", "II", "III").

    Returns:
        {term label: (k, p) contrast matrix}, in the formula's term order.
    """
    key = _TYPES.get(str(type).strip().lower())
    if key is None:
        raise ValueError(f"unknown type {type!r}: use 1, 2 or 3 (or 'I', 'II', 'III')")
    d = res.model.design
    tm = _term_map(res)
    X = d.X
    if key == 1:
        Ls = _type1(X, tm) if d.p else []
    elif key == 2:
        Ls = _type2(X, tm)
    else:
        Ls = _type3(X, tm, list(d.xnames))
    return {t.label: L for t, L in zip(tm.terms, Ls)}


@x64
def anova_table(res: LMMResult, type=3, ddf: str = "satterthwaite") -> pd.DataFrame:  # noqa: A002
    """lmerTest's ``anova(fit, type, ddf)``: one F test per fixed-effect term.

    Args:
        res: a fit (REML for ``ddf="kenward-roger"``).
        type: 1, 2 or 3 (or "I", "II", "III"): sequential, marginal-with-respect-to-
            containing-terms, or lmerTest's type III hypotheses (for treatment-coded
            factors: the contrasts that make each term's test independent of the coding,
            as SAS's type III).
        ddf: "satterthwaite" or "kenward-roger".

    Returns:
        DataFrame indexed by term with columns ``Sum Sq, Mean Sq, NumDF, DenDF, F value,
        Pr(>F)``; terms whose hypothesis is empty come last with NaN, as in lmerTest.
        ``attrs`` holds ``heading`` and the ``hypotheses`` matrices.
    """
    key = _ddf_key(ddf)
    Ls = hypotheses(res, type)
    kr = None
    if key == "kenward-roger":
        kr = kr_parts(res)
    labels = [k for k, L in Ls.items() if L.shape[0]]
    rows = dict(zip(labels, _contests(res, [Ls[k] for k in labels], key, kr)))
    for label in Ls:  # empty hypotheses last, as lmerTest appends them
        if label not in rows:
            rows[label] = dict.fromkeys(ANOVA_COLUMNS, np.nan)
    out = pd.DataFrame.from_dict(rows, orient="index", columns=ANOVA_COLUMNS)
    out.index.name = "term"
    roman = {1: "I", 2: "II", 3: "III"}[_TYPES[str(type).strip().lower()]]
    method = "Satterthwaite's" if key == "satterthwaite" else "Kenward-Roger's"
    out.attrs["heading"] = f"Type {roman} Analysis of Variance Table with {method} method"
    out.attrs["hypotheses"] = {k: pd.DataFrame(v, columns=res.model.design.xnames) for k, v in Ls.items()}
    return out
