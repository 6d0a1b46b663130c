"""jaxlme.structure's CrossProducts: sums over rows, added exactly in any order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import jaxlme
from jaxlme.partitions import PartitionPlan, collect_levels
from jaxlme.structure import CrossProducts, unique_keys

FIELDS = ("a11", "vals", "zy1", "arr", "ry")


def partition_sums(formula, data, k):
    parts = [data.iloc[i::k] for i in range(k)]  # interleaved: every part meets most levels
    levels = sum(collect_levels(formula, p) for p in parts)
    plan = PartitionPlan(formula, levels, parts[0])
    return plan, [plan.crossproducts(p) for p in parts]


def assert_close(a: CrossProducts, b: CrossProducts, rtol=1e-12):
    assert a.n == b.n and a.p == b.p and a.terms == b.terms
    np.testing.assert_array_equal(a.keys, b.keys)
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * max(1.0, np.abs(y).max(initial=0.0)))


def test_merge_is_associative_and_commutative():
    data = jaxlme.datasets.load("Penicillin")
    _, (a, b, c) = partition_sums("diameter ~ 1 + (1 | plate) + (1 | sample)", data, 3)
    assert_close((a + b) + c, a + (b + c))
    assert_close(a + b, b + a)
    assert_close(sum([a, b, c]), a + b + c)  # sum() starts from 0


def test_sum_of_parts_equals_the_whole():
    data = jaxlme.datasets.load("sleepstudy")
    f = "Reaction ~ Days + (Days | Subject)"
    plan, parts = partition_sums(f, data, 4)
    whole = plan.crossproducts(data)
    assert_close(sum(parts), whole)
    assert sum(parts).n == len(data)
    assert_close(plan.zero + whole, whole, rtol=0)  # the empty partition adds nothing


def test_parts_meet_only_their_keys():
    data = jaxlme.datasets.load("Penicillin").sort_values("plate")
    f = "diameter ~ 1 + (1 | plate) + (1 | sample)"
    plan, _ = partition_sums(f, data, 1)
    half = plan.crossproducts(data.iloc[:72])
    assert len(half.keys) < len(plan.crossproducts(data).keys)  # sparse: fewer (row, level) pairs
    with pytest.raises(ValueError, match="different model structures"):
        _ = half + plan.crossproducts(data).__class__.zero(half.terms[:1], half.p)


@pytest.mark.parametrize("bound", [50, 10**8])
def test_unique_keys_equals_numpy(bound):
    keys = np.random.default_rng(0).integers(0, min(bound, 50), 1000)
    got, inv = unique_keys(keys, bound)
    want, winv = np.unique(keys, return_inverse=True)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(inv, winv)


# -- shape buckets: pad_structure ------------------------------------------------------------
PADDED = [  # (formula, Schur update)
    ("Reaction ~ Days + (Days | Subject)", "dense"),  # one term
    ("Reaction ~ Days + (Days || Subject)", "sparse"),  # two terms on one factor: one wide term
    ("Reaction ~ Days + x + (Days | Subject) + (0 + x | Subject)", "dense"),  # a vector and a scalar term
    ("Reaction ~ Days + x + (1 | Subject) + (0 + Days | g2)", "sparse"),  # crossed: p padded only
]


def _sleep_plus():
    data = jaxlme.datasets.load("sleepstudy")
    rng = np.random.default_rng(0)
    return data.assign(g2=rng.integers(0, 7, len(data)).astype(str), x=rng.normal(size=len(data)))


@pytest.mark.parametrize("formula, schur", PADDED)
def test_padded_structure_keeps_criterion_effects_and_derivatives(formula, schur):
    """The padded structure's criterion, β̂, σ̂, R_X, conditional modes, gradient and
    Hessian, in the model's θ, are the model's own (to rounding)."""
    import jax

    from jaxlme import objective as obj
    from jaxlme.structure import build_structure, level_bucket, pad_structure

    model = jaxlme.LMM(formula, _sleep_plus())
    with jax.enable_x64(True):  # the structure's arrays in float64
        s, _ = build_structure(model.design, schur)
        pad = pad_structure(s)
        lay, play = s.layout, pad.struct.layout
        assert play.p == 4 and play.p > lay.p and pad.p == lay.p
        if "g2" not in formula:  # one factor: 18 subjects and 110 empty levels
            assert play.k1 == level_bucket(lay.k1) == 128
        theta = np.where(lay.theta_lower == 0, 0.8, 0.3) * np.linspace(1.0, 1.3, lay.ntheta)
        tp = jax.numpy.asarray(pad.theta_in(theta))
        varpar = np.append(theta, 25.0)  # (θ, σ): placed in the program's, and read back
        np.testing.assert_array_equal(pad.varpar_in(varpar)[pad.varpar_index], varpar)
        assert pad.varpar_in(varpar)[-1] == 25.0 and pad.varpar_in(varpar).sum() == varpar.sum()
        theta = jax.numpy.asarray(theta)
        idx = np.ix_(pad.theta, pad.theta)
        for reml in (True, False):
            f = jax.jit(jax.value_and_grad(lambda t, st, r=reml: obj.objective(t, st, r)))
            (value, g), (value_p, gp) = f(theta, s), f(tp, pad.struct)
            assert float(value_p) == pytest.approx(float(value), rel=1e-12, abs=1e-9)
            np.testing.assert_allclose(gp[pad.theta], g, rtol=1e-9, atol=1e-9)
            if reml:  # second derivatives: one criterion suffices (the weights are data)
                hess = jax.jit(jax.hessian(lambda t, st: obj.objective(t, st, True)))
                np.testing.assert_allclose(hess(tp, pad.struct)[idx], hess(theta, s), rtol=1e-8, atol=1e-8)
            e, ep = obj.solve_effects(theta, s, reml), obj.solve_effects(tp, pad.struct, reml)
            np.testing.assert_allclose(ep.beta[: lay.p], e.beta, rtol=1e-10, atol=1e-10)
            np.testing.assert_allclose(ep.RX[: lay.p, : lay.p], e.RX, rtol=1e-10, atol=1e-10)
            assert float(ep.sigma) == pytest.approx(float(e.sigma), rel=1e-12)
            for b, bp in zip(e.b, pad.per_term(ep.b)):
                assert bp.shape == b.shape
                np.testing.assert_allclose(bp, b, rtol=1e-9, atol=1e-9)


def test_small_models_of_one_bucket_share_a_layout_large_ones_are_not_padded():
    """Programs are keyed on the layout: models that differ in n, in 1-4 fixed effects, in
    a single term's form ((1|g), (x|g), its grouping factor's name) and in its number of
    levels within a bucket pad to one layout."""
    from jaxlme.structure import PAD_MAX_LEVELS, level_bucket, pad_structure

    data = _sleep_plus()
    subjects = data.Subject.unique()
    variants = [
        ("Reaction ~ Days + (Days | Subject)", data),
        ("Reaction ~ Days + (Days | Subject)", data[data.Days < 8]),  # n = 144
        ("Reaction ~ 1 + (1 | Subject)", data),
        ("Reaction ~ Days + (Days || Subject)", data),
        ("Reaction ~ Days + x + (1 | Subject)", data),
        ("Reaction ~ Days + x + (1 | Subject)", data[data.Subject.isin(subjects[:17])]),  # 17 levels
        ("Reaction ~ Days * x + (Days | Subject)", data.rename(columns={"Subject": "person"}).iloc[5:]),
    ]
    variants[-1] = (variants[-1][0].replace("Subject", "person"), variants[-1][1])
    layouts = {pad_structure(jaxlme.LMM(f, d).structure).struct.layout for f, d in variants}
    assert len(layouts) == 1
    (only,) = layouts
    assert only.p == 4 and only.terms[0].ncols == 2 and only.terms[0].correlated and only.k1 == 128
    for k in [1, 2, 63, 64, 65, 100, 1024, 1025, 2047, 2048, 2049, 3000, 4096]:
        bucket = level_bucket(k)
        assert bucket >= k and bucket == level_bucket(bucket)  # a bucket is its own bucket
        assert bucket <= (128 if k <= 128 else 2 * k - 1)  # padding at most doubles the levels
    assert {level_bucket(k) for k in range(1, PAD_MAX_LEVELS + 1)} == {128, 256, 512, 1024, 2048, 4096}

    def levels(k):
        g = np.repeat(np.arange(k), 2)
        frame = pd.DataFrame({"g": g, "y": np.random.default_rng(k).normal(size=len(g))})
        return jaxlme.LMM("y ~ 1 + (1 | g)", frame).structure

    assert pad_structure(levels(129)).struct.layout.k1 == 256  # the next buckets
    assert pad_structure(levels(300)).struct.layout.k1 == 512
    assert pad_structure(levels(1025)).struct.layout.k1 == 2048
    many_levels = levels(PAD_MAX_LEVELS + 1)  # runs longer than it compiles
    assert pad_structure(many_levels).struct is many_levels
    wide = jaxlme.LMM("Reaction ~ Days * x + Days:g2 + (Days | Subject)", data).structure  # p = 10
    assert pad_structure(wide).struct.layout.p == 16
    rng = np.random.default_rng(1)
    n = 4000
    crossed = pd.DataFrame({"g1": rng.integers(0, 600, n), "g2": rng.integers(0, 450, n), "x": rng.normal(size=n)})
    crossed["y"] = crossed.x + rng.normal(size=n)
    big = jaxlme.LMM("y ~ x + (1 | g1) + (1 | g2)", crossed).structure  # a rest block of 452 rows
    assert pad_structure(big).struct is big
