"""Inference for fitted models: coefficient tests, likelihood-ratio tests, confidence intervals.

* ``coefs``: t tests of the fixed effects with Satterthwaite's denominator df, computed from
  exact derivatives: the Jacobian of Var(Lβ̂) with respect to the variance parameters
  (θ, σ) and the Hessian of the (REML or ML) deviance in (θ, σ), both by JAX autodiff
  (Kuznetsova, Brockhoff & Christensen 2017, JSS 82(13), take numerical derivatives).
* ``lrt``: lme4's ``anova()`` table for nested models; REML fits are refitted by ML.
* ``confint``: Wald, profile-likelihood (lme4's ``confint(method="profile")``) or bootstrap
  intervals for the random-effect SDs and correlations, σ and the fixed effects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import kenward_roger as _kenward_roger
from . import messages
from ._config import x64
from .compiled import compile_program, compile_program_async, prefetch
from .objective import (
    criterion_terms,
    factorize,
    fixef_sigma,
    program_flags,
    reml_flag,
    rx_beta,
    unprofiled_deviance,
    unprofiled_value_and_grad,
    uses_analytic_gradient,
)
from .optimizer import NewtonOptions, fd_hessian, fd_points, newton_minimize
from .params import COR_MAX, phi_kinds, phi_to_psi, psi_to_phi, theta_from_vc, varpar_name, vc_values
from .simulation import resolve_seed, simulate
from .structure import is_small, pad_structure

if TYPE_CHECKING:  # pragma: no cover
    from .results import LMMResult

__all__ = [
    "coefs",
    "satterthwaite",
    "kenward_roger",
    "lrt",
    "confint",
    "varpar_names",
    "profile_interval",
    "interval_request",
    "interval_frame",
    "satterthwaite_program",
    "information_program",
    "start_information",
    "DDF_METHODS",
    "CI_METHODS",
]

DDF_METHODS = ("satterthwaite", "kenward-roger", "residual", "normal")
CI_METHODS = ("wald", "profile", "boot")
_LOG2PI = float(np.log(2 * np.pi))


# ---------------------------------------------------------------------------------------
# Satterthwaite
# ---------------------------------------------------------------------------------------
def _pieces(theta: jax.Array, struct):
    """ldL2, ldRX2, pwrss, RX and β̂ at θ, read off the blocked Cholesky factor."""
    f = factorize(theta, struct)
    ct = criterion_terms(f, struct.layout)
    return (ct.ldL2, ct.ldRX2, ct.pwrss, *rx_beta(f.L, struct.layout))


def deviance_varpar_value_and_grad(varpar: jax.Array, struct, reml: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
    """:func:`jaxlme.objective.unprofiled_value_and_grad`, with Var(β̂) from the same
    factorization in place of R_X."""
    value, grad, RX = unprofiled_value_and_grad(varpar, struct, reml)
    return value, grad, _vcov_from_rx(RX, varpar[-1])


def vcov_varpar(varpar: jax.Array, struct) -> jax.Array:
    """Var(β̂) = σ² (RX RX')⁻¹ as a function of (θ, σ)."""
    return _vcov_from_rx(_pieces(varpar[:-1], struct)[3], varpar[-1])


def _vcov_from_rx(RX: jax.Array, sigma: jax.Array) -> jax.Array:
    RXinv = jax.scipy.linalg.solve_triangular(RX, jnp.eye(RX.shape[0], dtype=RX.dtype), lower=True)
    return sigma**2 * RXinv.T @ RXinv


def satterthwaite_parts(varpar: jax.Array, struct, reml: bool):
    """Hessian of the deviance, Var(β̂) and its Jacobian, all in (θ, σ); one compiled program."""
    H = jax.hessian(unprofiled_deviance)(varpar, struct, reml)
    V = vcov_varpar(varpar, struct)
    J = jax.jacfwd(vcov_varpar)(varpar, struct)
    return H, V, J


def satterthwaite_parts_fd(varpar: jax.Array, struct, reml: bool, step: float = 1e-6):
    """As :func:`satterthwaite_parts` for large models, by forward differences of the exact
    (autodiff) gradient and of Var(β̂), one point at a time (``lax.map``: unbatched, the
    dense block keeps its fast recursive inverse): faster than autodiff's Hessian on large
    models, and as accurate as df needs (lmerTest differentiates numerically too)."""
    if uses_analytic_gradient(struct.layout):  # Var(β̂) from each point's own factorization
        _, _, H, Vs = fd_hessian(lambda x: deviance_varpar_value_and_grad(x, struct, reml), varpar, step, False, True)
    else:
        _, _, H = fd_hessian(jax.value_and_grad(lambda x: unprofiled_deviance(x, struct, reml)), varpar, step, False)
        Vs = jax.lax.map(lambda x: vcov_varpar(x, struct), fd_points(varpar, step)[0])
    h = fd_points(varpar, step)[1]
    J = jnp.moveaxis((Vs[1:] - Vs[0][None]) / h[:, None, None], 0, -1)  # (p, p, nvp)
    return H, Vs[0], J


def _satterthwaite_parts(layout):
    """The name and function of the Satterthwaite program for a layout: exact autodiff
    derivatives for small models, finite differences of exact gradients for larger ones
    (a Hessian by autodiff costs ~ntheta gradients on a large dense block)."""
    if is_small(layout):
        return "satterthwaite", satterthwaite_parts
    return "satterthwaite_fd", satterthwaite_parts_fd


def satterthwaite_program(struct, reml: bool):
    """The compiled program behind :func:`satterthwaite` (cached in memory and on disk;
    it runs on the padded structure, with the criterion as data, so REML and ML fits and
    small models of one shape bucket share it: see ``jaxlme.structure.pad_structure``).

    Args:
        struct: the model's ``Structure``.
        reml: whether the fit's criterion is REML.

    Returns:
        A function of varpar = (θ, σ) returning (Hessian of the deviance, Var(β̂),
        ∂Var(β̂)/∂varpar), all in (θ, σ).
    """
    padded = pad_structure(struct)
    name, parts = _satterthwaite_parts(padded.struct.layout)
    args = _satterthwaite_args(padded, reml)
    prog, _ = compile_program(name, parts, args, {}, **program_flags(padded.struct.layout))
    p, idx = padded.p, padded.varpar_index

    def run(varpar):
        H, V, J = jax.device_get(prog(jax.device_put(padded.varpar_in(varpar)), *args[1:]))
        return H[np.ix_(idx, idx)], V[:p, :p], J[:p, :p][..., idx]  # the padding cut off

    return run


def _information_parts(varpar: jax.Array, struct, reml: bool):
    """Hessian of the deviance in (θ, σ), Var(β̂) and ∂β̂/∂θ (autodiff; one program)."""
    H = jax.hessian(unprofiled_deviance)(varpar, struct, reml)
    B = jax.jacfwd(lambda t: fixef_sigma(t, struct, True)[0])(varpar[:-1])
    return H, vcov_varpar(varpar, struct), B


def _beta_jacobian(theta: jax.Array, struct) -> jax.Array:
    """∂β̂/∂θ, forward mode through one factorization."""
    return jax.jacfwd(lambda t: fixef_sigma(t, struct, True)[0])(theta)


def _information_jobs(struct, reml: bool) -> list[tuple]:
    """(name, function, args) of the programs :func:`information_program` compiles."""
    padded = pad_structure(struct)
    if is_small(struct.layout):
        return [("information", _information_parts, _satterthwaite_args(padded, reml))]
    name, parts = _satterthwaite_parts(padded.struct.layout)
    theta = jax.ShapeDtypeStruct((struct.layout.ntheta,), jnp.float64)
    return [(name, parts, _satterthwaite_args(padded, reml)), ("beta_jacobian", _beta_jacobian, (theta, struct))]


def start_information(struct, reml: bool) -> None:
    """Start compiling (or loading) :func:`information_program`'s programs on a background
    thread, so that a fit's standard errors do not wait for them after the fit: the
    statsmodels front end, which computes them with every fit, calls this before fitting."""
    flags = program_flags(pad_structure(struct).struct.layout)
    for name, fn, args in _information_jobs(struct, reml):
        compile_program_async(name, fn, args, {}, threads=1, **flags)


def information_program(struct, reml: bool):
    """The compiled program behind Wald standard errors of every parameter (the
    statsmodels front end's ``cov_params``): at varpar = (θ, σ), the Hessian of the
    deviance in (θ, σ), Var(β̂) at θ and ∂β̂/∂θ, the fixed effects as the structure holds
    them (centred).  Small models: one autodiff program on the padded structure (see
    :func:`satterthwaite_program`); larger ones: the Satterthwaite program's Hessian and
    a forward-mode Jacobian.

    Args:
        struct: the model's ``Structure``.
        reml: whether the fit's criterion is REML.

    Returns:
        A function of varpar returning (H, Var(β̂), ∂β̂/∂θ) as host arrays.
    """
    padded = pad_structure(struct)
    flags = program_flags(padded.struct.layout)
    jobs = _information_jobs(struct, reml)
    if is_small(struct.layout):
        args = jobs[0][2]
        prog, _ = compile_program(*jobs[0], {}, **flags)
        p, idx = padded.p, padded.varpar_index

        def run(varpar):
            H, V, B = jax.device_get(prog(jax.device_put(padded.varpar_in(varpar)), *args[1:]))
            return H[np.ix_(idx, idx)], V[:p, :p], B[:p][:, padded.theta]

        return run
    hessian = satterthwaite_program(struct, reml)
    jac, _ = compile_program(*jobs[1], {}, **flags)

    def run_large(varpar):
        H, V, _ = hessian(varpar)
        return H, V, np.asarray(jac(jax.device_put(np.asarray(varpar, dtype=float)[:-1]), struct))

    return run_large


def _satterthwaite_args(padded, reml: bool) -> tuple:
    """The Satterthwaite program's arguments (varpar as a shape)."""
    varpar = jax.ShapeDtypeStruct((padded.ntheta + 1,), jnp.float64)
    return varpar, padded.struct, reml_flag(reml)


def prefetch_satterthwaite(struct, reml: bool) -> bool:
    """Start loading the Satterthwaite program of a small model from the disk cache in the
    background, so a summary after the fit does not wait for it; see compiled.prefetch."""
    if not is_small(struct.layout):
        return False
    padded = pad_structure(struct)
    name, _ = _satterthwaite_parts(padded.struct.layout)
    return prefetch(name, _satterthwaite_args(padded, reml), {}, **program_flags(padded.struct.layout))


@x64
def satterthwaite(res: LMMResult, L=None) -> pd.DataFrame:
    """Satterthwaite df for the contrasts in the rows of ``L`` (default: each fixed effect).

    Returns a DataFrame with ``estimate, se, df`` per contrast.  df = 2 v² / (g' A g), where
    v = L Var(β̂) L', g = ∂v/∂(θ, σ) (autodiff Jacobian) and A = 2 H⁻¹ with H the autodiff
    Hessian of the fit's deviance (REML or ML, matching the fit) in (θ, σ), as lmerTest does.
    """
    d = res.model.design
    p = d.p
    names = list(d.xnames)
    if L is None:
        L = np.eye(p)
    else:
        if isinstance(L, pd.DataFrame):
            names = [str(i) for i in L.index]
            L = L.reindex(columns=d.xnames, fill_value=0.0).to_numpy(dtype=float)
        L = np.atleast_2d(np.asarray(L, dtype=float))
        if L.shape[1] != p:
            raise ValueError(f"contrast matrix L must have {p} columns (one per fixed effect), got {L.shape[1]}")
        if not isinstance(names, list) or len(names) != L.shape[0]:
            names = [f"L{i + 1}" for i in range(L.shape[0])]
    struct = res.model.structure
    varpar = jax.device_put(np.append(res.theta, res.sigma))
    H, V, J = (np.asarray(a) for a in satterthwaite_program(struct, res.reml)(varpar))  # J: (p, p, nvp)
    # θ components at a bound of 0 are not free parameters (lmerTest drops them likewise)
    free = ~((res.model.layout.theta_lower == 0) & (res.theta <= 1e-10))
    free = np.append(free, True)
    Hf = H[np.ix_(free, free)]
    try:
        A = 2.0 * np.linalg.inv(Hf)
        if not np.all(np.isfinite(A)):
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        A = 2.0 * np.linalg.pinv(Hf)
    est = L @ res.fixef.to_numpy()
    Lt = res.model.centering.contrasts(L)  # V and J are those of the centred β̃
    var = np.einsum("ki,ij,kj->k", Lt, V, Lt)
    grad = np.einsum("ki,ijm,kj->km", Lt, J, Lt)[:, free]
    denom = np.einsum("km,mn,kn->k", grad, A, grad)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = 2.0 * var**2 / denom
    return pd.DataFrame({"estimate": est, "se": np.sqrt(var), "df": df}, index=pd.Index(names))


def kenward_roger(res: LMMResult, L=None, max_re: int | None = None) -> pd.DataFrame:
    """Kenward–Roger estimate, adjusted se and df per contrast (row) of ``L``, with the
    columns and index conventions of :func:`satterthwaite`; see
    ``jaxlme.kenward_roger.kenward_roger`` (pbkrtest's ``vcovAdj`` and ``Lb_ddf``).

    Args:
        res: a REML fit.
        L: contrasts of the fixed effects (None: each coefficient).
        max_re: largest number of random effects allowed (None: the module's default).

    Returns:
        DataFrame with ``estimate, se, df``.
    """
    return _kenward_roger.kenward_roger(res, L, _kenward_roger.MAX_RE if max_re is None else max_re)


@x64
def coefs(res: LMMResult, ddf: str = "satterthwaite", level: float = 0.95) -> pd.DataFrame:
    """Fixed-effect table with columns ``estimate, se, df, t, p, lower, upper``.

    ``ddf``: "satterthwaite" (lmerTest's default, exact autodiff derivatives),
    "kenward-roger" (pbkrtest's adjusted covariance for se and its df, as lmerTest's
    ``summary(ddf = "Kenward-Roger")``; REML fits only), "residual" (n - p, the OLS df) or
    "normal" (df = inf: z tests).  ``lower``/``upper`` are t-based ``level`` intervals with
    the same df and se.
    """
    ddf_key = str(ddf).lower().replace("_", "-")
    if ddf_key not in DDF_METHODS:
        raise ValueError(f"unknown ddf {ddf!r}: use one of {', '.join(map(repr, DDF_METHODS))}")
    check_level(level)
    d = res.model.design
    est = res.fixef.to_numpy()
    se = res.stderr.to_numpy()
    if ddf_key == "satterthwaite":
        df = satterthwaite(res)["df"].to_numpy()
    elif ddf_key == "kenward-roger":
        kr = kenward_roger(res)
        se, df = kr["se"].to_numpy(), kr["df"].to_numpy()
    elif ddf_key == "residual":
        df = np.full(d.p, float(d.n - d.p))
    else:
        df = np.full(d.p, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = est / se
    from scipy import special  # lazily, and not scipy.stats: that import alone is slow

    p = 2.0 * special.stdtr(df, -np.abs(t))
    q = special.stdtrit(df, 0.5 + level / 2.0)
    out = pd.DataFrame(
        {"estimate": est, "se": se, "df": df, "t": t, "p": p, "lower": est - q * se, "upper": est + q * se},
        index=pd.Index(d.xnames, name="coef"),
    )
    out.attrs["ddf"] = ddf_key
    return out


def check_level(level: float) -> None:
    """Raise ``ValueError`` unless ``level`` is a probability strictly between 0 and 1."""
    if not (isinstance(level, (int, float)) and 0.0 < float(level) < 1.0):
        raise ValueError(f"level must be a probability in (0, 1), got {level!r}")


# ---------------------------------------------------------------------------------------
# Likelihood-ratio tests
# ---------------------------------------------------------------------------------------
def _response_name(res: LMMResult) -> str:
    return res.model.design.formula.response


def lrt(
    *results: LMMResult,
    names: Sequence[str] | None = None,
    refit: bool = True,
    bootstrap: int | None = None,
    seed: int | None = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Likelihood-ratio tests of nested models (lme4's ``anova(m1, m2, ...)``), optionally
    with parametric-bootstrap p-values (pbkrtest's ``PBmodcomp``).

    Models are sorted by their number of parameters; each row is tested against the one
    before it: Chisq = 2 Δ logLik (clamped at 0), Df = Δ npar, p = P(χ²_Df > Chisq).
    REML fits are refitted by ML first (with a warning, as lme4 prints a message), since
    REML criteria of models with different fixed effects are not comparable; pass
    ``refit=False`` to compare REML fits of models with the same fixed effects.
    All models must be fitted to the same observations, or a ValueError is raised.

    The χ² reference distribution is conservative for variance components tested at the
    boundary (σ² = 0); ``bootstrap=N`` simulates it instead, for each row against the row
    before: N responses are simulated from the smaller model's ML fit, both models are
    refitted by ML to each (vmapped, see ``LMM.fit_many``), and with LRT* = 2 Δ logLik of
    each replicate, p_boot = (1 + #{LRT* > Chisq}) / (1 + #{LRT* > 0}) over the replicates
    whose refits both converged: pbkrtest's definition, which leaves out the replicates
    whose statistic is 0 (both refits at the same boundary optimum).  Statistics within
    ``PB_ZERO`` of 0 count as 0, since such refits differ only by rounding; pbkrtest
    compares lme4's values with 0 exactly, so on boundary tests it also counts the
    replicates whose rounding came out positive, which lowers its p.  Every model
    has at least one random-effects term (a null model without one would be a linear
    model, which jaxlme does not fit).

    Args:
        *results: Two or more fitted models (or one list of them).
        names: Row names; default: each model's formula text.
        refit: Refit REML fits by ML (lme4's default).
        bootstrap: Number of parametric-bootstrap replicates per comparison (None: none).
        seed: Seed of the simulated responses (None: fresh entropy, recorded).
        progress: Show progress bars for long bootstrap refits.

    Returns:
        A DataFrame indexed by model with columns npar, AIC, BIC, logLik, deviance, Chisq,
        Df, p (and p_boot with ``bootstrap``); ``attrs``: ``note``, ``formulas``,
        ``method`` and, with ``bootstrap``, ``bootstrap``: the seed, the replicates
        requested, and per tested row the usable replicates, those with LRT* > 0, and LRT*.
    """
    if len(results) == 1 and isinstance(results[0], (list, tuple)):
        results = tuple(results[0])
    if len(results) < 2:
        raise ValueError("lrt needs at least two fitted models to compare")
    for r in results:
        if not any(c.__name__ == "LMMResult" for c in type(r).__mro__):  # the class lives above this module
            raise TypeError(f"lrt compares LMMResult objects, got {type(r).__name__}")
    if names is None:
        names = _formula_names(results)
    names = [str(n) for n in names]
    if len(names) != len(results) or len(set(names)) != len(names):
        raise ValueError("names must be unique, one per model")
    nboot = _check_nboot(bootstrap)
    ref = results[0]
    for nm, r in zip(names[1:], results[1:]):
        if r.nobs != ref.nobs:
            raise ValueError(
                f"models were not all fitted to the same data: {names[0]} has {ref.nobs} observations, "
                f"{nm} has {r.nobs}"
            )
        if _response_name(r) != _response_name(ref):
            raise ValueError(
                f"models have different responses ({_response_name(ref)!r} vs {_response_name(r)!r}): "
                "likelihoods are not comparable"
            )
        same_rows = r.model.design.rows.equals(ref.model.design.rows)
        if not same_rows or not np.allclose(r.y, ref.y, rtol=1e-12, atol=0.0):
            raise ValueError(
                f"models were not all fitted to the same data: the response of {nm} differs from "
                f"that of {names[0]} (different data frames or rows dropped for missing values)"
            )
    fits = list(results)
    note = None
    if refit and any(r.reml for r in fits):
        note = "refitting model(s) with ML (instead of REML)"
        messages.warn(note)
        fits = [r.model.fit(reml=False, theta0=r.theta, warn=False) if r.reml else r for r in fits]
    elif not refit and len({r.reml for r in fits}) > 1:
        raise ValueError("cannot compare a REML fit with an ML fit without refitting (use refit=True)")
    if nboot is not None and any(r.reml for r in fits):
        raise ValueError("bootstrap p-values compare ML fits (as pbkrtest's PBmodcomp): use refit=True")
    order = sorted(range(len(fits)), key=lambda i: (fits[i].npar, i))
    rows = []
    prev = None
    for i in order:
        f = fits[i]
        ll = f.loglike
        k = f.npar
        if prev is None:
            chisq = dfd = pval = np.nan
        else:
            chisq = max(0.0, 2.0 * (ll - prev[0]))
            dfd = k - prev[1]
            from scipy import special

            pval = float(special.chdtrc(dfd, chisq)) if dfd > 0 else np.nan
        rows.append(
            {
                "npar": k,
                "AIC": f.aic,
                "BIC": f.bic,
                "logLik": ll,
                "deviance": -2.0 * ll,
                "Chisq": chisq,
                "Df": dfd,
                "p": pval,
            }
        )
        prev = (ll, k)
    out = pd.DataFrame(rows, index=pd.Index([names[i] for i in order], name="model"))
    out["Df"] = out["Df"].astype("Int64")
    out.attrs["note"] = note
    out.attrs["formulas"] = {names[i]: fits[i].model.design.formula.text for i in order}
    out.attrs["method"] = "ML" if refit or not fits[0].reml else "REML"
    if nboot is not None:
        seed = resolve_seed(seed)
        info = {"seed": seed, "nsim": nboot, "usable": {}, "positive": {}, "lrt": {}}
        p_boot = [np.nan]
        for row, (a, b) in enumerate(zip(order[:-1], order[1:]), start=1):
            stats = _pb_statistics(fits[a], fits[b], nboot, seed, progress)
            usable = stats[np.isfinite(stats)]
            positive = usable[usable > PB_ZERO]
            p_boot.append((1.0 + np.sum(positive > out["Chisq"].iloc[row])) / (1.0 + positive.size))
            nm = names[b]
            info["usable"][nm] = int(usable.size)
            info["positive"][nm] = int(positive.size)
            info["lrt"][nm] = tuple(float(v) for v in stats)
        out["p_boot"] = p_boot
        out.attrs["bootstrap"] = info
    return out


# LRT* within this of 0 counts as 0 in the bootstrap p-value: refits of both models that end
# at the same boundary optimum differ by rounding only (lme4's: ±1e-13 to ±1e-7)
PB_ZERO = 1e-6


def _formula_names(results) -> list[str]:
    """Each model's formula text; a repeated formula gets " [i]" (its position) appended."""
    texts = [r.model.design.formula.text for r in results]
    return [t if texts.count(t) == 1 else f"{t} [{i + 1}]" for i, t in enumerate(texts)]


def _check_nboot(bootstrap) -> int | None:
    if bootstrap is None:
        return None
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 1:
        raise ValueError(f"bootstrap must be a positive number of replicates or None, got {bootstrap!r}")
    return int(bootstrap)


def _pb_statistics(small: LMMResult, large: LMMResult, nsim: int, seed: int, progress: bool) -> np.ndarray:
    """LRT* = 2 (logLik(large*) - logLik(small*)) of ``nsim`` responses simulated from the ML
    fit ``small``, with both models refitted by ML from their fitted θ (NaN where a refit
    did not converge)."""
    ys = np.asarray(simulate(small, nsim, seed)).T
    kw = {"reml": False, "progress": progress}
    null = small.model.fit_many(ys, theta0=small.theta, **kw)
    alt = large.model.fit_many(ys, theta0=large.theta, **kw)
    stats = null["objective"].to_numpy() - alt["objective"].to_numpy()
    ok = null["converged"].to_numpy(bool) & alt["converged"].to_numpy(bool)
    return np.where(ok, stats, np.nan)


# ---------------------------------------------------------------------------------------
# Variance parameters on the sd/cor scale (lme4's .sig01, ... / sd_x|g, cor_x.y|g)
# ---------------------------------------------------------------------------------------
def varpar_names(res: LMMResult) -> list[str]:
    """Names of the SD/correlation parameters in θ's order, then ``sigma``.

    lme4's ``oldNames = FALSE`` form (``sd_Days|Subject``), with each term's label from
    ``results.group_labels`` (``sd_Days|Subject.1`` for a factor's second term, where lme4
    repeats ``Subject``); the bootstrap's columns use the same names.
    """
    out = []
    for t, tl, label in zip(res.model.design.terms, res.model.layout.terms, res.group_labels):
        out += [varpar_name(label, t.columns, i, j) for i, j in tl.theta_index]
    out.append("sigma")
    return out


def _profile_program(psi0, kinds, lb, k, value, c, bvalue, use_beta, struct, options):
    """Minimize the ML deviance over ψ (SDs, atanh(correlations), log σ) with, optionally,
    φ_k fixed at ``value`` (k = -1: none) and the contrast c'β̃ of the structure's (centred)
    fixed effects fixed at ``bvalue`` (``use_beta``); the other directions of β̃ are
    profiled out analytically.  One compiled program serves every profile."""

    def fun(psi, struct):
        phi = psi_to_phi(psi, kinds)
        phi = jnp.where(jnp.arange(phi.shape[0]) == k, value, phi)
        theta, sigma = theta_from_vc(phi[:-1], phi[-1], struct.layout)
        ldL2, _, pwrss, RX, beta = _pieces(theta, struct)
        RXinv = jax.scipy.linalg.solve_triangular(RX, jnp.eye(RX.shape[0], dtype=RX.dtype), lower=True)
        acc = jnp.sum((RXinv @ c) ** 2)  # c'(RX RX')⁻¹c: min of the quadratic form with c'β fixed
        r2 = pwrss + jnp.where(use_beta, (bvalue - c @ beta) ** 2 / acc, 0.0)
        return ldL2 + struct.nobs * (_LOG2PI + 2.0 * jnp.log(sigma)) + r2 / sigma**2 - struct.log_det_w

    return newton_minimize(fun, psi0, lb, (struct,), options)


_profile_jit = jax.jit(_profile_program, static_argnames=("options",))


class _Profiler:
    """Profiled ML deviance for one model (lme4's profile(), as used by confint)."""

    def __init__(self, res: LMMResult):
        ml = res if not res.reml else res.model.fit(reml=False, theta0=res.theta, warn=False)
        if ml.model.design.p == 0:
            raise ValueError("profiling needs at least one fixed effect")
        self.ml = ml
        self.struct = res.model.structure
        self.centering = res.model.centering
        self.T = self.centering.T
        self.kinds = phi_kinds(res.model.layout)
        self.jkinds = jnp.asarray(self.kinds)
        self.lb = jnp.asarray(np.where(self.kinds == 0, 0.0, -np.inf))
        self.options = NewtonOptions(gtol=1e-7, maxiter=200)
        phi0 = np.append(vc_values(res.model.layout, ml.theta, ml.sigma, undefined=0.0), ml.sigma)
        # polish the optimum in ψ (same program, nothing fixed): D̂ and the Hessian for step sizes
        st = self._run(phi_to_psi(phi0, self.kinds), -1, 0.0, 0, 0.0, False)
        self.psi_hat = np.asarray(st.x)
        self.phi_hat = np.asarray(psi_to_phi(st.x, self.jkinds))
        self.dev_hat = min(float(st.f), float(ml.objective))
        H = np.asarray(st.H)
        try:
            se_psi = np.sqrt(np.abs(np.diag(2.0 * np.linalg.inv(H))))
        except np.linalg.LinAlgError:
            se_psi = np.full(len(self.phi_hat), np.nan)
        dphi = np.where(self.kinds == 1, 1.0 - self.phi_hat**2, np.where(self.kinds == 2, self.phi_hat, 1.0))
        self.se_phi = se_psi * dphi
        self.beta_hat = ml.fixef.to_numpy()
        self.se_beta = ml.stderr.to_numpy()

    def _run(self, psi0, k, value, j, bvalue, use_beta):
        # β_j = T[j]·β̃ + shift: fix that contrast of the structure's centred β̃
        c = self.T[j]
        shift = self.centering.y_shift if j == self.centering.intercept else 0.0
        return _profile_jit(
            jnp.asarray(psi0),
            self.jkinds,
            self.lb,
            k,
            float(value),
            jnp.asarray(c),
            float(bvalue) - shift,
            bool(use_beta),
            self.struct,
            options=self.options,
        )

    def dev_varpar(self, k: int, value: float) -> float:
        return float(self._run(self.psi_hat, k, value, 0, 0.0, False).f)

    def dev_beta(self, j: int, value: float) -> float:
        return float(self._run(self.psi_hat, -1, 0.0, j, value, True).f)

    def interval(self, devfun, center: float, step: float, lo_bound: float, hi_bound: float, z: float):
        """:func:`profile_interval` of this model's profiled deviance."""
        return profile_interval(devfun, self.dev_hat, center, step, lo_bound, hi_bound, z)


def profile_interval(devfun, dev_hat: float, center: float, step: float, lo_bound: float, hi_bound: float, z: float):
    """Where the signed root deviance ζ(v) = sign(v - v̂) √(D(v) - D̂) crosses -z and +z.

    Brackets each crossing by steps growing from ``z·step`` away from the estimate, then
    refines it with Brent's method; a bound is returned where the profile does not reach
    ±z before it (lme4 reports the bound likewise, e.g. 0 for an SD).

    Args:
        devfun: the profiled deviance D(v), all other parameters re-optimized.
        dev_hat: the deviance at the optimum, D̂.
        center: the estimate v̂.
        step: the scale of the first bracketing step (e.g. the Wald SE).
        lo_bound, hi_bound: the parameter's range.
        z: the normal quantile of the level.

    Returns:
        (lower, upper).
    """
    from scipy import optimize as sopt

    if not np.isfinite(step) or step <= 0:
        step = max(abs(center), 1.0) * 0.1
    out = []
    for sgn, bound in ((-1.0, lo_bound), (1.0, hi_bound)):
        target = sgn * z

        def g(v, target=target):
            return float(np.sign(v - center) * np.sqrt(max(devfun(v) - dev_hat, 0.0))) - target

        a, mult, found = center, 1.0, None
        for _ in range(60):
            b = center + sgn * mult * z * step
            if (sgn < 0 and b <= bound) or (sgn > 0 and b >= bound):
                b = bound
            gb = g(b)
            if not np.isfinite(gb):
                break
            if sgn * gb >= 0:
                found = b
                break
            if b == bound:
                break
            a, mult = b, mult * 1.6
        if found is None:
            out.append(bound)
            continue
        out.append(sopt.brentq(g, a, found, xtol=1e-10 * max(1.0, abs(center)), rtol=1e-10))
    return out[0], out[1]


@x64
def confint(
    res: LMMResult,
    method: str = "profile",
    level: float = 0.95,
    parm: Sequence[str] | None = None,
    *,
    nsim: int = 500,
    seed: int = 0,
) -> pd.DataFrame:
    """Confidence intervals (lme4's ``confint.merMod``): rows for the random-effect SDs and
    correlations (``sd_x|g``, ``cor_x.y|g``), ``sigma``, then the fixed effects; columns
    ``lower, upper``.

    * "profile": invert the profiled ML deviance, ζ(v) = sign(v - v̂) √(D(v) - D̂) = ±z, with
      all other parameters re-optimized (as lme4, the ML deviance is profiled also for REML fits).
    * "wald": β̂ ± z·se for the fixed effects (the fit's vcov); NaN for the variance
      parameters, as in lme4.
    * "boot": percentile intervals from the parametric bootstrap ``res.bootstrap(nsim, seed=seed)``
      (refits by the fit's criterion, REML or ML).
    ``parm`` restricts the rows (names as in the index).
    """
    vnames = varpar_names(res)
    xnames = list(res.model.design.xnames)
    allnames = vnames + xnames
    m, wanted, z = interval_request(method, level, allnames, parm)
    lower = pd.Series(np.nan, index=allnames)
    upper = pd.Series(np.nan, index=allnames)
    if m == "wald":
        est, se = res.fixef.to_numpy(), res.stderr.to_numpy()
        lower[xnames] = est - z * se
        upper[xnames] = est + z * se
    elif m == "profile":
        prof = _Profiler(res)
        kinds = prof.kinds
        for k, name in enumerate(vnames):
            if name not in wanted:
                continue
            lo_b, hi_b = {0: (0.0, np.inf), 1: (-COR_MAX, COR_MAX), 2: (1e-12, np.inf)}[int(kinds[k])]
            lo, hi = prof.interval(lambda v, k=k: prof.dev_varpar(k, v), prof.phi_hat[k], prof.se_phi[k], lo_b, hi_b, z)
            if kinds[k] == 1:  # report the bound itself when the profile never reaches ±z
                lo = -1.0 if lo == -COR_MAX else lo
                hi = 1.0 if hi == COR_MAX else hi
            lower[name], upper[name] = lo, hi
        for j, name in enumerate(xnames):
            if name not in wanted:
                continue
            lo, hi = prof.interval(
                lambda v, j=j: prof.dev_beta(j, v), prof.beta_hat[j], prof.se_beta[j], -np.inf, np.inf, z
            )
            lower[name], upper[name] = lo, hi
    else:
        boot = res.bootstrap(nsim, seed=seed, progress=False)
        ci = boot.ci(level, method="percentile")
        # the bootstrap's table names its columns as varpar_names does (params.varpar_name)
        for name in allnames:
            if name in ci.index:
                lower[name] = float(ci.loc[name, "lower"])
                upper[name] = float(ci.loc[name, "upper"])
    return interval_frame(lower, upper, wanted, m, level)


def interval_request(method: str, level: float, allnames: list[str], parm) -> tuple[str, list[str], float]:
    """Check a ``confint`` call (linear or generalized model) and say what it asks for.

    Args:
        method: one of :data:`CI_METHODS` (any case).
        level: coverage, in (0, 1).
        allnames: every row the model's table can have, in order.
        parm: a name, a list of names, or None for all.

    Returns:
        (method in lower case, the wanted rows in table order, the normal quantile z).
    """
    from scipy import special

    m = str(method).lower()
    if m not in CI_METHODS:
        raise ValueError(f"unknown method {method!r}: use one of {', '.join(map(repr, CI_METHODS))}")
    check_level(level)
    if parm is None:
        wanted = list(allnames)
    else:
        parm = [parm] if isinstance(parm, str) else list(parm)
        unknown = [p for p in parm if p not in allnames]
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; available: {allnames}")
        wanted = [p for p in allnames if p in parm]
    return m, wanted, float(special.ndtri(0.5 + level / 2.0))


def interval_frame(lower: pd.Series, upper: pd.Series, wanted: list[str], method: str, level: float) -> pd.DataFrame:
    """``confint``'s table: the ``wanted`` rows of ``lower`` and ``upper``, with the method,
    level and R's percentile column labels in ``attrs``."""
    out = pd.DataFrame({"lower": lower, "upper": upper}).loc[wanted]
    out.attrs["method"] = method
    out.attrs["level"] = level
    out.attrs["percentiles"] = [f"{100 * (0.5 - level / 2):.3g} %", f"{100 * (0.5 + level / 2):.3g} %"]
    return out
