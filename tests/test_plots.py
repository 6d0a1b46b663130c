"""Plots render to PNG files with the headless Agg backend, at 5 and at thousands of levels.

Structural checks (what is drawn where, sizes and tick counts capped, legends, the estimate
line) plus PNG snapshots compared with an RMS tolerance against tests/baseline/ (set
``JAXLME_UPDATE_BASELINES=1`` to rewrite them after an intended change, and look at them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import DATA

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.text  # noqa: E402
from matplotlib.testing.compare import compare_images  # noqa: E402

import jaxlme  # noqa: E402
from jaxlme import plots  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
BASELINE = Path(__file__).parent / "baseline"
SNAPSHOT_DPI = 40
SNAPSHOT_TOL = 2.0  # RMS of the pixel difference (0-255)
REF = json.loads((DATA / "plots_reference.json").read_text())  # tests/data/make_plots_reference.R


@pytest.fixture(scope="module")
def res():
    return jaxlme.lmm("Reaction ~ Days + (Days | Subject)", jaxlme.datasets.load("sleepstudy"))


@pytest.fixture(scope="module")
def bounce():
    data = jaxlme.datasets.load("bounce_time")
    return jaxlme.lmm("bounce_time ~ age_scaled + (1 + age_scaled | county) + (1 | county:location)", data)


def _many(levels: int, per: int = 2, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(levels), per)
    x = rng.normal(size=g.size)
    y = 1 + 0.5 * x + rng.normal(0, 1, levels)[g] + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x": x, "g": [f"level{i:04d}" for i in g], "h": [f"c{i % 40:02d}" for i in g]})


@pytest.fixture(scope="module")
def many300():
    return jaxlme.lmm("y ~ x + (1 | g)", _many(300))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == PNG and path.stat().st_size > 5_000


def _snapshot(fig, name: str, tmp_path, update: bool = False) -> float:
    """Render ``fig`` small and return its RMS pixel difference from tests/baseline/NAME.png.

    Text is hidden first: font rasterizing differs between FreeType versions, and the
    words are checked by the structural assertions; the snapshot compares what is drawn."""
    for text in fig.findobj(matplotlib.text.Text):
        text.set_visible(False)
    actual = tmp_path / f"{name}.png"
    fig.savefig(actual, dpi=SNAPSHOT_DPI)
    expected = BASELINE / f"{name}.png"
    if update:
        BASELINE.mkdir(exist_ok=True)
        expected.write_bytes(actual.read_bytes())
    assert expected.exists(), f"no baseline {expected}: run with JAXLME_UPDATE_BASELINES=1 and look at it"
    out = compare_images(str(expected), str(actual), tol=0, in_decorator=True)
    return 0.0 if out is None else float(out["rms"])


def _matches(fig, name, tmp_path):
    rms = _snapshot(fig, name, tmp_path, update=bool(os.environ.get("JAXLME_UPDATE_BASELINES")))
    assert rms <= SNAPSHOT_TOL, f"{name}: RMS {rms:.2f} > {SNAPSHOT_TOL} against tests/baseline/{name}.png"


@pytest.fixture(autouse=True, scope="module")
def _style():
    with plt.style.context("default"), matplotlib.rc_context({"font.family": "DejaVu Sans"}):
        yield


# -- residuals and Q-Q --------------------------------------------------------------------------


def test_residuals_vs_fitted(res, tmp_path):
    ax = plots.residuals_vs_fitted(res)
    offsets = ax.collections[0].get_offsets()
    np.testing.assert_allclose(offsets[:, 0], res.fitted)
    np.testing.assert_allclose(offsets[:, 1], res.residuals)
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "binned mean"]
    bins = np.array_split(np.argsort(res.fitted.to_numpy(), kind="stable"), 20)  # 180 rows: 20 bins of 9
    np.testing.assert_allclose(line.get_ydata(), [res.residuals.to_numpy()[b].mean() for b in bins])
    assert np.all(np.diff(line.get_xdata()) >= 0)
    assert not (tmp_path / "r.png").exists()
    plots.save(ax, str(tmp_path / "r.png"))
    assert _is_png(tmp_path / "r.png")


def test_qq_line_is_rs_qqline(res, tmp_path):
    """Points as R's qqnorm (ppoints), the line through the quartiles as qqline (not y = x)."""
    np.testing.assert_allclose(plots.ppoints(7), REF["ppoints_7"], rtol=1e-12)
    np.testing.assert_allclose(plots.ppoints(25), REF["ppoints_25"], rtol=1e-12)
    ax = plots.qq(res)
    pts = ax.collections[0].get_offsets()
    np.testing.assert_allclose(pts[:, 0], REF["qqnorm_x"], rtol=1e-9)
    np.testing.assert_allclose(pts[:, 1], REF["qqnorm_y"], rtol=2e-4, atol=2e-5)
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "through the quartiles"]
    intercept, slope = plots.qq_line(pts[:, 1])
    assert slope == pytest.approx(REF["qqline"]["slope"], rel=1e-4)
    assert intercept == pytest.approx(REF["qqline"]["intercept"], abs=1e-4)
    assert line.get_slope() == pytest.approx(slope) and line.get_xy1()[1] == pytest.approx(intercept)
    assert abs(slope - 1) > 0.2  # sleepstudy's heavy tails: y = x would be visibly wrong
    assert ax.get_legend() is not None
    _matches(ax.figure, "qq_sleepstudy", tmp_path)


