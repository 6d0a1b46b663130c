"""The LMM model object: formula + data -> structure (built once) -> fits.

``LMM`` owns the validated design and the blocked cross-products; ``fit`` runs the
jit-compiled optimizer and wraps the answer in an ``LMMResult``.  Compiled programs are
cached per (layout, REML/ML, options) so refits and same-shaped models skip compilation.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import messages
from ._config import x64
from .boundary import boundary_escape, degenerate_fit, zero_columns
from .centering import center_design
from .compiled import compile_program, compile_program_async, enable_compilation_cache
from .dask_frames import dask_crossproducts, is_dask_frame
from .design import DataError, build_design
from .inference import prefetch_satterthwaite
from .multi import fit_many
from .objective import (
    objective,
    objective_gradient,
    objective_pieces,
    program_flags,
    program_objective,
    reml_flag,
    solve_effects,
    uses_analytic_gradient,
)
from .optimizer import BFGS_MIN_SIZE, BFGS_MIN_THETA, MAXITER, STATUS, NewtonOptions, Status, newton_minimize
from .params import crossproducts_start, moment_start, theta_scale
from .parquet import BATCH_SIZE, parquet_crossproducts
from .partitions import finalize
from .results import LMMResult, OptSummary
from .structure import Padded, Structure, build_structure, is_small, pad_structure, response_crossprods, weighted_rows

__all__ = ["LMM", "lmm", "fit_program", "fit_program_async"]

#: The Newton finish after BFGS keeps its forward-difference Hessian over steps no longer
#: than this in θ̃ (unit-scale θ; ``NewtonOptions.fd_refresh``): from BFGS's point one
#: Hessian serves the finish, k + 1 gradients instead of k + 1 per step.
POLISH_FD_REFRESH = 1e-2


def _fit_program(
    theta0: jax.Array, scale: jax.Array, struct: Structure, reml: jax.Array, free: jax.Array, options: NewtonOptions
):
    """Optimize over θ̃ = θ / scale (so every Z column has unit RMS), return θ-space state.

    ``reml``: the criterion as data (:func:`jaxlme.objective.reml_flag`).  ``free``: 1.0
    at the θ entries the model has, 0.0 at those a padded structure adds
    (:func:`jaxlme.structure.pad_structure`).  Those are held at 0: the criterion is
    evaluated at θ·free, plus ½θ̃² on them (0 at 0, with gradient 0 and unit curvature,
    so no step moves them)."""
    lb = jnp.asarray(struct.layout.theta_lower)
    pin = 1.0 - free

    def fun(theta_tilde, s):
        return program_objective(theta_tilde * scale * free, s, reml) + 0.5 * jnp.sum(pin * theta_tilde**2)

    split = None
    if options.hessian == "bfgs" and uses_analytic_gradient(struct.layout):
        # the gradient at the line search's accepted point reuses its factorization
        def value_pieces(theta_tilde, s):
            value, pieces = objective_pieces(theta_tilde * scale * free, s, reml)
            return value + 0.5 * jnp.sum(pin * theta_tilde**2), pieces

        def gradient(theta_tilde, pieces, s):
            g = objective_gradient(theta_tilde * scale * free, s, pieces, reml)
            return g * scale * free + pin * theta_tilde

        split = (value_pieces, gradient)
    state = newton_minimize(fun, theta0 / scale, lb, (struct,), options, split=split)
    effects = solve_effects(state.x * scale * free, struct, reml)
    return state._replace(x=state.x * scale), effects  # g stays in θ̃ units (as tested)


class _PaddedFit:
    """The compiled fit as a function of the model's (θ0, scale, struct): θ placed in the
    program's θ, the structure padded (:func:`jaxlme.structure.pad_structure`; a refit's
    structure, another response, is padded on its first call), the criterion's flag
    bound, and the state and effects cut back to the model's."""

    def __init__(self, compiled, struct: Structure, padded: Padded, flag: jax.Array, free: jax.Array):
        self.compiled, self.flag, self.padded, self.free = compiled, flag, padded, free
        self._last = (struct, padded)  # keeps struct alive, so its id stays its own

    def __call__(self, theta0, scale, struct):
        pad = self.padded
        if pad.struct is struct:  # nothing padded
            return self.compiled(theta0, scale, struct, self.flag, self.free)
        if self._last[0] is not struct:
            self._last = (struct, pad_structure(struct))
        args = jax.device_put((pad.theta_in(theta0), pad.theta_in(scale, fill=1.0)))
        state, effects = jax.device_get(self.compiled(*args, self._last[1].struct, self.flag, self.free))
        idx, p = pad.theta, pad.p
        state = state._replace(x=state.x[idx], g=state.g[idx], H=state.H[np.ix_(idx, idx)], d=state.d[idx])
        b, u = pad.per_term(effects.b), pad.per_term(effects.u)
        return state, effects._replace(beta=effects.beta[:p], RX=effects.RX[:p, :p], b=b, u=u)


