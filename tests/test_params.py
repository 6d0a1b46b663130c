"""jaxlme.params: lme4's names for variance parameters, the θ scale and the starting θ."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import jaxlme
from jaxlme import params
from jaxlme.partitions import PartitionPlan, collect_levels


def _terms(*names):
    return [SimpleNamespace(name=n) for n in names]


@pytest.mark.parametrize(
    ("names", "labels"),
    [
        (["Subject"], ["Subject"]),
        (["g", "g"], ["g", "g.1"]),
        (["g", "h", "g", "g"], ["g", "h", "g.1", "g.2"]),
        (["g.1", "g", "g"], ["g.1", "g", "g.2"]),  # make.unique skips a label already taken
    ],
)
def test_group_labels_are_rs_make_unique(names, labels):
    assert params.group_labels(_terms(*names)) == labels


def test_varpar_names_are_lme4s_new_names():
    cols = ["(Intercept)", "Days"]
    assert params.varpar_name("Subject", cols, 0, 0) == "sd_(Intercept)|Subject"
    assert params.varpar_name("Subject", cols, 1, 1) == "sd_Days|Subject"
    assert params.varpar_name("Subject.1", cols, 1, 0) == "cor_Days.(Intercept)|Subject.1"


def test_fit_names_every_parameter_once_in_lme4s_order():
    res = jaxlme.lmm("Reaction ~ Days + (Days | Subject)", jaxlme.datasets.load("sleepstudy"))
    ci = res.confint(method="wald")
    assert list(ci.index[:3]) == ["sd_(Intercept)|Subject", "cor_Days.(Intercept)|Subject", "sd_Days|Subject"]


def test_theta_scale_is_one_over_rms_of_each_column_in_numpy_and_jax():
    model = jaxlme.LMM("Reaction ~ Days + (Days | Subject)", jaxlme.datasets.load("sleepstudy"))
    days = jaxlme.datasets.load("sleepstudy")["Days"].to_numpy(float)
    rms = np.sqrt(np.mean(days**2))
    # θ = (λ11, λ21, λ22): rows of Λ belong to the intercept, then Days
    np.testing.assert_allclose(model.theta_scale, [1.0, 1 / rms, 1 / rms], rtol=1e-12)
    zz = [np.array([180.0, np.sum(days**2)])]
    np.testing.assert_allclose(params.theta_scale(zz, 180, model.layout), model.theta_scale, rtol=1e-12)
    with jax.enable_x64(True):  # as inside jaxlme's programs
        out = params.theta_scale([jnp.asarray(z) for z in zz], 180, model.layout, xp=jnp)
    np.testing.assert_allclose(np.asarray(out), model.theta_scale, rtol=1e-12)


def test_theta_scale_of_an_all_zero_column_is_one():
    model = jaxlme.LMM("Yield ~ 1 + (1 | Batch)", jaxlme.datasets.load("Dyestuff"))
    assert params.theta_scale([np.array([0.0])], 30, model.layout).tolist() == [1.0]


def test_moment_start_is_near_the_optimum_of_scalar_crossed_terms():
    model = jaxlme.LMM("diameter ~ 1 + (1 | plate) + (1 | sample)", jaxlme.datasets.load("Penicillin"))
    start = params.moment_start(model.design, model.layout, model.theta_scale, model.design.y)
    theta = model.fit().theta
    assert np.all(start >= 0.1)
    np.testing.assert_allclose(start, theta, rtol=0.5)  # a start, not the estimate: within half


def _zerocorr_crossed(seed=0, nsubj=48, nitem=24):
    """kb07-like: subjects x items fully crossed, ±0.5 columns in a Latin square."""
    rng = np.random.default_rng(seed)
    subj, item = np.repeat(np.arange(nsubj), nitem), np.tile(np.arange(nitem), nsubj)
    cond = (subj + item) % 4
    X = np.c_[np.ones(subj.size), (cond & 1) - 0.5, ((cond >> 1) & 1) - 0.5]
    bs = rng.normal(size=(nsubj, 3)) * [0.3, 0.15, 0.2]
    bi = rng.normal(size=(nitem, 3)) * [0.35, 0.1, 0.05]
    y = X @ [2.0, 0.1, -0.3] + np.sum(X * bs[subj], 1) + np.sum(X * bi[item], 1) + rng.normal(0, 0.5, subj.size)
    return pd.DataFrame({"y": y, "S": X[:, 1], "P": X[:, 2], "subj": subj.astype(str), "item": item.astype(str)})


def _nested(seed=0, na=60, nb=8, nobs=5):
    rng = np.random.default_rng(seed)
    a = np.repeat(np.arange(na), nb * nobs)
    b = np.tile(np.repeat(np.arange(nb), nobs), na)
    y = 1.0 + rng.normal(0, 0.7, na)[a] + rng.normal(0, 1.2, na * nb)[a * nb + b] + rng.normal(size=a.size)
    return pd.DataFrame({"y": y, "a": a, "b": b})


@pytest.mark.parametrize(
    "formula,data",
    [
        ("y ~ S + P + (1 + S + P || subj) + (1 + S + P || item)", _zerocorr_crossed()),
        ("y ~ 1 + (1 | a) + (1 | a:b)", _nested()),
    ],
    ids=["crossed-zerocorr", "nested"],
)
def test_moment_start_accounts_for_the_other_terms(formula, data):
    """Each term's per-level effects also carry the other terms' effects they share rows
    with (a:b's carry a's; a's carry a:b's averaged): counted, the start is near the
    optimum, where each factor taken alone started 2-5x too high on these shapes."""
    model = jaxlme.LMM(formula, data)
    start = params.moment_start(model.design, model.layout, model.theta_scale, model.design.y)
    theta = model.fit(reml=False).theta
    big = theta > 0.2  # components the optimum does not put near the bound
    assert big.sum() >= 2
    np.testing.assert_allclose(start[big], theta[big], rtol=0.3)


@pytest.mark.parametrize(
    "formula,data",
    [
        ("y ~ S + P + (1 + S + P || subj) + (1 + S + P || item)", _zerocorr_crossed(1, nsubj=64)),
        ("y ~ 1 + (1 | a) + (1 | a:b)", _nested(1)),
        ("y ~ 1 + (1 | a) + (1 | b)", _nested(2)),
    ],
    ids=["crossed-zerocorr", "nested", "crossed"],
)
def test_moment_start_from_summed_cross_products_equals_the_rows_one(formula, data):
    """A model without rows starts where the in-memory model does: the same moment
    equations from Z'Z's blocks (the term-1 block's columns, its entries against the
    rest terms, the rest block)."""
    model = jaxlme.LMM(formula, data)
    parts = [data.iloc[:100], data.iloc[100:]]
    levels = sum(collect_levels(formula, p) for p in parts)
    plan = PartitionPlan(formula, levels, parts[0])
    summed = jaxlme.LMM.from_crossproducts(plan, sum(plan.crossproducts(p) for p in parts))
    assert summed.layout == model.layout
    assert model.layout.head == (3 if "subj" in formula else 1)  # subj's three terms share one block
    np.testing.assert_allclose(summed.initial_theta(), model.initial_theta(), rtol=1e-9)
    assert not np.allclose(model.initial_theta(), model.layout.theta_start * model.theta_scale)


def test_moment_start_keeps_lme4s_start_for_vector_terms():
    model = jaxlme.LMM("Reaction ~ Days + (Days | Subject)", jaxlme.datasets.load("sleepstudy"))
    start = params.moment_start(model.design, model.layout, model.theta_scale, model.design.y)
    np.testing.assert_allclose(start, model.layout.theta_start * model.theta_scale)


def test_vc_values_and_theta_from_vc_are_inverse_and_match_varcorr():
    res = jaxlme.lmm("Reaction ~ Days + (Days | Subject)", jaxlme.datasets.load("sleepstudy"))
    lay = res.model.layout
    vc = params.vc_values(lay, res.theta, res.sigma)
    table = res.varcorr
    assert vc[0] == pytest.approx(table["sdcor"].iloc[0], rel=1e-12)  # sd_(Intercept)
    assert vc[1] == pytest.approx(table["sdcor"].iloc[2], rel=1e-12)  # the correlation
    assert vc[2] == pytest.approx(table["sdcor"].iloc[1], rel=1e-12)  # sd_Days
    with jax.enable_x64(True):
        theta, sigma = params.theta_from_vc(jnp.asarray(vc), jnp.asarray(res.sigma), lay)
    np.testing.assert_allclose(np.asarray(theta), res.theta, rtol=1e-10, atol=1e-12)
    assert float(sigma) == res.sigma
    # batched: one row per (θ, σ), named columns in VarCorr's order
    frame = params.vc_frame(
        lay, res.model.design.terms, res.group_labels, np.stack([res.theta] * 2), np.full(2, res.sigma)
    )
    assert list(frame.columns) == ["sd_(Intercept)|Subject", "sd_Days|Subject", "cor_Days.(Intercept)|Subject", "sigma"]
    np.testing.assert_allclose(frame.iloc[1, :3], vc[[0, 2, 1]], rtol=1e-12)


def test_correlation_of_a_zero_sd_is_undefined():
    res = jaxlme.lmm("Reaction ~ Days + (Days | Subject)", jaxlme.datasets.load("sleepstudy"))
    theta = np.array([1.0, 0.5, 0.0])  # Λ's rows (1, 0) and (0.5, 0): parallel, correlation 1
    zero = np.array([0.0, 0.0, 0.0])
    assert np.isnan(params.vc_values(res.model.layout, zero, 1.0)[1])
    assert params.vc_values(res.model.layout, zero, 1.0, undefined=0.0)[1] == 0.0
    assert params.vc_values(res.model.layout, theta, 1.0)[1] == pytest.approx(1.0)  # Λ's rows parallel
