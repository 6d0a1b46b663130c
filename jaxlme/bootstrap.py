"""Parametric bootstrap: simulate from a fitted model, refit every replicate, summarize.

The responses come from :mod:`jaxlme.simulation` and are refitted by the device pool of
:mod:`jaxlme.pool`; :class:`BootstrapResult` holds the replicates' estimates with
percentile, basic and normal intervals.  Replicates whose response or objective goes
non-finite are flagged (status 5) and counted, never raise.  ``KeyboardInterrupt`` returns
the replicates finished so far.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import messages
from .compiled import enable_compilation_cache
from .optimizer import (
    MAXITER,
    STATUS,
)
from .params import vc_frame

if TYPE_CHECKING:  # pragma: no cover
    from .results import LMMResult

from .pool import refit_pool
from .simulation import DeviceSimulated, DrawnCrossProducts, resolve_seed

__all__ = ["BootstrapResult", "bootstrap"]


def bootstrap(
    result: LMMResult,
    n: int,
    seed: int | None = 0,
    *,
    chunk_size: int | None = None,
    devices=None,
    progress: bool = True,
    round_iters: int = 8,
    gtol: float = 1e-6,
    maxiter: int = MAXITER,
    memory_bytes: float = 1e9,
    _poison=(),
    _on_round=None,
    _lane_iters=None,
) -> BootstrapResult:
    """Parametric bootstrap of a fitted model: simulate ``n`` responses and refit each.

    Parameters: ``seed`` fixes the simulated responses independently of ``chunk_size`` and
    the devices (None: fresh entropy, recorded as the result's ``seed``); their refits agree
    across chunk sizes to the optimizer's tolerance (batched arithmetic rounds differently,
    so θ can differ by ~1e-4 along a flat direction); ``chunk_size`` lanes
    are refitted at a time (default from ``memory_bytes``); ``devices`` (default: all of
    JAX's devices) share each chunk; ``progress`` shows a tqdm bar on runs longer than
    ~2 s.  Refits start at the fitted θ and use the same criterion (REML or ML) as
    ``result``.
    """
    n = int(n)
    if n < 0:
        raise ValueError("n must be >= 0")
    seed = resolve_seed(seed)
    enable_compilation_cache()
    t_start = time.perf_counter()
    rows = result.model.design.has_rows  # else: fitted from summed cross-products
    pool = refit_pool(
        result.model,
        result.reml,
        n,
        DeviceSimulated(result, seed, _poison) if rows else DrawnCrossProducts(result, seed),
        np.asarray(result.theta, dtype=float),
        chunk_size=chunk_size,
        devices=devices,
        progress=progress,
        round_iters=round_iters,
        gtol=gtol,
        maxiter=maxiter,
        memory_bytes=memory_bytes,
        desc="bootstrap",
        _on_round=_on_round,
        _lane_iters=_lane_iters,
    )
    completed = np.flatnonzero(pool.status > 0)
    if pool.interrupted:
        messages.warn(f"bootstrap interrupted: returning the {completed.size} of {n} replicates completed so far")
    elapsed = time.perf_counter() - t_start
    boot = BootstrapResult._build(
        result,
        replicate=completed,
        fixef=pool.beta[completed],
        sigma=pool.sigma[completed],
        theta=pool.theta[completed],
        objective=pool.objective[completed],
        status=pool.status[completed],
        iterations=pool.iterations[completed],
        n_requested=n,
        seed=int(seed),
        interrupted=pool.interrupted,
        elapsed=elapsed,
        chunk_size=pool.chunk_size,
        n_devices=pool.n_devices,
    )
    if boot.n_failed:
        messages.warn(f"{boot.n_failed} of {boot.n} bootstrap replicates failed: {boot.failure_reasons()}")
    return boot


@dataclass(eq=False)
class BootstrapResult:
    """Replicates of a parametric bootstrap (one row per completed replicate).

    ``fixef`` (fixed effects), ``sigma``, ``theta``, ``vc`` (random-effect SDs,
    correlations and sigma), ``objective``, ``status``/``converged``/``iterations``;
    ``ci()`` for intervals, ``to_frame()`` for everything in one DataFrame, ``summary()``.
    Statistics use converged, finite replicates only.
    """

    result: LMMResult = field(repr=False)
    fixef: pd.DataFrame = field(repr=False)
    sigma: pd.Series = field(repr=False)
    theta: pd.DataFrame = field(repr=False)
    vc: pd.DataFrame = field(repr=False)
    objective: pd.Series = field(repr=False)
    status: pd.Series = field(repr=False)
    iterations: pd.Series = field(repr=False)
    n_requested: int = 0
    seed: int = 0
    interrupted: bool = False
    elapsed: float = 0.0
    chunk_size: int = 0
    n_devices: int = 1

    @classmethod
    def _build(cls, result, *, replicate, fixef, sigma, theta, objective, status, iterations, **kw):
        lay = result.model.layout
        index = pd.Index(replicate, name="replicate")
        xnames = list(result.fixef.index)
        theta_names = []
        labels = result.group_labels
        for t, term, label in zip(lay.terms, result.model.design.terms, labels):
            c = list(term.columns)
            theta_names += [f"{label}.{c[i]}" if i == j else f"{label}.{c[i]}.{c[j]}" for i, j in t.theta_index]
        vc = vc_frame(result.model.layout, result.model.design.terms, labels, theta, sigma)
        vc.index = index
        return cls(
            result=result,
            fixef=pd.DataFrame(fixef, index=index, columns=xnames),
            sigma=pd.Series(sigma, index=index, name="sigma"),
            theta=pd.DataFrame(theta, index=index, columns=theta_names),
            vc=vc,
            objective=pd.Series(objective, index=index, name="objective"),
            status=pd.Series(status, index=index, name="status"),
            iterations=pd.Series(iterations, index=index, name="iterations"),
            **kw,
        )

    # -- counts ------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Replicates completed (converged or not)."""
        return len(self.status)

    @property
    def converged(self) -> pd.Series:
        return self.status.isin([1, 2]).rename("converged")

    @property
    def finite(self) -> pd.Series:
        ok = np.isfinite(self.fixef.to_numpy()).all(axis=1) & np.isfinite(self.theta.to_numpy()).all(axis=1)
        ok &= np.isfinite(self.sigma.to_numpy()) & np.isfinite(self.objective.to_numpy())
        return pd.Series(ok, index=self.status.index, name="finite")

    @property
    def usable(self) -> pd.Series:
        """Converged with finite estimates: the replicates statistics are computed from."""
        return (self.converged & self.finite).rename("usable")

    @property
    def n_failed(self) -> int:
        """Replicates that did not converge or went non-finite."""
        return int((~self.usable).sum())

    @property
    def outcome(self) -> pd.Series:
        """Each replicate's outcome in words: the optimizer's status, or "non-finite estimates"."""
        text = self.status.map(lambda c: STATUS.get(int(c), f"status {int(c)}"))
        return text.where(self.finite, "non-finite estimates").rename("outcome")

    def failure_reasons(self) -> str:
        """The failed replicates' outcomes with their counts, e.g. "3 max iterations"."""
        counts = self.outcome[~self.usable].value_counts()
        return ", ".join(f"{k} {reason}" for reason, k in counts.items())

    @property
    def n_nonfinite(self) -> int:
        return int((~self.finite).sum())

    # -- tables ------------------------------------------------------------------------
    def estimates(self) -> pd.Series:
        """The original fit's values of the bootstrapped parameters (same order as ``ci``)."""
        r = self.result
        one = vc_frame(r.model.layout, r.model.design.terms, r.group_labels, r.theta[None, :], np.array([r.sigma]))
        return pd.concat([r.fixef, one.iloc[0]]).rename("estimate")

    def parameters(self, usable_only: bool = True) -> pd.DataFrame:
        """Fixed effects, random-effect SDs/correlations and sigma, one row per replicate."""
        df = pd.concat([self.fixef, self.vc], axis=1)
        return df[self.usable] if usable_only else df

    def to_frame(self) -> pd.DataFrame:
        """Everything per replicate: parameters, θ, objective, status, iterations, converged."""
        theta = self.theta.add_prefix("theta_")
        return pd.concat(
            [self.parameters(False), theta, self.objective, self.status, self.iterations, self.converged], axis=1
        )

    def ci(self, level: float = 0.95, method: str = "percentile") -> pd.DataFrame:
        """Bootstrap intervals: ``percentile`` (equal tails) or ``shortest`` (narrowest
        interval holding ``level`` of the replicates).  Rows: fixed effects, SDs,
        correlations, sigma; columns: estimate, lower, upper."""
        if not 0 < level < 1:
            raise ValueError("level must be in (0, 1)")
        samples = self.parameters(True)
        lo, hi = {}, {}
        for c in samples.columns:
            v = samples[c].to_numpy()
            v = v[np.isfinite(v)]
            lo[c], hi[c] = draw_interval(v, level, method)
        out = pd.DataFrame({"estimate": self.estimates(), "lower": pd.Series(lo), "upper": pd.Series(hi)})
        out.attrs.update(level=level, method=method, n=len(samples))
        return out

    def summary(self, level: float = 0.95, method: str = "percentile") -> str:
        """Text report: counts, then estimate, bootstrap mean, bias, SE and interval per parameter."""
        r = self.result
        samples = self.parameters(True)
        ci = self.ci(level, method)
        tab = pd.DataFrame(
            {
                "Estimate": ci["estimate"],
                "Boot mean": samples.mean(),
                "Bias": samples.mean() - ci["estimate"],
                "Boot SE": samples.std(ddof=1),
                f"{100 * (1 - level) / 2:g} %": ci["lower"],
                f"{100 * (1 + level) / 2:g} %": ci["upper"],
            }
        )
        lines = [
            f"Parametric bootstrap [jaxlme]: {self.n} replicates (seed {self.seed}), "
            f"{r.method} refits of {r.model.design.formula.text}",
            f"  converged: {int(self.usable.sum())}   failed/non-converged: {self.n_failed}"
            f" (non-finite: {self.n_nonfinite})"
            + (f"   INTERRUPTED after {self.n} of {self.n_requested}" if self.interrupted else ""),
            f"  {self.elapsed:.2f} s, chunk size {self.chunk_size}, {self.n_devices} device(s)",
            "",
            f"{method} intervals, level {level:g}:",
            tab.to_string(float_format=lambda v: f"{v:.4f}"),
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"<BootstrapResult {self.n}/{self.n_requested} replicates, seed={self.seed}, "
            f"failed={self.n_failed}{', interrupted' if self.interrupted else ''}>"
        )

    def __str__(self) -> str:
        return self.summary()


def draw_interval(v: np.ndarray, level: float, method: str) -> tuple[float, float]:
    """A level-``level`` interval from bootstrap draws ``v``.

    Args:
        v: the draws of one quantity (NaNs already removed).
        level: coverage, in (0, 1).
        method: "percentile" (equal tails) or "shortest" (the narrowest interval holding
            that fraction of the draws).

    Returns:
        (lower, upper); NaNs when there are no draws.
    """
    if v.size == 0:
        return np.nan, np.nan
    if method == "percentile":
        a = (1 - level) / 2
        lo, hi = np.quantile(v, [a, 1 - a])
        return float(lo), float(hi)
    if method == "shortest":
        s = np.sort(v)
        m = int(math.ceil(level * s.size))  # replicates the interval must hold
        m = min(max(m, 1), s.size)
        widths = s[m - 1 :] - s[: s.size - m + 1]
        i = int(np.argmin(widths))
        return float(s[i]), float(s[i + m - 1])
    raise ValueError(f"method must be 'percentile' or 'shortest', got {method!r}")