def _fit_args(theta0, scale, struct: Structure, reml: bool):
    """The fit program's arguments (and the padding): the structure padded to its shape
    bucket and the criterion and the free θ entries as data, so models that differ only
    in n, in the criterion, or (small models) in their padded shapes share one program."""
    padded = pad_structure(struct)
    free = padded.free()
    args = (padded.theta_in(theta0), padded.theta_in(scale, fill=1.0), padded.struct, reml_flag(reml), free)
    host = [i for i, a in enumerate(args) if isinstance(a, np.ndarray)]
    put = dict(zip(host, jax.device_put([args[i] for i in host])))  # one batched call
    return tuple(put.get(i, a) for i, a in enumerate(args)), padded


def fit_program(theta0: jax.Array, scale: jax.Array, struct: Structure, reml: bool, options: NewtonOptions):
    """AOT-compiled fit for this layout (cached in memory and on disk; see :func:`_fit_args`
    for what models share it); returns (compiled, seconds to obtain it), the compiled
    program a function of (θ0, scale, struct) returning the optimizer state and effects."""
    args, padded = _fit_args(theta0, scale, struct, reml)
    flags = program_flags(padded.struct.layout)
    compiled, seconds = compile_program("fit", _fit_program, args, {"options": options}, **flags)
    return _PaddedFit(compiled, struct, padded, args[3], args[4]), seconds


def fit_program_async(theta0: jax.Array, scale: jax.Array, struct: Structure, reml: bool, options: NewtonOptions):
    """:func:`fit_program` with XLA's compile on a background thread (one code-generation
    thread): returns at once a function that waits for the compiled program."""
    args, padded = _fit_args(theta0, scale, struct, reml)
    flags = program_flags(padded.struct.layout)
    wait = compile_program_async("fit", _fit_program, args, {"options": options}, threads=1, **flags)
    return lambda: _PaddedFit(wait(), struct, padded, args[3], args[4])


