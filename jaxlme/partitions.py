"""Fits from data in partitions: levels first, then summed cross-products.

Everything a fit needs from the rows is the blocked cross-products of [Z X y]
(:class:`jaxlme.structure.CrossProducts`), sums over rows.  A data set too large for one
process is fitted in two passes over its partitions (pandas frames, from Dask, a Parquet
stream, Spark's ``mapInPandas`` or Ray's ``map_batches``):

1. :func:`collect_levels` on each partition, merged with ``+``: the levels of every
   grouping factor (``g``, ``a:b``, the terms of ``a/b``) and factor column, over the
   complete rows (the in-memory path's levels, whatever the partitioning);
2. :meth:`PartitionPlan.crossproducts` on each partition, merged with ``+`` (any order or
   tree), then :meth:`jaxlme.LMM.from_crossproducts` runs lme4's checks on the sums (rows
   dropped for missing values, levels against observations, a constant response, rank
   deficiency from X'X) and fits.

The sums are of rows shifted by the first partition's column means; the driver re-centres
them exactly to the global means (a rank-one correction, small because the shift is
close), so the fit equals the in-memory one to rounding (~1e-12 relative).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from . import messages
from .centering import Centering
from .design import (
    DataError,
    build_design,
    check_levels,
    drop_unused_categories,
    model_variables,
    split_uncorrelated,
)
from .formula import FormulaError, ParsedFormula, parse_formula
from .structure import CrossProducts, crossproducts

__all__ = ["LevelSet", "collect_levels", "PartitionPlan", "finalize", "fitted_values", "partition_fitted"]

# Transforms whose value depends on the whole column: a partition alone cannot give R's meaning.
_STATEFUL = re.compile(r"(?<![\w.])(scale|center|poly|factor|as\.factor|C)\s*\(")


def _kind(col: pd.Series) -> str:
    """What a column holds, for the same-type-in-every-partition check."""
    dtype = col.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if dtype.kind == "b":
        return "boolean"
    if dtype.kind in "iuf":
        return "numeric"
    if dtype.kind in "mM" or isinstance(dtype, pd.DatetimeTZDtype):
        return "date/time"
    return "text"


def parse_partitioned_formula(formula) -> ParsedFormula:
    """The parsed formula of a fit from partitions, refusing transforms that need the whole
    column (``scale``, ``poly``, ...), which no single partition can evaluate."""
    parsed = formula if isinstance(formula, ParsedFormula) else parse_formula(formula)
    bad = _STATEFUL.search(parsed.text)
    if bad:
        raise FormulaError(
            f"{bad.group(1)}(...) in '{parsed.text}' depends on the whole column, which one partition does not "
            "see: compute it before partitioning or fit in memory"
        )
    return parsed


@dataclass(frozen=True)
class LevelSet:
    """The levels seen in some partitions' complete rows, merged with ``+``.

    Attributes:
        kinds: column -> what it holds ("numeric", "text", "categorical", ...).
        values: factor-column tuple (``(g,)``, or ``(a, b)`` for ``a:b``) -> the set of
            values (tuples for ``a:b``) in complete rows.
        categories: categorical column -> its categories' order.
        n: complete rows.
    """

    kinds: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    categories: dict = field(default_factory=dict)
    n: int = 0

    def __add__(self, other: LevelSet) -> LevelSet:
        if not isinstance(other, LevelSet):
            return NotImplemented
        kinds = dict(self.kinds)
        for name, kind in other.kinds.items():
            if kinds.setdefault(name, kind) != kind:
                raise DataError(
                    f"Column '{name}' holds {kinds[name]} values in one partition and {kind} values in another: "
                    "give it one type in every partition"
                )
        values = {k: set(v) for k, v in self.values.items()}
        for k, v in other.values.items():
            values.setdefault(k, set()).update(v)
        cats = dict(self.categories)
        for name, c in other.categories.items():
            if name in cats and list(cats[name]) != list(c):
                raise DataError(f"Categorical column '{name}' has different categories in different partitions")
            cats[name] = c
        return LevelSet(kinds, values, cats, self.n + other.n)

    def __radd__(self, other):  # sum() starts from 0
        return self if isinstance(other, int) and other == 0 else NotImplemented

    def _order(self, name: str, values) -> list:
        """A factor's levels as the in-memory path orders them: a categorical's categories
        (unused dropped), else sorted."""
        if name in self.categories:
            return [c for c in self.categories[name] if c in values]
        try:
            return sorted(values)
        except TypeError:
            raise DataError(f"Column '{name}' mixes values that cannot be ordered (e.g. numbers and text)") from None

    def global_levels(self, parsed: ParsedFormula) -> dict:
        """``build_design``'s ``levels``: factor columns' levels and grouping factors' keys."""
        columns = {}
        for name, kind in self.kinds.items():
            if kind in ("text", "categorical") and (name,) in self.values:
                columns[name] = self._order(name, self.values[(name,)])
        groups = {}
        for term in split_uncorrelated(parsed.random):
            g = term.group
            if len(g) == 1:
                groups[g] = pd.Index(self._order(g[0], self.values[g]))
            else:
                # as in memory (and R's ``:``): in each part's level order, the first slowest
                seen = self.values[g]
                ranks = [
                    {v: i for i, v in enumerate(self._order(name, {t[j] for t in seen}))} for j, name in enumerate(g)
                ]
                tuples = sorted(seen, key=lambda t: tuple(r[v] for r, v in zip(ranks, t)))
                groups[g] = pd.MultiIndex.from_tuples(tuples, names=list(g))
        return {"columns": columns, "groups": groups}


