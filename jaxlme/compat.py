"""A statsmodels-compatible front end: change one import, keep your ``mixedlm`` code.

>>> import jaxlme as smf                                              # doctest: +SKIP
>>> res = smf.mixedlm("bounce_time ~ age_scaled", data, groups=data["county"],
...                   re_formula="~age_scaled").fit(reml=True)       # doctest: +SKIP
>>> print(res.summary())                                              # doctest: +SKIP

statsmodels' arguments are translated into an lme4-style jaxlme formula:
``groups`` g with ``re_formula="~x"`` becomes ``(1 + x | g)`` (correlated intercept and
slope), and each variance component ``vc_formula={"loc": "0 + C(loc)"}`` becomes
``(1 | g:loc)`` (a random intercept for every ``loc`` nested in ``g``).  The result uses
statsmodels' names and conventions (random-effect parameters in ``params`` are divided by
the residual variance ``scale``; standard errors come from the observed information of
the scale-profiled likelihood, as in statsmodels).  Every statsmodels name keeps
statsmodels' meaning: ``predict`` gives the fixed-effects part X·fe_params only, ``aic`` and
``bic`` are NaN for REML fits.  jaxlme's own quantities keep their own names: conditional
predictions (fixed plus random effects) are ``predict_conditional``, and lme4-style names
that statsmodels does not use (``fixef``, ``theta``, ``varcorr``, ...) are read from the
underlying :class:`jaxlme.LMMResult`, which is also available as ``.lmm``.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import numpy as np
import pandas as pd

from . import _warnings
from ._config import x64
from .design import DataError, r_name
from .formula import FormulaError
from .model import LMM
from .results import LMMResult

__all__ = ["mixedlm", "MixedLM", "MixedLMResults", "MixedLMSummary", "to_lme4_formula"]

#: statsmodels' ``fit`` options that have no meaning for jaxlme's Newton optimizer.
_IGNORED_FIT_OPTIONS = (
    "start_params",
    "method",
    "full_output",
    "disp",
    "niter_sa",
    "do_cg",
    "fe_pen",
    "cov_pen",
    "free",
    "callback",
    "retall",
)

#: Names read from the underlying LMMResult: jaxlme/lme4 names that statsmodels' MixedLMResults
#: does not use, so they cannot be mistaken for a statsmodels quantity.  statsmodels names
#: (``aic``, ``bic``, ``predict``, ``summary``, ``bootstrap``, ...) are never passed through.
NATIVE_ATTRIBUTES = frozenset(
    {
        "fixef",
        "ranef",
        "vcov",
        "stderr",
        "varcorr",
        "theta",
        "objective",
        "sigma",
        "singular",
        "npar",
        "deviance",
        "loglike",
        "opt",
        "effects",
        "y",
        "fitted",
        "residuals",
        "ngroups",
        "covariance_matrices",
        "coefs",
        "anova",
        "confint",
        "simulate",
        "ranef_condvar",
        "ranef_condsd",
    }
)

#: Above this many random effects the statsmodels-style Hessian is not formed (it is dense).
MAX_Q_FOR_HESSIAN = 4000


def _strip_tilde(text: str) -> str:
    text = text.strip()
    if text.startswith("~"):
        text = text[1:].strip()
    if "~" in text:
        raise FormulaError(f"re_formula/vc_formula must be one-sided (e.g. '~x'), got {text!r}")
    return text


_VC_RE = re.compile(r"^0\s*\+\s*(?:C\(\s*([A-Za-z_][\w.]*)\s*\)|([A-Za-z_][\w.]*))$")


def _vc_term(name: str, spec: str, group: str, data: pd.DataFrame) -> tuple[str, str, str]:
    """Translate one variance component into a random term; returns (term, factor, column-prefix)."""
    text = " ".join(_strip_tilde(spec).split())
    m = _VC_RE.match(text)
    if not m:
        raise FormulaError(
            f"vc_formula {name!r}: {spec!r} is not supported; use '0 + C(factor)' or '0 + x' "
            "(or write the model as a jaxlme formula with jaxlme.lmm)"
        )
    var = m.group(1) or m.group(2)
    if var not in data.columns:
        raise DataError(f"Column '{var}' used in vc_formula {name!r} not found in data")
    categorical = m.group(1) is not None or not (
        pd.api.types.is_numeric_dtype(data[var]) and not pd.api.types.is_bool_dtype(data[var])
    )
    if categorical:
        prefix = f"C({var})" if m.group(1) else var
        return f"(1 | {group}:{var})", var, prefix
    return f"(0 + {var} | {group})", var, ""


def to_lme4_formula(
    formula: str,
    groups: str,
    re_formula: str | None,
    vc_formula: dict[str, str] | None,
    data: pd.DataFrame,
) -> tuple[str, str | None, dict[str, str]]:
    """statsmodels' (formula, groups, re_formula, vc_formula) as one jaxlme formula.

    Returns the formula, the random-effects term written for ``re_formula`` (None if
    there is none) and a map from each variance component's name to its term.
    """
    if not isinstance(formula, str) or "~" not in formula:
        raise FormulaError(f"formula must be a two-sided string such as 'y ~ x', got {formula!r}")
    if "|" in formula:
        raise FormulaError(
            "mixedlm's formula holds the fixed effects only; give random effects with "
            "groups/re_formula/vc_formula, or pass the lme4-style formula to jaxlme.lmm"
        )
    terms: list[str] = []
    # statsmodels: no re_formula means a random intercept, unless variance components are given
    default = "0" if vc_formula else "1"
    re_rhs = default if re_formula is None else " ".join(_strip_tilde(re_formula).split())
    main = None
    if re_rhs and re_rhs not in ("0", "-1"):
        main = f"({re_rhs} | {groups})"
        terms.append(main)
    vc_terms: dict[str, str] = {}
    for name, spec in (vc_formula or {}).items():
        term, _, _ = _vc_term(name, spec, groups, data)
        terms.append(term)
        vc_terms[name] = term
    if not terms:
        raise FormulaError("the model has no random effects (re_formula='0' and no vc_formula)")
    return f"{formula.strip()} + " + " + ".join(terms), main, vc_terms


def _norm_sf(z: np.ndarray) -> np.ndarray:
    return np.array([0.5 * math.erfc(v / math.sqrt(2.0)) for v in np.ravel(z)]).reshape(np.shape(z))


class MixedLM:
    """statsmodels' ``MixedLM`` interface backed by a :class:`jaxlme.LMM`.

    Build it with :func:`mixedlm`; call :meth:`fit`.
    """

    def __init__(
        self,
        formula: str,
        data: pd.DataFrame,
        groups: str | pd.Series | np.ndarray | list,
        re_formula: str | None = None,
        vc_formula: dict[str, str] | None = None,
    ) -> None:
        if not isinstance(data, pd.DataFrame):
            data = pd.DataFrame(data)
        if groups is None:
            raise DataError("mixedlm needs groups=: a column name or a Series with one label per row")
        if isinstance(groups, str):
            if groups not in data.columns:
                raise DataError(f"groups column '{groups}' not found in data")
            group_col = groups
        else:
            values = np.asarray(groups)
            if values.ndim != 1 or len(values) != len(data):
                raise DataError(f"groups has {values.size} values, data has {len(data)} rows")
            name = getattr(groups, "name", None)
            if (
                isinstance(name, str)
                and name in data.columns
                and np.array_equal(np.asarray(data[name]).astype(str), values.astype(str))
            ):
                group_col = name
            else:
                base = name if isinstance(name, str) and name.isidentifier() else "groups"
                group_col = base
                while group_col in data.columns:
                    group_col = "_" + group_col
                data = data.assign(**{group_col: values})
        if not group_col.isidentifier():
            raise DataError(f"groups column name {group_col!r} must be a valid identifier")
        self.data = data
        self.group_name = group_col
        self.re_formula = re_formula
        self.vc_formula = dict(vc_formula or {})
        self.formula = formula
        self.jaxlme_formula, main_term, vc_terms = to_lme4_formula(
            formula, group_col, re_formula, self.vc_formula, data
        )
        self.model = LMM(self.jaxlme_formula, data)
        d = self.model.design
        self.exog_names = self._statsmodels_names()
        self.endog_name = d.formula.response
        by_text = {" ".join(str(t.term).split()): i for i, t in enumerate(d.terms)}
        self._main_index = by_text[" ".join(main_term.split())] if main_term else None
        self._main = d.terms[self._main_index] if main_term else None
        #: variance-component name -> index of its term in the design
        self._vc_index = {k: by_text[" ".join(v.split())] for k, v in vc_terms.items()}
        self._vc_groups = self._vc_index
        label = groups if isinstance(groups, str) else "Group"  # statsmodels' naming
        self.exog_re_names = (
            [label if c == "(Intercept)" else c for c in self._main.columns] if self._main is not None else []
        )

    def _statsmodels_names(self) -> list[str]:
        d = self.model.design
        spec_names = list(getattr(d.fixed_spec, "column_names", []) or [])
        back = {r_name(c): c for c in spec_names}
        return [back.get(x, x) for x in d.xnames]

    @property
    def k_fe(self) -> int:
        return self.model.design.p

    @property
    def k_re(self) -> int:
        return len(self.exog_re_names)

    @property
    def k_vc(self) -> int:
        return len(self._vc_groups)

    @property
    def param_names(self) -> list[str]:
        names = list(self.exog_names)
        re_names = self.exog_re_names
        for i in range(len(re_names)):
            for j in range(i + 1):
                names.append(f"{re_names[i]} Var" if i == j else f"{re_names[j]} x {re_names[i]} Cov")
        names += [f"{v} Var" for v in self._vc_groups]
        return names

    def fit(self, reml: bool = True, maxiter: int | None = None, gtol: float | None = None, **kwargs: Any):
        """Fit by REML (default) or ML.

        statsmodels' optimizer options (``method``, ``start_params``, ``do_cg``, ``niter_sa``,
        ``full_output``, ``disp``, ...) are accepted and ignored with a note: jaxlme always
        uses its own bounded Newton optimizer on the profiled criterion.
        """
        unknown = [k for k in kwargs if k not in _IGNORED_FIT_OPTIONS]
        if unknown:
            raise TypeError(f"fit() got unexpected keyword argument(s): {', '.join(unknown)}")
        meaningful = {k: v for k, v in kwargs.items() if v is not None and v is not False}
        if meaningful:
            _warnings.warn(
                f"jaxlme ignores statsmodels fit option(s) {', '.join(sorted(meaningful))}: it always "
                "uses its own bounded Newton optimizer"
            )
        opts: dict[str, Any] = {}
        if maxiter is not None:
            opts["maxiter"] = int(maxiter)
        if gtol is not None:
            opts["gtol"] = float(gtol)
        res = self.model.fit(reml=reml, **opts)
        return MixedLMResults(self, res)


def mixedlm(
    formula: str,
    data: pd.DataFrame,
    groups: str | pd.Series | np.ndarray | list | None = None,
    re_formula: str | None = None,
    vc_formula: dict[str, str] | None = None,
    **kwargs: Any,
) -> MixedLM:
    """statsmodels' ``smf.mixedlm`` with jaxlme underneath.

    ``groups``: column name or Series/array of group labels (one per row).
    ``re_formula``: random effects within groups; ``None`` = random intercept, ``"~x"`` =
    correlated random intercept and slope, ``"0 + x"`` = slope only.
    ``vc_formula``: ``{"name": "0 + C(factor)"}`` adds independent variance components
    nested in the groups (lme4's ``(1 | groups:factor)``).
    """
    for k in ("subset", "missing", "use_sqrt", "exog_vc"):
        if k in kwargs and kwargs[k] not in (None, "none", "drop", True):
            raise TypeError(f"mixedlm option {k}={kwargs[k]!r} is not supported by jaxlme")
    unknown = [k for k in kwargs if k not in ("subset", "missing", "use_sqrt", "exog_vc")]
    if unknown:
        raise TypeError(f"mixedlm() got unexpected keyword argument(s): {', '.join(unknown)}")
    return MixedLM(formula, data, groups=groups, re_formula=re_formula, vc_formula=vc_formula)


# -- the statsmodels-style observed information ---------------------------------------------


def _group_crossprods(model: MixedLM):
    """Z (dense, n x q), and for each random effect which parameter block it belongs to."""
    d = model.model.design
    blocks = []  # (term, kind) with kind "re" or vc name
    if model._main is not None:
        blocks.append((model._main, "re"))
    for vname, i in model._vc_index.items():
        blocks.append((d.terms[i], vname))
    cols = []
    for t, _ in blocks:
        q_t = t.nlevels * t.ncols
        Zt = np.zeros((d.n, q_t))
        rows = np.arange(d.n)
        for c in range(t.ncols):
            Zt[rows, t.index * t.ncols + c] = t.Z[:, c]
        cols.append(Zt)
    return np.hstack(cols), blocks


def _statsmodels_information(model: MixedLM, res: LMMResult):
    """Hessian of statsmodels' scale-profiled log-likelihood in (beta, Psi, vc), Psi = Sigma/sigma^2.

    Returns (cov_params, ok); cov_params is None when the model is too big to do densely.
    """
    import jax
    import jax.numpy as jnp

    d = model.model.design
    q = sum(t.nlevels * t.ncols for t in d.terms)
    if q > MAX_Q_FOR_HESSIAN or d.n * q > 5e7:
        return None
    Z, blocks = _group_crossprods(model)
    X, y = d.X, res.y
    n, p = X.shape
    k = model.k_re
    tri = [(i, j) for i in range(k) for j in range(i + 1)]
    reml = res.reml
    fac = n - p if reml else n

    def build_D(psi, vc):
        diag_blocks = []
        off = 0
        for t, kind in blocks:
            if kind == "re":
                P = jnp.zeros((k, k))
                for m, (i, j) in enumerate(tri):
                    P = P.at[i, j].set(psi[m]).at[j, i].set(psi[m])
                diag_blocks.append(jnp.kron(jnp.eye(t.nlevels), P))
            else:
                diag_blocks.append(vc[off] * jnp.eye(t.nlevels * t.ncols))
                off += 1
        return jax.scipy.linalg.block_diag(*diag_blocks)

    ZtZ, ZtX, Zty = Z.T @ Z, Z.T @ X, Z.T @ y

    def loglike(par):
        beta, psi, vc = par[:p], par[p : p + len(tri)], par[p + len(tri) :]
        D = build_D(psi, vc)
        M = jnp.eye(Z.shape[1]) + D @ ZtZ
        _, logdetV = jnp.linalg.slogdet(M)
        r = y - X @ beta
        Ztr = Zty - ZtX @ beta
        qf = r @ r - Ztr @ jnp.linalg.solve(M, D @ Ztr)
        ll = -0.5 * logdetV - 0.5 * fac * jnp.log(qf)
        if reml:
            xvx = X.T @ X - ZtX.T @ jnp.linalg.solve(M, D @ ZtX)
            ll = ll - 0.5 * jnp.linalg.slogdet(xvx)[1]
        return ll

    scale = res.sigma**2
    psi0 = []
    if model._main is not None:
        S = term_cov(res, model._main_index) / scale
        psi0 = [S[i, j] for i, j in tri]
    vc0 = [term_cov(res, i)[0, 0] / scale for i in model._vc_index.values()]
    par = np.concatenate([res.fixef.to_numpy(), np.asarray(psi0, float), np.asarray(vc0, float)])
    with jax.enable_x64(True):
        H = np.asarray(jax.jit(jax.hessian(loglike))(jnp.asarray(par)))
    try:
        cov = np.linalg.inv(-H)
    except np.linalg.LinAlgError:
        cov = np.linalg.pinv(-H)
    return cov, H


def term_cov(res: LMMResult, i: int) -> np.ndarray:
    """Σ of the i-th design term (by position: two terms may share a grouping name)."""
    import jax
    import jax.numpy as jnp

    from .objective import lambda_blocks

    with jax.enable_x64(True):
        lam = np.asarray(lambda_blocks(jnp.asarray(res.theta), res.model.layout)[i])
    return res.sigma**2 * lam @ lam.T


# -- results -------------------------------------------------------------------------------


class MixedLMResults:
    """A jaxlme fit with statsmodels' ``MixedLMResults`` names.

    statsmodels' attributes, with statsmodels' meanings: ``params``, ``fe_params``, ``bse``,
    ``bse_fe``, ``bse_re``, ``cov_re``, ``cov_re_unscaled``, ``vcomp``, ``scale``, ``llf``,
    ``aic``, ``bic`` (NaN for REML), ``converged``, ``method``, ``reml``, ``nobs``,
    ``df_resid``, ``k_fe``, ``k_re``, ``k_vc``, ``resid`` and ``fittedvalues`` (conditional:
    fixed plus random effects), ``random_effects``, ``tvalues``, ``pvalues``,
    ``conf_int()``, ``cov_params()``, ``predict()`` (fixed effects only), ``summary()``.
    jaxlme adds ``predict_conditional()`` and the lme4-style names in ``NATIVE_ATTRIBUTES``
    (``fixef``, ``theta``, ``varcorr``, ``opt``, ...), read from the underlying
    :class:`jaxlme.LMMResult` (``.lmm``); any other name raises AttributeError.
    """

    def __init__(self, model: MixedLM, res: LMMResult) -> None:
        self.model = model
        self.lmm = res
        d = res.model.design
        self.method = res.method
        self.reml = res.reml
        self.k_fe, self.k_re, self.k_vc = model.k_fe, model.k_re, model.k_vc
        self.scale = res.sigma**2
        self.llf = res.loglike
        self.converged = res.converged
        self.nobs = res.nobs
        self.fe_params = pd.Series(res.fixef.to_numpy(), index=model.exog_names)
        main = model._main
        if main is not None:
            S = term_cov(res, model._main_index)
            self.cov_re = pd.DataFrame(S, index=model.exog_re_names, columns=model.exog_re_names)
        else:
            self.cov_re = pd.DataFrame(np.zeros((0, 0)))
        self.cov_re_unscaled = self.cov_re / self.scale
        self.vcomp = np.array([term_cov(res, i)[0, 0] for i in model._vc_index.values()])
        k = self.k_re
        re_par = [self.cov_re_unscaled.iat[i, j] for i in range(k) for j in range(i + 1)]
        self.params = pd.Series(
            np.concatenate([self.fe_params.to_numpy(), re_par, self.vcomp / self.scale]),
            index=model.param_names,
        )
        self.fittedvalues = pd.Series(res.fitted.to_numpy(), index=d.rows)
        self.resid = pd.Series(res.residuals.to_numpy(), index=d.rows)
        self.df_resid = self.nobs - self.k_fe

    def __getattr__(self, name: str):
        if name in NATIVE_ATTRIBUTES:
            return getattr(self.lmm, name)
        raise AttributeError(
            f"'MixedLMResults' has no attribute {name!r} (jaxlme's native result is available as .lmm)"
        )

    @property
    def aic(self) -> float:
        """Akaike information criterion as statsmodels computes it: NaN for REML fits; for ML
        fits -2 (llf - df) with df = len(params) + 1 (the residual variance)."""
        if self.reml:
            return float("nan")
        return -2.0 * (self.llf - (len(self.params) + 1))

    @property
    def bic(self) -> float:
        """Bayesian information criterion as statsmodels computes it: NaN for REML fits."""
        if self.reml:
            return float("nan")
        return -2.0 * self.llf + math.log(self.nobs) * (len(self.params) + 1)

    def predict(self, exog=None, transform: bool = True):
        """statsmodels' ``MixedLMResults.predict``: the fixed-effects part X·fe_params only.

        Random effects are not included (use :meth:`predict_conditional` for that).  Return
        types follow statsmodels: with ``exog=None`` a numpy array over the fitting rows; with
        a DataFrame a Series indexed like it (rows with missing values give NaN); with a dict
        of columns a Series over the rows without missing values; with ``transform=False``
        ``exog`` is the fixed-effects design matrix itself (columns in ``fe_params`` order)
        and the result is a Series for pandas input, a numpy array otherwise.

        Args:
            exog: New data (DataFrame, dict of columns, or a Series holding one row), or with
                ``transform=False`` a design matrix; None predicts for the fitting rows.
            transform: Whether to pass ``exog`` through the model's formula.

        Returns:
            The predictions, as a numpy array or a pandas Series (see above).
        """
        beta = self.fe_params.to_numpy()
        if exog is None:
            return self.lmm.model.design.X @ beta
        if not transform:
            index = exog.index if isinstance(exog, (pd.DataFrame, pd.Series)) else None
            if isinstance(exog, pd.Series) and self.k_fe > 1:  # one row, as statsmodels reads it
                index = [exog.index.name]
            X = np.asarray(exog, dtype=float)
            if X.ndim == 1 and self.k_fe == 1:
                X = X[:, None]
            X = np.atleast_2d(X)
            if X.shape[1] != self.k_fe:
                raise DataError(
                    f"exog has {X.shape[1]} column(s), the fixed effects have {self.k_fe} "
                    f"({', '.join(self.fe_params.index)})"
                )
            out = X @ beta
            return out if index is None else pd.Series(out, index=index)
        if isinstance(exog, dict):
            pred = self.lmm.predict(pd.DataFrame(exog), random_effects=False)
            return pred[pred.notna()].rename(None)
        if isinstance(exog, pd.Series):
            needed = set(getattr(self.lmm.model.design.fixed_spec, "required_variables", ()) or ())
            # a column if it names a variable of the formula, else one row (as statsmodels guesses)
            exog = exog.to_frame() if exog.name in needed else exog.to_frame().T.infer_objects()
        if not isinstance(exog, pd.DataFrame):
            raise DataError(
                f"predict needs a DataFrame or dict of columns (or transform=False with a design "
                f"matrix), got {type(exog).__name__}"
            )
        return self.lmm.predict(exog, random_effects=False).rename(None)

    def predict_conditional(self, exog: pd.DataFrame | None = None, allow_new_levels: bool = False) -> pd.Series:
        """jaxlme's addition: conditional predictions X·fe_params + Z·b̂ (lme4's ``predict``).

        Args:
            exog: New data with the fixed-effects columns and the grouping column(s); None
                gives the fitted values on the fitting rows (statsmodels' ``fittedvalues``).
            allow_new_levels: Give groups not seen in fitting zero random effects instead of
                raising a DataError.

        Returns:
            A Series indexed like ``exog`` (or like the fitting rows).
        """
        return self.lmm.predict(exog, random_effects=True, allow_new_levels=allow_new_levels).rename(None)

    @functools.cached_property
    def _information(self) -> tuple[pd.DataFrame, np.ndarray | None, str]:
        info = _statsmodels_information(self.model, self.lmm)
        m = len(self.params)
        if info is not None:
            cov, hess = info
            source = "observed information of the profiled likelihood (as statsmodels)"
        else:
            cov = np.full((m, m), np.nan)
            cov[: self.k_fe, : self.k_fe] = self.lmm.vcov.to_numpy()
            hess = None
            source = "conditional on the variance parameters (model too large for the Hessian)"
        return pd.DataFrame(cov, index=self.params.index, columns=self.params.index), hess, source

    def cov_params(self) -> pd.DataFrame:
        """Covariance of ``params``: inverse of the observed information of statsmodels'
        scale-profiled log-likelihood in (fe_params, cov_re/scale, vcomp/scale)."""
        return self._information[0]

    @property
    def bse(self) -> pd.Series:
        """Standard errors of ``params`` (statsmodels' convention)."""
        with np.errstate(invalid="ignore"):
            return pd.Series(np.sqrt(np.diag(self.cov_params().to_numpy())), index=self.params.index)

    @property
    def bse_fe(self) -> pd.Series:
        return self.bse.iloc[: self.k_fe]

    @property
    def bse_re(self) -> pd.Series:
        """Standard errors of the random-effect parameters on the variance scale (x sqrt(scale))."""
        return self.bse.iloc[self.k_fe :] * math.sqrt(self.scale)

    @property
    def tvalues(self) -> pd.Series:
        return self.params / self.bse

    @property
    def pvalues(self) -> pd.Series:
        return pd.Series(2 * _norm_sf(np.abs(self.tvalues.to_numpy())), index=self.params.index)

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald intervals ``params ± z * bse`` (normal quantile, as statsmodels)."""
        from statistics import NormalDist

        z = NormalDist().inv_cdf(1 - alpha / 2)
        return pd.DataFrame({0: self.params - z * self.bse, 1: self.params + z * self.bse})

    @property
    def random_effects(self) -> dict[Any, pd.Series]:
        """Conditional modes per group, named as statsmodels names them."""
        d = self.lmm.model.design
        main = self.model._main
        out: dict[Any, pd.Series] = {}
        gname = self.model.group_name
        gcol = self.model.data.loc[d.rows, gname]
        labels = pd.unique(gcol)
        try:
            labels = sorted(labels)
        except TypeError:
            pass
        b_all = self.lmm.effects.b
        main_df = None
        if main is not None:
            main_df = pd.DataFrame(np.asarray(b_all[self.model._main_index]), index=main.levels)
        vc_parts = []
        for vname, i in self.model._vc_index.items():
            t = d.terms[i]
            b = np.asarray(b_all[i]).ravel()
            spec = " ".join(_strip_tilde(self.model.vc_formula[vname]).split())
            m = _VC_RE.match(spec)
            prefix = f"C({m.group(1)})" if m and m.group(1) else (m.group(2) if m else vname)
            vc_parts.append((vname, t, b, prefix))
        for g in labels:
            vals, names = [], []
            if main_df is not None:
                row = main_df.loc[g] if g in main_df.index else main_df.loc[str(g)]
                vals += list(np.asarray(row, dtype=float))
                names += self.model.exog_re_names
            for vname, t, b, prefix in vc_parts:
                if len(t.term.group) == 1:  # numeric variance component: (0 + x | g)
                    pos = t.levels.get_loc(g)
                    vals.append(b[pos])
                    names.append(f"{vname}[{prefix}]")
                    continue
                head = f"{g}:"
                for pos, lab in enumerate(t.levels):
                    if str(lab).startswith(head):
                        vals.append(b[pos])
                        names.append(f"{vname}[{prefix}[{str(lab)[len(head) :]}]]")
            out[g] = pd.Series(vals, index=names, dtype=float)
        return out

    def summary(self, alpha: float = 0.05) -> MixedLMSummary:
        """statsmodels' "Mixed Linear Model Regression Results" table."""
        return MixedLMSummary(self, alpha)

    def __repr__(self) -> str:
        return f"<jaxlme.compat.MixedLMResults {self.method} llf={self.llf:.4f} converged={self.converged}>"


class MixedLMSummary:
    """Text of statsmodels' MixedLM summary layout; ``str()`` or ``as_text()`` it."""

    def __init__(self, res: MixedLMResults, alpha: float = 0.05) -> None:
        self.res = res
        self.alpha = alpha

    def _coef_rows(self) -> list[list[str]]:
        r = self.res
        ci = r.conf_int(self.alpha)
        rows = []
        for i, name in enumerate(r.params.index):
            if i < r.k_fe:
                rows.append(
                    [
                        name,
                        f"{r.params.iloc[i]:.3f}",
                        f"{r.bse.iloc[i]:.3f}",
                        f"{r.tvalues.iloc[i]:.3f}",
                        f"{r.pvalues.iloc[i]:.3f}",
                        f"{ci.iloc[i, 0]:.3f}",
                        f"{ci.iloc[i, 1]:.3f}",
                    ]
                )
            else:
                se = r.bse_re.iloc[i - r.k_fe]
                rows.append([name, f"{r.params.iloc[i] * r.scale:.3f}", f"{se:.3f}" if np.isfinite(se) else ""])
        return rows

    def as_text(self) -> str:
        r = self.res
        sizes = r.model.data.loc[r.lmm.model.design.rows, r.model.group_name].value_counts()
        sizes = sizes[sizes > 0]
        lo, hi = f"[{self.alpha / 2:.3f}", f"{1 - self.alpha / 2:.3f}]"
        head = [
            ("Model:", "MixedLM", "Dependent Variable:", r.model.endog_name),
            ("No. Observations:", str(r.nobs), "Method:", r.method),
            ("No. Groups:", str(len(sizes)), "Scale:", f"{r.scale:.4f}"),
            ("Min. group size:", str(sizes.min()), "Log-Likelihood:", f"{r.llf:.4f}"),
            ("Max. group size:", str(sizes.max()), "Converged:", "Yes" if r.converged else "No"),
            ("Mean group size:", f"{sizes.mean():.1f}", "", ""),
        ]
        rows = self._coef_rows()
        hdr = ["", "Coef.", "Std.Err.", "z", "P>|z|", lo, hi]
        widths = [max(len(x[c]) if c < len(x) else 0 for x in rows + [hdr]) for c in range(7)]
        body = []
        for row in [hdr] + rows:
            cells = [row[0].ljust(widths[0])] + [(row[c] if c < len(row) else "").rjust(widths[c]) for c in range(1, 7)]
            body.append(" ".join(cells))
        w1 = max(len(a) for a, *_ in head) + 1
        w2 = max(len(b) for _, b, *_ in head) + 1
        w3 = max(len(c) for *_, c, _ in head) + 1
        w4 = max(len(x[3]) for x in head)
        width = max(len(body[0]), w1 + w2 + w3 + w4 + 2)
        title = "Mixed Linear Model Regression Results".center(width).rstrip()
        lines = [title, "=" * width]
        for a, b, c, e in head:
            lines.append(f"{a:<{w1}}{b:<{w2}}  {c:<{w3}}{e:<{w4}}".ljust(width))
        lines += ["-" * width, body[0].ljust(width), "-" * width]
        lines += [b.ljust(width) for b in body[1:]]
        lines.append("=" * width)
        if r._information[1] is None:
            lines.append(f"Standard errors: {r._information[2]}.")
        lines.append(f"[jaxlme] lme4 formula: {r.model.jaxlme_formula}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.as_text()

    def __repr__(self) -> str:
        return self.as_text()

    def _repr_html_(self) -> str:
        return "<pre>" + self.as_text() + "</pre>"


# the helpers that call JAX directly run in float64
_statsmodels_information = x64(_statsmodels_information)
