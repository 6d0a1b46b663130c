"""Turn a parsed formula and a DataFrame into model matrices, with lme4's input checks.

This is the only place that looks at user data: missing values are dropped (and
counted), bad values rejected with an error naming the column, aliased fixed-effect
columns dropped with a warning, and grouping factors coded as integer levels.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .formula import FormulaError, ParsedFormula, RandomTerm, parse_formula

__all__ = ["DataError", "ReTermDesign", "Design", "build_design", "r_name"]


class DataError(ValueError):
    """The data cannot be used with the formula (missing column, bad values, ...)."""


def r_name(name: str) -> str:
    """Translate formulaic column names to R's: ``Intercept`` -> ``(Intercept)``, ``f[T.b]`` -> ``fb``."""
    if name == "Intercept":
        return "(Intercept)"
    return re.sub(r"\[(?:T\.)?([^\[\]]*)\]", r"\1", name)


@dataclass
class ReTermDesign:
    """Model matrix and level coding of one random-effects term (n rows)."""

    term: RandomTerm
    columns: list[str]
    levels: pd.Index
    index: np.ndarray  # (n,) int level of each observation
    Z: np.ndarray  # (n, r) raw columns of the term's model matrix
    spec: object = field(repr=False, default=None)  # formulaic ModelSpec, for prediction

    @property
    def name(self) -> str:
        return self.term.group_name

    @property
    def nlevels(self) -> int:
        return len(self.levels)

    @property
    def ncols(self) -> int:
        return self.Z.shape[1]


@dataclass
class Design:
    """Everything numeric the structure builder needs, plus bookkeeping for results."""

    formula: ParsedFormula
    y: np.ndarray
    X: np.ndarray
    xnames: list[str]
    terms: list[ReTermDesign]  # ordered by decreasing number of levels (stable)
    rows: pd.Index  # index labels of the data rows used
    n_dropped: int
    aliased: list[str]
    fixed_spec: object = field(repr=False, default=None)

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def p(self) -> int:
        return self.X.shape[1]


def _required_variables(expr: str) -> set[str]:
    import formulaic

    try:
        return set(formulaic.Formula(expr).required_variables)
    except Exception as exc:  # formulaic's syntax errors carry ANSI colour codes
        msg = re.sub(r"\x1b\[[0-9;]*m|⧛|⧚", "", str(exc))
        raise FormulaError(f"Cannot parse '{expr}': {msg}") from None


def _clean_message(exc: Exception) -> str:
    return re.sub(r"\x1b\[[0-9;]*m|⧛|⧚", "", str(exc))


def _model_matrix(spec_text: str, data: pd.DataFrame, what: str):
    import formulaic

    try:
        mm = formulaic.model_matrix(spec_text, data, na_action="raise")
    except Exception as exc:
        raise FormulaError(f"Cannot build {what} from '{spec_text}': {_clean_message(exc)}") from None
    return mm


def _group_codes(data: pd.DataFrame, factors: tuple[str, ...]) -> tuple[np.ndarray, pd.Index]:
    """Integer level of each row and the level labels (sorted, unused levels dropped)."""
    if len(factors) == 1:
        col = data[factors[0]]
        if isinstance(col.dtype, pd.CategoricalDtype):
            col = col.cat.remove_unused_categories()
            return col.cat.codes.to_numpy().astype(np.int64), pd.Index(col.cat.categories)
        codes, uniques = pd.factorize(col, sort=True)
        return codes.astype(np.int64), pd.Index(uniques)
    parts = []
    for name in factors:
        col = data[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            col = col.cat.remove_unused_categories()
            parts.append(pd.Categorical(col))
        else:
            parts.append(pd.Categorical(col, categories=pd.unique(col.sort_values())))
    mi = pd.MultiIndex.from_arrays(parts)
    codes, uniques = mi.factorize(sort=True)
    labels = pd.Index([":".join(str(v) for v in tup) for tup in uniques])
    return codes.astype(np.int64), labels


def _drop_aliased(X: np.ndarray, names: list[str], tol: float = 1e-7) -> tuple[np.ndarray, list[str], list[str]]:
    """Greedy Gram-Schmidt rank check in column order (earlier columns are kept, as in R)."""
    if X.shape[1] == 0:
        return X, names, []
    norms = np.linalg.norm(X, axis=0)
    keep: list[int] = []
    basis = np.zeros((X.shape[0], 0))
    for j in range(X.shape[1]):
        if norms[j] == 0:
            continue
        v = X[:, j] / norms[j]
        for _ in range(2):  # re-orthogonalise once for stability
            v = v - basis @ (basis.T @ v)
        r = np.linalg.norm(v)
        if r > tol:
            keep.append(j)
            basis = np.column_stack([basis, v / r])
    aliased = [names[j] for j in range(X.shape[1]) if j not in keep]
    return X[:, keep], [names[j] for j in keep], aliased


def _as_frame(data) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, dict):
        return pd.DataFrame(data)
    raise DataError(f"data must be a pandas DataFrame (or a dict of columns), got {type(data).__name__}")


