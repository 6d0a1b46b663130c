"""jaxlme.partitions: fits from partitions' summed cross-products equal the in-memory fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import crossed_large

import jaxlme
from jaxlme.design import DataError
from jaxlme.formula import FormulaError
from jaxlme.partitions import PartitionPlan, collect_levels, fitted_values

REL = 1e-9
TIGHT = {"gtol": 1e-10}  # both fits converged past the optimizer's default stop point
# θ (and the SEs through it) where the criterion is flat to rounding: sleepstudy's in-memory
# fit stops at "no further decrease" with |g| = 1.6e-7, and the same rows in another order
# move its θ by 3e-8 relative (SEs 3e-9), with the criterion equal to 5e-13; elsewhere 1e-13
THETA_REL = 1e-7


def split(data: pd.DataFrame, k: int) -> list[pd.DataFrame]:
    """k contiguous partitions (some empty when k > rows / 2), in the data's row order."""
    edges = np.linspace(0, len(data), k + 1).astype(int)
    parts = [data.iloc[a:b] for a, b in zip(edges[:-1], edges[1:])]
    return parts + [data.iloc[:0]]  # always one empty partition


def fit_parts(formula, parts, weights=None, **kw):
    levels = sum(collect_levels(formula, p, weights) for p in parts)
    head = next((p for p in parts if collect_levels(formula, p, weights).n), parts[0])
    plan = PartitionPlan(formula, levels, head, weights)
    total = sum(plan.crossproducts(p) for p in parts)
    return jaxlme.LMM.from_crossproducts(plan, total).fit(**kw)


def assert_same_fit(res, ref, rel=REL):
    assert res.nobs == ref.nobs
    assert list(res.fixef.index) == list(ref.fixef.index)
    np.testing.assert_allclose(res.fixef, ref.fixef, rtol=rel, atol=rel * np.abs(ref.fixef).max())
    np.testing.assert_allclose(res.stderr, ref.stderr, rtol=max(rel, THETA_REL))
    scale = np.abs(ref.theta).max()
    np.testing.assert_allclose(res.theta, ref.theta, rtol=max(rel, THETA_REL), atol=max(rel, THETA_REL) * scale)
    assert res.sigma == pytest.approx(ref.sigma, rel=max(rel, THETA_REL))
    assert res.objective == pytest.approx(ref.objective, rel=rel)
    for name, tab in ref.ranef.items():
        pd.testing.assert_index_equal(res.ranef[name].index, tab.index)
        np.testing.assert_allclose(res.ranef[name], tab, rtol=1e-7, atol=1e-7 * np.abs(tab.to_numpy()).max())


MODELS = [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    ("Pastes", "strength ~ 1 + (1 | batch/cask)"),
]


@pytest.mark.parametrize("k", [1, 7, 64])
@pytest.mark.parametrize("name,formula", MODELS)
def test_reference_datasets_in_partitions_equal_the_in_memory_fit(name, formula, k):
    data = jaxlme.datasets.load(name)
    ref = jaxlme.LMM(formula, data).fit(**TIGHT)
    assert_same_fit(fit_parts(formula, split(data, k), **TIGHT), ref)


def test_term1_block_of_several_terms_in_partitions_equals_the_in_memory_fit():
    """``(1 + x || g)`` on a factor with many levels: its two terms form one term-1 block
    (``Layout.head``), summed from partitions as from all rows."""
    rng = np.random.default_rng(11)
    n, k1 = 2000, 150
    g, h, x = rng.integers(0, k1, n), rng.integers(0, 12, n), rng.normal(size=n)
    u = rng.normal(size=(k1, 2)) * [1.0, 0.4]
    y = 1 + x + u[g, 0] + u[g, 1] * x + 0.6 * rng.normal(size=12)[h] + rng.normal(size=n)
    data = pd.DataFrame({"g": g, "h": h, "x": x, "y": y})
    formula = "y ~ x + (1 + x || g) + (1 | h)"
    ref = jaxlme.LMM(formula, data)
    assert ref.layout.head == 2
    assert_same_fit(fit_parts(formula, split(data, 7), **TIGHT), ref.fit(**TIGHT))


def test_default_tolerance_fixed_effects_and_criterion_equal():
    data = jaxlme.datasets.load("Penicillin")
    f = MODELS[1][1]
    res, ref = fit_parts(f, split(data, 7)), jaxlme.lmm(f, data)
    np.testing.assert_allclose(res.fixef, ref.fixef, rtol=REL)
    assert res.objective == pytest.approx(ref.objective, rel=REL)


