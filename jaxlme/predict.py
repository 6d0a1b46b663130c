"""Predictions from a fitted model and conditional variances of the random effects.

``predict`` rebuilds the fixed-effects and random-effects model matrices for new data from
the specs kept on the design (formulaic's ModelSpecs, or ``design.ColumnsSpec`` for plain
column lists), so factor levels, contrasts and stateful
transforms (``center(x)``, ``scale(x)``, ...) are applied exactly as in fitting.  It
conditions on all, some (lme4's ``re.form``) or none of the random-effects terms and gives
standard errors and confidence or prediction intervals; ``predict_interval`` gives
parametric-bootstrap intervals of population-level predictions (lme4's ``bootMer``).
``ranef_condvar`` gives lme4's ``ranef(fit, condVar = TRUE)`` "postVar" arrays.
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .bootstrap import bootstrap
from .design import DataError, for_formulaic, r_name, split_uncorrelated
from .formula import FormulaError, parse_formula
from .inference import satterthwaite
from .structure import weighted_rows

if TYPE_CHECKING:  # pragma: no cover
    from .results import LMMResult

__all__ = ["predict", "predict_interval", "ranef_condvar", "ranef_condsd", "MAX_DENSE_Q", "INTERVALS"]

MAX_DENSE_Q = 6000  # largest number of random effects for the dense conditional-variance route


def _clean(exc: Exception) -> str:
    return re.sub(r"\x1b\[[0-9;]*m|⧛|⧚", "", str(exc))


def spec_variables(spec) -> set[str]:
    """The data columns a fitted formulaic ModelSpec reads (empty if it cannot say)."""
    try:
        return set(spec.required_variables)
    except Exception:  # pragma: no cover - older formulaic
        return set()


def check_columns(newdata: pd.DataFrame, needed: set[str], what: str) -> None:
    """Raise ``DataError`` naming the columns of ``needed`` that ``newdata`` lacks (for ``what``)."""
    missing = sorted(v for v in needed if v not in newdata.columns)
    if missing:
        raise DataError(f"newdata is missing column(s) {', '.join(repr(m) for m in missing)} needed for {what}")


def newdata_matrix(spec, newdata: pd.DataFrame, names: list[str], what: str) -> np.ndarray:
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


_POPULATION = {"~0", "0", "NA", "~NA"}  # lme4's re.form = NA / ~0: no random effects
INTERVALS = ("confidence", "prediction")


class _Rows:
    """The pieces of a prediction for a set of rows: X, the offset, and per random-effects
    term its model matrix, level codes (-1: a new level) and level labels."""

    def __init__(self, X, offset, Z, codes, labels):
        self.X, self.offset, self.Z, self.codes, self.labels = X, offset, Z, codes, labels


def _terms_used(res: LMMResult, re_form, random_effects) -> list[bool]:
    """Which of the model's random-effects terms a prediction conditions on (lme4's re.form)."""
    d = res.model.design
    every, none = [True] * len(d.terms), [False] * len(d.terms)
    if re_form is None or re_form is True:  # True/False: the former random_effects in this position
        use = None if re_form is None else every
    elif re_form is False or (isinstance(re_form, float) and np.isnan(re_form)) or re_form is pd.NA:
        use = none
    elif isinstance(re_form, str):
        text = "".join(re_form.split())
        if text in _POPULATION:
            use = none
        else:
            use = _terms_of_formula(d, re_form)
    else:
        raise TypeError(
            f"re_form must be None (all random effects), '~0'/'NA' (none) or a formula string such as "
            f"'~(1|g)', got {type(re_form).__name__}"
        )
    if random_effects is not None:
        if not isinstance(random_effects, (bool, np.bool_)):
            raise TypeError(f"random_effects must be True or False, got {type(random_effects).__name__}")
        wanted = every if random_effects else none
        if use is not None and use != wanted:
            raise ValueError(
                f"random_effects={bool(random_effects)} contradicts re_form={re_form!r}; give only re_form"
            )
        use = wanted
    return every if use is None else use


def _norm(expr: str) -> str:
    return "".join(expr.split())


def _terms_of_formula(d, re_form: str) -> list[bool]:
    """The model's terms named by a formula of random-effects terms (``"~(1|g) + (x|h)"``)."""

    text = re_form.strip()
    rhs = text[1:] if text.startswith("~") else text
    try:
        parsed = parse_formula(f"y ~ 1 + {rhs}")
    except FormulaError as exc:
        raise FormulaError(f"re_form {re_form!r} is not a formula of random-effects terms: {exc}") from None
    if _norm(parsed.fixed) not in ("1", "1+1"):
        raise FormulaError(f"re_form {re_form!r} may hold only random-effects terms (a|g), not {parsed.fixed!r}")
    own = [(_norm(t.term.expr), t.term.group) for t in d.terms]
    use = [False] * len(d.terms)
    for term in parsed.random:
        pieces = split_uncorrelated((term,))  # (x || g) as the model holds it: (1 | g) + (0 + x | g)
        hits = [own.index((_norm(p.expr), p.group)) for p in pieces if (_norm(p.expr), p.group) in own]
        if len(hits) != len(pieces):
            model = " + ".join(str(t.term) for t in d.terms)
            raise FormulaError(f"re_form term {term} is not a random-effects term of the model ({model})")
        for i in hits:
            use[i] = True
    return use


