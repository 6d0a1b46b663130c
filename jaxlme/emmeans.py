"""Estimated marginal means and contrasts among them, with R's ``emmeans`` meaning.

* :func:`emmeans`: the reference grid as ``emmeans::ref_grid`` builds it -- every factor at
  all its levels, every numeric covariate at its mean over the rows used in the fit (a
  covariate with at most two distinct values at each of them, emmeans' ``cov.keep = "2"``),
  ``at`` overriding either -- predictions Xβ̂ on the grid from the fit's own model-matrix
  spec (so ``poly(x, 2)``, ``scale(x)``, ``I(x^2)`` are applied to the covariate's grid
  value, not averaged over the data), then equally weighted averages over the variables not
  named in ``specs`` or ``by`` (emmeans' default ``weights = "equal"``).
* :func:`contrast`: "pairwise", "revpairwise", "trt.vs.ctrl" or custom coefficient vectors
  among those means, within each ``by`` group, with emmeans' labels, multiplicity
  adjustments ("tukey", "dunnettx", "sidak", "bonferroni", "holm", "hochberg", "BH", "BY",
  "none") and defaults.

Standard errors and denominator df come from :func:`jaxlme.inference.satterthwaite`
(emmeans' ``lmer.df = "satterthwaite"``), from :func:`jaxlme.inference.kenward_roger`
(``lmer.df = "kenward-roger"``: the adjusted covariance's SEs, REML fits only) or are
asymptotic (``lmer.df = "asymptotic"``: z).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._config import x64
from .design import DataError, as_frame, drop_unused_categories
from .inference import check_level, kenward_roger, satterthwaite
from .predict import check_columns, newdata_matrix, spec_variables

if TYPE_CHECKING:  # pragma: no cover
    from .results import LMMResult

__all__ = ["emmeans", "contrast", "EMM_DDF", "ADJUST_METHODS", "CONTRAST_METHODS"]

EMM_DDF = ("satterthwaite", "kenward-roger", "asymptotic")
ADJUST_METHODS = ("tukey", "dunnettx", "sidak", "bonferroni", "holm", "hochberg", "BH", "fdr", "BY", "none")
_P_ADJUST = ("holm", "hochberg", "BH", "fdr", "BY")  # R's p.adjust step-wise methods
CONTRAST_METHODS = ("pairwise", "revpairwise", "trt.vs.ctrl", "trt.vs.ctrlk")
_DEFAULT_ADJUST = {"pairwise": "tukey", "revpairwise": "tukey", "trt.vs.ctrl": "dunnettx", "trt.vs.ctrlk": "dunnettx"}
_PARENS = re.compile(r"-|\+|/|\*")  # emmeans' "parens" option: such labels are wrapped in (...)
_R_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?|Inf|NaN|0[xX][0-9a-fA-F]+)\s*$")


# ---------------------------------------------------------------------------------------
# Reference grid
# ---------------------------------------------------------------------------------------
@dataclass
class _Var:
    """One variable of the reference grid: its values there and their labels."""

    name: str
    values: list  # as the model matrix is built from them
    labels: list[str]  # as R prints the levels
    covariate: bool  # numeric values in the output tables (a factor's are its labels)


def _r_number(v: float) -> str:
    """R's ``as.character`` of a number (15 significant digits, no trailing ``.0``)."""
    v = float(v)
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.15g}"


def _r_level(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, float, np.integer, np.floating)):
        return _r_number(v)
    return str(v)


def _formula_order(names: set[str], text: str) -> list[str]:
    """The variables in the order they first appear in the formula text (R's ``all.vars``)."""

    def pos(n):
        m = re.search(rf"(?<![A-Za-z0-9_.]){re.escape(n)}(?![A-Za-z0-9_.])", text)
        return m.start() if m else len(text)

    return sorted(names, key=lambda n: (pos(n), n))


def _as_factor_in_formula(name: str, text: str) -> bool:
    """``factor(x)``, ``as.factor(x)`` or ``C(x)`` in the formula: emmeans takes x as a factor."""
    return re.search(rf"(?<![A-Za-z0-9_.])(?:as\.factor|factor|C)\(\s*{re.escape(name)}\s*\)", text) is not None


