"""statsmodels' ``MixedLM`` API with jaxlme underneath: change one import, keep your code.

>>> from jaxlme import MixedLM, mixedlm                                 # doctest: +SKIP
>>> res = mixedlm("y ~ x", data, groups="g", re_formula="~x").fit()    # doctest: +SKIP
>>> res = MixedLM(endog, exog, groups, exog_re).fit(reml=False)       # doctest: +SKIP

Both of statsmodels' constructors are here: the array one, ``MixedLM(endog, exog, groups,
exog_re=None, exog_vc=None)``, and ``MixedLM.from_formula`` / :func:`mixedlm`.  The model is
translated into a jaxlme (lme4-style) model: the ``exog_re`` columns become one correlated
term ``(0 + z1 + ... | group)``; each variance component becomes random coefficients with one
shared variance, nested in the groups.  Estimates come from jaxlme's optimizer on lme4's
profiled criterion; the model's ``loglike``, ``score`` and ``hessian`` are that criterion
in statsmodels' parametrization (``cov_re`` and ``vcomp`` relative to the residual variance
``scale``), differentiated by JAX, so there is one likelihood, not two.

Everything follows statsmodels' conventions, which differ from lme4's in places: standard
errors come from the observed information of the scale-profiled likelihood, ``aic``/``bic``
are NaN under REML, ``predict`` gives the fixed-effects part only, ``missing="none"`` raises
on missing values, and results of a model built from arrays are arrays (pandas objects when
built from pandas data or a formula).  Options jaxlme cannot honour raise an error naming
the option; none is silently replaced by a different model.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import warnings
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from . import messages
from ._config import x64
from .design import DataError
from .formula import FormulaError
from .inference import information_program, start_information
from .model import LMM
from .objective import criterion_terms, factorize, lambda_blocks, rx_beta, solve_effects
from .results import LMMResult
from .transforms import r_context

__all__ = ["MixedLM", "MixedLMParams", "MixedLMResults", "VCSpec", "mixedlm"]

#: Keywords of statsmodels' ``fit`` that reach its scipy optimizer; jaxlme reads ``gtol``
#: and ``maxiter`` and has no use for the rest (its own Newton optimizer needs none of them).
_OPTIMIZER_KWARGS = ("bounds", "callback", "retall", "gtol", "maxiter", "eps", "maxcor", "ftol", "tol", "disp", "maxls")

_WARN_COV_SING = (
    "The random effects covariance matrix is singular or nearly so (a variance at zero or below 0.01): "
    "the MLE may be on the boundary of the parameter space."
)


class _SingularMatrixWarning(UserWarning):
    """The random-effects covariance is (near) singular (statsmodels' class when installed)."""


def _singular_warning() -> type[Warning]:
    try:  # statsmodels' own class, so code that filters statsmodels' warnings keeps working
        from statsmodels.tools.sm_exceptions import SingularMatrixWarning as cls
    except ImportError:  # pragma: no cover - statsmodels is optional
        cls = _SingularMatrixWarning
    return cls


def __getattr__(name: str):
    if name == "SingularMatrixWarning":
        return _singular_warning()
    raise AttributeError(f"module 'jaxlme.compat' has no attribute {name!r}")


# -- parameters --------------------------------------------------------------------------------


class MixedLMParams:
    """A parameter state of a mixed linear model, as statsmodels' ``MixedLMParams``.

    ``fe_params`` (k_fe,), ``cov_re`` (k_re, k_re) and ``vcomp`` (k_vc,), the last two
    relative to the residual variance (the scale is profiled out).  Used as a mask, a 1
    marks a parameter as estimated and a 0 as held fixed (``fit(free=...)``).
    """

    def __init__(self, k_fe: int, k_re: int, k_vc: int) -> None:
        self.k_fe = k_fe
        self.k_re = k_re
        self.k_re2 = k_re * (k_re + 1) // 2
        self.k_vc = k_vc
        self.k_tot = self.k_fe + self.k_re2 + self.k_vc
        self._ix = np.tril_indices(self.k_re)

    @staticmethod
    def from_packed(params, k_fe: int, k_re: int, use_sqrt: bool, has_fe: bool) -> MixedLMParams:
        """Unpack ``[fe_params,] lower(cov_re), vcomp`` (row-major lower triangle).

        Args:
            params: The packed vector.
            k_fe: Number of fixed effects.
            k_re: Number of correlated random effects.
            use_sqrt: The vector holds the Cholesky factor of ``cov_re`` and √vcomp.
            has_fe: The vector starts with the fixed effects (else they are set to zero).

        Returns:
            The parameter object.
        """
        params = np.asarray(params, dtype=float)
        k_re2 = k_re * (k_re + 1) // 2
        k_vc = len(params) - k_re2 - (k_fe if has_fe else 0)
        pa = MixedLMParams(k_fe, k_re, k_vc)
        cov_re = np.zeros((k_re, k_re))
        if has_fe:
            pa.fe_params = params[:k_fe]
            cov_re[pa._ix] = params[k_fe : k_fe + k_re2]
        else:
            pa.fe_params = np.zeros(k_fe)
            cov_re[pa._ix] = params[:k_re2]
        if use_sqrt:
            cov_re = cov_re @ cov_re.T
        else:
            cov_re = cov_re + cov_re.T - np.diag(np.diag(cov_re))
        pa.cov_re = cov_re
        vc = params[len(params) - k_vc :] if k_vc else np.zeros(0)
        pa.vcomp = vc**2 if use_sqrt else vc
        return pa

    @staticmethod
    def from_components(fe_params=None, cov_re=None, cov_re_sqrt=None, vcomp=None) -> MixedLMParams:
        """Build from ``fe_params``, ``cov_re`` (or its Cholesky factor ``cov_re_sqrt``) and ``vcomp``.

        Returns:
            The parameter object.
        """
        fe_params = np.empty(0) if fe_params is None else np.asarray(fe_params, dtype=float)
        vcomp = np.empty(0) if vcomp is None else np.asarray(vcomp, dtype=float)
        if cov_re is None and cov_re_sqrt is None:
            cov_re = np.empty((0, 0))
        k_re = np.shape(cov_re if cov_re is not None else cov_re_sqrt)[0]
        pa = MixedLMParams(len(fe_params), k_re, len(vcomp))
        pa.fe_params = fe_params
        if cov_re_sqrt is not None:
            s = np.asarray(cov_re_sqrt, dtype=float)
            pa.cov_re = s @ s.T
        else:
            pa.cov_re = np.asarray(cov_re, dtype=float)
        pa.vcomp = vcomp
        return pa

    def copy(self) -> MixedLMParams:
        """A copy of the object."""
        obj = MixedLMParams(self.k_fe, self.k_re, self.k_vc)
        obj.fe_params = np.array(self.fe_params, dtype=float)
        obj.cov_re = np.array(self.cov_re, dtype=float)
        obj.vcomp = np.array(self.vcomp, dtype=float)
        return obj

    def get_packed(self, use_sqrt: bool, has_fe: bool = False) -> np.ndarray:
        """The packed vector ``[fe_params,] lower(cov_re or its Cholesky factor), vcomp (or √)``.

        Returns:
            A 1-d array.
        """
        cov_re = np.asarray(self.cov_re, dtype=float)
        if self.k_re > 0:
            if use_sqrt:
                try:
                    L = np.linalg.cholesky(cov_re)
                except np.linalg.LinAlgError:
                    L = np.diag(np.sqrt(np.diag(cov_re)))
                cpa = L[self._ix]
            else:
                cpa = cov_re[self._ix]
        else:
            cpa = np.zeros(0)
        vcomp = np.asarray(self.vcomp, dtype=float)
        vcomp = np.sqrt(vcomp) if use_sqrt else vcomp
        parts = [np.asarray(self.fe_params, dtype=float)] if has_fe else []
        return np.concatenate(parts + [cpa, vcomp])


def _as_params(params, k_fe: int, k_re: int, use_sqrt: bool) -> MixedLMParams:
    if hasattr(params, "cov_re") and hasattr(params, "vcomp"):
        return params
    return MixedLMParams.from_packed(np.asarray(params, dtype=float), k_fe, k_re, use_sqrt, has_fe=False)


@dataclasses.dataclass
class VCSpec:
    """Variance components: ``names`` (sorted), and per component and group (in sorted group
    order) the column names and the (rows of the group) x (columns) matrix."""

    names: list[str]
    colnames: list[list[list[str]]]
    mats: list[list[np.ndarray]]


def _convert_vc(exog_vc: dict) -> VCSpec:
    groups = sorted(set().union(*[set(v) for v in exog_vc.values()])) if exog_vc else []
    names = sorted(exog_vc)
    colnames, mats = [], []
    for k in names:
        v = exog_vc[k]
        cn, ms = [], []
        for g in groups:
            m = v[g]
            cn.append(list(m.columns) if hasattr(m, "columns") else [str(j) for j in range(np.shape(m)[1])])
            ms.append(m)
        colnames.append(cn)
        mats.append(ms)
    return VCSpec(names, colnames, mats)


def _dense(m) -> np.ndarray:
    if hasattr(m, "toarray"):
        m = m.toarray()
    m = np.asarray(m, dtype=float)
    return m[:, None] if m.ndim == 1 else m


def _make_exog_names(exog: np.ndarray) -> list[str]:
    """statsmodels' names for array columns: x1, x2, ... with ``const`` for a constant column."""
    k = exog.shape[1]
    var = exog.var(0) if len(exog) else np.ones(k)
    if k and (var == 0).any():
        names = [f"x{i:d}" for i in range(1, k)]
        names.insert(int(var.argmin()), "const")
        return names
    return [f"x{i:d}" for i in range(1, k + 1)]


class _Data:
    """statsmodels' ``model.data`` names: ``xnames``, ``ynames``, ``param_names``, ``exog_re_names``
    and ``exog_re_names_full``."""

    def __init__(self, xnames, ynames, exog_re_names, exog_re_names_full, vc_names, frame=None):
        self.xnames = list(xnames)
        self.ynames = ynames
        self.exog_re_names = list(exog_re_names)
        self.exog_re_names_full = list(exog_re_names_full)
        self.vcomp_names = list(vc_names)
        self.param_names = self.xnames + self.exog_re_names_full + [f"{v} Var" for v in vc_names]
        self.frame = frame

    @property
    def cov_names(self) -> list[str]:
        return self.param_names


def _re_names_full(names: list[str]) -> list[str]:
    out = []
    for i in range(len(names)):
        for j in range(i + 1):
            out.append(f"{names[i]} Var" if i == j else f"{names[j]} x {names[i]} Cov")
    return out


# -- the jaxlme model behind a statsmodels model -----------------------------------------------


@dataclasses.dataclass
class _Variant:
    """One jaxlme model for a covariance pattern: ``"full"`` (correlated ``cov_re``) or
    ``"diag"`` (independent random effects, one term per column)."""

    lmm: LMM
    pattern: str
    main_terms: list[int]  # design term index of the cov_re term (full) or of each column (diag)
    vc_terms: list[list[int]]  # per variance component, its terms (all share one variance)
    theta_offsets: list[int]  # θ offset of each design term
    ties: list[list[int]]  # θ indices constrained equal (multi-term variance components)


class MixedLM:
    """statsmodels' ``MixedLM`` (linear mixed model) fitted by jaxlme.

    ``MixedLM(endog, exog, groups, exog_re=None, exog_vc=None, use_sqrt=True, missing="none")``
    as in statsmodels, or :meth:`from_formula` / :func:`mixedlm`.  ``exog_re`` holds the
    random-effects design (correlated random coefficients per group; default a random
    intercept when there are no variance components); ``exog_vc`` the variance components,
    ``{name: {group: matrix}}`` (deprecated in statsmodels) or a :class:`VCSpec`: each
    matrix's columns get independent random coefficients with one variance per component.
    """

    def __init__(
        self,
        endog,
        exog,
        groups,
        exog_re=None,
        exog_vc=None,
        use_sqrt: bool = True,
        missing: str = "none",
        **kwargs: Any,
    ) -> None:
        if isinstance(endog, str):
            raise TypeError(
                "MixedLM takes arrays (endog, exog, groups); for a formula use MixedLM.from_formula or jaxlme.mixedlm"
            )
        for k in kwargs:
            if k not in ("missing_idx", "model_spec", "formula"):
                raise ValueError(f"argument {k} not permitted for MixedLM initialization")
        if missing not in ("none", "drop", "raise"):
            raise ValueError(f"missing must be 'none', 'drop' or 'raise', got {missing!r}")
        if isinstance(exog_vc, dict):
            warnings.warn("Using deprecated variance components format", FutureWarning, stacklevel=2)
            exog_vc = _convert_vc(exog_vc)
        if exog_vc is None:
            exog_vc = VCSpec([], [], [])
        self.exog_vc = exog_vc
        self.use_sqrt = bool(use_sqrt)
        self.formula = kwargs.get("formula")
        self._pandas = isinstance(endog, (pd.Series, pd.DataFrame)) or isinstance(exog, (pd.Series, pd.DataFrame))
        ynames = endog.name if isinstance(endog, pd.Series) and endog.name is not None else "y"
        if isinstance(endog, pd.DataFrame):
            ynames = str(endog.columns[0])
        self._row_index = endog.index if isinstance(endog, (pd.Series, pd.DataFrame)) else None
        y = np.asarray(endog, dtype=float).reshape(-1)
        if isinstance(exog, pd.DataFrame):
            xnames = [str(c) for c in exog.columns]
        elif isinstance(exog, pd.Series):
            xnames = [str(exog.name)]
        else:
            xnames = None
        X = np.asarray(exog, dtype=float)
        if X.ndim == 1:
            X = X[:, None]
        groups = np.asarray(groups)
        if groups.ndim != 1 or len(groups) != len(y) or len(X) != len(y):
            raise DataError(f"endog has {len(y)} rows, exog {len(X)}, groups {groups.size}: they must agree")
        re_names = None
        if exog_re is not None:
            if isinstance(exog_re, pd.DataFrame):
                re_names = [str(c) for c in exog_re.columns]
            elif isinstance(exog_re, pd.Series) and exog_re.name is not None:
                re_names = [str(exog_re.name)]
            Z = np.asarray(exog_re, dtype=float)
            Z = Z[:, None] if Z.ndim == 1 else Z
            if len(Z) != len(y):
                raise DataError(f"exog_re has {len(Z)} rows, endog {len(y)}")
        elif not exog_vc.names:
            Z = np.ones((len(y), 1))
            re_names = ["Group Var"]
        else:
            Z = None
        bad = ~np.isfinite(y) | ~np.isfinite(X).all(1) | pd.isna(groups)
        if Z is not None:
            bad |= ~np.isfinite(Z).all(1)
        if bad.any():
            if missing != "drop" or exog_vc.names:
                raise DataError(
                    f"{int(bad.sum())} row(s) of endog/exog/groups/exog_re hold missing values (missing={missing!r}); "
                    "drop them first or use missing='drop'"
                )
            keep = ~bad
            y, X, groups = y[keep], X[keep], groups[keep]
            Z = Z[keep] if Z is not None else None
            if self._row_index is not None:
                self._row_index = self._row_index[keep]
        self.endog, self.exog, self.exog_re, self.groups = y, X, Z, groups
        if xnames is None:
            xnames = _make_exog_names(X)
        self.k_fe = X.shape[1]
        self.k_re = 0 if Z is None else Z.shape[1]
        self.k_re2 = self.k_re * (self.k_re + 1) // 2
        self.k_vc = len(exog_vc.names)
        self.k_params = self.k_fe + self.k_re2
        if re_names is None:
            re_names = [f"x_re{k + 1:d}" for k in range(self.k_re)]
        full = re_names if re_names == ["Group Var"] else _re_names_full(re_names)
        self.data = _Data(xnames, ynames, re_names, full, exog_vc.names)
        labels = sorted(set(groups.tolist()))
        self.group_labels = labels
        code = {g: i for i, g in enumerate(labels)}
        self._gcode = np.array([code[g] for g in groups.tolist()], dtype=int)
        self.row_indices = {g: [] for g in labels}
        for i, g in enumerate(groups.tolist()):
            self.row_indices[g].append(i)
        self.n_groups = len(labels)
        self.nobs = self.n_totobs = len(y)
        # variance-component matrices, dense, one per group in group_labels order
        self._vc_mats: list[list[np.ndarray]] = []
        for j, name in enumerate(exog_vc.names):
            mats = [_dense(m) for m in exog_vc.mats[j]]
            if len(mats) != self.n_groups:
                raise DataError(
                    f"variance component {name!r} has {len(mats)} group matrices, there are {self.n_groups} groups"
                )
            for g, m in zip(labels, mats):
                if m.shape[0] != len(self.row_indices[g]):
                    raise DataError(
                        f"variance component {name!r}: group {g!r} has {m.shape[0]} rows, "
                        f"expected {len(self.row_indices[g])}"
                    )
            self._vc_mats.append(mats)
        self._variants: dict[str, _Variant] = {}
        self._fns: dict = {}

    # -- statsmodels' model attributes ---------------------------------------------------------
    @property
    def exog_names(self) -> list[str]:
        return self.data.xnames

    @property
    def endog_names(self) -> str:
        return self.data.ynames

    @property
    def exog_re_names(self) -> list[str]:
        return self.data.exog_re_names

    @property
    def param_names(self) -> list[str]:
        return self.data.param_names

    def group_list(self, array):
        """``array`` split by group (a list in ``group_labels`` order); None stays None."""
        if array is None:
            return None
        array = np.asarray(array)
        return [np.array(array[self.row_indices[k]]) for k in self.group_labels]

    @property
    def endog_li(self):
        return self.group_list(self.endog)

    @property
    def exog_li(self):
        return self.group_list(self.exog)

    @property
    def exog_re_li(self):
        return self.group_list(self.exog_re)

    @classmethod
    def from_formula(
        cls,
        formula: str,
        data,
        re_formula: str | None = None,
        vc_formula: dict[str, str] | None = None,
        subset=None,
        use_sparse: bool = False,
        missing: str = "none",
        *args,
        **kwargs,
    ) -> MixedLM:
        """statsmodels' ``MixedLM.from_formula``: a model from formulas and a DataFrame.

        Args:
            formula: Two-sided formula of the fixed effects, e.g. ``"y ~ x"``.
            data: DataFrame (or dict of columns).
            re_formula: One-sided formula of the correlated random effects within groups;
                None gives a random intercept (unless there are variance components).
            vc_formula: ``{name: formula}``: the formula's columns get independent random
                coefficients with one variance per name (``"0 + C(f)"``: a random intercept
                for every level of ``f`` within each group).
            subset: Rows of ``data`` to use (anything ``data.loc`` accepts).
            use_sparse: Accepted for compatibility; jaxlme's structure is always sparse.
            missing: ``"none"``/``"raise"`` raise on missing values, ``"drop"`` drops the rows.
            **kwargs: ``groups`` (required: a column name or one label per row) and
                ``eval_env`` (frames up to the namespace for functions in the formulas).

        Returns:
            The model.
        """
        if args:
            raise TypeError("from_formula takes no further positional arguments")
        if "groups" not in kwargs:
            raise AttributeError("'groups' is a required keyword argument in MixedLM.from_formula")
        groups = kwargs.pop("groups")
        eval_env = kwargs.pop("eval_env", 0)
        depth = kwargs.pop("_depth", 1)
        if kwargs:
            raise TypeError(f"from_formula() got unexpected keyword argument(s): {', '.join(kwargs)}")
        if missing not in ("none", "drop", "raise"):
            raise ValueError(f"missing must be 'none', 'drop' or 'raise', got {missing!r}")
        context = {}
        if isinstance(eval_env, int) and eval_env >= 0:
            frame = sys._getframe(depth + eval_env)
            context = {**frame.f_globals, **frame.f_locals}
        elif isinstance(eval_env, dict):
            context = dict(eval_env)
        return _from_formula(cls, formula, data, re_formula, vc_formula, subset, missing, groups, context)

    # -- the jaxlme models -------------------------------------------------------------------
    def _variant(self, pattern: str) -> _Variant:
        if pattern not in self._variants:
            self._variants[pattern] = self._build_variant(pattern)
        return self._variants[pattern]

    def _build_variant(self, pattern: str) -> _Variant:
        n, G = self.nobs, self.n_groups
        cols: dict[str, np.ndarray] = {"smY": self.endog}
        for j in range(self.k_fe):
            cols[f"smX{j}"] = self.exog[:, j]
        width = max(6, len(str(G)))
        glabel = np.array([f"g{c:0{width}d}" for c in range(G)])
        cols["smG"] = glabel[self._gcode]
        terms: list[tuple[str, str]] = []  # (first column, term text)
        if self.k_re:
            for j in range(self.k_re):
                cols[f"smZ{j}"] = self.exog_re[:, j]
            if pattern == "full":
                terms.append(("smZ0", "(0 + " + " + ".join(f"smZ{j}" for j in range(self.k_re)) + " | smG)"))
            else:
                terms += [(f"smZ{j}", f"(0 + smZ{j} | smG)") for j in range(self.k_re)]
        vc_first: list[list[str]] = []
        self._vc_single: list[bool] = []
        for v, mats in enumerate(self._vc_mats):
            single = all((np.count_nonzero(m, axis=1) <= 1).all() for m in mats)
            self._vc_single.append(single)
            if single:  # one random intercept-like effect per (group, column): one term
                w = np.zeros(n)
                f = np.empty(n, dtype=object)
                for gi, (g, m) in enumerate(zip(self.group_labels, mats)):
                    rows = np.asarray(self.row_indices[g], dtype=int)
                    if m.shape[1] == 0:
                        f[rows] = f"{glabel[gi]}:none"
                        continue
                    jcol = np.argmax(m != 0, axis=1)
                    w[rows] = m[np.arange(len(rows)), jcol]
                    f[rows] = [f"{glabel[gi]}:{c:06d}" for c in jcol]
                cols[f"smV{v}w"], cols[f"smV{v}f"] = w, f
                terms.append((f"smV{v}w", f"(0 + smV{v}w | smV{v}f)"))
                vc_first.append([f"smV{v}w"])
            else:  # columns that overlap within rows: one term per column, variances tied
                K = max(m.shape[1] for m in mats)
                firsts = []
                for c in range(K):
                    z = np.zeros(n)
                    for g, m in zip(self.group_labels, mats):
                        if c < m.shape[1]:
                            z[self.row_indices[g]] = m[:, c]
                    cols[f"smV{v}c{c}"] = z
                    terms.append((f"smV{v}c{c}", f"(0 + smV{v}c{c} | smG)"))
                    firsts.append(f"smV{v}c{c}")
                vc_first.append(firsts)
        if not terms:
            raise FormulaError("the model has no random effects (no exog_re and no variance components)")
        fixed = " + ".join(f"smX{j}" for j in range(self.k_fe)) if self.k_fe else ""
        formula = (
            f"smY ~ 0 + {fixed} + " + " + ".join(t for _, t in terms)
            if fixed
            else "smY ~ 0 + " + " + ".join(t for _, t in terms)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lmm = LMM(formula, pd.DataFrame(cols), warn=False)
        d = lmm.design
        if d.p != self.k_fe:
            raise DataError(f"the fixed-effects design is rank deficient: columns {', '.join(d.aliased)} are aliased")
        by_first = {t.columns[0]: i for i, t in enumerate(d.terms)}
        offsets, off = [], 0
        for tl in lmm.layout.terms:
            offsets.append(off)
            off += tl.ntheta
        main = (
            [by_first[f"smZ{j}"] for j in range(self.k_re)]
            if pattern == "diag"
            else ([by_first["smZ0"]] if self.k_re else [])
        )
        vc_terms = [[by_first[c] for c in firsts] for firsts in vc_first]
        ties = [[offsets[i] for i in ts] for ts in vc_terms if len(ts) > 1]
        return _Variant(lmm, pattern, main, vc_terms, offsets, ties)

    # -- the likelihood in statsmodels' parametrization ----------------------------------------
    def _theta_builder(self, var: _Variant, use_sqrt: bool):
        """(cov_re-part, vcomp-part) of a packed vector -> θ (jax)."""
        import jax.numpy as jnp

        lay = var.lmm.layout
        k = self.k_re
        ix = np.tril_indices(k)

        def build(cpa, vc):
            theta = [None] * lay.ntheta
            if k:
                M = jnp.zeros((k, k)).at[ix].set(cpa)
                if use_sqrt:
                    L = M
                else:
                    P = M + M.T - jnp.diag(jnp.diag(M))
                    L = jnp.linalg.cholesky(P) if var.pattern == "full" else jnp.diag(jnp.sqrt(jnp.diag(P)))
                if var.pattern == "full":
                    i = var.main_terms[0]
                    for m, (r, c) in enumerate(lay.terms[i].theta_index):
                        theta[var.theta_offsets[i] + m] = L[r, c]
                else:
                    for j, i in enumerate(var.main_terms):
                        theta[var.theta_offsets[i]] = jnp.abs(L[j, j])
            for v, ts in enumerate(var.vc_terms):
                s = vc[v] if use_sqrt else jnp.sqrt(vc[v])
                for i in ts:
                    theta[var.theta_offsets[i]] = s
            return jnp.stack(theta)

        return build

    def _loglike_fn(self, var: _Variant, reml: bool, profile_fe: bool, has_fe: bool, use_sqrt: bool):
        """A jitted function (packed vector, structure) -> statsmodels' log-likelihood."""
        key = (var.pattern, reml, profile_fe, has_fe, use_sqrt)
        if key in self._fns:
            return self._fns[key]
        import jax
        import jax.numpy as jnp

        lay = var.lmm.layout
        cen = var.lmm.centering
        T = np.asarray(cen.T)
        e0 = np.zeros(self.k_fe)
        if cen.active:
            e0[cen.intercept] = cen.y_shift
        build = self._theta_builder(var, use_sqrt)
        k_fe, k_re2 = self.k_fe, self.k_re2
        p = lay.p

        def loglike(x, struct):
            nn = struct.nobs - p if reml else struct.nobs
            off = k_fe if has_fe else 0
            theta = build(x[off : off + k_re2], x[off + k_re2 :])
            f = factorize(theta, struct)
            ct = criterion_terms(f, lay)
            r2 = ct.pwrss
            if has_fe and not profile_fe:
                RX, bhat = rx_beta(f.L, lay)
                bt = jnp.linalg.solve(jnp.asarray(T), x[:k_fe] - jnp.asarray(e0))
                r2 = r2 + jnp.sum((RX.T @ (bt - bhat)) ** 2)
            dev = ct.ldL2 + nn * (1.0 + jnp.log(2.0 * jnp.pi * r2 / nn))
            if reml:
                dev = dev + ct.ldRX2
            return -0.5 * dev

        fns = (jax.jit(loglike), jax.jit(jax.grad(loglike)), jax.jit(jax.hessian(loglike)))
        self._fns[key] = fns
        return fns

    def _packed(self, params, has_fe: bool, use_sqrt: bool) -> np.ndarray:
        po = _as_params(params, self.k_fe, self.k_re, self.use_sqrt)
        if not has_fe:
            return MixedLMParams.get_packed(po, use_sqrt=use_sqrt, has_fe=False)
        return MixedLMParams.get_packed(po, use_sqrt=use_sqrt, has_fe=True)

    @x64
    def loglike(self, params, profile_fe: bool = True, reml: bool | None = None) -> float:
        """statsmodels' (scale-profiled) log-likelihood at ``params``.

        Args:
            params: A :class:`MixedLMParams`, or the packed covariance parameters (in the
                model's ``use_sqrt`` form, without fixed effects).
            profile_fe: Use the GLS fixed effects at these covariances (else ``params.fe_params``).
            reml: REML (default: as the last fit, else True) or ML.

        Returns:
            The log-likelihood (REML or ML).
        """
        reml = self._reml if reml is None else reml
        x = self._packed(params, has_fe=not profile_fe, use_sqrt=self.use_sqrt)
        var = self._variant("full")
        f = self._loglike_fn(var, reml, profile_fe, not profile_fe, self.use_sqrt)[0]
        return float(f(x, var.lmm.structure))

    @x64
    def score(self, params, profile_fe: bool = True, reml: bool | None = None) -> np.ndarray:
        """Gradient of :meth:`loglike` in the packed parameters (``use_sqrt`` form; the fixed
        effects first unless ``profile_fe``), by automatic differentiation.

        Returns:
            A 1-d array.
        """
        reml = self._reml if reml is None else reml
        x = self._packed(params, has_fe=not profile_fe, use_sqrt=self.use_sqrt)
        var = self._variant("full")
        g = self._loglike_fn(var, reml, profile_fe, not profile_fe, self.use_sqrt)[1]
        return np.array(g(x, var.lmm.structure))

    @x64
    def hessian(self, params, reml: bool | None = None) -> tuple[np.ndarray, bool]:
        """Hessian of the log-likelihood in (fe_params, lower(cov_re), vcomp), as statsmodels.

        Returns:
            ``(hessian, singular)``; ``singular`` is True when it is not finite (a variance
            on the boundary, where the likelihood is not differentiable in this parametrization).
        """
        reml = self._reml if reml is None else reml
        x = self._packed(params, has_fe=True, use_sqrt=False)
        var = self._variant("full")
        H = np.array(self._loglike_fn(var, reml, False, True, False)[2](x, var.lmm.structure))
        return H, not np.all(np.isfinite(H))

    _reml = True

    def predict(self, params, exog=None) -> np.ndarray:
        """The fixed-effects mean ``exog @ fe_params`` (random effects are not included).

        Args:
            params: A :class:`MixedLMParams` or a vector starting with the fixed effects.
            exog: Fixed-effects design; the model's when None.

        Returns:
            The predictions.
        """
        exog = self.exog if exog is None else np.asarray(exog, dtype=float)
        fe = params.fe_params if hasattr(params, "fe_params") else np.asarray(params, dtype=float)[: self.k_fe]
        return np.dot(exog, fe)

    def get_distribution(self, params, scale: float, exog=None) -> _MixedLMDistribution:
        """A simulator of the model at packed ``params`` (fixed effects, lower(cov_re)/scale,
        vcomp/scale) and residual variance ``scale``; call ``.rvs(n, rng=...)``."""
        return _MixedLMDistribution(self, params, scale, exog)

    def fit_regularized(self, *args, **kwargs):
        """Not available: jaxlme fits unpenalized (RE)ML only."""
        raise NotImplementedError("fit_regularized (penalized MixedLM) is not supported by jaxlme")

    # -- fitting -------------------------------------------------------------------------------
    def _pattern(self, free) -> str:
        if free is None:
            return "full"
        fe = np.asarray(getattr(free, "fe_params", np.ones(self.k_fe)), dtype=float)
        cov = np.asarray(getattr(free, "cov_re", np.ones((self.k_re, self.k_re))), dtype=float)
        vc = np.asarray(getattr(free, "vcomp", np.ones(self.k_vc)), dtype=float)
        if fe.size != self.k_fe or (fe == 0).any():
            raise ValueError("fit(free=...): holding fixed effects at their start values is not supported by jaxlme")
        if vc.size != self.k_vc or (vc == 0).any():
            raise ValueError("fit(free=...): holding variance components fixed is not supported by jaxlme")
        if cov.shape != (self.k_re, self.k_re) or (np.diag(cov) == 0).any():
            raise ValueError("fit(free=...): free.cov_re must be k_re x k_re with a free diagonal")
        off = cov[~np.eye(self.k_re, dtype=bool)]
        if (off != 0).all():
            return "full"
        if (off == 0).all():
            return "diag"
        raise ValueError(
            "fit(free=...): free.cov_re must be all ones (correlated) or the identity (independent random "
            "effects); other patterns are not supported by jaxlme"
        )

    def fit(
        self,
        start_params=None,
        reml: bool = True,
        niter_sa: int = 0,
        do_cg: bool = True,
        fe_pen=None,
        cov_pen=None,
        free=None,
        full_output: bool = False,
        method=None,
        **fit_kwargs: Any,
    ) -> MixedLMResults:
        """Fit by REML (default) or ML with jaxlme's optimizer.

        Args:
            start_params: Ignored: jaxlme starts from its own point and reaches the optimum.
            reml: REML (True) or ML.
            niter_sa: Ignored (ignored by statsmodels too).
            do_cg: False is not supported (it returns an unfitted result in statsmodels).
            fe_pen: Must be None (penalized fits are not supported).
            cov_pen: Must be None.
            free: None, or a :class:`MixedLMParams` mask whose ``cov_re`` is the identity:
                independent random effects (lme4's ``||``).  Other masks raise.
            full_output: Attach ``hist``, a summary of the optimization.
            method: Ignored (statsmodels' scipy optimizer name).
            **fit_kwargs: ``gtol`` and ``maxiter`` are passed to jaxlme's optimizer; the other
                keywords of statsmodels' optimizers are ignored; any other keyword warns
                (FutureWarning, as statsmodels) and is ignored.

        Returns:
            A :class:`MixedLMResults`.
        """
        if fe_pen is not None or cov_pen is not None:
            raise NotImplementedError("fit(fe_pen=/cov_pen=): penalized fits are not supported by jaxlme")
        if not do_cg:
            raise NotImplementedError("fit(do_cg=False) (a result at the start values) is not supported by jaxlme")
        if method is not None:
            for meth in [method] if isinstance(method, str) else method:
                if str(meth).lower() in ("newton", "ncg"):
                    raise ValueError(f"method {meth} not available for MixedLM")
        bad = sorted(set(fit_kwargs) - set(_OPTIMIZER_KWARGS))
        if bad:
            warnings.warn(
                f"Argument{'s' if len(bad) > 1 else ''} {', '.join(bad)} not used by MixedLM.fit. "
                "Future versions will raise on these arguments.",
                FutureWarning,
                stacklevel=2,
            )
        opts: dict[str, Any] = {}
        if fit_kwargs.get("maxiter") is not None:
            opts["maxiter"] = max(int(fit_kwargs["maxiter"]), 100)
        if fit_kwargs.get("gtol") is not None:
            opts["gtol"] = float(fit_kwargs["gtol"])
        var = self._variant(self._pattern(free))
        self._reml = bool(reml)
        with jax_x64():  # statsmodels computes standard errors with every fit: compile their program meanwhile
            start_information(var.lmm.structure, bool(reml))
        res = var.lmm.fit(reml=bool(reml), warn=False, **opts)
        if var.ties:
            res = _tied_fit(var, res, bool(reml))
        out = MixedLMResults(self, var, res, free=free)
        if full_output:
            o = res.opt
            out.hist = [
                {"converged": o.converged, "iterations": o.iterations, "fcalls": o.evaluations, "status": o.status}
            ]
        if not res.converged:
            messages.warn(f"MixedLM optimization failed: {res.opt.status}")
        cov_re, vcomp = out._psi * out.scale, out.vcomp
        near = (self.k_re > 0 and np.min(np.abs(np.diag(cov_re))) < 0.01) or (
            self.k_vc > 0 and np.min(np.abs(vcomp)) < 0.01
        )
        if out._singular or near:  # statsmodels' boundary criterion: a variance below 0.01
            messages.warn(_WARN_COV_SING, _singular_warning())
        return out


def _from_formula(cls, formula, data, re_formula, vc_formula, subset, missing, groups, context):
    import formulaic

    if not isinstance(data, pd.DataFrame):
        data = pd.DataFrame(data)
    if not isinstance(formula, str) or "~" not in formula:
        raise FormulaError(f"formula must be a two-sided string such as 'y ~ x', got {formula!r}")
    if "|" in formula:
        raise FormulaError(
            "the formula holds the fixed effects only; give random effects with groups/re_formula/vc_formula, "
            "or pass an lme4-style formula to jaxlme.lmm"
        )
    ctx = {**r_context(), **context}
    group_name = group_column = "Group"  # statsmodels' name; the column new data must carry
    if isinstance(groups, pd.Series) and groups.name in data.columns and groups.index.equals(data.index):
        group_column = groups.name  # data["g"]: predict_conditional reads column g of new data
    if isinstance(groups, str):
        if groups not in data.columns:
            raise DataError(f"groups column '{groups}' not found in data")
        group_name = group_column = groups
        gvals = np.asarray(data[groups])
    else:
        gvals = np.asarray(groups)
        if gvals.ndim != 1 or len(gvals) != len(data):
            raise DataError(f"groups has {gvals.size} values, data has {len(data)} rows")
    if subset is not None:
        mask = pd.Series(False, index=data.index)
        mask.loc[data.loc[subset].index] = True
        data, gvals = data.loc[mask.to_numpy()], gvals[mask.to_numpy()]
    rhs_texts = [formula.split("~", 1)[1]]
    if re_formula is not None:
        rhs_texts.append(re_formula)
    rhs_texts += list((vc_formula or {}).values())
    used: set[str] = {formula.split("~", 1)[0].strip()}
    for text in rhs_texts:
        t = text.strip().lstrip("~")
        try:
            used |= {str(v) for v in formulaic.Formula(t).required_variables}
        except Exception as exc:  # formulaic's messages carry colour codes
            raise FormulaError(f"cannot parse formula {text!r}: {type(exc).__name__}") from None
    missing_cols = [v for v in used if v not in data.columns and v not in ctx]
    if missing_cols:
        raise DataError(f"Column(s) {', '.join(sorted(missing_cols))} used in the formulas not found in data")
    cols = [v for v in used if v in data.columns]
    bad = data[cols].isna().any(axis=1).to_numpy() | pd.isna(gvals)
    if bad.any():
        if missing != "drop":
            names = [c for c in cols if data[c].isna().any()] + (["groups"] if pd.isna(gvals).any() else [])
            raise DataError(
                f"missing values in {', '.join(names)} (missing={missing!r}); use missing='drop' to drop those rows"
            )
        data, gvals = data.loc[~bad], gvals[~bad]

    def matrix(text, frame):
        return formulaic.model_matrix(text, frame, context=ctx, na_action="ignore")

    mm = matrix(formula, data)
    y = mm.lhs.iloc[:, 0].astype(float)
    y.name = str(mm.lhs.columns[0])
    X = mm.rhs.astype(float)

    def needed(spec):
        return sorted({str(v) for v in spec.required_variables} & set(data.columns))

    re_spec = (None, [])
    if re_formula is not None:
        text = re_formula.strip().lstrip("~").strip()
        if text == "1":
            exog_re = pd.DataFrame({group_name: np.ones(len(data))}, index=data.index)
        else:
            Zm = matrix(text, data)
            re_spec = (Zm.model_spec, needed(Zm.model_spec))
            Z = pd.DataFrame(Zm).astype(float)
            exog_re = Z.rename(columns=lambda c: group_name if c == "Intercept" else c)
        re_names = list(exog_re.columns)
    else:
        exog_re = None if vc_formula else pd.DataFrame({group_name: np.ones(len(data))}, index=data.index)
        re_names = [] if vc_formula else [group_name]
    exog_vc = None
    vc_specs: list = []
    if vc_formula:
        labels = sorted(set(gvals.tolist()))
        pos = pd.Series(np.arange(len(data))).groupby(gvals).indices
        names = sorted(vc_formula)
        colnames, mats = [], []
        for name in names:
            full = matrix(vc_formula[name].strip().lstrip("~"), data)
            vc_specs.append((full.model_spec, needed(full.model_spec)))
            full = pd.DataFrame(full).astype(float)
            indicator = "Intercept" not in full.columns
            cn, ms = [], []
            for g in labels:
                rows = pos[g]
                if indicator:  # a factor's columns for the levels present in the group, as per-group evaluation
                    sub = full.iloc[rows]
                    keep = [c for c in sub.columns if "[" not in str(c) or (sub[c] != 0).any()]
                    sub = sub[keep]
                else:
                    sub = matrix(vc_formula[name].strip().lstrip("~"), data.iloc[rows]).astype(float)
                cn.append([str(c) for c in sub.columns])
                ms.append(sub.to_numpy())
            colnames.append(cn)
            mats.append(ms)
        exog_vc = VCSpec(names, colnames, mats)
    model = cls(y, X, gvals, exog_re=exog_re, exog_vc=exog_vc, missing="none", formula=formula)
    model.data.exog_re_names = re_names
    model.data.exog_re_names_full = _re_names_full(re_names)
    model.data.param_names = (
        model.data.xnames + model.data.exog_re_names_full + [f"{v} Var" for v in model.exog_vc.names]
    )
    model.data.frame = data
    model._fixed_spec = mm.rhs.model_spec
    model._fixed_vars = needed(mm.rhs.model_spec)
    model._required = set(model._fixed_vars)
    model._re_spec = re_spec
    model._vc_specs = vc_specs
    model._group_column = group_column
    return model


def mixedlm(
    formula: str,
    data,
    re_formula: str | None = None,
    vc_formula: dict[str, str] | None = None,
    subset=None,
    use_sparse: bool = False,
    missing: str = "none",
    *args,
    **kwargs,
) -> MixedLM:
    """statsmodels' ``smf.mixedlm`` (``MixedLM.from_formula``) with jaxlme underneath.

    Args:
        formula: Fixed effects, e.g. ``"y ~ x"``.
        data: DataFrame.
        re_formula: Correlated random effects within groups (``"~x"``: intercept and slope);
            None gives a random intercept unless ``vc_formula`` is given.
        vc_formula: ``{name: "0 + C(f)"}`` variance components nested in the groups.
        subset: Rows of ``data`` to use.
        use_sparse: Accepted for compatibility.
        missing: ``"none"`` (raise on missing values) or ``"drop"``.
        **kwargs: ``groups`` (required) and ``eval_env``.

    Returns:
        A :class:`MixedLM`; call ``.fit()``.
    """
    kwargs.setdefault("_depth", 2)
    return MixedLM.from_formula(formula, data, re_formula, vc_formula, subset, use_sparse, missing, *args, **kwargs)


# -- fits with constraints jaxlme's formula cannot write (tied or fixed θ) ---------------------


@x64
def _constrained_fit(var: _Variant, reml: bool, theta0: np.ndarray, ties: list[list[int]], fixed: dict[int, float]):
    """Minimize jaxlme's criterion over θ with ``ties`` (θ indices equal) and ``fixed`` entries."""
    import jax
    import jax.numpy as jnp
    from scipy.optimize import minimize

    lmm = var.lmm
    nt = lmm.layout.ntheta
    lower = lmm.layout.theta_lower
    group = -np.ones(nt, dtype=int)
    free_ix: list[list[int]] = []
    for tie in ties:
        tie = [i for i in tie if i not in fixed]
        if tie:
            free_ix.append(tie)
            group[tie] = len(free_ix) - 1
    for i in range(nt):
        if group[i] < 0 and i not in fixed:
            free_ix.append([i])
            group[i] = len(free_ix) - 1
    base = np.asarray(theta0, dtype=float).copy()
    for i, v in fixed.items():
        base[i] = v
    M = np.zeros((nt, len(free_ix)))
    for j, ix in enumerate(free_ix):
        M[ix, j] = 1.0
    const = np.where(group < 0, base, 0.0)
    f = lmm.objective_function(reml)
    struct_f = jax.jit(jax.value_and_grad(lambda phi: f(jnp.asarray(M) @ phi + jnp.asarray(const))))
    phi0 = np.array([np.mean(base[ix]) for ix in free_ix])
    bounds = [(lower[ix[0]] if np.isfinite(lower[ix[0]]) else None, None) for ix in free_ix]

    def fun(phi):
        v, g = struct_f(jnp.asarray(phi))
        return float(v), np.asarray(g, dtype=float)

    if free_ix:
        r = minimize(
            fun,
            phi0,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 1000},
        )
        phi, ok = r.x, bool(r.success)
    else:
        phi, ok = phi0, True
    theta = M @ phi + const
    return theta, ok


@x64
def _result_at(var: _Variant, res: LMMResult, theta: np.ndarray, reml: bool, converged: bool, status: str) -> LMMResult:
    import jax

    lmm = var.lmm
    effects = jax.device_get(solve_effects(jax.device_put(np.asarray(theta, dtype=float)), lmm.structure, reml))
    opt = dataclasses.replace(
        res.opt,
        theta_final=np.asarray(theta, dtype=float),
        objective=lmm.objective(theta, reml),
        converged=converged,
        status=status,
    )
    return LMMResult(lmm, reml=reml, opt=opt, effects=effects, y=lmm.design.y)


def _tied_fit(var: _Variant, res: LMMResult, reml: bool) -> LMMResult:
    """The fit with each multi-column variance component's θ tied (one shared variance)."""
    theta, ok = _constrained_fit(var, reml, res.theta, var.ties, {})
    return _result_at(
        var, res, theta, reml, ok and res.converged, "converged (tied variance components)" if ok else "not converged"
    )


# -- results -----------------------------------------------------------------------------------


class _MixedLMDistribution:
    """Simulates the response of a mixed model at given parameters (statsmodels' helper)."""

    def __init__(self, model: MixedLM, params, scale: float, exog=None) -> None:
        self.model = model
        self.exog = model.exog if exog is None else np.asarray(exog, dtype=float)
        po = MixedLMParams.from_packed(np.asarray(params, dtype=float), model.k_fe, model.k_re, False, True)
        self.fe_params = po.fe_params
        self.cov_re = scale * po.cov_re
        self.vcomp = scale * po.vcomp
        self.scale = scale

    def rvs(self, n=None, rng=None) -> np.ndarray:
        """One simulated response vector (``n`` is ignored, as in statsmodels)."""
        m = self.model
        rng = rng if isinstance(rng, (np.random.Generator, np.random.RandomState)) else np.random.default_rng(rng)
        y = self.exog @ self.fe_params
        if m.k_re:
            u = rng.normal(size=(m.n_groups, m.k_re)) @ np.linalg.cholesky(self.cov_re).T
            y = y + (u[m._gcode] * m.exog_re).sum(1)
        for j, mats in enumerate(m._vc_mats):
            for g, ex in zip(m.group_labels, mats):
                ii = m.row_indices[g]
                y[ii] += math.sqrt(self.vcomp[j]) * ex @ rng.normal(size=ex.shape[1])
        return y + math.sqrt(self.scale) * rng.normal(size=len(y))


class _TTest:
    """Result of :meth:`MixedLMResults.t_test` (statsmodels' ContrastResults names)."""

    def __init__(self, effect, sd, alpha: float = 0.05) -> None:
        self.effect = np.asarray(effect, dtype=float)
        self.sd = np.asarray(sd, dtype=float)
        self.tvalue = self.effect / self.sd
        self.statistic = self.tvalue
        self.pvalue = 2 * np.vectorize(lambda z: NormalDist().cdf(-abs(z)))(self.tvalue)
        self.df_denom = np.inf
        self.distribution = "norm"

    def conf_int(self, alpha: float = 0.05) -> np.ndarray:
        z = NormalDist().inv_cdf(1 - alpha / 2)
        return np.column_stack([self.effect - z * self.sd, self.effect + z * self.sd])

    def summary_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        ci = self.conf_int(alpha)
        return pd.DataFrame(
            {
                "coef": self.effect,
                "std err": self.sd,
                "z": self.tvalue,
                "P>|z|": self.pvalue,
                "Conf. Int. Low": ci[:, 0],
                "Conf. Int. Upp.": ci[:, 1],
            },
            index=[f"c{i}" for i in range(len(self.effect))],
        )

    def __repr__(self) -> str:
        return "Test for Constraints\n" + self.summary_frame().to_string()


class MixedLMResults:
    """A jaxlme fit with statsmodels' ``MixedLMResults`` attributes and methods.

    ``params`` (fixed effects, lower(cov_re)/scale, vcomp/scale), ``params_object``,
    ``fe_params``, ``cov_re``, ``cov_re_unscaled``, ``vcomp``, ``scale``, ``llf``, ``aic`` and
    ``bic`` (NaN under REML), ``bse``, ``bse_fe``, ``bse_re``, ``tvalues``, ``pvalues``,
    ``cov_params()``, ``conf_int()``, ``random_effects``, ``random_effects_cov``,
    ``fittedvalues``, ``resid`` (both conditional on the random effects), ``predict()``
    (fixed effects only), ``t_test()``, ``profile_re()``, ``summary()``, ``remove_data()``.
    jaxlme's own result is ``.lmm`` (lme4's names: ``theta``, ``varcorr``, ``fixef`` ...).
    """

    def __init__(self, model: MixedLM, var: _Variant, res: LMMResult, free=None) -> None:
        self.model = model
        self.lmm = res
        self._var = var
        self.freepat = free
        self.reml = res.reml
        self.method = "REML" if res.reml else "ML"
        self.k_fe, self.k_re, self.k_re2, self.k_vc = model.k_fe, model.k_re, model.k_re2, model.k_vc
        self.use_sqrt = model.use_sqrt
        self.converged = bool(res.converged)
        self.hist = None
        self.nobs = model.nobs
        self.df_resid = self.nobs - np.linalg.matrix_rank(model.exog) if model.k_fe else self.nobs
        self.scale = float(res.sigma**2)
        self.llf = float(res.loglike)
        import jax

        with jax.enable_x64(True):
            lams = [np.asarray(x) for x in lambda_blocks(jax.device_put(res.theta), var.lmm.layout)]
        k = model.k_re
        if k and var.pattern == "full":
            lam = lams[var.main_terms[0]]
            psi = lam @ lam.T
        else:
            psi = np.diag([float(lams[i][0, 0] ** 2) for i in var.main_terms]) if k else np.zeros((0, 0))
        vc_rel = np.array([float(lams[ts[0]][0, 0] ** 2) for ts in var.vc_terms])
        fe = np.asarray(res.fixef.to_numpy(), dtype=float)
        self.params_object = MixedLMParams.from_components(fe, cov_re=psi, vcomp=vc_rel)
        self._fe = fe
        self._psi = psi
        self._vc_rel = vc_rel
        self._singular = bool(res.singular)
        self._removed = False

    # -- pandas or numpy, as statsmodels' wrapper gives them -----------------------------------
    def _wrap(self, values, index):
        return pd.Series(values, index=index) if self.model._pandas else np.asarray(values)

    @property
    def fe_params(self):
        return self._wrap(self._fe, self.model.exog_names)

    @property
    def cov_re(self):
        cov = self._psi * self.scale
        if self.model._pandas:
            names = self.model.data.exog_re_names
            return pd.DataFrame(cov, index=names, columns=names)
        return cov

    @property
    def cov_re_unscaled(self):
        if self.model._pandas:
            names = self.model.data.exog_re_names
            return pd.DataFrame(self._psi, index=names, columns=names)
        return self._psi

    @property
    def vcomp(self) -> np.ndarray:
        return self._vc_rel * self.scale

    @property
    def _params(self) -> np.ndarray:
        return self.params_object.get_packed(use_sqrt=False, has_fe=True)

    @property
    def params(self):
        return self._wrap(self._params, self.model.data.param_names)

    @property
    def k_params(self) -> int:
        return len(self._params)

    @property
    def aic(self) -> float:
        """-2 (llf - df), df = free parameters + 1 (the scale); NaN under REML (statsmodels)."""
        if self.reml:
            return float("nan")
        return -2.0 * (self.llf - self._df_model())

    @property
    def bic(self) -> float:
        """-2 llf + log(nobs) df; NaN under REML (statsmodels)."""
        if self.reml:
            return float("nan")
        return -2.0 * self.llf + math.log(self.nobs) * self._df_model()

    def _df_model(self) -> float:
        if self.freepat is not None:
            return float(np.sum(self._free_mask())) + 1
        return len(self._params) + 1

    def _free_mask(self) -> np.ndarray:
        if self.freepat is None:
            return np.ones(len(self._params), dtype=bool)
        return MixedLMParams.get_packed(self.freepat, use_sqrt=False, has_fe=True) != 0

    # -- standard errors -----------------------------------------------------------------------
    @functools.cached_property
    def _cov(self) -> np.ndarray:
        """Inverse observed information of statsmodels' scale-profiled likelihood over
        (fe_params, lower(cov_re)/scale, vcomp/scale), by the delta method from jaxlme's
        quantities at the optimum: Cov(θ, σ) = 2 H⁻¹ (H the Hessian of the deviance in θ, σ,
        jaxlme's compiled and cached information program), Cov(β̂) = Var(β̂ | θ) +
        (∂β̂/∂θ) Cov(θ) (∂β̂/∂θ)', and the covariance parameters through ∂ψ/∂θ.  At the
        optimum this equals inverting the Hessian in statsmodels' parametrization, but only
        small (θ-sized) derivatives are formed.  Rows of parameters held fixed by ``free``
        are zero; variances whose θ is on the boundary (not a free parameter) are NaN."""
        import jax

        res, var = self.lmm, self._var
        lmm = var.lmm
        lay, struct = lmm.layout, lmm.structure
        nt, k_fe = lay.ntheta, self.k_fe
        theta = np.asarray(res.theta, dtype=float)
        with jax_x64():
            varpar = jax.device_put(np.append(theta, res.sigma))
            H, V, Bt = information_program(struct, res.reml)(varpar)  # Bt = ∂β̃/∂θ, (p, ntheta)
        T = lmm.centering.T
        Vb, Bth = T @ V @ T.T, T @ Bt
        # free directions: tie groups of θ and σ; θ at its lower bound of 0 is held there
        at_bound = (lay.theta_lower == 0) & (theta <= 1e-10)
        groups: list[list[int]] = [list(t) for t in var.ties]
        tied = {i for t in groups for i in t}
        groups += [[i] for i in range(nt) if i not in tied]
        groups = [g for g in groups if not at_bound[g].all()]
        M = np.zeros((nt + 1, len(groups) + 1))
        for j, g in enumerate(groups):
            M[g, j] = 1.0
        M[nt, -1] = 1.0
        Hf = M.T @ H @ M
        cov = np.full((len(self._params), len(self._params)), np.nan)
        try:
            C = 2.0 * np.linalg.inv(Hf)
        except np.linalg.LinAlgError:
            C = None
        if C is None or not np.all(np.isfinite(C)) or np.any(np.diag(C) <= 0):
            cov[:k_fe, :k_fe] = Vb
            return self._zero_fixed(cov)
        G = np.hstack([self._psi_jacobian(theta), np.zeros((self.k_re2 + self.k_vc, 1))]) @ M
        B = np.hstack([Bth, np.zeros((k_fe, 1))]) @ M
        cov[:k_fe, :k_fe] = Vb + B @ C @ B.T
        cov[:k_fe, k_fe:] = B @ C @ G.T
        cov[k_fe:, :k_fe] = cov[:k_fe, k_fe:].T
        cov[k_fe:, k_fe:] = G @ C @ G.T
        for row in self._boundary_rows(at_bound):
            cov[k_fe + row, :] = np.nan
            cov[:, k_fe + row] = np.nan
        return self._zero_fixed(cov)

    def _zero_fixed(self, cov: np.ndarray) -> np.ndarray:
        free = self._free_mask()
        cov[~free, :] = 0.0
        cov[:, ~free] = 0.0
        return cov

    def _psi_jacobian(self, theta: np.ndarray) -> np.ndarray:
        """∂(lower(cov_re)/scale, vcomp/scale)/∂θ, (k_re2 + k_vc, ntheta); a tied variance
        component is differentiated through the first θ of its tie."""
        var, k = self._var, self.k_re
        lay = var.lmm.layout
        G = np.zeros((self.k_re2 + self.k_vc, lay.ntheta))
        rows, cols = np.tril_indices(k)
        if k and var.pattern == "full":
            i = var.main_terms[0]
            lam = np.zeros((k, k))
            idx = lay.terms[i].theta_index
            off = var.theta_offsets[i]
            for m, (r, c) in enumerate(idx):
                lam[r, c] = theta[off + m]
            for m, (r, c) in enumerate(idx):
                E = np.zeros((k, k))
                E[r, c] = 1.0
                dpsi = E @ lam.T + lam @ E.T
                G[: self.k_re2, off + m] = dpsi[rows, cols]
        elif k:
            for j, i in enumerate(var.main_terms):
                pos = int(np.flatnonzero((rows == j) & (cols == j))[0])
                G[pos, var.theta_offsets[i]] = 2.0 * theta[var.theta_offsets[i]]
        for v, ts in enumerate(var.vc_terms):
            t0 = var.theta_offsets[ts[0]]
            G[self.k_re2 + v, t0] = 2.0 * theta[t0]
        return G

    def _boundary_rows(self, at_bound: np.ndarray) -> list[int]:
        """Covariance-parameter rows (within the non-fixed-effects part) whose variance's θ is 0."""
        var, k = self._var, self.k_re
        rows, cols = np.tril_indices(k)
        out = []
        if k and var.pattern == "full":
            i = var.main_terms[0]
            off = var.theta_offsets[i]
            for m, (r, c) in enumerate(var.lmm.layout.terms[i].theta_index):
                if r == c and at_bound[off + m]:
                    out.append(int(np.flatnonzero((rows == r) & (cols == r))[0]))
        elif k:
            for j, i in enumerate(var.main_terms):
                if at_bound[var.theta_offsets[i]]:
                    out.append(int(np.flatnonzero((rows == j) & (cols == j))[0]))
        for v, ts in enumerate(var.vc_terms):
            if at_bound[var.theta_offsets[ts[0]]]:
                out.append(self.k_re2 + v)
        return out

    def cov_params(self):
        """Covariance of ``params`` (inverse observed information; zero rows for parameters
        held fixed by ``free``)."""
        if self.model._pandas:
            names = self.model.data.param_names
            return pd.DataFrame(self._cov, index=names, columns=names)
        return self._cov

    @property
    def bse(self):
        with np.errstate(invalid="ignore"):
            return self._wrap(np.sqrt(np.diag(self._cov)), self.model.data.param_names)

    @property
    def bse_fe(self):
        with np.errstate(invalid="ignore"):
            return self._wrap(np.sqrt(np.diag(self._cov))[: self.k_fe], self.model.exog_names)

    @property
    def bse_re(self):
        """Standard errors of the covariance parameters on the variance scale (x √scale)."""
        with np.errstate(invalid="ignore"):
            se = np.sqrt(self.scale * np.diag(self._cov)[self.k_fe :])
        return self._wrap(se, self.model.data.param_names[self.k_fe :])

    @property
    def tvalues(self):
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._wrap(self._params / np.sqrt(np.diag(self._cov)), self.model.data.param_names)

    @property
    def pvalues(self):
        t = np.asarray(self.tvalues, dtype=float)
        p = np.array([2 * NormalDist().cdf(-abs(v)) if np.isfinite(v) else np.nan for v in t])
        return self._wrap(p, self.model.data.param_names)

    def conf_int(self, alpha: float = 0.05):
        """Wald intervals ``params ± z·bse`` (normal quantile, as statsmodels)."""
        z = NormalDist().inv_cdf(1 - alpha / 2)
        p, se = self._params, np.sqrt(np.diag(self._cov))
        out = np.column_stack([p - z * se, p + z * se])
        if self.model._pandas:
            return pd.DataFrame(out, index=self.model.data.param_names)
        return out

    def t_test(self, r_matrix, use_t=None) -> _TTest:
        """Wald (z) tests of linear combinations ``r_matrix @ fe_params`` of the fixed effects.

        Args:
            r_matrix: (m, k_fe) array.
            use_t: Must be None or False (statsmodels uses the normal distribution here).

        Returns:
            An object with ``effect``, ``sd``, ``tvalue``, ``pvalue`` and ``conf_int()``.
        """
        if use_t:
            raise NotImplementedError("t_test(use_t=True) is not supported; MixedLM uses normal (z) tests")
        R = np.atleast_2d(np.asarray(r_matrix, dtype=float))
        if R.shape[1] != self.k_fe:
            raise ValueError(f"r_matrix for t-test should have {self.k_fe:d} columns")
        V = self._cov[: self.k_fe, : self.k_fe]
        return _TTest(R @ self._fe, np.sqrt(np.diag(R @ V @ R.T)))

    # -- random effects (per group, as statsmodels) --------------------------------------------
    def _group_parts(self):
        """Per group: rows, Z (random-effects design: exog_re then the components' columns),
        the prior variances D (relative to scale, as a matrix) and the names."""
        m = self.model
        out = []
        for gi, g in enumerate(m.group_labels):
            rows = np.asarray(m.row_indices[g], dtype=int)
            zs, names = [], []
            D_blocks = []
            if m.k_re:
                zs.append(m.exog_re[rows])
                names += list(m.data.exog_re_names)
                D_blocks.append(self._psi)
            for j, (vname, mats) in enumerate(zip(m.exog_vc.names, m._vc_mats)):
                mat = mats[gi]
                zs.append(mat)
                names += [f"{vname}[{c}]" for c in m.exog_vc.colnames[j][gi]]
                D_blocks.append(self._vc_rel[j] * np.eye(mat.shape[1]))
            Z = np.hstack(zs) if zs else np.zeros((len(rows), 0))
            q = Z.shape[1]
            D = np.zeros((q, q))
            o = 0
            for b in D_blocks:
                D[o : o + b.shape[0], o : o + b.shape[0]] = b
                o += b.shape[0]
            out.append((g, rows, Z, D, names))
        return out

    @functools.cached_property
    def _ranef(self):
        m = self.model
        if self._removed:
            raise ValueError("the data were removed (remove_data()); random effects need them")
        r = m.endog - m.exog @ self._fe
        means, covs = {}, {}
        index: dict[tuple, pd.Index] = {}  # one Index per name list: most of the cost is pandas'
        for g, rows, Z, D, names in self._group_parts():
            ZtZ = Z.T @ Z
            A = np.eye(len(D)) + D @ ZtZ  # (I + D Z'Z) b = D Z' r ; V⁻¹ via push-through, D may be singular
            b = np.linalg.solve(A, D @ (Z.T @ r[rows]))
            C = self.scale * (D - np.linalg.solve(A, D @ ZtZ @ D))
            idx = index.get(tuple(names))
            if idx is None:
                idx = index[tuple(names)] = pd.Index(names)
            means[g] = pd.Series(b, index=idx, copy=False)
            covs[g] = pd.DataFrame((C + C.T) / 2, index=idx, columns=idx, copy=False)
        return means, covs

    @property
    def random_effects(self) -> dict:
        """Conditional means of the random effects: {group label: Series}."""
        return self._ranef[0]

    @property
    def random_effects_cov(self) -> dict:
        """Conditional covariances of the random effects given the data, at the estimated
        fixed effects: {group label: DataFrame}."""
        return self._ranef[1]

    @functools.cached_property
    def _fitted(self) -> np.ndarray:
        m = self.model
        fit = m.exog @ self._fe
        ranef = self.random_effects
        for g, rows, Z, _, _ in self._group_parts():
            fit[rows] += Z @ ranef[g].to_numpy()
        return fit

    @property
    def fittedvalues(self):
        """Fitted values including the predicted random effects."""
        if self.model._pandas and self.model._row_index is not None:
            return pd.Series(self._fitted, index=self.model._row_index)
        return self._fitted

    @property
    def resid(self):
        """Residuals from the fitted values (fixed plus predicted random effects)."""
        r = self.model.endog - self._fitted
        if self.model._pandas and self.model._row_index is not None:
            return pd.Series(r, index=self.model._row_index)
        return r

    def predict(self, exog=None, transform: bool = True):
        """statsmodels' ``predict``: the fixed-effects mean X·fe_params only.

        Random effects are not included (use :meth:`predict_conditional` for that).  Return
        types follow statsmodels: with ``exog=None`` a numpy array over the fitting rows; for
        a formula model, a DataFrame gives a Series indexed like it (NaN where a value is
        missing), a dict of columns a Series over its rows without missing values, a Series
        one row (or one column, when it is named after a formula variable); with
        ``transform=False`` (or a model built from arrays) ``exog`` is the design matrix.

        Args:
            exog: New data, a design matrix, or None for the fitting rows.
            transform: Pass ``exog`` through the model's formula.

        Returns:
            A numpy array or a pandas Series (see above).
        """
        beta = self._fe
        if exog is None:
            return self.model.exog @ beta
        spec = getattr(self.model, "_fixed_spec", None)
        if not transform or spec is None:
            index = exog.index if isinstance(exog, (pd.DataFrame, pd.Series)) else None
            if isinstance(exog, pd.Series) and self.k_fe > 1:  # one row, as statsmodels reads it
                index = [exog.index.name]
            X = np.asarray(exog, dtype=float)
            X = X[:, None] if X.ndim == 1 and self.k_fe == 1 else np.atleast_2d(X)
            if X.shape[1] != self.k_fe:
                raise DataError(
                    f"exog has {X.shape[1]} column(s), the fixed effects have {self.k_fe} "
                    f"({', '.join(self.model.exog_names)})"
                )
            out = X @ beta
            return out if index is None else pd.Series(out, index=index)
        if isinstance(exog, dict):
            out = self._fixed_part(pd.DataFrame(exog))
            return out[out.notna()].rename(None)
        if isinstance(exog, pd.Series):
            exog = exog.to_frame() if exog.name in self.model._required else exog.to_frame().T.infer_objects()
        if not isinstance(exog, pd.DataFrame):
            raise DataError(
                "predict needs a DataFrame or dict of columns (or transform=False with a design matrix), "
                f"got {type(exog).__name__}"
            )
        return self._fixed_part(exog)

    def _fixed_part(self, frame: pd.DataFrame) -> pd.Series:
        X = self._design(self.model._fixed_spec, frame, self.model._fixed_vars)
        return pd.Series(X @ self._fe, index=frame.index)

    def _design(self, spec, frame: pd.DataFrame, needed) -> np.ndarray:
        """``spec``'s model matrix for ``frame`` (NaN rows where a value is missing)."""
        absent = [v for v in needed if v not in frame.columns]
        if absent:
            raise DataError(f"new data is missing column(s) {', '.join(repr(v) for v in sorted(absent))}")
        ok = ~frame[list(needed)].isna().any(axis=1).to_numpy() if needed else np.ones(len(frame), bool)
        out = np.full((len(frame), len(spec.column_names)), np.nan)
        if ok.any():
            out[ok] = np.asarray(spec.get_model_matrix(frame.loc[ok]), dtype=float)
        return out

    def predict_conditional(self, exog: pd.DataFrame | None = None, allow_new_levels: bool = False) -> pd.Series:
        """jaxlme's addition: fixed effects plus predicted random effects (lme4's ``predict``).

        Args:
            exog: New data with the formula's columns and the grouping column (formula
                models); None gives ``fittedvalues``.
            allow_new_levels: Give groups not seen in fitting zero random effects instead of
                raising a DataError.

        Returns:
            A Series indexed like ``exog`` (or like the fitting rows).
        """
        m = self.model
        if exog is None:
            return pd.Series(self._fitted, index=m._row_index if m._row_index is not None else None)
        if getattr(m, "_fixed_spec", None) is None:
            raise DataError("predict_conditional with new data needs a model built from formulas")
        frame = exog
        out = self._fixed_part(frame).to_numpy(dtype=float, copy=True)  # written below: never a read-only view
        gname = m._group_column
        if gname not in frame.columns:
            raise DataError(
                f"new data is missing the grouping column {gname!r} (give groups as a column name "
                "or as a column of data to name it)"
            )
        ranef = self.random_effects
        groups = frame[gname].tolist()
        new = sorted({str(g) for g in groups if g not in ranef})
        if new and not allow_new_levels:
            raise DataError(
                f"new level(s) of {gname!r}: {', '.join(repr(g) for g in new)} (allow_new_levels=True gives them 0)"
            )
        parts = []
        if m.k_re:
            parts.append((m.data.exog_re_names, m._re_spec))
        for v, (spec, needed) in zip(m.exog_vc.names, m._vc_specs):
            parts.append(([f"{v}[{c}]" for c in spec.column_names], (spec, needed)))
        levels = list(ranef)
        row = pd.Index(levels).get_indexer(groups)  # -1: a new level, whose effects are 0
        seen = row >= 0
        for names, (spec, needed) in parts:
            Z = np.ones((len(frame), 1)) if spec is None else self._design(spec, frame, needed)
            B = np.stack([ranef[g].reindex(names).fillna(0.0).to_numpy() for g in levels])
            out[seen] += np.einsum("ij,ij->i", Z[seen], B[row[seen]])
        return pd.Series(out, index=frame.index)

    # -- profile likelihood --------------------------------------------------------------------
    def profile_re(
        self,
        re_ix,
        vtype: str,
        num_low: int = 5,
        dist_low: float = 1.0,
        num_high: int = 5,
        dist_high: float = 1.0,
        **fit_kwargs,
    ):
        """Profile likelihood of one variance: the model refitted with it held at a grid.

        Args:
            re_ix: Index of the random effect in ``cov_re`` (``vtype="re"``) or name of the
                variance component (``vtype="vc"``).
            vtype: ``"re"`` or ``"vc"``.
            num_low, dist_low: Grid points below the estimate and how far they reach.
            num_high, dist_high: Grid points above it and how far.

        Returns:
            An array with columns (variance, log-likelihood), one row per grid point.
        """
        if vtype not in ("re", "vc"):
            raise ValueError(f"vtype must be 're' or 'vc', got {vtype!r}")
        var, m = self._var, self.model
        lay = var.lmm.layout
        if vtype == "re":
            if not 0 <= int(re_ix) < m.k_re:
                raise ValueError(f"re_ix must be below k_re = {m.k_re}")
            ix = int(re_ix)
            ru0 = self._psi[ix, ix]
        else:
            ix = list(m.exog_vc.names).index(re_ix)
            ru0 = self._vc_rel[ix]
        low = ((ru0 * self.scale) - dist_low) / self.scale
        high = ((ru0 * self.scale) + dist_high) / self.scale
        if low <= 0:
            raise ValueError("dist_low is too large and would result in a negative variance. Try a smaller value.")
        if vtype == "re" and var.pattern == "full" and ix != 0:
            raise NotImplementedError("profile_re: only the first random effect of a correlated cov_re can be profiled")
        rvalues = np.concatenate([np.linspace(low, ru0, num_low + 1), np.linspace(ru0, high, num_high + 1)[1:]])
        likev = []
        for x in rvalues:
            if vtype == "re":
                i = var.main_terms[0] if var.pattern == "full" else var.main_terms[ix]
                fixed = {var.theta_offsets[i]: math.sqrt(x)}
            else:
                fixed = {var.theta_offsets[i]: math.sqrt(x) for i in var.vc_terms[ix]}
            theta, ok = _constrained_fit(var, self.reml, self.lmm.theta, var.ties, fixed)
            r = _result_at(var, self.lmm, theta, self.reml, ok, "profile")
            likev.append([x * float(r.sigma**2), float(r.loglike)])
        del lay
        return np.asarray(likev)

    # -- output ----------------------------------------------------------------------------------
    def summary(self, yname=None, xname_fe=None, xname_re=None, title=None, alpha: float = 0.05):
        """statsmodels' summary (a ``statsmodels.iolib.summary2.Summary`` when statsmodels is
        installed, else a plain-text equivalent).

        Args:
            yname: Response name (default the model's).
            xname_fe: Names for the fixed effects rows.
            xname_re: Names for the covariance-parameter rows.
            title: Title (default "Mixed Linear Model Regression Results").
            alpha: Level of the fixed effects' intervals.

        Returns:
            The summary.
        """
        m = self.model
        names = list(m.data.param_names)
        k = self.k_fe
        if xname_fe is not None:
            if len(xname_fe) != k:
                raise ValueError(f"xname_fe should be a list of length {k:d}")
            names[:k] = list(xname_fe)
        if xname_re is not None:
            if len(xname_re) != len(names) - k:
                raise ValueError(f"xname_re should be a list of length {len(names) - k:d}")
            names[k:] = list(xname_re)
        gs = np.array([len(m.row_indices[g]) for g in m.group_labels])
        info = {
            "Model:": "MixedLM",
            "No. Observations:": str(m.n_totobs),
            "No. Groups:": str(m.n_groups),
            "Min. group size:": f"{gs.min():.0f}",
            "Max. group size:": f"{gs.max():.0f}",
            "Mean group size:": f"{gs.mean():.1f}",
            "Dependent Variable:": yname if yname is not None else m.endog_names,
            "Method:": self.method,
            "Scale:": self.scale,
            "Log-Likelihood:": self.llf,
            "Converged:": "Yes" if self.converged else "No",
        }
        se = np.sqrt(np.diag(self._cov))
        sdf = np.full((len(names), 6), np.nan)
        z = NormalDist().inv_cdf(1 - alpha / 2)
        sdf[:k, 0] = self._fe
        sdf[:k, 1] = se[:k]
        sdf[:k, 2] = self._fe / se[:k]
        sdf[:k, 3] = [2 * NormalDist().cdf(-abs(v)) if np.isfinite(v) else np.nan for v in sdf[:k, 2]]
        sdf[:k, 4] = self._fe - z * se[:k]
        sdf[:k, 5] = self._fe + z * se[:k]
        sdf[k:, 0] = self._params[k:] * self.scale
        sdf[k:, 1] = math.sqrt(self.scale) * se[k:]
        frame = pd.DataFrame(
            sdf, index=names, columns=["Coef.", "Std.Err.", "z", "P>|z|", f"[{alpha / 2}", f"{1 - alpha / 2}]"]
        )
        for col in frame.columns:
            frame[col] = [f"{v:.3f}" if np.isfinite(v) else "" for v in frame[col]]
        title = "Mixed Linear Model Regression Results" if title is None else title
        try:
            from statsmodels.iolib import summary2
        except ImportError:  # pragma: no cover - statsmodels is optional
            return _TextSummary(title, info, frame)
        smry = summary2.Summary()
        smry.add_dict(info)
        smry.add_title(title)
        smry.add_df(frame, align="r")
        return smry

    def remove_data(self) -> None:
        """Drop the references to the data arrays (the estimates and summary stay usable)."""
        _ = self._cov
        self._removed = True
        self.model.endog = self.model.exog = self.model.exog_re = None

    def __getattr__(self, name: str):
        raise AttributeError(f"'MixedLMResults' has no attribute {name!r} (jaxlme's native result is .lmm)")

    def __repr__(self) -> str:
        return f"<jaxlme.compat.MixedLMResults {self.method} llf={self.llf:.4f} converged={self.converged}>"


class _TextSummary:
    """Plain-text stand-in for statsmodels' Summary when statsmodels is not installed."""

    def __init__(self, title: str, info: dict, frame: pd.DataFrame) -> None:
        self.title = title
        self.info = info
        self.tables = [pd.DataFrame(list(info.items())), frame]

    def as_text(self) -> str:
        lines = [self.title]
        lines += [f"{k:<20} {v}" for k, v in self.info.items()]
        lines.append(self.tables[1].to_string())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.as_text()


class jax_x64:
    """Context manager: float64 JAX inside."""

    def __enter__(self):
        import jax

        self._ctx = jax.enable_x64(True)
        return self._ctx.__enter__()

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