def _complete(parsed: ParsedFormula, frame: pd.DataFrame, weights) -> pd.DataFrame:
    used = model_variables(parsed)[0]
    missing = sorted(v for v in used if v not in frame.columns)
    if missing:
        raise DataError(f"Column(s) {', '.join(repr(m) for m in missing)} used in the formula not found in data")
    cols = [c for c in frame.columns if c in used]
    na = np.zeros(len(frame), dtype=bool)
    for c in cols + ([weights] if isinstance(weights, str) and weights in frame.columns else []):
        na |= frame[c].isna().to_numpy()
    return frame.loc[~na, cols]


def collect_levels(formula, frame: pd.DataFrame, weights: str | None = None) -> LevelSet:
    """Pass 1 on one partition: the levels in its complete rows (rows with a missing value
    in a model column or the weight are dropped, as the fit drops them).

    Args:
        formula: lme4-style formula (text or parsed).
        frame: one partition (pandas).
        weights: the prior weights' column name, if any.

    Returns:
        The partition's :class:`LevelSet` (add them up over partitions).
    """
    parsed = parse_partitioned_formula(formula)
    used = model_variables(parsed)[0]
    kinds = {c: _kind(frame[c]) for c in frame.columns if c in used}
    rows = drop_unused_categories(_complete(parsed, frame, weights))
    values, cats = {}, {}
    groups = {t.group for t in split_uncorrelated(parsed.random)}
    singles = {(c,) for c, k in kinds.items() if k in ("text", "categorical")} | {(f,) for g in groups for f in g}
    for key in singles | groups:
        cols = [rows[f] for f in key]
        cols = [c.astype(object) if isinstance(c.dtype, pd.CategoricalDtype) else c for c in cols]
        values[key] = set(zip(*cols)) if len(key) > 1 else set(pd.unique(cols[0]))
    for c, k in kinds.items():
        if k == "categorical":
            cats[c] = tuple(frame[c].cat.categories)
    return LevelSet(kinds, values, cats, len(rows))


class PartitionPlan:
    """What every partition needs to compute its cross-products: the formula, the global
    levels and the shift (the first partition's column means).  Picklable: ship it to
    the workers and call :meth:`crossproducts` there.

    Args:
        formula: lme4-style formula.
        levels: the merged :class:`LevelSet` of all partitions.
        head: one partition with complete rows (its means shift the sums; its specs name
            the columns).
        weights: the prior weights' column name, or None.
    """

    def __init__(self, formula, levels: LevelSet, head: pd.DataFrame, weights: str | None = None) -> None:
        if weights is not None and not isinstance(weights, str):
            raise DataError("weights of a partitioned data set must be a column name")
        self.parsed = parse_partitioned_formula(formula)
        self.weights = weights
        if levels.n == 0:
            raise DataError("no complete rows remain after dropping missing values")
        self.levels = levels.global_levels(self.parsed)
        head_design = build_design(self.parsed, head, warn=False, weights=weights, levels=self.levels)
        if head_design is None:
            raise DataError("the head partition has no complete rows")
        self.head = head_design
        X = head_design.X
        j0 = head_design.xnames.index("(Intercept)") if "(Intercept)" in head_design.xnames else None
        self.intercept = j0 if j0 is not None and np.all(X[:, j0] == 1.0) else None
        if self.intercept is None:
            self.means, self.y_shift = np.zeros(X.shape[1]), 0.0
        else:
            w = head_design.weights
            self.means = np.average(X, axis=0, weights=w)
            self.means[self.intercept] = 0.0
            self.y_shift = float(np.average(head_design.y, weights=w))
        self.zero = CrossProducts.zero(crossproducts(self._shifted(head_design)).terms, X.shape[1])
        # the names, levels and specs only: the plan travels to every worker
        self.head = head_design.without_rows(head_design.n, 0, head_design.xnames, [])

    def _shifted(self, design):
        if self.intercept is None:
            return design
        X = design.X - self.means
        X[:, self.intercept] = 1.0
        return replace(design, X=X, y=design.y - self.y_shift)

    def crossproducts(self, frame: pd.DataFrame) -> CrossProducts:
        """Pass 2 on one partition: the :class:`CrossProducts` of its complete rows (an
        empty or all-missing partition gives zero sums that count its dropped rows)."""
        design = build_design(self.parsed, frame, warn=False, weights=self.weights, levels=self.levels)
        if design is None:
            return replace(self.zero, n_dropped=len(frame))
        cp = crossproducts(self._shifted(design), unweighted_X=design.X)
        return replace(cp, y_min=float(design.y.min()), y_max=float(design.y.max()))