def _fitting_rows(res: LMMResult, data) -> pd.DataFrame:
    """The rows of ``data`` the model was fitted to, checked against the fit's model matrix."""
    d = res.model.design
    if data is None:
        data = getattr(res.model, "data", None)
        if data is None:
            raise ValueError("emmeans needs the data the model was fitted to: pass data=")
    data = as_frame(data)
    if data.index.is_unique:
        missing = d.rows.difference(data.index)
        if len(missing):
            raise DataError(f"data lacks {len(missing)} of the rows the model was fitted to (index labels)")
        used = data.loc[d.rows]
    elif len(data) == d.n and d.n_dropped == 0:
        used = data
    else:
        raise DataError("data has a non-unique index: cannot find the rows the model was fitted to")
    needed = spec_variables(d.fixed_spec)
    check_columns(used, needed, "the fixed effects")
    used = drop_unused_categories(used[sorted(needed, key=str)])  # as build_design does
    X = newdata_matrix(d.fixed_spec, used, list(d.xnames), "the fixed-effects model matrix")
    scale = np.maximum(np.abs(d.X).max(axis=0), 1.0) if d.p else 1.0
    if X.shape != d.X.shape or not np.allclose(X / scale, d.X / scale, rtol=0.0, atol=1e-9):
        raise DataError("data is not the data the model was fitted to: its fixed-effects model matrix differs")
    return used


def _grid_vars(res: LMMResult, used: pd.DataFrame, at: Mapping | None) -> list[_Var]:
    """The reference grid's variables, in formula order, with emmeans' default values."""
    d = res.model.design
    text = d.formula.fixed
    names = _formula_order(spec_variables(d.fixed_spec), text)
    at = dict(at or {})
    unknown = [k for k in at if k not in names]
    if unknown:
        raise ValueError(f"at names {unknown} that are not variables of the fixed effects (they are {names})")
    out = []
    for name in names:
        col = used[name]
        factor = (
            isinstance(col.dtype, pd.CategoricalDtype)
            or col.dtype.kind in "bOUS"
            or isinstance(col.dtype, pd.StringDtype)
            or _as_factor_in_formula(name, text)
        )
        if factor:
            if isinstance(col.dtype, pd.CategoricalDtype):
                present = set(col.dropna().unique())
                values = [c for c in col.cat.categories if c in present]
            else:
                values = sorted(col.dropna().unique())
            labels = [_r_level(v) for v in values]
            if name in at:
                wanted = np.atleast_1d(np.asarray(at[name], dtype=object)).tolist()
                pick = []
                for w in wanted:
                    hits = [i for i, (v, lab) in enumerate(zip(values, labels)) if w == v or str(w) == lab]
                    if not hits:
                        raise ValueError(f"at[{name!r}] has {w!r}, not a level of '{name}' (levels: {labels})")
                    pick.append(hits[0])
                values, labels = [values[i] for i in pick], [labels[i] for i in pick]
            out.append(_Var(name, values, labels, covariate=False))
            continue
        if col.dtype.kind not in "iuf":
            raise ValueError(f"column '{name}' has dtype {col.dtype}: emmeans needs numbers or factors")
        if name in at:
            values = [float(v) for v in np.atleast_1d(np.asarray(at[name], dtype=float))]
        else:
            x = col.to_numpy(dtype=float)
            distinct = np.unique(x)
            values = [float(v) for v in distinct] if len(distinct) <= 2 else [float(x.mean())]
        out.append(_Var(name, values, [_r_number(v) for v in values], covariate=True))
    return out


def _grid_frame(variables: list[_Var], used: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Every combination of the variables' values (the first varying fastest, as R's
    ``expand.grid``) and each row's level index per variable."""
    sizes = [len(v.values) for v in variables]
    codes = _combinations(sizes)
    cols = {}
    for v, c in zip(variables, codes):
        vals = [v.values[i] for i in c]
        src = used[v.name]
        if isinstance(src.dtype, pd.CategoricalDtype):
            cols[v.name] = pd.Categorical(vals, categories=src.cat.categories)
        elif v.covariate:
            cols[v.name] = np.asarray(vals, dtype=float)
        else:
            cols[v.name] = np.asarray(vals, dtype=src.dtype if src.dtype.kind in "biuf" else object)
    frame = pd.DataFrame(cols, index=pd.RangeIndex(codes.shape[1]))
    return frame, codes.T


def _combinations(sizes: list[int]) -> np.ndarray:
    """(len(sizes), prod(sizes)) level indices of every combination, the first varying fastest."""
    return np.indices(sizes[::-1]).reshape(len(sizes), -1)[::-1]