@pytest.mark.slow  # ~25 s: two 5000-row crossed fits to gtol 1e-10
def test_crossed_simulation_bfgs_path_and_moment_start():
    data = crossed_large(3)  # rest block > 400 rows: BFGS from the moment start
    f = "y ~ x + (1 | g1) + (1 | g2)"
    model = jaxlme.LMM(f, data)
    ref = model.fit(**TIGHT)
    res = fit_parts(f, split(data.sort_values("g1"), 7), **TIGHT)  # sorted: partitions miss levels
    assert "BFGS" in res.opt.optimizer
    np.testing.assert_allclose(res.opt.theta_initial, model.initial_theta(), rtol=1e-8)
    assert_same_fit(res, ref, rel=1e-8)


def test_grouping_column_types_interactions_and_missing_values():
    rng = np.random.default_rng(0)
    n = 600
    a, b = rng.integers(0, 6, n), rng.integers(0, 4, n)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(size=6)[a] + rng.normal(size=24)[a * 4 + b] + rng.normal(size=n)
    f_levels = np.array(["lo", "mid", "hi"])[rng.integers(0, 3, n)]
    data = pd.DataFrame(
        {
            "y": y,
            "x": x,
            "a": pd.Categorical(np.array(list("uvwxyz"))[a], categories=list("zyxwvu") + ["never"]),
            "b": b,  # integer grouping
            "s": np.array(["p", "q", "r", "s", "t", "u"])[a],  # string grouping
            "f": f_levels,  # fixed-effect factor
        }
    )
    data.loc[[3, 50, 51, 400], "y"] = np.nan
    data.loc[[7, 300], "x"] = np.nan
    data.loc[[9], "b"] = np.nan
    data.loc[[11], "f"] = None
    for f in [
        "y ~ x + f + (1 | a/b)",
        "y ~ x + f + (x | s) + (1 | a:b)",
        "y ~ x + (1 | b) + (1 | s:b)",
    ]:
        dropped = 7 if " f " not in f else 8
        with pytest.warns(UserWarning, match=f"^{dropped} row"):  # the in-memory message, counted over partitions
            ref = jaxlme.LMM(f, data.sort_values("s", kind="stable")).fit(**TIGHT)
        for k in (1, 7, 64):
            with pytest.warns(UserWarning, match=f"^{dropped} row"):
                res = fit_parts(f, split(data.sort_values("s", kind="stable"), k), **TIGHT)
            assert_same_fit(res, ref)


def test_aliased_columns_dropped_as_in_memory():
    data = jaxlme.datasets.load("sleepstudy").assign(d2=lambda d: 2 * d.Days + 1)
    f = "Reaction ~ Days + d2 + (1 | Subject)"
    with pytest.warns(UserWarning, match="dropping 1 column"):
        ref = jaxlme.lmm(f, data)
    with pytest.warns(UserWarning, match="dropping 1 column"):
        res = fit_parts(f, split(data, 7))
    assert res.model.design.aliased == ["d2"]
    np.testing.assert_allclose(res.fixef, ref.fixef, rtol=REL)


def test_weights_and_offset():
    data = jaxlme.datasets.load("sleepstudy").assign(w=lambda d: 1 + (d.Days % 3), o=lambda d: 0.1 * d.Days)
    f = "Reaction ~ Days + offset(o) + (Days | Subject)"
    ref = jaxlme.LMM(f, data, weights="w").fit(**TIGHT)
    assert_same_fit(fit_parts(f, split(data, 7), weights="w", **TIGHT), ref)


def test_fitted_values_per_partition_and_what_needs_rows():
    data = jaxlme.datasets.load("sleepstudy")
    f = MODELS[0][1]
    ref = jaxlme.LMM(f, data).fit(**TIGHT)
    res = fit_parts(f, split(data, 5), **TIGHT)
    parts = split(data, 5)
    fitted = pd.concat([fitted_values(res, p) for p in parts])
    resid = pd.concat([fitted_values(res, p, "residuals") for p in parts])
    np.testing.assert_allclose(fitted, ref.fitted, rtol=1e-9)
    np.testing.assert_allclose(resid, ref.residuals, rtol=1e-6, atol=1e-8)
    for call in (lambda: res.fitted, lambda: res.residuals):
        with pytest.raises(DataError, match="needs the data rows"):
            call()
    with pytest.raises(ValueError, match="simulate needs the data rows"):
        res.simulate(10)
    with pytest.raises(ValueError, match="refit needs the data rows"):
        res.model.refit(np.zeros(res.nobs))
    assert "not computed" in res.summary()
    assert "Fixed effects" in res.summary()
    res.coefs()  # Satterthwaite inference works from the cross-products


