"""Diagnostic plots for fitted models (needs the optional extra ``jaxlme[plot]``: matplotlib).

Every function takes a fitted :class:`jaxlme.LMMResult` (or the statsmodels-style
``jaxlme.compat.MixedLMResults``), draws on a given matplotlib ``Axes`` (or a new
figure) and returns the Axes.  ``save`` writes a figure to a file.  The plots stay
readable from a handful of groups to thousands: caterpillars sort their levels, label a
bounded number of them and cap the figure's height; colour-coded groups get a legend, or
no colours when there are too many to tell apart.

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
    "qq",
    "qq_line",
    "bootstrap_histograms",
    "diagnostics",
    "save",
    "MAX_LABELS",
    "MAX_HEIGHT",
    "MAX_GROUPS",
]

MAX_LABELS = 40  # most level names on a caterpillar's axis; beyond it every k-th level is named
MAX_HEIGHT = 10.0  # inches: the tallest caterpillar figure (1100 px at save's 110 dpi)
MAX_GROUPS = 20  # most groups told apart by colour (with a legend) in observed_vs_fitted
_ROW_INCHES = 0.18  # height per caterpillar level while all levels are named


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
    """Save the figure that holds ``ax_or_fig`` and close it.

    Args:
        ax_or_fig: An Axes, an array of Axes or a Figure.
        path: Output file; the format follows its suffix (PNG, PDF, SVG, ...).
        dpi: Resolution of raster formats.

    Returns:
        ``path`` as a string.
    """
    plt = _plt()
    obj = ax_or_fig
    if isinstance(obj, (np.ndarray, list, tuple)):
        obj = np.asarray(obj, dtype=object).ravel()[0]
    fig = obj if hasattr(obj, "savefig") else obj.figure
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return str(path)


# -- random effects ----------------------------------------------------------------------------


def _condsd(r, group: str, k: int) -> tuple[np.ndarray, str | None]:
    """Conditional SDs (nlevels, k) of ``group``'s random effects, or NaN and the reason."""
    try:
        cv = np.asarray(r.ranef_condvar()[group], dtype=float)  # (nlevels, k, k)
    except ValueError as exc:  # too many random effects for the dense conditional covariance
        return np.full((len(r.ranef[group]), k), np.nan), str(exc).split(":")[0]
    return np.sqrt(np.maximum(np.diagonal(cv, axis1=1, axis2=2), 0.0)), None


def _level_ticks(n: int, max_labels: int) -> np.ndarray:
    """Positions of the named levels: all of them, or about ``max_labels`` evenly spread
    (always the first and last, the extremes of a sorted caterpillar)."""
    if n <= max_labels:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max(2, max_labels)).round().astype(int))


