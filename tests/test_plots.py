"""Plots render to PNG files with the headless Agg backend."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import jaxlme  # noqa: E402
from jaxlme import plots  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def res():
    return jaxlme.lmm("Reaction ~ Days + (Days | Subject)", jaxlme.datasets.load("sleepstudy"))


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == PNG and path.stat().st_size > 5_000


def test_residuals_vs_fitted(res, tmp_path):
    ax = plots.residuals_vs_fitted(res)
    offsets = ax.collections[0].get_offsets()
    np.testing.assert_allclose(offsets[:, 0], res.fitted)
    np.testing.assert_allclose(offsets[:, 1], res.residuals)
    assert not (tmp_path / "r.png").exists()
    plots.save(ax, str(tmp_path / "r.png"))
    assert _is_png(tmp_path / "r.png")


def test_observed_vs_fitted_by_group(res, tmp_path):
    ax = plots.observed_vs_fitted(res, "Subject")
    assert len(ax.collections) == 18  # one colour per subject
    assert ax.get_legend().get_title().get_text() == "Subject"
    plots.save(ax, str(tmp_path / "o.png"))
    assert _is_png(tmp_path / "o.png")
    with pytest.raises(KeyError, match="Nope"):
        plots.observed_vs_fitted(res, "Nope")


def test_caterpillar(res, tmp_path):
    axes = plots.caterpillar(res, "Subject")
    assert len(axes) == 2
    # the points are the conditional modes, sorted by the intercept's mode
    modes = res.ranef["Subject"]
    xs = axes[0].lines[0].get_xdata()
    np.testing.assert_allclose(xs, np.sort(modes["(Intercept)"].to_numpy()))
    # error bars are ±1.96 conditional SDs
    sd = res.ranef_condsd()["Subject"]
    order = np.argsort(modes["(Intercept)"].to_numpy())
    seg = axes[0].collections[0].get_segments()
    half = np.array([(s[1][0] - s[0][0]) / 2 for s in seg])
    np.testing.assert_allclose(half, 1.959964 * sd["(Intercept)"].to_numpy()[order], rtol=1e-4)
    with pytest.raises(KeyError, match="no random-effects term"):
        plots.caterpillar(res, "nope")
    plots.save(axes, str(tmp_path / "c.png"))
    assert _is_png(tmp_path / "c.png")


def test_bootstrap_histograms(tmp_path):
    rng = np.random.default_rng(1)
    reps = pd.DataFrame({"(Intercept)": rng.normal(251, 7, 400), "Days": rng.normal(10.5, 1.5, 400)})
    axes = plots.bootstrap_histograms(reps, level=0.9)
    lo, hi = np.quantile(reps["Days"], [0.05, 0.95])
    vlines = [ln.get_xdata()[0] for ln in axes[1].lines]
    np.testing.assert_allclose(sorted(vlines), [lo, hi])
    assert "90%" in axes[1].get_title()
    plots.save(axes, str(tmp_path / "b.png"))
    assert _is_png(tmp_path / "b.png")


def test_diagnostics_panel(res, tmp_path):
    fig = plots.diagnostics(res, str(tmp_path / "d.png"))
    assert len(fig.axes) >= 4
    assert _is_png(tmp_path / "d.png")


def test_accepts_statsmodels_style_result(tmp_path):
    data = jaxlme.datasets.load("bounce_time")
    r = jaxlme.mixedlm("bounce_time ~ age_scaled", data, groups="county").fit()
    ax = plots.observed_vs_fitted(r)
    assert len(ax.collections) == 8
    plots.save(ax, str(tmp_path / "s.png"))
    assert _is_png(tmp_path / "s.png")
