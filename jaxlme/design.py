"""Turn a parsed formula and a DataFrame into model matrices, with lme4's input checks.

This is the only place that looks at user data: missing values are dropped (and
counted), bad values rejected with an error naming the column, aliased fixed-effect
columns dropped with a warning, and grouping factors coded as integer levels.
"""

from __future__ import annotations

import keyword
import re
import warnings
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd

from . import messages
from .formula import FormulaError, ParsedFormula, RandomTerm, parse_formula, split_top_level
from .transforms import RModelSpec, r_context, required_variables, to_python

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
    # the levels' values (a MultiIndex of value tuples for a:b), matched by value, not by
    # their text, when predicting: 1 and "1", or "a:b" x "c" and "a" x "b:c", stay apart
    keys: pd.Index | None = field(repr=False, default=None)

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
    # the sum of the formula's offset(...) terms; y above is the response minus it
    offset: np.ndarray | None = field(repr=False, default=None)
    offset_specs: tuple = field(repr=False, default=())  # one RModelSpec per offset term
    weights: np.ndarray | None = field(repr=False, default=None)  # prior weights (n,), None: all 1
    weights_name: str | None = None  # the weight column's name, or "weights" for an array

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def p(self) -> int:
        return self.X.shape[1]

    @property
    def has_rows(self) -> bool:
        """Whether the rows are kept (False for a model fitted from summed cross-products)."""
        return True

    def without_rows(self, n: int, n_dropped: int, xnames: list[str], aliased: list[str]) -> Design:
        """This design's names, levels and specs without its rows, for a model fitted from the
        cross-products of ``n`` rows in all: reading its rows raises a one-line error
        instead of computing silently from none."""
        terms = []
        for t in self.terms:
            tk = {f.name: t.__dict__[f.name] for f in fields(t)}
            tk.update(index=np.zeros(0, np.int64), Z=np.zeros((0, t.__dict__["Z"].shape[1])))
            terms.append(RowlessTerm(**tk))
        kw = {f.name: self.__dict__[f.name] for f in fields(self)}
        kw.update(terms=terms, n_dropped=n_dropped, xnames=list(xnames), aliased=list(aliased), weights=None)
        kw.update(y=np.zeros(0), X=np.zeros((0, len(xnames))), rows=pd.RangeIndex(0), offset=None)  # no rows kept
        out = RowlessDesign(**kw)
        object.__setattr__(out, "_nobs", int(n))
        object.__setattr__(out, "_p", len(xnames))
        return out


_ROWS_NEEDED = (
    "needs the data rows, which a model fitted from summed cross-products does not keep: compute it "
    "per partition (jaxlme.partitions.fitted_values) or fit the rows in memory"
)


class RowlessDesign(Design):
    """A :class:`Design` of a model fitted from cross-products: reading ``y``, ``X``,
    ``rows`` or ``offset`` raises, naming what is missing."""

    def __getattribute__(self, name):
        if name in ("y", "X", "rows", "offset"):
            raise DataError(f"this computation reads design.{name}, which {_ROWS_NEEDED}")
        return object.__getattribute__(self, name)

    @property
    def n(self) -> int:
        return self._nobs

    @property
    def p(self) -> int:
        return self._p

    @property
    def has_rows(self) -> bool:
        return False


class RowlessTerm(ReTermDesign):
    """A :class:`ReTermDesign` without rows: reading ``index`` or ``Z`` raises."""

    def __getattribute__(self, name):
        if name in ("index", "Z"):
            raise DataError(f"this computation reads the random-effects term's {name}, which {_ROWS_NEEDED}")
        return object.__getattribute__(self, name)

    @property
    def ncols(self) -> int:
        return len(self.columns)


# A right-hand side made only of column names and 0/1/-1 ("1 + Days", "x - 1", "0 + x").
_SIMPLE_PIECE = re.compile(r"\s*([+-]?)\s*([A-Za-z_][A-Za-z0-9_.]*|[01])\s*")