def caterpillar(
    res: Any,
    group: str | None = None,
    level: float = 0.95,
    axes=None,
    *,
    columns: list[str] | None = None,
    sort: bool = True,
    max_labels: int = MAX_LABELS,
    max_height: float = MAX_HEIGHT,
):
    """Conditional modes of the random effects of ``group`` with ``level`` prediction intervals.

    One panel per random-effect column (every column of every term of the factor), the
    levels in the same order in all panels: sorted by the first column's mode (lme4's
    ``dotplot(ranef(fit, condVar = TRUE))``).  The intervals use the conditional variances
    from ``res.ranef_condvar()``; when those are not available (too many random effects in
    several terms) the modes are drawn alone and the title says so.  With more than
    ``max_labels`` levels, only about ``max_labels`` of them are named (evenly spread,
    including both extremes), points and bars shrink, and the figure is at most
    ``max_height`` inches tall, so 5 and 5,000 levels both give a readable figure.

    Args:
        res: A fitted model.
        group: Grouping factor (default: the first in ``res.ranef``).
        level: Interval level.
        axes: Axes to draw on (one per column); a new figure when None.
        columns: The columns to draw (default: all of them).
        sort: Order levels by the first column's mode (else as in ``res.ranef``).
        max_labels: Most level names per panel.
        max_height: Height cap of a new figure, in inches.

    Returns:
        The array of Axes.
    """
    r = _lmm(res)
    names = list(r.ranef)
    group = group or names[0]
    if group not in r.ranef:
        raise KeyError(f"no random-effects term {group!r}; terms: {', '.join(names)}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    modes: pd.DataFrame = r.ranef[group]
    sd, missing = _condsd(r, group, modes.shape[1])
    order = np.argsort(modes.iloc[:, 0].to_numpy(), kind="stable") if sort else np.arange(len(modes))
    if columns is not None:
        bad = [c for c in columns if c not in modes.columns]
        if bad:
            raise KeyError(f"no random-effect column(s) {bad} for {group!r}; columns: {list(modes.columns)}")
        keep = [list(modes.columns).index(c) for c in columns]
        modes, sd = modes.iloc[:, keep], sd[:, keep]
    n, k = modes.shape
    z = NormalDist().inv_cdf(0.5 + level / 2)
    many = n > max_labels
    new_figure = axes is None
    if new_figure:
        plt = _plt()
        height = min(max_height, max(3.0, _ROW_INCHES * min(n, max_labels) + 1.4))
        _, axes = plt.subplots(1, k, figsize=(3.6 * k, height), sharey=True, layout="constrained", squeeze=False)
    axes = np.atleast_1d(np.asarray(axes, dtype=object)).ravel()
    if len(axes) < k:
        raise ValueError(f"caterpillar of {group!r} needs {k} axes (one per column), got {len(axes)}")
    ypos = np.arange(n)
    ticks = _level_ticks(n, max_labels)
    labels = [str(v) for v in modes.index[order][ticks]]
    style = (
        {"fmt": "o", "ms": 4, "capsize": 2, "elinewidth": 1.0}
        if not many
        else {"fmt": "o", "ms": max(0.8, min(3.0, 120 / n)), "capsize": 0, "elinewidth": max(0.2, min(0.8, 150 / n))}
    )
    for j, ax in enumerate(axes[:k]):
        b = modes.iloc[order, j].to_numpy()
        s = sd[order, j]
        ax.errorbar(b, ypos, xerr=None if missing else z * s, color="C0", ecolor="0.45", **style)
        ax.axvline(0.0, color="C3", lw=1, ls="--")
        ax.set_title(f"{modes.columns[j]} | {group}", fontsize=10)
        ax.set_xlabel("conditional mode" if missing else f"conditional mode, {level:.0%} interval")
        ax.set_yticks(ticks)
        ax.set_yticklabels(labels, fontsize=8 if len(ticks) <= 25 else 7)
        ax.set_ylim(-0.5 - 0.01 * n, n - 0.5 + 0.01 * n)
        ax.grid(axis="x", color="0.9", lw=0.6)
    what = f"{group} ({n} levels" + (", sorted" if sort else "") + (f"; {len(ticks)} named)" if many else ")")
    axes[0].set_ylabel(what)
    note = f"Random effects with {level:.0%} intervals" if not missing else f"Random effects (no intervals: {missing})"
    if new_figure:
        axes[0].figure.suptitle(note, fontsize=11)
    elif missing:
        axes[0].set_title(f"{axes[0].get_title()} (no intervals)", fontsize=10)
    return axes


# -- residuals -----------------------------------------------------------------------------------


def residuals_vs_fitted(res: Any, ax=None):
    """Residuals against fitted values, with a zero line and binned means: the mean residual
    of each of up to 20 equal-count bins of the fitted values (robust to the ties of
    group-level fits, where a running mean zigzags).

    Args:
        res: A fitted model.
        ax: Axes to draw on (a new figure when None).

    Returns:
        The Axes.
    """
    r = _lmm(res)
    ax = _axes(ax)
    f, e = np.asarray(r.fitted), np.asarray(r.residuals)
    ax.scatter(f, e, s=12 if len(f) <= 2000 else 4, alpha=0.6 if len(f) <= 2000 else 0.3, color="C0", lw=0)
    ax.axhline(0.0, color="C3", lw=1, ls="--")
    if len(f) >= 10:
        bins = np.array_split(np.argsort(f, kind="stable"), int(np.clip(len(f) // 8, 3, 20)))
        xs, ys = [f[b].mean() for b in bins], [e[b].mean() for b in bins]
        ax.plot(xs, ys, color="C1", lw=2, marker="o", ms=3, label="binned mean")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("fitted")
    ax.set_ylabel("residual")
    ax.set_title("Residuals vs fitted")
    return ax


def ppoints(n: int) -> np.ndarray:
    """R's ``ppoints(n)``: (i - a) / (n + 1 - 2a), a = 3/8 for n <= 10, else 1/2."""
    a = 3.0 / 8.0 if n <= 10 else 0.5
    return (np.arange(1, n + 1) - a) / (n + 1 - 2 * a)


def qq_line(sample: Any) -> tuple[float, float]:
    """Intercept and slope of R's ``qqline``: the line through the sample's quartiles and
    the standard normal's, robust to the tails a Q-Q plot is meant to show.

    Args:
        sample: The values (NaNs ignored).

    Returns:
        ``(intercept, slope)``.
    """
    v = np.asarray(sample, dtype=float)
    v = v[np.isfinite(v)]
    y1, y2 = np.quantile(v, [0.25, 0.75])  # R's quantile type 7, qqline's default
    nd = NormalDist()
    x1, x2 = nd.inv_cdf(0.25), nd.inv_cdf(0.75)
    slope = (y2 - y1) / (x2 - x1)
    return float(y1 - slope * x1), float(slope)


def qq(res: Any, ax=None):
    """Normal Q-Q plot of the scaled (Pearson) residuals with R's ``qqline``.

    The points are the sorted residuals against the normal quantiles of R's ``ppoints``
    (as ``qqnorm``); the reference line passes through the quartiles (:func:`qq_line`).

    Args:
        res: A fitted model.
        ax: Axes to draw on (a new figure when None).

    Returns:
        The Axes.
    """
    r = _lmm(res)
    ax = _axes(ax)
    e = np.sort(np.asarray(r.pearson_residuals, dtype=float) / r.sigma)
    nd = NormalDist()
    q = np.array([nd.inv_cdf(p) for p in ppoints(len(e))])
    ax.scatter(q, e, s=10 if len(e) <= 2000 else 3, color="C0", lw=0, alpha=0.8 if len(e) <= 2000 else 0.4)
    intercept, slope = qq_line(e)
    ax.axline((0.0, intercept), slope=slope, color="C3", ls="--", lw=1, label="through the quartiles")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_xlabel("normal quantile")
    ax.set_ylabel("scaled residual")
    ax.set_title("Normal Q-Q of scaled residuals")
    return ax


def observed_vs_fitted(res: Any, group: str | None = None, ax=None, max_groups: int = MAX_GROUPS):
    """Observed response against fitted values, coloured by the levels of ``group``.

    Up to ``max_groups`` levels get a colour each and a legend; beyond that colours could
    not be told apart, so all points share one colour and the title says why.

    Args:
        res: A fitted model.
        group: Grouping factor (default: the last, usually the coarsest).
        ax: Axes to draw on (a new figure when None).
        max_groups: Most levels coloured individually.

    Returns:
        The Axes.
    """
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
    small = len(f) <= 2000
    if term.nlevels <= max_groups:
        cmap = _plt().get_cmap("tab20" if term.nlevels > 10 else "tab10")
        for lev in range(term.nlevels):
            m = term.index == lev
            ax.scatter(f[m], y[m], s=12, alpha=0.75, color=cmap(lev % cmap.N), label=str(term.levels[lev]), lw=0)
        ncol = 1 if term.nlevels <= 10 else 2
        ax.legend(title=group, fontsize=7, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=ncol)
        ax.set_title(f"Observed vs fitted by {group}")
    else:
        ax.scatter(f, y, s=12 if small else 4, alpha=0.6 if small else 0.3, color="C0", lw=0)
        ax.set_title(f"Observed vs fitted ({term.nlevels} levels of {group}: too many to colour)")
    lo, hi = float(min(f.min(), y.min())), float(max(f.max(), y.max()))
    ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--")
    ax.set_xlabel("fitted")
    ax.set_ylabel("observed")
    return ax


# -- bootstrap -----------------------------------------------------------------------------------

_NOT_PARAMETERS = {"status", "iterations", "objective", "replicate", "converged"}


def bootstrap_histograms(
    boot: Any, level: float = 0.95, params: list[str] | None = None, axes=None, estimates: Any = None
):
    """Histograms of bootstrap replicates with the estimate and the percentile interval.

    Args:
        boot: A ``jaxlme.bootstrap.BootstrapResult`` (its usable replicates and the fit's
            estimates are used, as in ``boot.ci``) or a DataFrame of replicates, one column
            per parameter.
        level: Level of the percentile interval (dashed lines).
        params: Parameters to show (default: all).
        axes: Axes to draw on, one per parameter (a new figure when None).
        estimates: The original estimates (a mapping or Series) for a DataFrame ``boot``;
            taken from ``boot.estimates()`` for a BootstrapResult.  Drawn as a solid line.

    Returns:
        The array of Axes.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if isinstance(boot, pd.DataFrame):
        reps = boot
    elif hasattr(boot, "parameters") and callable(boot.parameters):
        reps = boot.parameters(True)  # converged, finite replicates: what boot.ci uses
        if estimates is None and hasattr(boot, "estimates"):
            estimates = boot.estimates()
    else:
        raise TypeError("bootstrap_histograms needs a DataFrame of replicates or a BootstrapResult")
    reps = reps.select_dtypes("number")
    reps = reps[[c for c in reps.columns if str(c) not in _NOT_PARAMETERS and not str(c).startswith("theta")]]
    cols = list(params or reps.columns)
    unknown = [c for c in cols if c not in reps.columns]
    if unknown:
        raise KeyError(f"no bootstrap parameter(s) {unknown}; parameters: {list(reps.columns)}")
    est = {} if estimates is None else dict(pd.Series(estimates))
    n = len(cols)
    if axes is None:
        plt = _plt()
        ncol = min(3 if n <= 9 else 4, n)
        nrow = int(np.ceil(n / ncol))
        height = min(2.8 * nrow + 0.6, 3.0 * MAX_HEIGHT)
        _, axes = plt.subplots(nrow, ncol, figsize=(3.8 * ncol, height), layout="constrained", squeeze=False)
    axes = np.atleast_1d(np.asarray(axes, dtype=object)).ravel()
    a = (1 - level) / 2
    for ax, c in zip(axes, cols):
        v = reps[c].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        ax.hist(v, bins=min(40, max(10, len(v) // 10)), color="C0", alpha=0.75)
        lo, hi = np.quantile(v, [a, 1 - a]) if v.size else (np.nan, np.nan)
        for i, x in enumerate((lo, hi)):
            ax.axvline(x, color="C3", ls="--", lw=1, label=f"{level:.0%} interval" if i == 0 else None, gid="interval")
        title = f"{c}\n{level:.0%}: [{lo:.3g}, {hi:.3g}]"
        if c in est and np.isfinite(est[c]):
            ax.axvline(float(est[c]), color="k", lw=1.5, label="estimate", gid="estimate")
            title = f"{c}\nestimate {float(est[c]):.3g}, {level:.0%}: [{lo:.3g}, {hi:.3g}]"
        ax.set_title(title, fontsize=9)
    if n:
        axes[0].legend(fontsize=7, loc="upper right")
    for ax in axes[n:]:
        ax.set_visible(False)
    return axes


# -- all at once -----------------------------------------------------------------------------------


def diagnostics(res: Any, path: str | None = None, level: float = 0.95, max_panels: int = 9):
    """Residuals vs fitted, observed vs fitted and a normal Q-Q plot in the first row, then
    a caterpillar panel for every random-effect column of every grouping factor (up to
    ``max_panels``; the title says when some are left out).  Saved to ``path`` when given.

    Args:
        res: A fitted model.
        path: File to save to (closing the figure), or None to return it open.
        level: Level of the caterpillars' intervals.
        max_panels: Most caterpillar panels.

    Returns:
        The Figure.
    """
    plt = _plt()
    r = _lmm(res)
    panels = [(g, j) for g, df in r.ranef.items() for j in range(df.shape[1])]
    shown = panels[:max_panels]
    rows = 1 + int(np.ceil(len(shown) / 3))
    fig = plt.figure(figsize=(15, min(4.2 * rows, 2 * MAX_HEIGHT)), layout="constrained")
    grid = fig.add_gridspec(rows, 3)
    residuals_vs_fitted(r, ax=fig.add_subplot(grid[0, 0]))
    observed_vs_fitted(r, ax=fig.add_subplot(grid[0, 1]))
    qq(r, ax=fig.add_subplot(grid[0, 2]))
    i = 0
    for g in dict.fromkeys(name for name, _ in shown):
        cols = [r.ranef[g].columns[j] for name, j in shown if name == g]
        axes = [fig.add_subplot(grid[1 + (i + m) // 3, (i + m) % 3]) for m in range(len(cols))]
        caterpillar(r, g, level=level, axes=axes, columns=cols)
        i += len(cols)
    title = f"{r.method} fit of {r.model.design.formula.text}"
    if len(panels) > len(shown):
        title += f"  ({len(panels) - len(shown)} random-effect column(s) not shown)"
    fig.suptitle(title, fontsize=11)
    if path is not None:
        save(fig, path)
    return fig