def test_snapshot_comparison_can_fail(res, tmp_path):
    """The old y = x reference line, or unsorted caterpillar levels, break the snapshots."""
    ax = plots.qq(res)
    ax.get_lines()[0].remove()
    ax.axline((0, 0), slope=1, color="C3", ls="--", lw=1)
    assert _snapshot(ax.figure, "qq_sleepstudy", tmp_path) > SNAPSHOT_TOL
    axes = plots.caterpillar(res, "Subject", sort=False)
    assert _snapshot(axes[0].figure, "caterpillar_sleepstudy", tmp_path) > SNAPSHOT_TOL


# -- observed vs fitted: legends where colours mean something -----------------------------------


def test_observed_vs_fitted_by_group(res, tmp_path):
    ax = plots.observed_vs_fitted(res, "Subject")
    assert len(ax.collections) == 18  # one colour per subject
    legend = ax.get_legend()
    assert legend.get_title().get_text() == "Subject" and len(legend.get_texts()) == 18
    plots.save(ax, str(tmp_path / "o.png"))
    assert _is_png(tmp_path / "o.png")
    with pytest.raises(KeyError, match="Nope"):
        plots.observed_vs_fitted(res, "Nope")


def test_observed_vs_fitted_many_groups_not_coloured(many300):
    """40 (or 300) groups: no colours that mean nothing; the title says why."""
    ax = plots.observed_vs_fitted(many300, "g")
    assert len(ax.collections) == 1 and ax.get_legend() is None
    assert len(np.unique(ax.collections[0].get_facecolors(), axis=0)) == 1
    assert "300 levels of g" in ax.get_title()


def test_observed_vs_fitted_snapshot(bounce, tmp_path):
    ax = plots.observed_vs_fitted(bounce, "county")
    assert len(ax.get_legend().get_texts()) == 8
    _matches(ax.figure, "observed_bounce", tmp_path)


# -- caterpillars at 18, 300 and 5,000 levels -------------------------------------------------------


def test_caterpillar(res, tmp_path):
    axes = plots.caterpillar(res, "Subject")
    assert len(axes) == 2
    # the points are the conditional modes, sorted by the intercept's mode
    modes = res.ranef["Subject"]
    xs = axes[0].lines[0].get_xdata()
    np.testing.assert_allclose(xs, np.sort(modes["(Intercept)"].to_numpy()))
    order = np.argsort(modes["(Intercept)"].to_numpy())
    np.testing.assert_allclose(axes[1].lines[0].get_xdata(), modes["Days"].to_numpy()[order])
    # error bars are ±1.96 conditional SDs
    sd = res.ranef_condsd()["Subject"]
    for ax, col in zip(axes, ["(Intercept)", "Days"]):
        seg = ax.collections[0].get_segments()
        half = np.array([(s[1][0] - s[0][0]) / 2 for s in seg])
        np.testing.assert_allclose(half, 1.959964 * sd[col].to_numpy()[order], rtol=1e-4)
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    assert labels == [str(v) for v in modes.index[order]]  # every level named at 18
    with pytest.raises(KeyError, match="no random-effects term"):
        plots.caterpillar(res, "nope")
    _matches(axes[0].figure, "caterpillar_sleepstudy", tmp_path)
    plots.save(axes, str(tmp_path / "c.png"))
    assert _is_png(tmp_path / "c.png")


def _check_many(axes, res, group, n):
    fig = axes[0].figure
    w, h = fig.get_size_inches()
    assert h <= plots.MAX_HEIGHT and w <= 3.6 * len(axes) + 1e-9  # capped, not 0.18 in per level
    for ax in axes:
        ticks = ax.get_yticks()
        assert 2 <= len(ticks) <= plots.MAX_LABELS
        assert ticks[0] == 0 and ticks[-1] == n - 1  # both extremes named
    modes = res.ranef[group].iloc[:, 0]
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    assert labels[0] == str(modes.idxmin()) and labels[-1] == str(modes.idxmax())
    assert len(axes[0].lines[0].get_xdata()) == n  # every level drawn, only the names thinned
    assert f"{n} levels" in axes[0].get_ylabel()


def test_caterpillar_300_levels(many300, tmp_path):
    axes = plots.caterpillar(many300, "g")
    _check_many(axes, many300, "g", 300)
    png = tmp_path / "c300.png"
    plots.save(axes, str(png))
    from matplotlib.image import imread

    height_px, width_px = imread(png).shape[:2]
    assert height_px <= plots.MAX_HEIGHT * 110 and width_px <= 3.6 * 110 + 1  # was 396 x 6072
    axes = plots.caterpillar(many300, "g")
    _matches(axes[0].figure, "caterpillar_300", tmp_path)