def simple_terms(rhs: str) -> tuple[bool, tuple[str, ...]] | None:
    """``(intercept, names)`` when ``rhs`` only adds plain column names and sets the
    intercept with ``1``/``0``/``-1``; None for anything else (left to formulaic)."""
    pos, intercept, names = 0, True, []
    while pos < len(rhs):
        m = _SIMPLE_PIECE.match(rhs, pos)
        if m is None or m.end() == pos:
            return None
        sign, token = m.group(1) or "+", m.group(2)
        if pos > 0 and not m.group(1):
            return None  # two tokens without an operator between them
        pos = m.end()
        if token in ("0", "1"):
            if sign == "-" and token == "0":
                return None  # "- 0" adds the intercept back: rare, formulaic's business
            intercept = token == "1" and sign == "+"
        elif sign == "-" or keyword.iskeyword(token) or "." in token:
            return None
        elif token not in names:
            names.append(token)
    return (intercept, tuple(names)) if pos > 0 else None


@dataclass(frozen=True)
class ColumnsSpec:
    """The model matrix of a formula that only names columns (numbers, booleans, factors):
    formulaic's ModelSpec interface (``column_names``, ``required_variables``,
    ``get_model_matrix``) and its coding -- a factor's levels sorted (a categorical's in
    category order), treatment contrasts against the first level, all levels for the first
    factor when there is no intercept -- without formulaic, whose import would cost every
    process more than a small fit takes.  Tested against formulaic."""

    intercept: bool
    variables: tuple[str, ...]
    levels: tuple[tuple | None, ...] = ()  # per variable: None for a number, else its levels

    def _coding(self):
        """(name, levels or None, full rank) per variable."""
        levels = self.levels or (None,) * len(self.variables)
        first_factor = next((i for i, lv in enumerate(levels) if lv is not None), None)
        for i, (name, lv) in enumerate(zip(self.variables, levels)):
            yield name, lv, lv is not None and not self.intercept and i == first_factor

    @property
    def column_names(self) -> list[str]:
        names = ["Intercept"] if self.intercept else []
        for name, lv, full in self._coding():
            if lv is None:
                names.append(name)
            else:
                names += [dummy_name(name, v, full) for v in (lv if full else lv[1:])]
        return names

    @property
    def required_variables(self) -> set[str]:
        return set(self.variables)

    def get_model_matrix(self, data: pd.DataFrame, na_action: str = "ignore") -> pd.DataFrame:
        cols = {"Intercept": np.ones(len(data))} if self.intercept else {}
        for name, lv, full in self._coding():
            col = data[name]
            if lv is None:
                if not _numeric(col):
                    raise DataError(f"column '{name}' is not numeric (it was numeric when the model was fitted)")
                cols[name] = col.to_numpy(dtype=float)
                continue
            codes = pd.Index(lv).get_indexer(col)  # -1: missing or not a fitted level
            na = col.isna().to_numpy()
            unseen = sorted({str(v) for v in col[(codes < 0) & ~na]})
            if unseen:
                raise DataError(f"factor level(s) {{{', '.join(map(repr, unseen))}}} of '{name}' not seen in fitting")
            for k, v in enumerate(lv):
                if full or k > 0:
                    dummy = (codes == k).astype(float)
                    dummy[na] = np.nan
                    cols[dummy_name(name, v, full)] = dummy
        out = pd.DataFrame(cols, index=data.index)
        if na_action == "raise" and out.isna().any(axis=None):
            raise DataError("missing values in the model's columns")
        return out


def dummy_name(name: str, level, full: bool) -> str:
    """formulaic's name of a factor's indicator column: ``g[a]`` full rank, ``g[T.a]`` contrast."""
    return f"{name}[{level}]" if full else f"{name}[T.{level}]"


def _plain_numeric(col) -> bool:
    return isinstance(col, pd.Series) and col.dtype.kind in "iuf"


def _numeric(col) -> bool:
    """Numbers and booleans: one column each (formulaic codes a bool column as 0/1)."""
    return isinstance(col, pd.Series) and col.dtype.kind in "iufb"


def _factor_levels(col) -> tuple | None:
    """A factor column's levels as formulaic orders them, or None when it is not a plain
    factor (mixed or non-string values outside a categorical: left to formulaic)."""
    if not isinstance(col, pd.Series):
        return None
    if isinstance(col.dtype, pd.CategoricalDtype):
        return tuple(col.cat.categories)
    if col.dtype.kind not in "OU" and not isinstance(col.dtype, pd.StringDtype):
        return None
    values = col.dropna().unique()
    if not all(isinstance(v, str) for v in values):
        return None
    return tuple(sorted(values))


