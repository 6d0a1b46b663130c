"""jaxlme.structure's CrossProducts: sums over rows, added exactly in any order."""

from __future__ import annotations

import numpy as np
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