def _aliased(G: np.ndarray, tol: float = 1e-7) -> list[int]:
    """Columns of a Gram matrix that are (nearly) combinations of earlier ones: the greedy
    Gram-Schmidt of ``design._drop_aliased`` on normalised columns, as a pivoted Cholesky."""
    p = G.shape[0]
    d = np.sqrt(np.maximum(np.diag(G), 0.0))
    keep: list[int] = []
    L = np.zeros((p, p))
    for j in range(p):
        if d[j] == 0:
            continue
        g = G[keep, j] / (d[keep] * d[j]) if keep else np.zeros(0)
        r = np.linalg.solve(L[: len(keep), : len(keep)], g) if keep else g
        res = 1.0 - float(r @ r)
        if np.sqrt(max(res, 0.0)) > tol:
            k = len(keep)
            L[k, :k], L[k, k] = r, np.sqrt(res)
            keep.append(j)
    return [j for j in range(p) if j not in keep]


def _recentre(cp: CrossProducts, j0: int) -> tuple[CrossProducts, np.ndarray, float]:
    """Sums of the rows centred at their global (weighted) means from sums of shifted rows:
    column j of X becomes X_j − δ_j·1 and y becomes y − δ_y·1, δ = mean of the shifted
    column, i.e. [Zr X y] ↦ [Zr X y]·T with T the identity plus −δ in the intercept's row."""
    q = cp.q_rest
    m = len(cp.ry) - 1
    F = np.empty((m + 1, m + 1))
    F[:m, :m], F[:m, m], F[m, :m], F[m, m] = cp.arr, cp.ry[:m], cp.ry[:m], cp.ry[m]
    i0 = q + j0
    d = np.zeros(m + 1)
    d[q : q + cp.p] = F[i0, q : q + cp.p] / F[i0, i0]
    d[m] = F[i0, m] / F[i0, i0]
    d[i0] = 0.0
    f0 = F[:, i0].copy()
    F = F - np.outer(f0, d) - np.outer(d, f0) + F[i0, i0] * np.outer(d, d)
    k1 = cp.terms[0].nlevels
    rows, levs = cp.keys // k1, cp.keys % k1
    vals = cp.vals.copy()
    at = np.full((m + 1, k1), -1)
    at[rows, levs] = np.arange(len(rows))
    sel = d[rows] != 0
    vals[sel] -= d[rows[sel], None] * cp.vals[at[i0, levs[sel]]]
    ones1 = np.zeros_like(cp.zy1)  # Z1'1 per level: the intercept's entries
    has = at[i0] >= 0
    ones1[has] = cp.vals[at[i0, has]]
    zy1 = cp.zy1 - d[m] * ones1
    out = replace(cp, arr=F[:m, :m].copy(), ry=F[m].copy(), vals=vals, zy1=zy1)
    return out, d[q : q + cp.p], float(d[m])


def _drop_columns(cp: CrossProducts, drop: list[int]) -> CrossProducts:
    """The sums without the fixed-effect columns ``drop`` (aliased)."""
    if not drop:
        return cp
    q = cp.q_rest
    size = len(cp.ry)
    keep_rows = np.setdiff1d(np.arange(size), q + np.asarray(drop))
    new_row = np.full(size, -1)
    new_row[keep_rows] = np.arange(len(keep_rows))
    k1 = cp.terms[0].nlevels
    rows, levs = cp.keys // k1, cp.keys % k1
    ok = new_row[rows] >= 0
    km = keep_rows[:-1]
    return replace(
        cp,
        p=cp.p - len(drop),
        keys=new_row[rows[ok]] * k1 + levs[ok],
        vals=cp.vals[ok],
        arr=cp.arr[np.ix_(km, km)],
        ry=cp.ry[keep_rows],
        ones=np.delete(cp.ones, drop),
    )


