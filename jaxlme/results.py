"""Fit results with lme4's and statsmodels' familiar names, and the optimizer's record."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import anova as _anova
from . import bootstrap as _bootstrap
from . import emmeans as _emmeans
from . import inference as _inference
from . import predict as _predict
from . import r2 as _r2
from . import simulation as _simulation
from .boundary import SINGULAR_TOL
from .params import group_labels

if TYPE_CHECKING:  # pragma: no cover
    from .model import LMM

__all__ = ["OptSummary", "LMMResult", "COR_MAX", "abbreviate"]

COR_MAX = 12  # lme4's getOption("lme4.summary.cor.max"): larger models omit the correlation block
_WIDTH = 80  # R's getOption("width"): a wider correlation block is printed in column blocks


def abbreviate(names, minlength: int) -> list[str]:
    """R's ``abbreviate(names, minlength)`` (method "left.kept", not strict): drop lower-case
    vowels from the right (a word's last letter first), then other lower-case letters, then
    any letter but a word's first, until ``minlength`` characters; names whose abbreviations
    collide are abbreviated again with a larger ``minlength``.

    Args:
        names: the strings to abbreviate.
        minlength: the length to shorten to.

    Returns:
        One abbreviation per name, in order.
    """
    names = [str(n).strip(" ") for n in names]
    unique = list(dict.fromkeys(names))
    out = {n: _strip_chars(n, minlength) for n in unique}
    todo = [n for n in unique if list(out.values()).count(out[n]) > 1]
    m = minlength
    while todo:
        m += 1
        for n in todo:
            out[n] = _strip_chars(n, m)
        values = list(out.values())
        clash = {v for v in values if values.count(v) > 1}
        todo = [n for n in unique if out[n] in clash] if clash else []
        if m > max(len(n) for n in unique):
            break
    return [out[n] for n in names]


def _strip_chars(text: str, minlen: int) -> str:
    """One abbreviation: R's ``stripchars`` (src/main/character.c) for ASCII text."""
    b = list(text.lstrip())
    nspace = 0

    def short() -> bool:
        return len(b) - nspace <= minlen

    def first(i: int) -> bool:  # the first letter of a word
        return b[i - 1].isspace()

    def last(i: int) -> bool:  # the last letter of a word
        return not b[i - 1].isspace() and (i + 1 >= len(b) or b[i + 1].isspace())

    def lower(c: str) -> bool:
        return "a" <= c <= "z"

    if len(b) >= minlen:
        trailing = True
        for i in range(len(b) - 1, 0, -1):
            if b[i].isspace():
                if trailing:
                    del b[i:]
                else:
                    nspace += 1
            else:
                trailing = False
            if short():
                break
        else:
            rules = [
                lambda i: b[i] in "aeiou" and last(i),
                lambda i: b[i] in "aeiou" and not first(i),
                lambda i: lower(b[i]) and last(i),
                lambda i: lower(b[i]) and not first(i),
                lambda i: not first(i) and not b[i].isspace(),
            ]
            done = False
            for rule in rules:
                for i in range(len(b) - 1, 0, -1):
                    if i < len(b) and rule(i):
                        del b[i]
                    if short():
                        done = True
                        break
                if done:
                    break
    if len(b) > minlen:
        b = [b[0]] + [c for c in b[1:] if not c.isspace()]
    return "".join(b)


def _correlation_block(res: LMMResult, correlation: bool | None) -> list[str]:
    """lme4's "Correlation of Fixed Effects:" block (print.summary.merMod): the lower
    triangle of cor(β̂) to 3 decimals, rows named by ``abbreviate(names, 11)``, columns by
    ``abbreviate(names, 6)``, split into column blocks at 80 characters; or, by default for
    more than 12 fixed effects, lme4's note that it is not shown."""
    names = list(res.model.design.xnames)
    p = len(names)
    if correlation is None:
        if p > COR_MAX:
            return [
                "",
                f"Correlation matrix not shown by default, as p = {p} > {COR_MAX}.",
                "Use summary(correlation=True)  or",
                "    vcov                if you need it",
            ]
        correlation = True
    if not correlation or p <= 1:
        return []
    V = res.vcov.to_numpy()
    sd = np.sqrt(np.diag(V))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.round(V / np.outer(sd, sd), 3) + 0.0  # + 0.0: R prints -0 as 0
    text = np.array([["NaN" if np.isnan(v) else f"{v:.3f}" for v in row] for row in corr])
    width = max(len(t) for t in text.ravel())  # R's format() pads the whole vector alike
    rows, cols = abbreviate(names, 11)[1:], abbreviate(names, 6)[:-1]
    cells = [[text[i, j].rjust(width) if i > j else "" for j in range(p - 1)] for i in range(1, p)]
    w0 = max(len(r) for r in rows)
    widths = [max(len(cols[j]), max(len(cells[i][j]) for i in range(p - 1))) for j in range(p - 1)]
    out = ["", "Correlation of Fixed Effects:"]
    j0 = 0
    while j0 < p - 1:
        j1, used = j0, w0
        while j1 < p - 1 and (j1 == j0 or used + 1 + widths[j1] <= _WIDTH):
            used += 1 + widths[j1]
            j1 += 1
        out.append(" " * w0 + "".join(" " + cols[j].ljust(widths[j]) for j in range(j0, j1)))
        for i in range(p - 1):
            out.append(rows[i].ljust(w0) + "".join(" " + cells[i][j].ljust(widths[j]) for j in range(j0, j1)))
        j0 = j1
    return out


def fixef_and_footer(res, fe: pd.DataFrame, correlation: bool | None) -> list[str]:
    """The summary's lines from the fixed-effects table on: the table, dropped columns, the
    correlation block and the optimizer's outcome (shared by linear and generalized fits)."""
    out = [fe.to_string(float_format=lambda v: f"{v:.4g}" if abs(v) < 1e-3 else f"{v:.4f}")]
    if res.model.design.aliased:
        out.append(f"fixed-effect model matrix is rank deficient; dropped: {', '.join(res.model.design.aliased)}")
    out += _correlation_block(res, correlation)
    out.append("")
    status = res.opt.status if res.converged else f"NOT CONVERGED ({res.opt.status})"
    out.append(f"Optimizer: {status} in {res.opt.iterations} iterations, max|grad| = {res.opt.gradient_norm:.2e}")
    if res.singular:
        out.append("boundary (singular) fit: see isSingular")
    return out


@dataclass
class OptSummary:
    """What the optimizer did (MixedModels.jl's OptSummary): print it to debug a fit."""

    optimizer: str
    theta_initial: np.ndarray
    theta_final: np.ndarray
    objective: float
    gradient_norm: float
    iterations: int
    evaluations: int
    status: str
    converged: bool
    fit_seconds: float
    compile_seconds: float
    setup_seconds: float
    gtol: float
    boundary_escapes: int = 0  # restarts from points that leave a spurious boundary optimum
    code: int = 0  # the optimizer's ``jaxlme.optimizer.Status`` (``status`` is its text, or why not an optimum)

    def __str__(self) -> str:
        def fmt(v):
            if isinstance(v, np.ndarray):
                return np.array2string(v, precision=6, separator=", ")
            if isinstance(v, float):
                return f"{v:.6g}"
            return str(v)

        lines = ["Optimization summary"]
        for f in fields(self):
            lines.append(f"  {f.name:<16} {fmt(getattr(self, f.name))}")
        return "\n".join(lines)


@dataclass(eq=False)
class LMMResult:
    """A fitted linear mixed model.  Attributes follow lme4 (``fixef``, ``ranef``,
    ``vcov``, ``sigma``, ``theta``, ``varcorr``) and statsmodels (``loglike``, ``aic``)."""

    model: LMM
    reml: bool
    opt: OptSummary
    effects: object = field(repr=False)
    y: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        d = self.model.design
        lay = self.model.layout
        self.theta = np.asarray(self.opt.theta_final, dtype=float)
        self.objective = float(self.opt.objective)
        self.converged = bool(self.opt.converged)
        self.nobs = d.n
        self.sigma = float(self.effects.sigma)
        lower = lay.theta_lower
        self.singular = bool(np.any(self.theta[lower == 0] < SINGULAR_TOL))
        self.npar = d.p + lay.ntheta + 1
        self.loglike = -self.objective / 2.0
        self.aic = self.objective + 2.0 * self.npar
        self.bic = self.objective + np.log(self.nobs) * self.npar

    # -- tables: built on first use (pandas objects cost more than a small model's refit) ---
    @functools.cached_property
    def fixef(self) -> pd.Series:
        """Fixed-effects estimates β̂ (lme4's ``fixef``)."""
        beta = self.model.centering.beta(np.asarray(self.effects.beta, dtype=float))
        return pd.Series(beta, index=self.model.design.xnames, name="fixef")

    @functools.cached_property
    def vcov(self) -> pd.DataFrame:
        """Covariance of β̂: σ² (RX RX')⁻¹."""
        xnames = self.model.design.xnames
        RX = np.asarray(self.effects.RX)
        if RX.size:
            RXinv = np.linalg.inv(RX)
            vcov = self.model.centering.vcov(self.sigma**2 * RXinv.T @ RXinv)
        else:
            vcov = np.zeros((0, 0))
        return pd.DataFrame(vcov, index=xnames, columns=xnames)

    @functools.cached_property
    def stderr(self) -> pd.Series:
        """Standard errors of β̂."""
        return pd.Series(np.sqrt(np.diag(self.vcov.to_numpy())), index=self.model.design.xnames, name="stderr")

    @functools.cached_property
    def group_labels(self) -> list[str]:
        """lme4's label of each random-effects term (``Subject``, ``Subject.1``); see
        :func:`group_labels`."""
        return group_labels(self.model.design.terms)

    @functools.cached_property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes (BLUPs) b̂ per grouping factor, one row per level.

        As lme4's ``ranef()``: the terms of one factor (``(1 | g) + (0 + x | g)``,
        ``(x || g)``) share one table, their columns side by side in the terms' order.
        """
        out = {}
        for t, b in zip(self.model.design.terms, self.effects.b):
            df = pd.DataFrame(np.asarray(b), index=t.levels.copy(), columns=list(t.columns))
            df.index.name = t.name
            out[t.name] = pd.concat([out[t.name], df], axis=1) if t.name in out else df
        return out

    @functools.cached_property
    def varcorr(self) -> pd.DataFrame:
        """Variance components: SDs and correlations (lme4's ``as.data.frame(VarCorr())``)."""
        return self._varcorr()

    # -- per-observation quantities: O(n), so computed on first use (a fit or refit of
    # many rows returns without them) ----------------------------------------------------
    @functools.cached_property
    def fitted(self) -> pd.Series:
        """Conditional fitted values Xβ̂ + Zb̂ (+ the offset; lme4's ``fitted``), a Series named
        ``fitted`` indexed like the data rows used in the fit (rows dropped for missing values
        are absent)."""
        d = self.model.design
        out = d.X @ self.fixef.to_numpy()
        if d.offset is not None:
            out = out + d.offset
        for t, b in zip(d.terms, self.effects.b):
            out = out + np.einsum("ij,ij->i", t.Z, np.asarray(b)[t.index])
        return pd.Series(out, index=d.rows, name="fitted")

    @functools.cached_property
    def residuals(self) -> pd.Series:
        """Response minus conditional fitted values (lme4's default response residuals), a
        Series named ``residuals`` indexed like ``fitted`` (``y`` is the response minus any
        offset, ``fitted`` includes it)."""
        off = self.model.design.offset
        y = self.y if off is None else self.y + off
        return pd.Series(y - self.fitted.to_numpy(), index=self.model.design.rows, name="residuals")

    @property
    def weights(self) -> np.ndarray | None:
        """Prior weights of the rows used (lme4's ``weights``); None for an unweighted fit."""
        return self.model.design.weights

    @property
    def pearson_residuals(self) -> pd.Series:
        """Residuals times √(prior weight): lme4's ``residuals(fit, type = "pearson")``."""
        w = self.model.design.weights
        return self.residuals if w is None else (self.residuals * np.sqrt(w)).rename("pearson_residuals")

    # -- derived quantities --------------------------------------------------------
    @property
    def method(self) -> str:
        return "REML" if self.reml else "ML"

    @property
    def deviance(self) -> float:
        """ML deviance (-2 logLik) for ML fits; for REML fits the REML criterion, like lme4's REMLcrit."""
        return self.objective

    @property
    def df_resid(self) -> int:
        return self.nobs - self.npar

    def covariance_matrices(self) -> dict[str, pd.DataFrame]:
        """Σ_t = σ² Λ_t Λ_t' for each term (random-effects covariance), keyed by the term's
        label (:attr:`group_labels`: ``Subject``, ``Subject.1``, ...)."""
        out = {}
        for t, label, lam in zip(self.model.design.terms, self.group_labels, self.model.layout.lambdas(self.theta)):
            cov = self.sigma**2 * lam @ lam.T
            out[label] = pd.DataFrame(cov, index=t.columns, columns=t.columns)
        return out

    def _varcorr(self) -> pd.DataFrame:
        rows = []
        for (name, cov), t in zip(self.covariance_matrices().items(), self.model.design.terms):
            c = cov.to_numpy()
            sd = np.sqrt(np.maximum(np.diag(c), 0.0))
            cols = list(cov.columns)
            for i, v in enumerate(cols):
                rows.append((name, v, None, c[i, i], sd[i]))
            if t.term.correlated:
                for j in range(len(cols)):
                    for i in range(j + 1, len(cols)):
                        denom = sd[i] * sd[j]
                        corr = c[i, j] / denom if denom > 0 else np.nan
                        rows.append((name, cols[j], cols[i], c[i, j], corr))
        rows.append(("Residual", None, None, self.sigma**2, self.sigma))
        return pd.DataFrame(rows, columns=["group", "var1", "var2", "vcov", "sdcor"])

    @property
    def ngroups(self) -> dict[str, int]:
        return {t.name: t.nlevels for t in self.model.design.terms}

    # -- parametric bootstrap (jaxlme.bootstrap) -------------------------------------------
    def simulate(self, n: int, seed: int | None = 0):
        """(n, nobs) responses simulated from the fitted model; see ``jaxlme.simulation.simulate``."""
        self.model._rows_needed("simulate")
        return _simulation.simulate(self, n, seed)

    def bootstrap(self, n: int, seed: int | None = 0, **kwargs):
        """Parametric bootstrap with ``n`` refits; see ``jaxlme.bootstrap.bootstrap``."""
        return _bootstrap.bootstrap(self, n, seed, **kwargs)

    # -- text --------------------------------------------------------------------------
    def summary(self, correlation: bool | None = None) -> str:
        """lme4-style text summary.

        Args:
            correlation: show the correlation of the fixed effects (lme4's "Correlation of
                Fixed Effects:" block); None (default) shows it when there are at most 12
                fixed effects and otherwise says it is not shown, as lme4 does.

        Returns:
            The summary text.
        """
        d = self.model.design
        out = []
        how = "REML" if self.reml else "maximum likelihood"
        out.append(f"Linear mixed model fit by {how} [jaxlme]")
        out.append(f"Formula: {d.formula.text}")
        if d.n_dropped:
            out.append(f"  ({d.n_dropped} observation(s) deleted due to missingness)")
        out.append("")
        if self.reml:
            out.append(f"REML criterion at convergence: {self.objective:.4f}")
            out.append(f"logLik: {self.loglike:.4f}   AIC: {self.aic:.4f}   BIC: {self.bic:.4f}   (npar = {self.npar})")
        else:  # lme4's one table (AIC, BIC, logLik, deviance, df.resid), shown once
            out.append(f"{'AIC':>10} {'BIC':>10} {'logLik':>10} {'deviance':>10} {'df.resid':>9}")
            out.append(
                f"{self.aic:10.1f} {self.bic:10.1f} {self.loglike:10.1f} {self.objective:10.1f} {self.df_resid:9d}"
            )
        out.append("")
        if d.weights_name is not None:
            out.append(f"Weights: {d.weights_name}")
        if d.has_rows:
            out.append("Scaled residuals:")
            q = np.quantile(self.pearson_residuals / self.sigma, [0, 0.25, 0.5, 0.75, 1.0])
            out.append("    " + " ".join(f"{h:>8}" for h in ["Min", "1Q", "Median", "3Q", "Max"]))
            out.append("    " + " ".join(f"{v:8.4f}" for v in q))
        else:  # a fit from summed cross-products: the residuals need a pass over the rows
            out.append("Scaled residuals: not computed (fitted from cross-products: jaxlme.partitions.fitted_values)")
        out.append("")
        out.append("Random effects:")
        out.append(self._varcorr_text())
        groups = ", ".join(f"{k}, {v}" for k, v in self.ngroups.items())
        out.append(f"Number of obs: {self.nobs}, groups:  {groups}")
        out.append("")
        out.append("Fixed effects:")
        fe = pd.DataFrame(
            {
                "Estimate": self.fixef,
                "Std. Error": self.stderr,
                "t value": self.fixef / self.stderr,
            }
        )
        try:  # Satterthwaite df and p (jaxlme.inference); plain t values if that fails
            ct = self.coefs(ddf="satterthwaite")
            fe.insert(2, "df", ct["df"].to_numpy())
            fe["Pr(>|t|)"] = ct["p"].to_numpy()
        except Exception:  # noqa: BLE001
            pass
        out += fixef_and_footer(self, fe, correlation)
        return "\n".join(out)

    def _varcorr_text(self) -> str:
        covs = self.covariance_matrices()
        gw = max([len("Groups"), len("Residual")] + [len(k) for k in covs])  # long labels: county:location
        nw = max([len("Name")] + [len(c) for cov in covs.values() for c in cov.columns])
        lines = [f" {'Groups':<{gw}} {'Name':<{nw}} {'Variance':>10} {'Std.Dev.':>9}  Corr"]
        vc = self.varcorr
        for (name, cov), term in zip(covs.items(), self.model.design.terms):
            c = cov.to_numpy()
            sd = np.sqrt(np.maximum(np.diag(c), 0))
            cols = list(cov.columns)
            for i, v in enumerate(cols):
                corr = ""
                if term.term.correlated and i > 0:
                    corr = " ".join(
                        f"{(c[i, j] / (sd[i] * sd[j]) if sd[i] * sd[j] > 0 else float('nan')):5.2f}" for j in range(i)
                    )
                grp = name if i == 0 else ""
                lines.append(f" {grp:<{gw}} {v:<{nw}} {c[i, i]:10.4g} {sd[i]:9.4g}  {corr}")
        res = vc.iloc[-1]
        lines.append(f" {'Residual':<{gw}} {'':<{nw}} {res['vcov']:10.4g} {res['sdcor']:9.4g}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"<LMMResult {self.method} {self.model.design.formula.text!r}: "
            f"objective={self.objective:.4f}, converged={self.converged}, singular={self.singular}>"
        )

    def __str__(self) -> str:
        return self.summary()

    # -- inference and prediction (jaxlme.inference, jaxlme.predict) ---------------------
    def coefs(self, ddf: str = "satterthwaite", level: float = 0.95) -> pd.DataFrame:
        """Fixed-effect t tests: estimate, se, df, t, p, lower, upper; ``ddf`` "satterthwaite",
        "kenward-roger", "residual" or "normal"; see ``jaxlme.inference.coefs``."""
        return _inference.coefs(self, ddf=ddf, level=level)

    def anova(self, *others: LMMResult, type=None, ddf: str | None = None, **kwargs) -> pd.DataFrame:  # noqa: A002
        """lmerTest's ``anova()``: alone, the F table of the fixed-effect terms; with other
        fits, lme4's likelihood-ratio tests.

        Args:
            *others: other fits to compare by likelihood-ratio tests (``jaxlme.inference.lrt``,
                which takes ``names`` and ``refit`` as keyword arguments).
            type: without other fits, 1, 2 or 3 ("I", "II", "III"; default 3).
            ddf: without other fits, "satterthwaite" (default) or "kenward-roger".

        Returns:
            The F table (``jaxlme.anova.anova_table``) or the likelihood-ratio table.
        """
        if others:
            if type is not None or ddf is not None:
                raise ValueError("type and ddf apply to one model's F table; anova with other models is an LRT")
            return _inference.lrt(self, *others, **kwargs)
        if kwargs:
            raise TypeError(f"anova() of one model takes type and ddf, not {', '.join(kwargs)}")
        return _anova.anova_table(self, 3 if type is None else type, "satterthwaite" if ddf is None else ddf)

    def confint(self, method: str = "profile", level: float = 0.95, **kwargs) -> pd.DataFrame:
        """Confidence intervals (wald/profile/boot); see ``jaxlme.inference.confint``."""
        return _inference.confint(self, method=method, level=level, **kwargs)

    def emmeans(self, specs, by=None, ddf: str = "satterthwaite", level: float = 0.95, at=None, **kwargs):
        """Estimated marginal means (R's emmeans); see ``jaxlme.emmeans.emmeans``."""
        return _emmeans.emmeans(self, specs, by=by, ddf=ddf, level=level, at=at, **kwargs)

    def contrast(self, specs, method="pairwise", by=None, adjust: str | None = None, **kwargs):
        """Contrasts among estimated marginal means (R's emmeans::contrast); see ``jaxlme.emmeans.contrast``."""
        return _emmeans.contrast(self, specs, method=method, by=by, adjust=adjust, **kwargs)

    def predict(
        self,
        newdata=None,
        re_form=None,
        se_fit: bool = False,
        interval: str | None = None,
        level: float = 0.95,
        allow_new_levels: bool = False,
        random_effects: bool | None = None,
    ):
        """Predictions conditional on all, some (``re_form``) or none of the random effects,
        with optional standard errors and confidence/prediction intervals; see
        ``jaxlme.predict.predict``."""
        return _predict.predict(
            self,
            newdata,
            re_form=re_form,
            se_fit=se_fit,
            interval=interval,
            level=level,
            allow_new_levels=allow_new_levels,
            random_effects=random_effects,
        )

    def predict_interval(self, newdata=None, n: int = 1000, seed: int | None = 0, level: float = 0.95, **kwargs):
        """Parametric-bootstrap intervals of population-level predictions; see
        ``jaxlme.predict.predict_interval``."""
        return _predict.predict_interval(self, newdata, n=n, seed=seed, level=level, **kwargs)

    def r2(self) -> pd.Series:
        """Nakagawa & Schielzeth's marginal and conditional R² (performance::r2_nakagawa); see
        ``jaxlme.r2.r2``."""
        return _r2.r2(self)

    def icc(self) -> pd.Series:
        """Adjusted and unadjusted intraclass correlation (performance::icc); see ``jaxlme.r2.icc``."""
        return _r2.icc(self)

    def ranef_condvar(self) -> dict[str, np.ndarray]:
        """{group: (nlevels, r, r)} conditional covariances of the random effects (lme4's condVar);
        see ``jaxlme.predict.ranef_condvar``."""
        return _predict.ranef_condvar(self)

    def ranef_condsd(self) -> dict[str, pd.DataFrame]:
        """{group: DataFrame levels × columns} conditional SDs of the random effects."""
        return _predict.ranef_condsd(self)