def simple_spec(rhs: str, data: pd.DataFrame) -> ColumnsSpec | None:
    """A :class:`ColumnsSpec` when ``rhs`` is simple and its columns are numbers or factors."""
    terms = simple_terms(rhs)
    if terms is None or not all(name in data.columns for name in terms[1]):
        return None
    levels = []
    for name in terms[1]:
        col = data[name]
        lv = None if _numeric(col) else _factor_levels(col)
        if lv is None and not _numeric(col):
            return None
        levels.append(lv)
    return ColumnsSpec(terms[0], terms[1], tuple(levels))


def formula_variables(expr: str) -> set[str]:
    """The data columns a one- or two-sided formula expression reads (R functions and
    jaxlme's transforms are not columns), e.g. ``{"x", "g"}`` for ``"~ log(x) + g"``."""
    lhs, _, rhs = expr.partition("~")
    simple = None if lhs.strip() else simple_terms(rhs)
    if simple is not None:
        return set(simple[1])
    import formulaic

    try:
        return required_variables(formulaic.Formula(to_python(expr)))
    except FormulaError:
        raise
    except Exception as exc:  # formulaic's syntax errors carry ANSI colour codes
        msg = re.sub(r"\x1b\[[0-9;]*m|⧛|⧚", "", str(exc))
        raise FormulaError(f"Cannot parse '{expr}': {msg}") from None


def _clean_message(exc: Exception) -> str:
    return re.sub(r"\x1b\[[0-9;]*m|⧛|⧚", "", str(exc))


def for_formulaic(data: pd.DataFrame) -> pd.DataFrame:
    """``data`` with pandas' nullable ``string`` columns as ``object``: formulaic (1.2) codes
    object and ``str`` columns as factors but passes ``string`` ones through uncoded (then
    fails in arithmetic, e.g. an interaction, with an unrelated message)."""
    nullable = [c for c, t in data.dtypes.items() if isinstance(t, pd.StringDtype) and t.na_value is pd.NA]
    if not nullable:
        return data
    return data.assign(**{c: data[c].astype(object).where(data[c].notna(), np.nan) for c in nullable})


def model_matrix(spec_text: str, data: pd.DataFrame, what: str):
    """formulaic's model matrix of an R-syntax right-hand side on ``data`` (missing values
    raise), with errors reworded for users: ``what`` names the part of the model."""
    import formulaic

    try:
        mm = formulaic.model_matrix(to_python(spec_text), for_formulaic(data), na_action="raise", context=r_context())
    except FormulaError:
        raise
    except Exception as exc:
        raise FormulaError(f"Cannot build {what} from '{spec_text}': {_clean_message(exc)}") from None
    return mm