def finalize(plan: PartitionPlan, total: CrossProducts, warn: bool = True):
    """The driver's side: lme4's checks on the summed cross-products, exact re-centring and
    the aliased columns dropped.

    Args:
        plan: the :class:`PartitionPlan` the partitions used.
        total: the sum of every partition's :class:`CrossProducts`.
        warn: Warn about dropped rows and aliased columns, as the in-memory path does.

    Returns:
        ``(design without rows, cross-products, centering)`` for :class:`jaxlme.LMM`.

    Raises:
        DataError: the in-memory path's errors (no complete rows, too few levels, too many
            levels or random effects for the observations, a constant response, no
            residual degrees of freedom, a random-effects column that is zero everywhere).
    """
    head, n = plan.head, total.n
    if n == 0:
        raise DataError("no complete rows remain after dropping missing values")
    if total.n_dropped and warn:
        messages.warn(f"{total.n_dropped} row(s) with missing values in the model's columns were dropped")
    by_term = {t.term: t for t in head.terms}
    for term in split_uncorrelated(plan.parsed.random):
        t = by_term[term]
        check_levels(term, t.nlevels, t.ncols, n)
    cp, centering = total, Centering(np.zeros(total.p), 0.0, None)
    if plan.intercept is not None:
        cp, dx, dy = _recentre(total, plan.intercept)
        means = plan.means + dx
        means[plan.intercept] = 0.0
        centering = Centering(means, plan.y_shift + dy, plan.intercept)
    q = cp.q_rest
    drop = _aliased(cp.arr[q:, q:])
    xnames = [x for j, x in enumerate(head.xnames) if j not in drop]
    aliased = [head.xnames[j] for j in drop]
    if aliased and warn:
        messages.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(aliased)} column(s): {', '.join(aliased)}"
        )
    cp = _drop_columns(cp, drop)
    if drop:
        keep = [j for j in range(total.p) if j not in drop]
        j0 = keep.index(centering.intercept) if centering.intercept is not None else None
        centering = Centering(centering.means[keep], centering.y_shift, j0)
    if total.y_min == total.y_max:
        raise DataError(
            f"Response '{plan.parsed.response}' is constant ({total.y_min:g} in every row): "
            "there is no variance to model"
        )
    if n - cp.p <= 0:
        raise DataError(
            f"{n} observations for {cp.p} fixed-effect columns: no residual degrees of freedom (n - p = {n - cp.p})"
        )
    for term, zz in zip(head.terms, cp.zz):
        zero = [c for c, s in zip(term.columns, zz) if s == 0]
        if zero:
            raise DataError(
                f"Random-effects column(s) {', '.join(map(repr, zero))} of term {term.term} are zero in every "
                "row: their variance is not identifiable"
            )
    design = head.without_rows(n, total.n_dropped, xnames, aliased)
    return design, cp, centering


def fitted_values(result, frame: pd.DataFrame, kind: str = "fitted") -> pd.Series:
    """Fitted values or residuals of one partition's complete rows, for a model fitted from
    cross-products (``result.fitted`` needs the rows the model did not keep).

    Args:
        result: the fitted :class:`jaxlme.LMMResult`.
        frame: one partition (pandas) with the model's columns.
        kind: "fitted" (Xβ̂ + Zb̂ + offset) or "residuals" (response minus fitted).

    Returns:
        A Series indexed like the partition's complete rows (empty for none).
    """
    b = [np.asarray(x) for x in result.effects.b]
    return partition_fitted(frame, result.model.plan, result.fixef, b, kind)


def partition_fitted(frame: pd.DataFrame, plan: PartitionPlan, fixef: pd.Series, b: list, kind: str) -> pd.Series:
    """:func:`fitted_values` from the pieces a worker needs (plan, β̂ by name, b̂ per term)."""
    if kind not in ("fitted", "residuals"):
        raise ValueError(f"kind must be 'fitted' or 'residuals', got {kind!r}")
    design = build_design(plan.parsed, frame, warn=False, weights=plan.weights, levels=plan.levels)
    if design is None:
        return pd.Series([], dtype=float, name=kind)
    beta = fixef.reindex(design.xnames).fillna(0.0).to_numpy()  # aliased columns: 0
    out = design.X @ beta
    if design.offset is not None:
        out = out + design.offset
    for t, bt in zip(design.terms, b):
        out = out + np.einsum("ij,ij->i", t.Z, bt[t.index])
    if kind == "residuals":
        y = design.y if design.offset is None else design.y + design.offset
        out = y - out
    return pd.Series(out, index=design.rows, name=kind)