def test_bad_input_gives_the_in_memory_errors():
    data = jaxlme.datasets.load("sleepstudy")
    f = MODELS[0][1]
    a, b = data.iloc[:90], data.iloc[90:].assign(Subject=lambda d: d.Subject.astype(str))
    a = a.assign(Subject=a.Subject.astype(int))
    with pytest.raises(DataError, match="'Subject' holds numeric values in one partition and text"):
        fit_parts(f, [a, b])
    gone = data.assign(Reaction=np.nan)
    with pytest.raises(DataError, match="no complete rows remain"):
        fit_parts(f, split(gone, 3))
    one = data.assign(Subject="s1")
    with pytest.raises(DataError, match="has 1 level"):
        jaxlme.lmm(f, one)
    with pytest.raises(DataError, match="has 1 level"):
        fit_parts(f, split(one, 7))
    flat = data.assign(Reaction=5.0)
    with pytest.raises(DataError, match="is constant"):
        fit_parts(f, split(flat, 7))
    for expr in ["scale(Days)", "poly(Days, 2)", "factor(Days)", "I(center (Days))"]:
        with pytest.raises(FormulaError, match="depends on the whole column"):
            fit_parts(f"Reaction ~ {expr} + (1 | Subject)", split(data, 3))
    res = fit_parts("Reaction ~ log(Days + 1) + I(Days^2) + (1 | Subject)", split(data, 3))  # row-wise: fine
    ref = jaxlme.lmm("Reaction ~ log(Days + 1) + I(Days^2) + (1 | Subject)", data)
    np.testing.assert_allclose(res.fixef, ref.fixef, rtol=1e-9)


def test_all_missing_partition_is_counted():
    data = jaxlme.datasets.load("sleepstudy")
    f = "Reaction ~ Days + (1 | Subject)"
    missing = data.iloc[:20].assign(Reaction=np.nan)
    with pytest.warns(UserWarning, match="20 row"):
        res = fit_parts(f, [missing, data.iloc[20:]])
    with pytest.warns(UserWarning, match="20 row"):
        ref = jaxlme.lmm(f, pd.concat([missing, data.iloc[20:]]))
    assert res.nobs == ref.nobs == 160
    assert res.model.design.n_dropped == 20
    np.testing.assert_allclose(res.fixef, ref.fixef, rtol=REL)


def test_prediction_for_new_rows_and_kenward_roger_needs_rows():
    data = jaxlme.datasets.load("sleepstudy")
    f = MODELS[0][1]
    ref = jaxlme.LMM(f, data).fit(**TIGHT)
    res = fit_parts(f, split(data, 7), **TIGHT)
    new = data.iloc[::17]
    np.testing.assert_allclose(res.predict(new), ref.predict(new), rtol=1e-9)
    np.testing.assert_allclose(
        res.predict(new, random_effects=False), ref.predict(new, random_effects=False), rtol=1e-9
    )
    with pytest.raises(DataError, match="needs the data rows"):
        res.coefs(ddf="kenward-roger")


def test_the_package_works_without_dask():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['dask'] = None\n"
        "import jaxlme\n"
        "d = jaxlme.datasets.load('sleepstudy')\n"
        "print(round(jaxlme.lmm('Reaction ~ Days + (1 | Subject)', d).fixef.iloc[0], 3))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "251.405"


@pytest.mark.parametrize("categorical", [False, True])
def test_fixed_factor_levels_seen_in_some_partitions_only(categorical):
    data = jaxlme.datasets.load("sleepstudy").sort_values("Days", kind="stable")
    phase = np.where(data.Days < 3, "early", np.where(data.Days < 7, "mid", "late"))
    data["phase"] = pd.Categorical(phase, categories=["mid", "late", "early"]) if categorical else phase
    for f in ["Reaction ~ phase + (1 | Subject)", "Reaction ~ Days * phase + (1 | Subject)"]:
        ref = jaxlme.LMM(f, data).fit(**TIGHT)
        res = fit_parts(f, split(data, 7), **TIGHT)  # early partitions hold no "late" rows
        assert list(res.fixef.index) == list(ref.fixef.index)
        assert_same_fit(res, ref)