def _parse_specs(specs, by) -> tuple[list[str], list[str]]:
    """``"a"``, ``["a", "b"]``, ``"a * b"``, ``"~ a | b"`` -> (spec variables, by variables)."""

    def names(part) -> list[str]:
        if isinstance(part, str):
            return [p for p in re.split(r"[\s*+:]+", part.strip()) if p]
        return [str(p) for p in part]

    form_by: list[str] = []
    if isinstance(specs, str):
        text = specs.strip()
        if text.startswith("~"):
            text = text[1:]
        elif "~" in text:
            raise ValueError(f"specs {specs!r}: a two-sided specs formula is not supported; use contrast()")
        left, bar, right = text.partition("|")
        spec_names = names(left)
        form_by = names(right) if bar else []
    else:
        spec_names = names(specs)
    by_names = names(by) if by is not None else []
    if form_by and by_names:
        raise ValueError("by given both in specs ('| ...') and as by=")
    by_names = by_names or form_by
    if not spec_names:
        raise ValueError("specs names no variable")
    both = set(spec_names) & set(by_names)
    if both:
        raise ValueError(f"variable(s) {sorted(both)} in both specs and by")
    for group in (spec_names, by_names):
        if len(set(group)) != len(group):
            raise ValueError(f"variables named twice in {group}")
    return spec_names, by_names


def _refuse_nesting(d, variables: list[_Var]) -> None:
    """emmeans takes a grid variable with several values that enters the formula only
    through interactions (``a + a:b``) as nested (``emmeans:::.find_nests``) and builds a
    nested grid and nested contrasts, which this module does not: refuse it.  (Factors
    nested in the data with both main effects alias each other, and rank-deficient fits are
    refused before this.)"""
    spec = getattr(d.fixed_spec, "spec", None)
    terms = getattr(spec, "formula", None)
    if terms is None:  # a plain column list: main effects only
        return
    factor_names = {v.name for v in variables if len(v.values) > 1}  # emmeans looks at these only
    main, inter = set(), set()
    for term in terms:
        names = {n for n in factor_names if any(_mentions(str(f), n) for f in term.factors)}
        (main if len(term.factors) == 1 else inter).update(names)
    for name in sorted(inter - main):
        raise ValueError(
            f"'{name}' enters the fixed effects only through interactions, so emmeans takes it as "
            "nested: nested reference grids are not supported (add its main effect)"
        )


def _mentions(expr: str, name: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_.]){re.escape(name)}(?![A-Za-z0-9_.])", expr) is not None


@dataclass
class _EMM:
    """Marginal means: their linear functions of β̂ and their grid labels."""

    res: LMMResult
    table: pd.DataFrame  # the spec and by variables' values, one row per mean
    L: np.ndarray  # (m, p)
    specs: list[_Var]
    by: list[_Var]
    averaged: list[str]


def _build(res: LMMResult, specs, by, at, data) -> _EMM:
    d = res.model.design
    if d.aliased:
        raise ValueError(
            f"emmeans of a rank-deficient fit (dropped columns: {', '.join(d.aliased)}) is not supported: "
            "some marginal means would not be estimable"
        )
    if d.offset_specs:
        raise ValueError("emmeans of a model with an offset() term is not supported")
    spec_names, by_names = _parse_specs(specs, by)
    used = _fitting_rows(res, data)
    variables = _grid_vars(res, used, at)
    known = {v.name: i for i, v in enumerate(variables)}
    bad = [n for n in spec_names + by_names if n not in known]
    if bad:
        raise ValueError(f"{bad} not variable(s) of the fixed effects (they are {list(known)})")
    _refuse_nesting(d, variables)
    frame, codes = _grid_frame(variables, used)
    X = newdata_matrix(d.fixed_spec, frame, list(d.xnames), "the reference grid's model matrix")
    if not np.all(np.isfinite(X)):
        raise ValueError("the reference grid's model matrix has non-finite values (a transform outside its domain?)")
    keep = [known[n] for n in spec_names + by_names]
    sizes = [len(variables[i].values) for i in keep]
    group = np.ravel_multi_index(codes[:, keep].T, sizes, order="F") if keep else np.zeros(len(frame), int)
    m = int(np.prod(sizes))
    L = np.zeros((m, d.p))
    np.add.at(L, group, X)
    counts = np.bincount(group, minlength=m)
    L /= counts[:, None]
    rows = _combinations(sizes).T
    table = {}
    for j, i in enumerate(keep):
        v = variables[i]
        table[v.name] = [v.values[k] if v.covariate else v.labels[k] for k in rows[:, j]]
    averaged = [v.name for i, v in enumerate(variables) if i not in keep and len(v.values) > 1]
    return _EMM(
        res,
        pd.DataFrame(table),
        L,
        [variables[known[n]] for n in spec_names],
        [variables[known[n]] for n in by_names],
        averaged,
    )