def build_design(formula: str | ParsedFormula, data, *, warn: bool = True) -> Design:
    """Validate ``data`` against ``formula`` and build fixed and random model matrices."""
    parsed = formula if isinstance(formula, ParsedFormula) else parse_formula(formula)
    data = _as_frame(data)
    if len(data) == 0:
        raise DataError("data is empty: no rows to fit")

    response_vars = (
        _required_variables(f"{parsed.response} ~ 1") if not parsed.response.isidentifier() else {parsed.response}
    )
    fixed_vars = _required_variables(f"~ {parsed.fixed}")
    term_vars: dict[RandomTerm, set[str]] = {}
    for term in parsed.random:
        term_vars[term] = _required_variables(f"~ {term.expr}") | set(term.group)
    used = response_vars | fixed_vars | set().union(*term_vars.values())
    missing = sorted(v for v in used if v not in data.columns)
    if missing:
        available = ", ".join(map(str, data.columns[:20]))
        raise DataError(
            f"Column(s) {', '.join(repr(m) for m in missing)} used in the formula "
            f"not found in data (columns: {available})"
        )

    cols = [c for c in data.columns if c in used]
    frame = data[cols]
    na_rows = frame.isna().any(axis=1).to_numpy()
    n_dropped = int(na_rows.sum())
    if n_dropped:
        frame = frame.loc[~na_rows]
        if warn:
            warnings.warn(
                f"{n_dropped} row(s) with missing values in the model's columns were dropped",
                stacklevel=4,
            )
    if len(frame) == 0:
        raise DataError("no complete rows remain after dropping missing values")

    for name in cols:
        col = frame[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            values = col.to_numpy(dtype=float)
            if np.isinf(values).any():
                raise DataError(f"Column '{name}' contains infinite values")

    mm = _model_matrix(f"{parsed.response} ~ {parsed.fixed}", frame, "the fixed-effects model matrix")
    lhs = mm.lhs
    if lhs.shape[1] != 1:
        raise DataError(
            f"Response '{parsed.response}' must be a single numeric column "
            f"(it expands to {lhs.shape[1]} columns: is it categorical?)"
        )
    try:
        y = np.asarray(lhs, dtype=float).ravel()
    except (TypeError, ValueError):
        raise DataError(f"Response '{parsed.response}' is not numeric") from None
    if not np.all(np.isfinite(y)):
        raise DataError(f"Response '{parsed.response}' contains non-finite values")
    X = np.asarray(mm.rhs, dtype=float)
    if not np.all(np.isfinite(X)):
        bad = [r_name(c) for c, ok in zip(mm.rhs.columns, np.isfinite(X).all(axis=0)) if not ok]
        raise DataError(f"Fixed-effects column(s) {bad} contain non-finite values (e.g. log of 0)")
    xnames = [r_name(c) for c in mm.rhs.columns]
    X, xnames, aliased = _drop_aliased(X, xnames)
    if aliased and warn:
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(aliased)} column(s): {', '.join(aliased)}",
            stacklevel=4,
        )
    n = len(y)

    terms: list[ReTermDesign] = []
    for term in parsed.random:
        zmm = _model_matrix(f"~ {term.expr}", frame, f"random-effects term {term}")
        Z = np.asarray(zmm, dtype=float)
        if Z.shape[1] == 0:
            raise FormulaError(f"Random-effects term {term} has no columns")
        if not np.all(np.isfinite(Z)):
            raise DataError(f"Random-effects term {term} has non-finite values")
        index, levels = _group_codes(frame, term.group)
        if len(levels) < 2:
            raise DataError(
                f"Grouping factor '{term.group_name}' in {term} has {len(levels)} level(s); "
                "a grouping factor needs at least 2 levels"
            )
        if len(levels) >= n:
            raise DataError(
                f"Grouping factor '{term.group_name}' has {len(levels)} levels for {n} "
                "observations: the number of levels of each grouping factor must be "
                "< number of observations"
            )
        if len(levels) * Z.shape[1] >= n:
            raise DataError(
                f"Term {term} has {len(levels) * Z.shape[1]} random effects for {n} "
                "observations: the random-effects parameters and the residual variance "
                "are probably unidentifiable"
            )
        terms.append(
            ReTermDesign(
                term=term,
                columns=[r_name(c) for c in zmm.columns],
                levels=levels,
                index=index,
                Z=Z,
                spec=zmm.model_spec,
            )
        )
    # most levels first, as MixedModels.jl and lme4 order them; ties keep formula order
    terms.sort(key=lambda t: -t.nlevels)
    return Design(
        formula=parsed,
        y=y,
        X=X,
        xnames=xnames,
        terms=terms,
        rows=frame.index,
        n_dropped=n_dropped,
        aliased=aliased,
        fixed_spec=mm.rhs.model_spec,
    )