def _rows(res: LMMResult, newdata, use: list[bool], need_all_terms: bool) -> _Rows:
    d = res.model.design
    if newdata is None:
        off = np.zeros(d.n) if d.offset is None else d.offset
        return _Rows(d.X, off, [t.Z for t in d.terms], [t.index for t in d.terms], [None] * len(d.terms))
    check_columns(newdata, spec_variables(d.fixed_spec), "the fixed effects")
    X = newdata_matrix(d.fixed_spec, newdata, list(d.xnames), "the fixed-effects model matrix")
    off = np.zeros(len(newdata))
    for spec in d.offset_specs:  # lme4's predictions include the offset, computed from newdata
        check_columns(newdata, spec_variables(spec), "the offset")
        off = off + newdata_matrix(spec, newdata, list(spec.column_names), "the offset")[:, 0]
    Zs, codes, labels = [], [], []
    for t, u in zip(d.terms, use):
        if not (u or need_all_terms):
            Zs.append(None), codes.append(None), labels.append(None)
            continue
        if u:
            check_columns(newdata, spec_variables(t.spec) | set(t.term.group), f"random-effects term {t.term}")
            c, lab = _level_codes(newdata, t)
        else:  # only its variance is needed (a prediction interval), not its levels
            check_columns(newdata, spec_variables(t.spec), f"the variance of random-effects term {t.term}")
            c, lab = np.full(len(newdata), -1, dtype=np.int64), None
        Zs.append(newdata_matrix(t.spec, newdata, list(t.columns), f"the model matrix of {t.term}"))
        codes.append(c), labels.append(lab)
    return _Rows(X, off, Zs, codes, labels)