# ---------------------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------------------
def _ddf_key(ddf: str) -> str:
    key = str(ddf).lower()
    if key not in EMM_DDF:
        raise ValueError(f"unknown ddf {ddf!r}: use one of {', '.join(map(repr, EMM_DDF))}")
    return key


def _estimates(res: LMMResult, L: np.ndarray, ddf: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimates, standard errors and df of the rows of L."""
    if ddf in ("satterthwaite", "kenward-roger"):  # KR: se from pbkrtest's adjusted covariance, as emmeans
        tab = satterthwaite(res, L) if ddf == "satterthwaite" else kenward_roger(res, L)
        return tab["estimate"].to_numpy(), tab["se"].to_numpy(), tab["df"].to_numpy()
    V = res.vcov.to_numpy()
    est = L @ res.fixef.to_numpy()
    se = np.sqrt(np.einsum("ki,ij,kj->k", L, V, L))
    return est, se, np.full(len(est), np.inf)


def _ci_names(ddf: str) -> tuple[str, str]:
    return ("asymp.LCL", "asymp.UCL") if ddf == "asymptotic" else ("lower.CL", "upper.CL")


@x64
def emmeans(
    res: LMMResult,
    specs,
    by=None,
    ddf: str = "satterthwaite",
    level: float = 0.95,
    at: Mapping | None = None,
    *,
    data=None,
) -> pd.DataFrame:
    """Estimated marginal means (R's ``emmeans(fit, specs, by, at, lmer.df = ddf)``).

    The reference grid holds every factor at all its levels and every numeric covariate at
    its mean over the fitted rows (a covariate with at most two distinct values at each of
    them), so that a model's predictions there answer "what is the mean response at each
    level, the other factors balanced"; the means are equally weighted averages of the grid
    predictions over the variables in neither ``specs`` nor ``by``.  Transforms in the
    formula (``poly(x, 2)``, ``scale(x)``, ``I(x^2)``) are applied to the covariate's grid
    value, as emmeans does.

    Args:
        res: A fitted model.
        specs: The variable(s) whose means are wanted: a name, a list of names, or a
            formula such as ``"a * b"`` or ``"~ a | b"`` (``| b`` sets ``by``).
        by: Variable(s) to group the means by (contrasts are taken within each group).
        ddf: ``"satterthwaite"`` (t with Satterthwaite's df), ``"kenward-roger"`` (t with
            Kenward-Roger's df and adjusted SEs; REML fits only) or ``"asymptotic"`` (z).
        level: Confidence level of the intervals.
        at: ``{variable: values}`` overriding the grid: levels of a factor to keep, or
            values of a covariate instead of its mean.
        data: The data the model was fitted to (checked against the fit's model matrix);
            by default the data kept on the model, if any.

    Returns:
        One row per mean, emmeans' summary columns: the ``specs`` and ``by`` variables, then
        ``emmean, SE, df, lower.CL, upper.CL`` (``asymp.LCL, asymp.UCL`` for asymptotic df).
        ``attrs`` hold ``ddf``, ``level`` and ``averaged_over``.
    """
    ddf = _ddf_key(ddf)
    check_level(level)
    emm = _build(res, specs, by, at, data)
    est, se, df = _estimates(res, emm.L, ddf)
    from scipy import special

    q = special.stdtrit(np.where(np.isnan(df), np.inf, df), 0.5 + level / 2.0)  # emmeans: NA df as infinite
    lo, hi = _ci_names(ddf)
    out = emm.table.copy()
    out["emmean"], out["SE"], out["df"] = est, se, df
    out[lo], out[hi] = est - q * se, est + q * se
    out.attrs.update({"ddf": ddf, "level": level, "averaged_over": emm.averaged})
    return out


def _contrast_matrix(method, labels: list[str], raw: list[str], ref) -> tuple[np.ndarray, list[str], str, bool]:
    """(coefficients (ncontrasts, k), names, default adjustment, pairwise?) of a method;
    ``labels`` name the means in contrasts, ``raw`` are their levels as printed."""
    k = len(labels)
    rows, names = [], []
    if isinstance(method, Mapping):
        for name, coefs in method.items():
            c = np.asarray(coefs, dtype=float).ravel()
            if len(c) != k:
                raise ValueError(f"contrast {name!r} has {len(c)} coefficients; there are {k} means per group")
            rows.append(c)
            names.append(str(name))
        if not rows:
            raise ValueError("the custom contrasts dict is empty")
        return np.array(rows), names, "none", False
    key = str(method)
    if key not in CONTRAST_METHODS:
        raise ValueError(f"unknown contrast method {method!r}: use one of {CONTRAST_METHODS} or a dict")
    if key in ("pairwise", "revpairwise"):
        pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
        if key == "revpairwise":
            pairs = [(i, j) for i in range(1, k) for j in range(i)]
        for i, j in pairs:
            c = np.zeros(k)
            c[i], c[j] = 1.0, -1.0
            rows.append(c)
            names.append(f"{labels[i]} - {labels[j]}")
    else:
        if key == "trt.vs.ctrlk":
            if ref is not None:
                raise ValueError("ref= is for 'trt.vs.ctrl'; 'trt.vs.ctrlk' compares with the last level")
            r = k - 1
        else:
            r = _ref_index(ref, labels, raw)
        for i in range(k):
            if i == r:
                continue
            c = np.zeros(k)
            c[i], c[r] = 1.0, -1.0
            rows.append(c)
            names.append(f"{labels[i]} - {labels[r]}")
    if not rows:
        raise ValueError(f"{key} needs at least two means per group, got {k}")
    return np.array(rows), names, _DEFAULT_ADJUST[key], key in ("pairwise", "revpairwise")


def _ref_index(ref, labels: list[str], raw: list[str]) -> int:
    if ref is None:
        return 0
    if isinstance(ref, (int, np.integer)) and not isinstance(ref, bool):
        if not 0 <= int(ref) < len(labels):
            raise ValueError(f"ref={ref} is out of range: there are {len(labels)} levels (0-based positions)")
        return int(ref)
    for cand in (labels, raw):
        if str(ref) in cand:
            return cand.index(str(ref))
    raise ValueError(f"ref={ref!r} is not one of the levels {labels}")


def _level_labels(emm: _EMM) -> tuple[list[str], list[str]]:
    """emmeans' label of each mean within its by group: the spec variables' levels joined
    by spaces, a variable whose levels all read as numbers prefixed by its name
    (``enhance.levels``), and wrapped in parentheses when it holds - + / or *."""
    parts, raw = [], []
    for v in emm.specs:
        col = emm.table[v.name]
        text = [_r_level(x) for x in col]
        raw.append(text)
        if all(_R_NUMBER.match(t) for t in text):
            text = [f"{v.name}{t}" for t in text]
        parts.append(text)
    labels = [" ".join(p) for p in zip(*parts)]
    return [f"({lab})" if _PARENS.search(lab) else lab for lab in labels], [" ".join(p) for p in zip(*raw)]


def _zapsmall(x: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's ``zapsmall`` (emmeans rounds the df so before ``ptukey``)."""
    ok = ~np.isnan(x)
    if not ok.any():
        return x
    mx = float(np.max(np.abs(x[ok])))
    if mx == 0:
        return np.round(x, digits)
    return np.round(x, max(0, digits - math.ceil(math.log10(mx))) if np.isfinite(mx) else 0)


def _ptukey_upper(q: np.ndarray, nmeans: float, df: np.ndarray) -> np.ndarray:
    from scipy.stats import studentized_range

    return np.array([studentized_range.sf(qi, nmeans, di) for qi, di in zip(q, df)])


def _ptukey(q: float, nmeans: float, df: float) -> float:
    from scipy.stats import studentized_range

    return float(studentized_range.cdf(q, nmeans, df))


def _qtukey(p: float, nmeans: float, df: float) -> float:
    """R's ``qtukey(p, nmeans, df)``: its starting value and secant iterations (eps 1e-4)."""
    ps = 0.5 - 0.5 * p
    yi = math.sqrt(math.log(1.0 / (ps * ps)))
    num = (((yi * -0.453642210148e-04 - 0.204231210125) * yi - 0.342242088547) * yi - 1.0) * yi + 0.322232421088
    den = (((yi * 0.38560700634e-02 + 0.103537752850) * yi + 0.531103462366) * yi + 0.588581570495) * yi
    t = yi + num / (den + 0.993484626060e-01)
    if df < 120.0:
        t += (t * t * t + t) / df / 4.0
    qq = 0.8832 - 0.2368 * t
    if df < 120.0:
        qq += -1.214 / df + 1.208 * t / df
    x0 = t * (qq * math.log(nmeans - 1.0) + 1.4142)
    valx0 = _ptukey(x0, nmeans, df) - p
    x1 = max(0.0, x0 - 1.0) if valx0 > 0.0 else x0 + 1.0
    valx1 = _ptukey(x1, nmeans, df) - p
    ans = x1
    for _ in range(1, 50):
        ans = x1 - (valx1 * (x1 - x0)) / (valx1 - valx0)
        valx0 = valx1
        x0 = x1
        if ans < 0.0:
            ans = 0.0
        valx1 = _ptukey(ans, nmeans, df) - p
        x1 = ans
        if abs(x1 - x0) < 1e-4:
            return ans
    return ans


def _pt_two_sided_cdf(x: np.ndarray, df: np.ndarray) -> np.ndarray:
    """P(|T_df| <= x) = pf(x², 1, df)."""
    from scipy import special

    return 1.0 - 2.0 * special.stdtr(df, -np.abs(x))


def _pdunnx(x: np.ndarray, k: float, df: np.ndarray) -> np.ndarray:
    """emmeans' ``.pdunnx``: Dunnett's distribution approximated by a blend of Tukey's (for
    the same number of pairs) and Šidák's, weights (k - 1)/k and 1/k."""
    twt = (k - 1) / k
    nmeans = (1 + math.sqrt(1 + 8 * k)) / 2
    from scipy.stats import studentized_range

    tukey = np.array([studentized_range.cdf(math.sqrt(2) * xi, nmeans, di) for xi, di in zip(x, df)])
    sidak = _pt_two_sided_cdf(x, df) ** k
    return twt * tukey + (1 - twt) * sidak


def _qdunnx(p: float, k: float, df: float) -> float:
    """emmeans' ``.qdunnx``: the root of .pdunnx = p between the Tukey and Šidák quantiles,
    found as R's ``uniroot(tol = 5e-4)`` finds it."""
    from scipy import special

    if k < 1.005:
        return float(special.stdtrit(df, 1 - 0.5 * (1 - p)))
    xtuk = _qtukey(p, (1 + math.sqrt(1 + 8 * k)) / 2, df) / math.sqrt(2)
    xsid = float(special.stdtrit(df, 1 - (1 - p ** (1 / k)) / 2))  # sqrt(qf(p^(1/k), 1, df))
    if abs(xtuk - xsid) < 5e-4:
        return xtuk

    def f(x):
        return float(_pdunnx(np.array([x]), k, np.array([df]))[0]) - p

    fa, fb = f(xtuk), f(xsid)
    if fa * fb > 0:  # emmeans falls back to the Tukey quantile (with a warning)
        return xtuk
    return _zeroin(xtuk, xsid, fa, fb, f, 5e-4)


def _zeroin(ax: float, bx: float, fa: float, fb: float, f, tol: float, maxit: int = 1000) -> float:
    """R's ``uniroot`` (Brent's zeroin, R_zeroin2), step for step."""
    eps = np.finfo(float).eps
    a, b, c, fc = ax, bx, ax, fa
    if fa == 0.0:
        return a
    if fb == 0.0:
        return b
    for _ in range(maxit + 1):
        prev_step = b - a
        if abs(fc) < abs(fb):
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol_act = 2 * eps * abs(b) + tol / 2
        new_step = (c - b) / 2
        if abs(new_step) <= tol_act or fb == 0.0:
            return b
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):
            cb = c - b
            if a == c:
                t1 = fb / fa
                p = cb * t1
                q = 1.0 - t1
            else:
                q = fa / fc
                t1 = fb / fc
                t2 = fb / fa
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0))
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p > 0:
                q = -q
            else:
                p = -p
            if p < (0.75 * cb * q - abs(tol_act * q) / 2) and p < abs(prev_step * q / 2):
                new_step = p / q
        if abs(new_step) < tol_act:
            new_step = tol_act if new_step > 0 else -tol_act
        a, fa = b, fb
        b += new_step
        fb = f(b)
        if (fb > 0 and fc > 0) or (fb < 0 and fc < 0):
            c, fc = a, fa
    return b


def _p_adjust(p: np.ndarray, method: str) -> np.ndarray:
    """R's ``p.adjust(p, method)`` for "holm", "hochberg", "BH"/"fdr" and "BY"."""
    n = len(p)
    rank = np.arange(1, n + 1)
    if method == "holm":  # step down: cummax over increasing p of (n + 1 - i) p_(i)
        order = np.argsort(p, kind="stable")
        adj = np.maximum.accumulate((n + 1 - rank) * p[order])
    else:  # step up: cummin over decreasing p
        order = np.argsort(-p, kind="stable")
        i = n + 1 - rank  # the rank of each p among the increasing ones
        factor = {"hochberg": n + 1 - i, "BH": n / i, "fdr": n / i, "BY": np.sum(1.0 / rank) * n / i}[method]
        adj = np.minimum.accumulate(factor * p[order])
    out = np.empty(n)
    out[order] = np.minimum(adj, 1.0)
    return out


def _per_df(quantile, df: np.ndarray) -> np.ndarray:
    """``quantile(d)`` for each df, computed once per df value (to 10 significant digits:
    a balanced design's equal df differ in the last bits; the quantiles are iterated to 1e-4)."""
    memo: dict[float, float] = {}
    out = np.empty(len(df))
    for i, d in enumerate(df):
        key = float(f"{d:.10g}")
        if key not in memo:
            memo[key] = quantile(float(d))
        out[i] = memo[key]
    return out


def _adjusted(t, df, df_zapped, adjust, n_contr, fam_size, pairs, level, want_ci):
    """emmeans' adjusted p values and CI critical values for one family (a by group);
    ``df_zapped``: the df as emmeans rounds them for Tukey's p (zapsmall over the whole table)."""
    from scipy import special

    df = np.where(np.isnan(df), np.inf, df)  # emmeans: an unavailable df counts as infinite
    if n_contr == 1:
        adjust = "none"
    if adjust == "tukey" and not pairs:
        adjust = "sidak"  # emmeans: Tukey is only for one set of pairwise comparisons
    p_unadj = 2.0 * special.stdtr(df, -np.abs(t))
    if adjust == "none":
        p = p_unadj
    elif adjust == "bonferroni":
        p = np.minimum(1.0, n_contr * p_unadj)
    elif adjust in _P_ADJUST:
        p = _p_adjust(p_unadj, adjust)
    elif adjust == "sidak":
        p = 1.0 - (1.0 - p_unadj) ** n_contr
    elif adjust == "tukey":
        p = _ptukey_upper(math.sqrt(2) * np.abs(t), fam_size, df_zapped)
    else:  # dunnettx
        p = 1.0 - _pdunnx(np.abs(t), n_contr, df)
    cv = None
    if want_ci:
        ci_adjust = "bonferroni" if adjust in _P_ADJUST else adjust  # emmeans: no intervals of their own
        if ci_adjust == "none":
            cv = special.stdtrit(df, 1 - (1 - level) / 2)
        elif ci_adjust == "sidak":
            cv = special.stdtrit(df, 1 - (1 - level ** (1 / n_contr)) / 2)
        elif ci_adjust == "bonferroni":
            cv = special.stdtrit(df, 1 - (1 - level) / n_contr / 2)
        elif ci_adjust == "tukey":
            cv = _per_df(lambda d: _qtukey(level, fam_size, d) / math.sqrt(2), df)
        else:
            cv = _per_df(lambda d: _qdunnx(level, n_contr, d), df)
    return p, cv, adjust


@x64
def contrast(
    res: LMMResult,
    specs,
    method="pairwise",
    by=None,
    adjust: str | None = None,
    ddf: str = "satterthwaite",
    level: float = 0.95,
    at: Mapping | None = None,
    *,
    ref=None,
    infer: Sequence[bool] = (False, True),
    data=None,
) -> pd.DataFrame:
    """Contrasts among estimated marginal means (R's ``contrast(emmeans(...), method)``).

    Contrasts are taken within each ``by`` group, and so are the multiplicity adjustments,
    with emmeans' labels (``"A - B"`` in its order; levels that read as numbers get the
    variable's name, ``"temperature185 - temperature175"``; labels holding - + / * are
    parenthesized) and defaults.

    Args:
        res: A fitted model.
        specs: As in :func:`emmeans`.
        method: ``"pairwise"`` (each level minus each later one), ``"revpairwise"`` (each
            later level minus each earlier one), ``"trt.vs.ctrl"`` (each level minus the
            reference ``ref``), ``"trt.vs.ctrlk"`` (minus the last level), or a dict
            ``{name: coefficients}`` with one coefficient per mean of a by group.
        by: As in :func:`emmeans`.
        adjust: P-value (and interval) adjustment within each by group: "tukey" (the
            studentized range; emmeans' default for pairwise), "dunnettx" (emmeans'
            approximation to Dunnett's; its default for trt.vs.ctrl), "sidak",
            "bonferroni", "holm", "hochberg", "BH" (= "fdr"), "BY" (these four: R's
            ``p.adjust``; their intervals are Bonferroni's, as in emmeans) or "none" (the
            default for custom contrasts).  As in emmeans, Tukey for contrasts that are not one set
            of pairwise comparisons becomes Šidák, and a family of one contrast is not adjusted.
        ddf: ``"satterthwaite"``, ``"kenward-roger"`` or ``"asymptotic"``.
        level: Confidence level of the intervals.
        at: As in :func:`emmeans`.
        ref: The control of ``"trt.vs.ctrl"``: a level (as printed, ``"195"``, or as in
            the contrast labels, ``"temperature195"``) or its 0-based position (default: the
            first level).
        infer: ``(intervals, tests)``, emmeans' ``infer``: which of the confidence limits
            and the t (z) ratio with its p value to report (one bool: both or neither).
        data: As in :func:`emmeans`.

    Returns:
        One row per contrast: ``contrast``, the by variables, ``estimate, SE, df``, then
        ``lower.CL, upper.CL`` when asked, ``t.ratio, p.value`` (``z.ratio`` and
        ``asymp.LCL, asymp.UCL`` for asymptotic df).  ``attrs`` hold ``adjust`` (the
        adjustment applied), ``ddf`` and ``level``.
    """
    ddf = _ddf_key(ddf)
    check_level(level)
    if isinstance(infer, (bool, np.bool_)):
        infer = (infer, infer)
    if not isinstance(infer, Sequence) or len(infer) != 2:
        raise ValueError("infer must be a pair of booleans (intervals, tests) or one for both")
    ci, test = (bool(b) for b in infer)
    if adjust is not None:
        canonical = {a.lower(): a for a in ADJUST_METHODS}
        if str(adjust).lower() not in canonical:
            raise ValueError(f"unknown adjust {adjust!r}: use one of {', '.join(map(repr, ADJUST_METHODS))}")
        adjust = canonical[str(adjust).lower()]
    if ref is not None and (isinstance(method, Mapping) or method != "trt.vs.ctrl"):
        raise ValueError("ref= applies only to method='trt.vs.ctrl'")
    emm = _build(res, specs, by, at, data)
    labels, raw = _level_labels(emm)
    k = int(np.prod([len(v.values) for v in emm.specs]))
    groups = len(labels) // k
    C, names, default_adjust, pairs = _contrast_matrix(method, labels[:k], raw[:k], ref)
    adjust = default_adjust if adjust is None else adjust
    nc = C.shape[0]
    L = np.concatenate([C @ emm.L[g * k : (g + 1) * k] for g in range(groups)])
    est, se, df = _estimates(res, L, ddf)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = est / se
    p = np.empty(len(est))
    cv = np.empty(len(est))
    used = adjust
    zapped = _zapsmall(df)
    for g in range(groups):
        s = slice(g * nc, (g + 1) * nc)
        pg, cg, used = _adjusted(t[s], df[s], zapped[s], adjust, nc, k, pairs, level, ci)
        p[s] = pg
        if ci:
            cv[s] = cg
    out = pd.DataFrame({"contrast": names * groups})
    for v in emm.by:
        out[v.name] = np.repeat(emm.table[v.name].to_numpy()[::k], nc)
    out["estimate"], out["SE"], out["df"] = est, se, df
    if ci:
        lo, hi = _ci_names(ddf)
        out[lo], out[hi] = est - cv * se, est + cv * se
    if test:
        out["z.ratio" if ddf == "asymptotic" else "t.ratio"] = t
        out["p.value"] = p
    out.attrs.update({"adjust": used, "ddf": ddf, "level": level, "averaged_over": emm.averaged})
    return out
