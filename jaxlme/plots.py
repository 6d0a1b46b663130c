"""Diagnostic plots for fitted models (needs the optional extra ``jaxlme[plot]``: matplotlib).

Every function takes a fitted :class:`jaxlme.LMMResult` (or the statsmodels-style
``jaxlme.compat.MixedLMResults``), draws on a given matplotlib ``Axes`` (or a new
figure) and returns the Axes.  ``save`` writes a figure to a file.

>>> from jaxlme import plots                                    # doctest: +SKIP
>>> ax = plots.residuals_vs_fitted(res); plots.save(ax, "resid.png")   # doctest: +SKIP
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "caterpillar",
    "residuals_vs_fitted",
    "observed_vs_fitted",
    "bootstrap_histograms",
    "diagnostics",
    "save",
]


def _plt():
    try:
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("jaxlme.plots needs matplotlib: pip install 'jaxlme[plot]'") from None
    return plt


def _lmm(res: Any):
    """The underlying LMMResult (accepts the statsmodels-compatible result too)."""
    return getattr(res, "lmm", res)


def _axes(ax, figsize=(6.0, 4.5)):
    if ax is not None:
        return ax
    plt = _plt()
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def save(ax_or_fig: Any, path: str, dpi: int = 110) -> str:
    """Save the figure that holds ``ax_or_fig`` (an Axes, an array of Axes or a Figure) and close it."""
    plt = _plt()
    obj = ax_or_fig
    if isinstance(obj, np.ndarray):
        obj = obj.ravel()[0]
    fig = obj if hasattr(obj, "savefig") else obj.figure
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return str(path)


def caterpillar(res: Any, group: str | None = None, level: float = 0.95, axes=None):
    """Conditional modes of the random effects of ``group`` with ``level`` prediction intervals.

    One panel per random-effect column, levels sorted by the first column's mode.  The
    intervals use the conditional variances from ``res.ranef_condvar()``.
    """
    r = _lmm(res)
    names = list(r.ranef)
    group = group or names[0]
    if group not in r.ranef:
        raise KeyError(f"no random-effects term {group!r}; terms: {', '.join(names)}")
    modes: pd.DataFrame = r.ranef[group]
    cv = np.asarray(r.ranef_condvar()[group], dtype=float)  # (nlevels, r, r)
    sd = np.sqrt(np.maximum(np.diagonal(cv, axis1=1, axis2=2), 0.0))
    z = NormalDist().inv_cdf(0.5 + level / 2)
    order = np.argsort(modes.iloc[:, 0].to_numpy())
    k = modes.shape[1]
    if axes is None:
        plt = _plt()
        height = max(3.0, 0.18 * len(modes) + 1.2)
        _, axes = plt.subplots(1, k, figsize=(3.6 * k, height), sharey=True, layout="constrained", squeeze=False)
        axes = axes.ravel()
    axes = np.atleast_1d(axes)
    ypos = np.arange(len(modes))
    labels = [str(v) for v in modes.index[order]]
    for j, ax in enumerate(axes[:k]):
        b = modes.iloc[order, j].to_numpy()
        s = sd[order, j]
        ax.errorbar(b, ypos, xerr=z * s, fmt="o", ms=4, color="C0", ecolor="0.35", capsize=2)
        ax.axvline(0.0, color="C3", lw=1, ls="--")
        ax.set_title(f"{modes.columns[j]} | {group}")
        ax.set_xlabel("conditional mode")
        ax.set_yticks(ypos)
        ax.set_yticklabels(labels, fontsize=8)
    axes[0].set_ylabel(group)
    axes[0].figure.suptitle(f"Random effects with {level:.0%} intervals")
    return axes


def residuals_vs_fitted(res: Any, ax=None):
    """Residuals against fitted values, with a zero line and a running-mean smoother."""
    r = _lmm(res)
    ax = _axes(ax)
    f, e = np.asarray(r.fitted), np.asarray(r.residuals)
    ax.scatter(f, e, s=12, alpha=0.6, color="C0", edgecolor="none")
    ax.axhline(0.0, color="C3", lw=1, ls="--")
    if len(f) >= 10:
        o = np.argsort(f)
        w = max(5, len(f) // 10)
        smooth = np.convolve(e[o], np.ones(w) / w, mode="valid")
        ax.plot(f[o][w // 2 : w // 2 + len(smooth)], smooth, color="C1", lw=2, label="running mean")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("fitted")
    ax.set_ylabel("residual")
    ax.set_title("Residuals vs fitted")
    return ax


def observed_vs_fitted(res: Any, group: str | None = None, ax=None, max_groups: int = 20):
    """Observed response against fitted values, coloured by the levels of ``group``."""
    r = _lmm(res)
    d = r.model.design
    names = [t.name for t in d.terms]
    group = group or names[-1]  # the coarsest grouping (fewest levels)
    term = next((t for t in d.terms if t.name == group), None)
    if term is None:
        raise KeyError(f"no grouping factor {group!r}; grouping factors: {', '.join(names)}")
    ax = _axes(ax)
    f = np.asarray(r.fitted)
    y = f + np.asarray(r.residuals)  # the response as given (r.y excludes an offset)
    if term.nlevels <= max_groups:
        cmap = _plt().get_cmap("tab20" if term.nlevels > 10 else "tab10")
        for lev in range(term.nlevels):
            m = term.index == lev
            ax.scatter(f[m], y[m], s=12, alpha=0.75, color=cmap(lev % cmap.N), label=str(term.levels[lev]))
        ax.legend(title=group, fontsize=7, title_fontsize=8, loc="best", ncol=2 if term.nlevels > 8 else 1)
    else:
        ax.scatter(f, y, s=12, alpha=0.6, c=term.index, cmap="viridis", edgecolor="none")
    lo, hi = float(min(f.min(), y.min())), float(max(f.max(), y.max()))
    ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--")
    ax.set_xlabel("fitted")
    ax.set_ylabel("observed")
    ax.set_title(f"Observed vs fitted by {group}")
    return ax


def bootstrap_histograms(boot: Any, level: float = 0.95, params: list[str] | None = None, axes=None):
    """Histograms of bootstrap replicates with percentile intervals.

    ``boot`` is a ``jaxlme.bootstrap.BootstrapResult`` (its replicates table, one column per
    parameter) or any DataFrame of replicates.
    """
    if isinstance(boot, pd.DataFrame):
        reps = boot
    else:
        reps = None
        for attr in ("to_frame", "replicates", "draws", "samples", "table"):
            val = getattr(boot, attr, None)
            val = val() if callable(val) else val
            if isinstance(val, pd.DataFrame):
                reps = val
                break
        if reps is None:
            raise TypeError("bootstrap_histograms needs a DataFrame of replicates or a BootstrapResult")
    skip = {"status", "iterations", "objective", "replicate", "converged"}
    reps = reps.select_dtypes("number")
    reps = reps[[c for c in reps.columns if str(c) not in skip and not str(c).startswith("theta")]]
    cols = list(params or reps.columns)
    n = len(cols)
    if axes is None:
        plt = _plt()
        ncol = min(3, n)
        nrow = int(np.ceil(n / ncol))
        _, axes = plt.subplots(nrow, ncol, figsize=(3.8 * ncol, 2.8 * nrow), layout="constrained", squeeze=False)
    axes = np.atleast_1d(axes).ravel()
    a = (1 - level) / 2
    for ax, c in zip(axes, cols):
        v = reps[c].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        ax.hist(v, bins=min(40, max(10, len(v) // 10)), color="C0", alpha=0.75)
        lo, hi = np.quantile(v, [a, 1 - a])
        for x in (lo, hi):
            ax.axvline(x, color="C3", ls="--", lw=1)
        ax.set_title(f"{c}\n{level:.0%}: [{lo:.3g}, {hi:.3g}]", fontsize=9)
    for ax in axes[n:]:
        ax.set_visible(False)
    return axes


def diagnostics(res: Any, path: str | None = None):
    """A 2 x 2 panel: residuals vs fitted, observed vs fitted, normal Q-Q of residuals, and
    the caterpillar of the first term's first column (or the distribution of its modes when
    conditional variances are not available).  Saved to ``path`` when given."""
    plt = _plt()
    r = _lmm(res)
    fig, axes = plt.subplots(2, 2, figsize=(10, 8), layout="constrained")
    residuals_vs_fitted(r, ax=axes[0, 0])
    observed_vs_fitted(r, ax=axes[0, 1])
    e = np.sort(np.asarray(r.residuals) / r.sigma)
    q = np.array([NormalDist().inv_cdf((i + 0.5) / len(e)) for i in range(len(e))])
    axes[1, 0].scatter(q, e, s=10, color="C0")
    axes[1, 0].plot(q, q, color="C3", ls="--", lw=1)
    axes[1, 0].set_xlabel("normal quantile")
    axes[1, 0].set_ylabel("scaled residual")
    axes[1, 0].set_title("Normal Q-Q of scaled residuals")
    name = next(iter(r.ranef))
    caterpillar(r, name, axes=[axes[1, 1]])
    fig.suptitle("")
    axes[1, 1].set_title(f"{r.ranef[name].columns[0]} | {name} (95% intervals)")
    if path is not None:
        save(fig, path)
    return fig