def predict(
    res: LMMResult,
    newdata: pd.DataFrame | None = None,
    re_form=None,
    se_fit: bool = False,
    interval: str | None = None,
    level: float = 0.95,
    allow_new_levels: bool = False,
    random_effects: bool | None = None,
) -> pd.Series | pd.DataFrame:
    """Predictions (lme4's ``predict.merMod``) with optional standard errors and intervals.

    Which random effects a prediction conditions on follows lme4's ``re.form``: ``None``
    (default) all of them, Xβ̂ + Zb̂; ``"~0"``, ``"0"`` or ``"NA"`` (or ``False``) none,
    the population-level Xβ̂; or a formula of some of the model's terms, e.g.
    ``"~(1|county:location)"``, which adds only those terms' Zb̂.  ``random_effects=True``
    / ``False`` (the older spelling, also accepted as ``re_form``) mean all / none.

    Standard errors (``se_fit=True`` or any ``interval``):

    * population level: √(x' Var(β̂) x), from ``res.vcov``;
    * conditional: the standard error of the prediction error of the conditional mean,
      Xβ̂ + Z_S b̂_S − (Xβ + Z_S b_S) over the conditioned terms S, from the inverse of
      Henderson's mixed-model equations, σ² C⁻¹ (β̂ and b̂ − b jointly, at the estimated
      variance parameters, whose own uncertainty is not included).  A new level of a
      conditioned term (``allow_new_levels``) predicts b = 0 and adds its variance z'Σz.

    Intervals (``level`` coverage):

    * ``"confidence"``: for the population level, fit ± t·se with Satterthwaite's df for
      each row's x'β (as emmeans/lmerTest do for a linear function of β); for conditional
      predictions fit ± z·se (normal quantile: no df is established there);
    * ``"prediction"``: for a new observation, fit ± z·√(se² + σ² + Σ_t z_t'Σ_t z_t), the
      sum over the random-effects terms *not* conditioned on (all of them at the
      population level), i.e. a new observation of a new, unknown group of those terms; σ²
      is for unit prior weight.  Those terms' columns must then be in ``newdata``.

    Args:
        res: the fitted model.
        newdata: rows to predict (DataFrame or dict of columns); None: the fitting rows.
        re_form: random-effects terms to condition on (see above).
        se_fit: also return standard errors.
        interval: None, ``"confidence"`` or ``"prediction"``.
        level: coverage of the interval.
        allow_new_levels: predict levels of a grouping factor not seen in fitting with
            zero random effects (otherwise they raise a DataError naming them).
        random_effects: True (all terms) or False (none), an alternative to ``re_form``.

    Returns:
        A Series ``predicted`` indexed like ``newdata`` (the fitting rows without it); with
        ``se_fit`` or ``interval`` a DataFrame with ``fit`` and ``se`` (plus ``df``,
        ``lower``, ``upper`` for an interval; df is inf where the normal quantile is used).
        Rows with missing values in the needed columns give NaN.
    """
    d = res.model.design
    use = _terms_used(res, re_form, random_effects)
    if interval is not None and interval not in INTERVALS:
        raise ValueError(f"interval must be None, 'confidence' or 'prediction', got {interval!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    if newdata is not None:
        if isinstance(newdata, dict):
            newdata = pd.DataFrame(newdata)
        if not isinstance(newdata, pd.DataFrame):
            raise DataError(f"newdata must be a pandas DataFrame (or a dict of columns), got {type(newdata).__name__}")
    index = d.rows if newdata is None else newdata.index
    want_se = bool(se_fit) or interval is not None
    if newdata is not None and len(newdata) == 0:
        if not want_se:
            return pd.Series([], index=index, name="predicted", dtype=float)
        cols = ["fit", "se"] + (["df", "lower", "upper"] if interval else [])
        return pd.DataFrame({c: pd.Series([], dtype=float) for c in cols}, index=index)
    if newdata is None and all(use) and not want_se:
        return pd.Series(res.fitted.to_numpy(), index=index, name="predicted")
    rows = _rows(res, newdata, use, need_all_terms=interval == "prediction")
    beta = res.fixef.to_numpy()
    out = rows.X @ beta + rows.offset
    news = []
    for t, b, u, Z, codes, labels in zip(d.terms, res.effects.b, use, rows.Z, rows.codes, rows.labels):
        if not u:
            news.append(None)
            continue
        new = codes < 0
        if new.any() and not allow_new_levels:
            bad = list(dict.fromkeys(labels[new]))
            shown = ", ".join(repr(v) for v in bad[:10]) + (" ..." if len(bad) > 10 else "")
            raise DataError(
                f"new level(s) {shown} of grouping factor '{t.name}' not in the fitted data; "
                "use allow_new_levels=True to predict them with zero random effects"
            )
        b = np.asarray(b)
        bz = np.where(new[:, None], 0.0, b[np.where(new, 0, codes)])
        # a new level contributes nothing, even where Z itself is NaN
        out = out + np.einsum("ij,ij->i", np.where(new[:, None], 0.0, Z), bz)
        news.append(new)
    if not want_se:
        return pd.Series(out, index=index, name="predicted")
    conditional = any(use)
    if conditional:
        var = _conditional_variance(res, rows, use, news)
    else:
        V = res.vcov.to_numpy()
        var = np.einsum("ij,jk,ik->i", rows.X, V, rows.X)
    frame = pd.DataFrame({"fit": out, "se": np.sqrt(np.maximum(var, 0.0))}, index=index)
    if interval is None:
        return frame
    from scipy import special  # not scipy.stats: its import alone is slow

    if interval == "prediction":
        var = var + res.sigma**2
        for u, Z, cov in zip(use, rows.Z, res.covariance_matrices().values()):
            if not u:
                var = var + np.einsum("ij,jk,ik->i", Z, cov.to_numpy(), Z)
        df = np.full(len(out), np.inf)
    elif conditional:
        df = np.full(len(out), np.inf)
    else:
        df = _satterthwaite_df(res, rows.X)
    half = special.stdtrit(df, 0.5 + level / 2) * np.sqrt(np.maximum(var, 0.0))  # df = inf: the normal
    frame["df"] = df
    frame["lower"] = out - half
    frame["upper"] = out + half
    bad = ~np.isfinite(out)
    frame.loc[bad, ["se", "df", "lower", "upper"]] = np.nan
    return frame


def _satterthwaite_df(res: LMMResult, X: np.ndarray) -> np.ndarray:
    """Satterthwaite df of each row's x'β̂ (lmerTest's ``contest(fit, L, joint = FALSE)``)."""

    ok = np.isfinite(X).all(axis=1)
    df = np.full(X.shape[0], np.nan)
    if ok.any():
        L, inv = np.unique(X[ok], axis=0, return_inverse=True)  # one df per distinct row
        df[ok] = satterthwaite(res, L=L)["df"].to_numpy()[np.ravel(inv)]
    return df


def _conditional_variance(res: LMMResult, rows: _Rows, use: list[bool], news: list) -> np.ndarray:
    """Var(x'β̂ + z_S'b̂_S − x'β − z_S'b_S) per row, from Henderson's equations in (β, u), b = Λu:
    C = [X ZΛ]'W[X ZΛ] + diag(0, I), Var([β̂; û − u]) = σ² C⁻¹."""
    from scipy import sparse

    d = weighted_rows(res.model.design)
    lams = res.model.layout.lambdas(res.theta)
    sizes = [t.nlevels * t.ncols for t in d.terms]
    q, p = sum(sizes), d.p
    if q > MAX_DENSE_Q:
        raise ValueError(
            f"standard errors of conditional predictions use a dense {q + p}x{q + p} matrix; the model has "
            f"q = {q} random effects, more than MAX_DENSE_Q = {MAX_DENSE_Q} (population-level ones do not)"
        )
    offs = np.cumsum([0] + sizes)
    n = d.n
    rows_i, cols_i, vals = [], [], []  # ZΛ as a sparse matrix: r_t entries per row and term
    for t, lam, o in zip(d.terms, lams, offs):
        zl = t.Z @ lam
        for c in range(t.ncols):
            rows_i.append(np.arange(n)), cols_i.append(o + t.index * t.ncols + c), vals.append(zl[:, c])
    ZL = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows_i), np.concatenate(cols_i))), shape=(n, q))
    C = np.empty((p + q, p + q))
    C[:p, :p] = d.X.T @ d.X
    C[p:, :p] = np.asarray(ZL.T @ d.X)
    C[:p, p:] = C[p:, :p].T
    C[p:, p:] = (ZL.T @ ZL).toarray() + np.eye(q)
    m = rows.X.shape[0]
    a = np.zeros((m, p + q))
    a[:, :p] = rows.X
    extra = np.zeros(m)
    covs = list(res.covariance_matrices().values())
    for i, (t, lam, o, u) in enumerate(zip(d.terms, lams, offs, use)):
        if not u:
            continue
        Z, codes, new = rows.Z[i], rows.codes[i], news[i]
        zl = np.where(new[:, None], 0.0, Z) @ lam
        for c in range(t.ncols):
            a[np.arange(m), p + o + np.where(new, 0, codes) * t.ncols + c] += np.where(new, 0.0, zl[:, c])
        if new.any():  # b of an unseen level: predicted 0, its whole variance is error
            Zn = np.where(new[:, None], Z, 0.0)
            extra += np.einsum("ij,jk,ik->i", Zn, covs[i].to_numpy(), Zn)
    ok = np.isfinite(a).all(axis=1)
    a[~ok] = 0.0
    chol = np.linalg.cholesky(C)
    w = np.linalg.solve(chol, a.T)  # C = LL': a C⁻¹ a' = |L⁻¹a'|²
    var = res.sigma**2 * np.sum(w * w, axis=0) + extra
    var[~ok] = np.nan
    return var