def _group_codes(data: pd.DataFrame, factors: tuple[str, ...]) -> tuple[np.ndarray, pd.Index, pd.Index]:
    """Integer level of each row, the level labels (sorted, unused levels dropped) and the
    levels' values (a MultiIndex of tuples for an interaction), for matching new data."""
    if len(factors) == 1:
        col = data[factors[0]]
        if isinstance(col.dtype, pd.CategoricalDtype):
            col = col.cat.remove_unused_categories()
            keys = pd.Index(col.cat.categories)
            return col.cat.codes.to_numpy().astype(np.int64), keys, keys
        codes, uniques = pd.factorize(col, sort=True)
        keys = pd.Index(uniques)
        return codes.astype(np.int64), keys, keys
    parts = []
    for name in factors:
        col = data[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            col = col.cat.remove_unused_categories()
            parts.append(pd.Categorical(col))
        else:
            parts.append(pd.Categorical(col, categories=pd.unique(col.sort_values())))
    # The observed combinations in each factor's level order, the first slowest (R's ``:``
    # on factors, whose unused levels lme4 drops): the combinations' codes in mixed radix,
    # sorted.  Codes of 2**62 combinations or more would overflow: tuples then.
    sizes = [len(c.categories) for c in parts]
    part_codes = [np.asarray(c.codes, dtype=np.int64) for c in parts]
    if np.prod(np.asarray(sizes, dtype=float)) < 2.0**62:
        used, codes = np.unique(np.ravel_multi_index(part_codes, sizes), return_inverse=True)
        level_codes = np.unravel_index(used, sizes)
    else:
        used, codes = np.unique(np.stack(part_codes, axis=1), axis=0, return_inverse=True)
        level_codes = tuple(used.T)
    values = [c.categories.take(lc) for c, lc in zip(parts, level_codes)]
    keys = pd.MultiIndex.from_arrays(values, names=list(factors))
    labels = pd.Index([":".join(str(v) for v in tup) for tup in zip(*values)])
    return codes.reshape(-1).astype(np.int64), labels, keys


def _drop_aliased(X: np.ndarray, names: list[str], tol: float = 1e-7) -> tuple[np.ndarray, list[str], list[str]]:
    """Greedy Gram-Schmidt rank check in column order (earlier columns are kept, as in R).

    With an intercept column the other columns are checked centred (the same span): a
    covariate far from zero, such as a year, is not mistaken for a multiple of the intercept.
    """
    if X.shape[1] == 0:
        return X, names, []
    ones = np.all(X == 1.0, axis=0)
    Xr = X
    if ones.any():
        Xr = np.where(ones, X, X - X.mean(axis=0))
    norms = np.linalg.norm(Xr, axis=0)
    keep: list[int] = []
    basis = np.zeros((X.shape[0], 0))
    for j in range(X.shape[1]):
        if norms[j] == 0:
            continue
        v = Xr[:, j] / norms[j]
        for _ in range(2):  # re-orthogonalise once for stability
            v = v - basis @ (basis.T @ v)
        r = np.linalg.norm(v)
        if r > tol:
            keep.append(j)
            basis = np.column_stack([basis, v / r])
    aliased = [names[j] for j in range(X.shape[1]) if j not in keep]
    return X[:, keep], [names[j] for j in keep], aliased


def split_uncorrelated(random: tuple[RandomTerm, ...]) -> list[RandomTerm]:
    """Random terms with every ``(expr || g)`` split as lme4's ``expandDoubleVerts`` does.

    ``(1 + x + f || g)`` becomes ``(1 | g) + (0 + x | g) + (0 + f | g)``: one term per
    piece of ``expr``, so a factor ``f`` keeps its correlated block of columns, exactly
    lme4's model.  Pieces must be single terms joined by ``+``.

    Raises:
        FormulaError: a piece such as ``x*z`` that is not a single term, or a subtracted piece
            other than the intercept.
    """

    out: list[RandomTerm] = []
    for term in random:
        if term.correlated:
            out.append(term)
            continue
        intercept, pieces = True, []
        for sign, piece, _ in split_top_level(term.expr, 0, term.expr):
            piece = piece.strip()
            if not piece and sign == "+":
                continue  # a leading sign, as in "-1 + x"
            if piece in ("0", "1") or (sign == "-" and piece == "1"):
                intercept = piece == "1" and sign == "+"
            elif sign == "-":
                raise FormulaError(f"cannot split {term}: remove '- {piece}' and list the columns to keep")
            elif re.search(r"[*/^]|%in%", re.sub(r"\([^()]*\)", "", piece)):
                raise FormulaError(f"cannot split {term}: write '{piece}' out as single terms joined by '+'")
            else:
                pieces.append(piece)
        out += [RandomTerm("1", term.group)] if intercept else []
        out += [RandomTerm(f"0 + {p}", term.group) for p in pieces]
    return out


def lme4_order(terms: list[ReTermDesign]) -> list[ReTermDesign]:
    """Terms in lme4's order (``mkReTrms``): unchanged when the numbers of levels never
    increase along the formula, else ``rev(order(nlevels))`` -- most levels first, ties
    in reverse formula order.  lme4's group names (``g``, ``g.1``) follow this order."""
    nl = [t.nlevels for t in terms]
    if all(b <= a for a, b in zip(nl, nl[1:])):
        return list(terms)
    ascending = sorted(range(len(terms)), key=lambda i: nl[i])  # stable, as R's order()
    return [terms[i] for i in reversed(ascending)]


def as_frame(data) -> pd.DataFrame:
    """``data`` as a pandas DataFrame: pandas itself, a dict of columns, or any table that
    speaks the Arrow PyCapsule stream or the DataFrame interchange protocol (polars,
    pyarrow, modin, ...), converted once."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, dict):
        return pd.DataFrame(data)
    to_pandas = getattr(data, "to_pandas", None)
    if callable(to_pandas) and hasattr(data, "columns"):  # polars, pyarrow, modin: their own converter
        try:
            out = to_pandas()
        except Exception as exc:
            raise DataError(f"could not convert {type(data).__name__} to pandas: {_clean_message(exc)}") from None
        if isinstance(out, pd.DataFrame):
            return out
    if hasattr(data, "__arrow_c_stream__") or hasattr(data, "__dataframe__"):
        try:
            if hasattr(data, "__arrow_c_stream__"):
                return pd.DataFrame.from_arrow(data)
            with warnings.catch_warnings():  # pandas 3 deprecates the protocol in favour of Arrow's
                warnings.simplefilter("ignore")
                return pd.api.interchange.from_dataframe(data)
        except Exception as exc:
            raise DataError(f"could not convert {type(data).__name__} to pandas: {_clean_message(exc)}") from None
    raise DataError(
        f"data must be a pandas DataFrame, a dict of columns or a table with the DataFrame interchange "
        f"protocol (polars, pyarrow, ...), got {type(data).__name__}"
    )


def drop_unused_categories(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns without the categories no kept row uses, as lme4's model frame
    drops unused levels: an unused level would otherwise become a fixed-effect reference or
    a non-identified random-effect column."""
    unused = {
        c: col.cat.remove_unused_categories()
        for c, col in frame.items()
        if isinstance(col.dtype, pd.CategoricalDtype) and len(col.cat.categories) > col.nunique(dropna=True)
    }
    if unused:
        frame = frame.copy()
        for c, col in unused.items():
            frame[c] = col
    return frame


def _check_identifiable(parsed: ParsedFormula, frame: pd.DataFrame, y, X, xnames, terms) -> None:
    """Refuse models with nothing to estimate, as lme4 does (or should): a constant
    response, no residual degrees of freedom, a random-effects column that is zero in
    every row (its variance would be reported as whatever the optimizer started from)."""
    n, p = X.shape
    if np.ptp(y) == 0:
        raise DataError(
            f"Response '{parsed.response}' is constant ({y[0]:g} in every row): there is no variance to model"
        )
    if n - p <= 0:
        wide = [
            f"'{c}' ({frame[c].nunique()} levels)"
            for c in frame.columns
            if any(str(x).startswith(str(c)) for x in xnames)
            and not pd.api.types.is_numeric_dtype(frame[c])
            and frame[c].nunique() > n / 2
        ]
        hint = f"; coded as factors: {', '.join(wide)} (numbers stored as text?)" if wide else ""
        raise DataError(
            f"{n} observations for {p} fixed-effect columns: no residual degrees of freedom (n - p = {n - p}){hint}"
        )
    for term in terms:
        zero = [c for c, col in zip(term.columns, term.Z.T) if not np.any(col)]
        if zero:
            raise DataError(
                f"Random-effects column(s) {', '.join(map(repr, zero))} of term {term.term} are zero in every "
                "row: their variance is not identifiable"
            )


def _check_column_types(data: pd.DataFrame, used: set[str], numeric_use: set[str]) -> None:
    """Refuse columns jaxlme cannot give R's meaning, naming them: duplicated names, complex
    numbers, and dates or time spans used as numbers (grouping by them is fine)."""
    dup = sorted({str(c) for c in data.columns[data.columns.duplicated()] if c in used})
    if dup:
        raise DataError(f"Column name(s) {', '.join(map(repr, dup))} appear more than once in data")
    for name in sorted(used, key=str):
        dtype = data[name].dtype
        if dtype.kind == "c":
            raise DataError(f"Column '{name}' holds complex numbers; a mixed model needs real values")
        if name in numeric_use and (dtype.kind in "mM" or isinstance(dtype, pd.DatetimeTZDtype)):
            raise DataError(
                f"Column '{name}' is a date/time ({dtype}); convert it to a number first "
                "(e.g. days since a reference date) or use it as a factor"
            )


def _prior_weights(weights, data: pd.DataFrame) -> tuple[str, np.ndarray]:
    """The name and values (NaN where missing) of lme4's ``weights``: a column name or an
    array-like with one value per row of ``data`` (before missing rows are dropped)."""
    if isinstance(weights, str):
        if weights not in data.columns:
            raise DataError(f"weights column '{weights}' not found in data")
        name, col = weights, data[weights]
    else:
        name, col = "weights", weights
        if np.ndim(col) != 1 or len(col) != len(data):
            shape = np.shape(col)
            raise DataError(f"weights must have one value per data row ({len(data)}), got shape {shape}")
    values = col if isinstance(col, pd.Series) else pd.Series(np.asarray(col))
    dtype = values.dtype
    text = dtype.kind == "O" and any(isinstance(v, (str, bytes, bool, np.bool_)) for v in values)
    if dtype.kind in "bSUMm" or isinstance(dtype, (pd.CategoricalDtype, pd.StringDtype)) or text:
        raise DataError(f"weights '{name}' must be numeric, got dtype {dtype}")
    try:
        return name, values.to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        raise DataError(f"weights '{name}' must be numeric, got dtype {dtype}") from None


def _check_weights(name: str, w: np.ndarray) -> None:
    """lme4's rules for prior weights, plus zeros (lme4 1.1 fits them to an infinite criterion)."""
    if not np.all(np.isfinite(w)):
        raise DataError(f"weights '{name}' contain infinite values")
    if np.any(w < 0):
        raise DataError(f"weights '{name}' contain {int(np.sum(w < 0))} negative value(s): weights must be > 0")
    if np.any(w == 0):
        raise DataError(
            f"weights '{name}' contain {int(np.sum(w == 0))} zero(s): lme4 returns an infinite criterion "
            "and an unoptimized fit for them; drop those rows instead"
        )


def model_variables(parsed: ParsedFormula) -> tuple[set[str], set[str], set[str], dict, set[str]]:
    """The data columns a formula reads: (all used, response's, fixed part's, per random
    term its expression's and grouping factors', offsets')."""
    response_vars = (
        formula_variables(f"{parsed.response} ~ 1") if not parsed.response.isidentifier() else {parsed.response}
    )
    fixed_vars = formula_variables(f"~ {parsed.fixed}")
    term_vars: dict[RandomTerm, set[str]] = {}
    for term in parsed.random:
        term_vars[term] = formula_variables(f"~ {term.expr}") | set(term.group)
    offset_vars = set().union(*(formula_variables(f"~ I({e})") for e in parsed.offsets))
    used = response_vars | fixed_vars | offset_vars | set().union(*term_vars.values())
    return used, response_vars, fixed_vars, term_vars, offset_vars


def _global_codes(frame: pd.DataFrame, factors: tuple[str, ...], keys: pd.Index) -> np.ndarray:
    """Each row's position in the global levels ``keys`` of a grouping factor (a partition's
    rows, levels found over all partitions beforehand)."""
    if len(factors) == 1:
        col = frame[factors[0]]
        values = col.astype(object) if isinstance(col.dtype, pd.CategoricalDtype) else col
        codes = keys.get_indexer(values)
    else:
        tuples = pd.MultiIndex.from_arrays([frame[f].astype(object) for f in factors])
        codes = keys.get_indexer(tuples)
    if np.any(codes < 0):
        raise DataError(f"Grouping factor '{':'.join(factors)}' has levels not found when the levels were collected")
    return codes.astype(np.int64)


def _impose_levels(frame: pd.DataFrame, columns: dict) -> pd.DataFrame:
    """``frame`` with each factor column in ``columns`` as a categorical of its global levels,
    so that every partition codes its dummy columns alike."""
    out = {}
    for name, cats in columns.items():
        if name in frame.columns:
            col = frame[name]
            values = col.astype(object) if isinstance(col.dtype, pd.CategoricalDtype) else col
            cat = pd.Categorical(values, categories=list(cats))
            if np.any(cat.codes < 0):
                raise DataError(f"Column '{name}' has levels not found when the levels were collected")
            out[name] = pd.Series(cat, index=frame.index)
    return frame.assign(**out) if out else frame


def build_design(
    formula: str | ParsedFormula, data, *, warn: bool = True, weights=None, levels: dict | None = None
) -> Design | None:
    """Validate ``data`` against ``formula`` and build fixed and random model matrices.

    Args:
        formula: lme4-style formula text or a parsed formula.
        data: DataFrame (or dict of columns) holding the model's columns.
        warn: Warn about dropped rows and aliased columns.
        weights: Prior weights (lme4's ``weights``): a column name of ``data`` or an array-like
            with one finite value > 0 per row of ``data``; the residual variance of row i is
            σ²/wᵢ.  Rows with a missing weight are dropped with the other incomplete rows.
        levels: For one partition of a larger data set (see :mod:`jaxlme.partitions`): the
            global levels, ``{"columns": {factor column: levels}, "groups": {factor tuple:
            keys}}``.  Rows are then coded by those levels and the checks that need all rows
            (levels vs observations, rank, identifiability) are left to the caller.

    Returns:
        The validated :class:`Design`; with ``levels``, None when the partition has no
        complete rows.
    """
    parsed = formula if isinstance(formula, ParsedFormula) else parse_formula(formula)
    data = as_frame(data)
    partition = levels is not None
    if len(data) == 0 and not partition:
        raise DataError("data is empty: no rows to fit")

    used, response_vars, fixed_vars, term_vars, _ = model_variables(parsed)
    missing = sorted(v for v in used if v not in data.columns)
    if missing:
        available = ", ".join(map(str, data.columns[:20]))
        raise DataError(
            f"Column(s) {', '.join(repr(m) for m in missing)} used in the formula "
            f"not found in data (columns: {available})"
        )

    _check_column_types(
        data, used, response_vars | fixed_vars | {v for t in parsed.random for v in term_vars[t] - set(t.group)}
    )
    cols = [c for c in data.columns if c in used]
    frame = data[cols]
    na_rows = np.zeros(len(frame), dtype=bool)
    for j in range(frame.shape[1]):  # column by column: faster than pandas' row-wise any()
        na_rows |= frame.iloc[:, j].isna().to_numpy()
    w_name, w = _prior_weights(weights, data) if weights is not None else (None, None)
    if w is not None:
        na_rows |= np.isnan(w)
    n_dropped = int(na_rows.sum())
    if n_dropped:
        frame = frame.loc[~na_rows]
        if warn and not partition:
            messages.warn(f"{n_dropped} row(s) with missing values in the model's columns were dropped")
    if len(frame) == 0:
        if partition:
            return None
        raise DataError("no complete rows remain after dropping missing values")
    if w is not None:
        w = w[~na_rows]
        _check_weights(w_name, w)
    frame = _impose_levels(frame, levels["columns"]) if partition else drop_unused_categories(frame)

    for name in cols:
        col = frame[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            values = col.to_numpy(dtype=float)
            if np.isinf(values).any():
                raise DataError(f"Column '{name}' contains infinite values")

    response = frame[parsed.response] if parsed.response in frame.columns else None
    fixed_spec = simple_spec(parsed.fixed, frame) if _plain_numeric(response) else None
    if fixed_spec is not None:
        y = response.to_numpy(dtype=float)
        rhs = fixed_spec.get_model_matrix(frame)
    else:
        mm = model_matrix(f"{parsed.response} ~ {parsed.fixed}", frame, "the fixed-effects model matrix")
        fixed_spec = RModelSpec(mm.rhs.model_spec)
        lhs, rhs = mm.lhs, fixed_spec.renamed(mm.rhs)
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
    X = np.asarray(rhs, dtype=float)
    if not np.all(np.isfinite(X)):
        bad = [r_name(c) for c, ok in zip(rhs.columns, np.isfinite(X).all(axis=0)) if not ok]
        raise DataError(f"Fixed-effects column(s) {bad} contain non-finite values (e.g. log of 0)")
    xnames = [r_name(c) for c in rhs.columns]
    X, xnames, aliased = (X, xnames, []) if partition else _drop_aliased(X, xnames)
    if aliased and warn:
        messages.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(aliased)} column(s): {', '.join(aliased)}"
        )
    n = len(y)
    offset, offset_specs = None, []
    for expr in parsed.offsets:
        omm = model_matrix(f"~ 0 + I({expr})", frame, f"offset({expr})")
        values = np.asarray(omm, dtype=float)
        if values.shape[1] != 1 or not np.all(np.isfinite(values)):
            raise DataError(f"offset({expr}) must be one finite numeric value per row")
        offset = values[:, 0] if offset is None else offset + values[:, 0]
        offset_specs.append(RModelSpec(omm.model_spec))
    if offset is not None:
        y = y - offset  # lme4 fits the fixed effects to the response minus the offset

    terms: list[ReTermDesign] = []
    coded: dict[tuple[str, ...], tuple] = {}  # grouping -> its codes: `||` terms share one
    for term in split_uncorrelated(parsed.random):
        zspec = simple_spec(term.expr, frame)
        if zspec is not None:
            zmm = zspec.get_model_matrix(frame)
        else:
            zmm = model_matrix(f"~ {term.expr}", frame, f"random-effects term {term}")
            zspec = RModelSpec(zmm.model_spec)
            zmm = zspec.renamed(zmm)
        Z = np.asarray(zmm, dtype=float)
        if Z.shape[1] == 0:
            raise FormulaError(f"Random-effects term {term} has no columns")
        if not np.all(np.isfinite(Z)):
            raise DataError(f"Random-effects term {term} has non-finite values")
        if partition:
            keys = levels["groups"][term.group]
            index, labels = _global_codes(frame, term.group, keys), group_labels_of(keys)
            terms.append(ReTermDesign(term, [r_name(c) for c in zmm.columns], labels, index, Z, zspec, keys))
            continue
        if term.group not in coded:
            coded[term.group] = _group_codes(frame, term.group)
        index, labels, keys = coded[term.group]
        check_levels(term, len(labels), Z.shape[1], n)
        terms.append(
            ReTermDesign(
                term=term,
                columns=[r_name(c) for c in zmm.columns],
                levels=labels,
                index=index,
                Z=Z,
                spec=zspec,
                keys=keys,
            )
        )
    if not partition:
        _check_identifiable(parsed, frame, y, X, xnames, terms)
    terms = lme4_order(terms)
    return Design(
        formula=parsed,
        y=y,
        X=X,
        xnames=xnames,
        terms=terms,
        rows=frame.index,
        n_dropped=n_dropped,
        aliased=aliased,
        fixed_spec=fixed_spec,
        offset=offset,
        offset_specs=tuple(offset_specs),
        weights=w,
        weights_name=w_name,
    )


def group_labels_of(keys: pd.Index) -> pd.Index:
    """A grouping factor's level labels from its level values (``a:b`` text for a pair)."""
    if isinstance(keys, pd.MultiIndex):
        return pd.Index([":".join(str(v) for v in tup) for tup in keys])
    return keys


def check_levels(term: RandomTerm, nlevels: int, ncols: int, n: int) -> None:
    """lme4's checks of a grouping factor's levels against the observations.

    Raises:
        DataError: fewer than 2 levels, at least as many levels as observations, or at
            least as many random effects as observations in the term.
    """
    if nlevels < 2:
        raise DataError(
            f"Grouping factor '{term.group_name}' in {term} has {nlevels} level(s); "
            "a grouping factor needs at least 2 levels"
        )
    if nlevels >= n:
        raise DataError(
            f"Grouping factor '{term.group_name}' has {nlevels} levels for {n} "
            "observations: the number of levels of each grouping factor must be "
            "< number of observations"
        )
    # per term, as lme4 checks it: (x || g) arrives here split into one term per column
    n_re = nlevels * ncols
    if n_re >= n:
        raise DataError(
            f"Term {term} has {n_re} random effects for {n} "
            "observations: the random-effects parameters and the residual variance "
            "are probably unidentifiable"
        )