class LMM:
    """A linear mixed model: formula and data, with the structure built once.

    >>> model = LMM("Reaction ~ Days + (Days | Subject)", data)   # doctest: +SKIP
    >>> res = model.fit(reml=True)                                # doctest: +SKIP
    """

    @x64
    def __init__(self, formula: str, data: pd.DataFrame, *, weights=None, warn: bool = True) -> None:
        """Validate the data and build the cross-products.

        Args:
            formula: lme4-style formula, e.g. ``"y ~ x + (x | g)"``.
            data: DataFrame (or dict of columns); or, for data larger than memory, a
                ``dask.dataframe.DataFrame`` or Parquet files (a path, glob such as
                ``"data/*.parquet"``, or directory), fitted from summed cross-products
                (see :meth:`from_crossproducts`).
            weights: Prior weights, lme4's ``weights``: a column name of ``data`` or an
                array-like with one value > 0 per row of ``data`` (before rows with missing
                values are dropped).  Row i's residual variance is σ²/wᵢ.
            warn: Warn about dropped rows and aliased columns.
        """
        if _partitioned(data):  # a Parquet path/glob or a Dask DataFrame: two passes, summed
            self.__dict__.update(_from_partitioned(formula, data, weights, warn).__dict__)
            return
        enable_compilation_cache()
        t0 = time.perf_counter()
        self.formula = formula
        self.design = build_design(formula, data, warn=warn, weights=weights)
        n_data = self.design.n + self.design.n_dropped  # dict data: positions are the row labels
        self._data_index = data.index if isinstance(data, pd.DataFrame) else pd.RangeIndex(n_data)
        self.data = data  # as given (not copied): emmeans' reference grid reads its covariates
        # cross-products of the centred [X y] (see jaxlme.centering): exact, better conditioned
        centred, self.centering = center_design(self.design)
        self.structure, self.obs = build_structure(centred)
        jax.block_until_ready(self.structure)
        self.setup_seconds = time.perf_counter() - t0
        self._prefetched: set[bool] = set()  # REML/ML Satterthwaite programs prefetched
        self.layout = self.structure.layout
        self.theta_scale = theta_scale([np.sum(t.Z**2, axis=0) for t in self.design.terms], self.nobs, self.layout)
        self._start_theta: np.ndarray | None = None

    @classmethod
    @x64
    def from_crossproducts(cls, plan, total, *, warn: bool = True) -> LMM:
        """A model from the summed cross-products of a partitioned data set.

        Args:
            plan: the :class:`jaxlme.partitions.PartitionPlan` every partition used.
            total: the sum of the partitions' :meth:`~jaxlme.partitions.PartitionPlan.crossproducts`.
            warn: Warn about dropped rows and aliased columns.

        Returns:
            An :class:`LMM` that fits, infers, reports and bootstraps (responses' cross-
            products drawn without rows) as the in-memory one; what reads the rows
            (fitted values, residuals, ``simulate``, Kenward-Roger) raises, saying so (see
            :func:`jaxlme.partitions.fitted_values`).
        """

        enable_compilation_cache()
        t0 = time.perf_counter()
        design, cp, centering = finalize(plan, total, warn)
        self = cls.__new__(cls)
        self.formula = plan.parsed.text
        self.design, self.centering, self.plan = design, centering, plan
        self._data_index = pd.RangeIndex(0)
        self.data = None
        self.structure, self.obs = cp.structure(), None
        jax.block_until_ready(self.structure)
        self.setup_seconds = time.perf_counter() - t0
        self._prefetched = set()
        self.layout = self.structure.layout
        self.theta_scale = theta_scale(cp.zz, cp.n, self.layout)
        self._start_theta = crossproducts_start(cp, self.layout, self.theta_scale)
        self._spread = float(np.sqrt(max(cp.ry[-1], 0.0) / cp.n)) if centering.active else None
        return self

    @classmethod
    def from_parquet(
        cls,
        formula: str,
        source,
        *,
        weights: str | None = None,
        batch_size: int | None = None,
        progress: bool = False,
        warn: bool = True,
    ) -> LMM:
        """A model of Parquet files streamed in record batches (bounded memory).

        Args:
            formula: lme4-style formula.
            source: a Parquet path, a glob (``"data/*.parquet"``), a directory or a list of paths.
            weights: the prior weights' column name, or None.
            batch_size: rows per record batch (default ``jaxlme.parquet.BATCH_SIZE``).
            progress: Print one line per pass to stderr.
            warn: Warn about dropped rows and aliased columns.

        Returns:
            The :class:`LMM`; ``pass_seconds`` holds each pass's time.
        """

        plan, total, secs = parquet_crossproducts(
            formula, source, weights=weights, batch_size=batch_size or BATCH_SIZE, progress=progress
        )
        model = cls.from_crossproducts(plan, total, warn=warn)
        model.pass_seconds = secs
        return model

    @classmethod
    def from_dask(
        cls, formula: str, ddf, *, weights: str | None = None, progress: bool = False, warn: bool = True
    ) -> LMM:
        """A model of a ``dask.dataframe.DataFrame``: levels, then cross-products, each a
        map over the partitions and a tree reduction on the cluster.

        Args:
            formula: lme4-style formula.
            ddf: the Dask DataFrame.
            weights: the prior weights' column name, or None.
            progress: Show Dask's progress bar for each pass.
            warn: Warn about dropped rows and aliased columns.

        Returns:
            The :class:`LMM`; ``pass_seconds`` holds each pass's time.
        """

        plan, total, secs = dask_crossproducts(formula, ddf, weights=weights, progress=progress)
        model = cls.from_crossproducts(plan, total, warn=warn)
        model.pass_seconds = secs
        return model

    def _rows_needed(self, what: str) -> None:
        if not self.design.has_rows:
            raise ValueError(
                f"{what} needs the data rows, which a model fitted from summed cross-products does not keep: "
                "fit the rows in memory (or use jaxlme.partitions.fitted_values per partition)"
            )

    # -- basic facts -------------------------------------------------------------------
    @property
    def nobs(self) -> int:
        return self.design.n

    @property
    def ntheta(self) -> int:
        return self.layout.ntheta

    @property
    def weights(self) -> np.ndarray | None:
        """Prior weights of the rows used (None for an unweighted model)."""
        return self.design.weights

    def __repr__(self) -> str:
        groups = ", ".join(f"{t.name}: {t.nlevels}" for t in self.layout.terms)
        return f"LMM({self.design.formula.text!r}, nobs={self.nobs}, groups={{{groups}}})"

    # -- objective ----------------------------------------------------------------------
    @x64
    def objective(self, theta, reml: bool = True) -> float:
        """REML criterion or ML deviance at θ (lme4's scale)."""
        theta = np.asarray(theta, dtype=float).reshape(-1)
        if theta.shape[0] != self.ntheta:
            raise ValueError(f"theta must have {self.ntheta} elements, got {theta.shape[0]}")
        return self._criterion(self.structure, reml)(theta)

    def objective_function(self, reml: bool = True):
        """A pure jitted function θ -> criterion for use with jax.grad/jax.hessian.

        Call it with float64 enabled (``with jax.enable_x64(True):``); a float32 θ (x64 off,
        or float32 values inside your trace) raises a TypeError instead of computing the
        criterion in float32. For derivatives with respect to the data, use :mod:`jaxlme.diff`.
        """
        struct = self.structure

        def f(theta):
            theta = jnp.asarray(theta)
            if theta.dtype != jnp.float64:  # never truncate the statistics to float32 silently
                raise TypeError(
                    f"LMM.objective_function computes in float64 but got {theta.dtype} θ: wrap the code in "
                    '`with jax.enable_x64(True):` or run `jax.config.update("jax_enable_x64", True)`'
                )
            return _objective_jit(theta, struct, reml)

        return f

    # -- fitting ------------------------------------------------------------------------
    @x64
    def fit(
        self,
        reml: bool = True,
        *,
        theta0=None,
        gtol: float = 1e-6,
        maxiter: int = MAXITER,
        optimizer: str = "auto",
        warn: bool = True,
    ) -> LMMResult:
        """Fit by REML (default) or ML; ``theta0`` warm-starts the optimizer.

        ``optimizer``: "newton" (autodiff Hessian: fewest iterations), "bfgs" (gradients
        only: cheaper iterations when the dense crossed block is large or θ has many
        components) or "auto", which picks BFGS once the rest block has ``BFGS_MIN_SIZE``
        rows or θ has ``BFGS_MIN_THETA`` components; on a small rest block BFGS is finished
        by Newton steps.
        """
        options = NewtonOptions(gtol=gtol, maxiter=maxiter, hessian=self._hessian_method(optimizer))
        return self._fit(self.structure, reml, theta0, options, warn)

    def _hessian_method(self, optimizer: str) -> str:
        if optimizer not in ("auto", "newton", "bfgs"):
            raise ValueError(f"optimizer must be 'auto', 'newton' or 'bfgs', got {optimizer!r}")
        if optimizer == "auto":
            lay = self.layout
            return "bfgs" if lay.size_rest >= BFGS_MIN_SIZE or lay.ntheta >= BFGS_MIN_THETA else "exact"
        return "exact" if optimizer == "newton" else "bfgs"

    @x64
    def refit(self, y, reml: bool = True, *, theta0=None, warn: bool = True) -> LMMResult:
        """Fit the same model to a new response vector (same rows, same structure; the
        formula's offset, if any, is subtracted from it as from the original response)."""
        self._rows_needed("refit")
        y = np.asarray(y, dtype=float).reshape(-1)
        if y.shape[0] != self.nobs:
            raise ValueError(f"new response has {y.shape[0]} values, the model has {self.nobs} rows")
        if not np.all(np.isfinite(y)):
            raise ValueError("new response contains non-finite values")
        if self.design.offset is not None:  # y is a response like simulate()'s, offset included
            y = y - self.design.offset
        yc = y - self.centering.y_shift  # the cross-products are those of the centred response
        yw = yc if self.design.weights is None else yc * np.sqrt(self.design.weights)  # obs rows carry √w
        zy1, ry = response_crossprods(self.layout, self.obs, jnp.asarray(yw))
        struct = self.structure.with_response(zy1, ry)
        return self._fit(struct, reml, theta0, self._refit_options(), warn, y=y)  # warns at the caller

    def fit_many(
        self,
        Y,
        reml: bool = True,
        *,
        theta0=None,
        chunk_size: int | None = None,
        devices=None,
        progress: bool = False,
        gtol: float = 1e-6,
        maxiter: int = MAXITER,
    ) -> pd.DataFrame:
        """Fit this model's design to many responses at once (genes, voxels, items).

        Each column of ``Y`` is fitted as :meth:`refit` would fit it (same criterion,
        same optimum to the optimizer's tolerance), but the fits run as batches of vmapped
        optimizer lanes on the device (the bootstrap's machinery), which is much faster
        than a loop.  Responses whose lane does not converge are refitted one by one.

        Rows: ``Y`` has the model's ``nobs`` rows (in the model's row order), or, when the
        data had rows dropped for missing values, one row per row of the original data, of
        which the model's rows are used.  A pandas ``Y`` must carry the data's index (or
        the model's row labels) so that misaligned rows raise instead of fitting silently.

        Args:
            Y: (n × m) array or DataFrame of responses (a 1-D array is one response); the
                formula's offset, if any, is subtracted as in :meth:`refit`.
            reml: REML (default) or maximum likelihood.
            theta0: Starting θ for every response (default: the core fit's start).
            chunk_size: Lanes refitted at a time (default from the model's size).
            devices: JAX devices that share each chunk (default: all).
            progress: Show a progress bar on runs longer than ~2 s.
            gtol: Projected-gradient tolerance for convergence.
            maxiter: Iteration cap per response.

        Returns:
            A DataFrame with one row per response (index: ``Y``'s column names or 0..m-1):
            the fixed effects, the random-effect SDs and correlations (named as
            :func:`jaxlme.inference.varpar_names`), ``sigma``, ``objective`` (REML criterion
            or ML deviance), ``converged``, ``status`` and ``iterations``.
        """

        self._rows_needed("fit_many")
        return fit_many(
            self,
            Y,
            reml,
            theta0=theta0,
            chunk_size=chunk_size,
            devices=devices,
            progress=progress,
            gtol=gtol,
            maxiter=maxiter,
        )

    def _refit_options(self, maxiter: int = MAXITER) -> NewtonOptions:
        return NewtonOptions(hessian=self._hessian_method("auto"), maxiter=int(maxiter))

    @x64
    def _refit_structure(self, struct: Structure, reml: bool, theta0, maxiter: int = MAXITER) -> LMMResult:
        """Fit a response given by its cross-products (``struct``: ``self.structure`` with
        another ``zy1``, ``ry``), without warnings; the result's ``y`` is not that response,
        so only θ, β, σ and the criterion are meaningful (the bootstrap's follow-up)."""
        return self._fit(struct, reml, theta0, self._refit_options(maxiter), False)

    def initial_theta(self, y=None) -> np.ndarray:
        """θ the optimizer starts from when not given (see :func:`moment_start`), for the
        model's response (computed once) or another response ``y``."""
        if y is None and self._start_theta is not None:
            return self._start_theta
        w = self.design.weights  # moments of the √w-scaled rows, whose residual variance is σ²
        design = weighted_rows(self.design)
        if y is not None:
            return moment_start(design, self.layout, self.theta_scale, y if w is None else y * np.sqrt(w))
        self._start_theta = moment_start(design, self.layout, self.theta_scale, design.y)
        return self._start_theta

    def _snap_to_bounds(self, theta: np.ndarray, rel: float = 0.1) -> np.ndarray | None:
        """θ with the diagonal entries of Λ that are near 0 (below ``rel`` in the optimizer's
        unit scale) set to 0, or None when there are none.  Newton approaches an optimum on
        the bound slowly where the criterion flattens; restarted on the bound it converges
        in the free directions (MixedModels.jl likewise tries small θ at 0)."""
        near = (self.layout.theta_lower == 0.0) & (theta > 0.0) & (theta < rel * self.theta_scale)
        if not near.any():
            return None
        out = theta.copy()
        out[near] = 0.0
        return out

    def _criterion(self, struct: Structure, reml: bool):
        """θ (host array) -> REML criterion or ML deviance of ``struct`` (this model's
        structure or a replicate's), for :meth:`objective` and checks outside the compiled
        fit (one compiled program for both).  Evaluated on the
        structure padded as the fit's (:func:`_fit_args`) with the criterion as data, so the
        models that share a fit program share this program too."""
        padded = pad_structure(struct)
        flag = reml_flag(reml)
        program = []

        def criterion(theta) -> float:
            args = (jax.device_put(padded.theta_in(np.asarray(theta, dtype=float))), padded.struct, flag)
            if not program:
                program.append(compile_program("criterion", objective, args, small=is_small(padded.struct.layout))[0])
            return float(program[0](*args))

        return criterion

    def _leave_boundary(self, state, effects, compiled, scale, struct, reml, single: bool, max_restarts: int = 3):
        """Restart from :func:`boundary.boundary_escape`'s point while the converged θ has a
        zero diagonal in a vector-valued term that is not a local minimum (the bounded
        Cholesky parametrization's spurious optima), or with ``single`` (after BFGS, which
        has no curvature to see it) a zero scalar θ that is a saddle.  Returns the best
        (state, effects), the number of restarts, and whether an escape was still open
        after the last one."""
        if not zero_columns(np.asarray(state.x), self.layout, single):
            return state, effects, 0, False
        criterion = self._criterion(struct, reml)
        for restarts in range(max_restarts + 1):
            escape = boundary_escape(np.asarray(state.x), self.layout, criterion, self.theta_scale, single=single)
            if escape is None:
                return state, effects, restarts, False
            if restarts == max_restarts:
                break
            current, current_effects = jax.device_get(compiled(jax.device_put(escape[0]), scale, struct))
            if not float(current.f) < float(state.f):  # cannot happen with a descent method; be safe
                break
            state, effects = _continued(current, state), current_effects
        return state, effects, restarts, True

    def _fit(self, struct, reml, theta0, options, warn, y=None) -> LMMResult:
        lay = self.layout
        # BFGS, which starts without curvature, pays for a distant start in evaluations;
        # Newton converges in a few steps from Λ = I and keeps lme4's start
        start = self.initial_theta(y) if options.hessian == "bfgs" else lay.theta_start * self.theta_scale
        theta_init = np.asarray(start if theta0 is None else theta0, dtype=float).reshape(-1)
        if theta_init.shape[0] != lay.ntheta:
            raise ValueError(f"theta0 must have {lay.ntheta} elements, got {theta_init.shape[0]}")
        theta_init = np.maximum(theta_init, lay.theta_lower)
        theta_dev = jax.device_put(theta_init)  # device_put, unlike jnp.asarray, compiles nothing
        scale = jax.device_put(self.theta_scale)
        # BFGS can stall in the objective's rounding noise with the gradient still above its
        # floor: finish with Newton from where it stopped, usually a step or two, and keep
        # the better answer.  Its Hessian: forward differences of the exact gradient, one
        # gradient after another (cheaper than the autodiff Hessian with many θ), kept for
        # the short steps near the optimum (``fd_refresh``).  On a small rest block that
        # finish always runs: its program compiles beside BFGS's.
        small = lay.size_rest < BFGS_MIN_SIZE  # Newton's Hessian is affordable for a few steps
        newton = options._replace(hessian="fd", maxiter=min(options.maxiter, 10), fd_refresh=POLISH_FD_REFRESH)
        t_async = time.perf_counter()
        newton_job = None
        if options.hessian == "bfgs" and small:
            newton_job = fit_program_async(theta_dev, scale, struct, reml, newton)
        compile_s = time.perf_counter() - t_async
        compiled, main_compile_s = fit_program(theta_dev, scale, struct, reml, options)
        compile_s += main_compile_s
        if reml not in self._prefetched:  # for a summary after the fit, while it runs
            self._prefetched.add(reml)
            prefetch_satterthwaite(struct, reml)
        t0 = time.perf_counter()
        state, effects = jax.device_get(compiled(theta_dev, scale, struct))
        polished = False
        if options.hessian == "bfgs" and (small or not Status(int(state.status)).converged):
            x_bfgs = jax.device_put(np.asarray(state.x))
            if newton_job is not None:
                t_wait = time.perf_counter()
                compiled_newton = newton_job()
                polish_compile_s = time.perf_counter() - t_wait
            else:
                compiled_newton, polish_compile_s = fit_program(x_bfgs, scale, struct, reml, newton)
            compile_s += polish_compile_s
            polish, polish_effects = jax.device_get(compiled_newton(x_bfgs, scale, struct))
            if Status(int(polish.status)).converged or float(polish.f) < float(state.f):
                state, effects, polished = _continued(polish, state), polish_effects, True
                if not Status(int(polish.status)).converged:
                    # Newton's few steps ran out while still descending (a flat ridge towards
                    # a singular optimum): BFGS goes on from the better point
                    x_polish = jax.device_put(np.asarray(state.x))
                    resumed, resumed_effects = jax.device_get(compiled(x_polish, scale, struct))
                    state, effects = _continued(resumed, state), resumed_effects
            t0 += polish_compile_s
        if int(state.status) == Status.MAX_ITERATIONS:  # the iteration cap, often while creeping towards a bound
            snapped = self._snap_to_bounds(np.asarray(state.x))
            if snapped is not None:
                cand, cand_effects = jax.device_get(compiled(jax.device_put(snapped), scale, struct))
                tol = 1e-10 * max(1.0, abs(float(state.f)))
                if Status(int(cand.status)).converged and float(cand.f) <= float(state.f) + tol:
                    state, effects = _continued(cand, state), cand_effects
        bfgs = options.hessian == "bfgs"  # no curvature seen at a zero scalar θ
        state, effects, escapes, trapped = self._leave_boundary(state, effects, compiled, scale, struct, reml, bfgs)
        fit_s = time.perf_counter() - t0
        lb = lay.theta_lower
        g = np.asarray(state.g)
        pg = np.where((np.asarray(state.x) <= lb) & (g > 0), 0.0, g)
        status = int(state.status)
        opt = OptSummary(
            optimizer=(
                "bounded Newton (autodiff Hessian)"
                if options.hessian != "bfgs"
                else "bounded quasi-Newton (BFGS, "
                + ("analytic" if uses_analytic_gradient(lay) else "autodiff")
                + " gradient)"
                + (", finished by Newton (Hessian from differences of the gradient)" if polished else "")
            ),
            theta_initial=theta_init,
            theta_final=np.asarray(state.x),
            objective=float(state.f),
            gradient_norm=float(np.max(np.abs(pg))) if pg.size else 0.0,
            iterations=int(state.it),
            evaluations=int(state.nfev),
            status="boundary point that is not a local minimum" if trapped else STATUS.get(status, str(status)),
            converged=Status(status).converged and not trapped,
            fit_seconds=fit_s,
            compile_seconds=compile_s,
            setup_seconds=self.setup_seconds,
            gtol=options.gtol,
            boundary_escapes=escapes,
            code=status,
        )
        if y is None and not self.design.has_rows:
            y_fit, spread = np.zeros(0), self._spread
        else:
            y_fit, spread = (self.design.y if y is None else y), None
        reason = degenerate_fit(float(effects.sigma), np.asarray(y_fit), spread)
        if reason is not None:  # not an optimum to report: say why instead of "converged"
            opt = dataclasses.replace(opt, status=f"degenerate fit: {reason}", converged=False)
        res = LMMResult(self, reml=bool(reml), opt=opt, effects=effects, y=y_fit)
        if warn:
            messages.fit_outcome(opt, res.singular, reason)
        return res