def predict_interval(
    res: LMMResult,
    newdata: pd.DataFrame | None = None,
    n: int = 1000,
    seed: int | None = 0,
    level: float = 0.95,
    which: str = "population",
    boot=None,
    **bootstrap_kwargs,
) -> pd.DataFrame:
    """Parametric-bootstrap percentile intervals of population-level predictions.

    lme4's ``bootMer(fit, function(f) predict(f, newdata, re.form = NA), nsim = n)``
    followed by quantiles: each replicate's x'β* (plus the offset) over the converged
    replicates of :func:`jaxlme.bootstrap.bootstrap`.  Only population-level intervals are
    available: the bootstrap keeps each replicate's β*, θ* and σ*, not its random effects.

    Args:
        res: the fitted model.
        newdata: rows to predict; None: the fitting rows.
        n: number of bootstrap replicates (ignored when ``boot`` is given).
        seed: the bootstrap's seed: the same seed gives the same intervals.
        level: coverage of the percentile interval.
        which: ``"population"``; ``"conditional"`` raises a ValueError (see above).
        boot: an existing ``BootstrapResult`` of ``res`` to reuse instead of refitting.
        **bootstrap_kwargs: passed on to the bootstrap.

    Returns:
        A DataFrame with ``fit`` (x'β̂), ``lower`` and ``upper``, indexed like ``newdata``.
    """
    if which != "population":
        raise ValueError(
            f"which={which!r}: bootstrap prediction intervals are population-level only (the bootstrap keeps "
            "each replicate's fixed effects, not its random effects); use which='population'"
        )
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    if boot is None:
        boot = bootstrap(res, n, seed, **bootstrap_kwargs)
    elif boot.result is not res:
        raise ValueError("boot is the bootstrap of another fit; bootstrap this result or pass boot=None")
    if newdata is not None and isinstance(newdata, dict):
        newdata = pd.DataFrame(newdata)
    use = [False] * len(res.model.design.terms)
    rows = _rows(res, newdata, use, need_all_terms=False)
    index = res.model.design.rows if newdata is None else newdata.index
    betas = boot.fixef.to_numpy()[boot.usable.to_numpy()]
    if len(betas) < 2:
        raise ValueError(f"the bootstrap has {len(betas)} usable replicate(s); intervals need more")
    draws = betas @ rows.X.T + rows.offset  # (replicates, rows)
    lo, hi = np.quantile(draws, [0.5 - level / 2, 0.5 + level / 2], axis=0)
    fit = rows.X @ res.fixef.to_numpy() + rows.offset
    bad = ~np.isfinite(fit)
    lo[bad] = hi[bad] = np.nan
    return pd.DataFrame({"fit": fit, "lower": lo, "upper": hi}, index=index)


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