@pytest.mark.slow
def test_caterpillar_5000_levels_and_diagnostics(tmp_path):
    big = jaxlme.lmm("y ~ x + (x | g)", _many(5000, per=4))
    axes = plots.caterpillar(big, "g")
    assert len(axes) == 2
    _check_many(axes, big, "g", 5000)
    fig = plots.diagnostics(big, str(tmp_path / "d.png"))
    assert _is_png(tmp_path / "d.png")
    w, h = fig.get_size_inches()
    assert w <= 15 and h <= 2 * plots.MAX_HEIGHT


# -- diagnostics: every random-effect column --------------------------------------------------------


def _panel_titles(fig):
    return [ax.get_title() for ax in fig.axes]


def test_diagnostics_panel(res, tmp_path):
    fig = plots.diagnostics(res, str(tmp_path / "d.png"))
    assert _is_png(tmp_path / "d.png")
    titles = _panel_titles(fig)
    assert "(Intercept) | Subject" in titles and "Days | Subject" in titles  # both columns
    assert any("Q-Q" in t for t in titles) and len(fig.axes) == 5


def test_diagnostics_every_column_of_every_factor(bounce, many300, tmp_path):
    fig = plots.diagnostics(bounce)
    titles = _panel_titles(fig)
    for t in ["(Intercept) | county", "age_scaled | county", "(Intercept) | county:location"]:
        assert t in titles
    fig = plots.diagnostics(bounce, max_panels=2)
    assert "(1 random-effect column(s) not shown)" in fig.get_suptitle()
    fig = plots.diagnostics(many300)  # 300 levels inside the grid: names thinned too
    cat = next(ax for ax in fig.axes if ax.get_title() == "(Intercept) | g")
    assert len(cat.get_yticks()) <= plots.MAX_LABELS
    w, h = fig.get_size_inches()
    assert w <= 15 and h <= 2 * plots.MAX_HEIGHT


# -- bootstrap histograms: the estimate and the interval ----------------------------------------------


def _replicates():
    rng = np.random.default_rng(1)
    return pd.DataFrame({"(Intercept)": rng.normal(251, 7, 400), "Days": rng.normal(10.5, 1.5, 400)})


def test_bootstrap_histograms(tmp_path):
    reps = _replicates()
    axes = plots.bootstrap_histograms(reps, level=0.9, estimates={"(Intercept)": 251.4, "Days": 10.47})
    lo, hi = np.quantile(reps["Days"], [0.05, 0.95])
    interval = [ln.get_xdata()[0] for ln in axes[1].lines if ln.get_gid() == "interval"]
    np.testing.assert_allclose(sorted(interval), [lo, hi])
    (est,) = [ln.get_xdata()[0] for ln in axes[1].lines if ln.get_gid() == "estimate"]
    assert est == 10.47
    assert "90%" in axes[1].get_title() and "estimate 10.5" in axes[1].get_title()
    labels = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert labels == ["90% interval", "estimate"]
    _matches(axes[0].figure, "bootstrap_histograms", tmp_path)
    axes = plots.bootstrap_histograms(reps)  # a bare table: no estimate to draw
    assert not [ln for ln in axes[0].lines if ln.get_gid() == "estimate"]
    with pytest.raises(KeyError, match="nope"):
        plots.bootstrap_histograms(reps, params=["nope"])


def test_bootstrap_result_histograms_use_its_estimates_and_usable_replicates(res, tmp_path):
    with pytest.warns(UserWarning, match="1 of 40 bootstrap replicates failed"):
        boot = res.bootstrap(40, seed=2, progress=False, chunk_size=8, _poison=[5])
    axes = plots.bootstrap_histograms(boot)
    ci = boot.ci()
    names = list(ci.index)
    assert len([ax for ax in axes if ax.get_visible()]) == len(names)
    for ax, name in zip(axes, names):
        (est,) = [ln.get_xdata()[0] for ln in ax.lines if ln.get_gid() == "estimate"]
        assert est == pytest.approx(ci.loc[name, "estimate"])
        interval = sorted(ln.get_xdata()[0] for ln in ax.lines if ln.get_gid() == "interval")
        np.testing.assert_allclose(interval, ci.loc[name, ["lower", "upper"]].to_numpy(dtype=float))
        assert sum(p.get_height() for p in ax.patches) == boot.usable.sum() == 39
    plots.save(axes, str(tmp_path / "b.png"))
    assert _is_png(tmp_path / "b.png")


def test_accepts_statsmodels_style_result(tmp_path):
    data = jaxlme.datasets.load("bounce_time")
    r = jaxlme.mixedlm("bounce_time ~ age_scaled", data, groups="county").fit()
    ax = plots.observed_vs_fitted(r)
    assert len(ax.collections) == 8
    plots.save(ax, str(tmp_path / "s.png"))
    assert _is_png(tmp_path / "s.png")