def _continued(after, before):
    """The optimizer state ``after`` of a run started where ``before`` ended, counting the
    iterations and evaluations of both."""
    return after._replace(it=after.it + before.it, nfev=after.nfev + before.nfev)


_objective_jit = jax.jit(objective, static_argnames=("reml",))


def _partitioned(data) -> bool:
    """Data given as Parquet files or a Dask DataFrame rather than rows in memory."""

    if isinstance(data, (str, os.PathLike)):
        return True
    if isinstance(data, (list, tuple)) and data and all(isinstance(d, (str, os.PathLike)) for d in data):
        return True
    return is_dask_frame(data)


def _from_partitioned(formula, data, weights, warn) -> LMM:

    if weights is not None and not isinstance(weights, str):
        raise DataError("weights of Parquet files or a Dask DataFrame must be a column name")
    if is_dask_frame(data):
        return LMM.from_dask(formula, data, weights=weights, warn=warn)
    return LMM.from_parquet(formula, data, weights=weights, warn=warn)


def lmm(formula: str, data: pd.DataFrame, reml: bool = True, *, weights=None, **fit_kwargs) -> LMMResult:
    """Fit a linear mixed model in one call: ``lmm("y ~ x + (x | g)", df)``.

    Args:
        formula: lme4-style formula.
        data: DataFrame (or dict of columns), a ``dask.dataframe.DataFrame``, or Parquet
            files (path, glob or directory) streamed in batches; see :class:`LMM`.
        reml: REML (default) or maximum likelihood.
        weights: Prior weights (lme4's ``weights``): a column name or an array-like, one
            value > 0 per data row; see :class:`LMM`.
        **fit_kwargs: Passed to :meth:`LMM.fit`.

    Returns:
        The fitted :class:`LMMResult`.
    """
    return LMM(formula, data, weights=weights).fit(reml=reml, **fit_kwargs)
