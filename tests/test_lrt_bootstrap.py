"""lrt: rows named by formula, and parametric-bootstrap p-values as pbkrtest's PBmodcomp (issue 20)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from helpers import DATA, load_csv

import jaxlme

REF = json.loads((DATA / "pbmodcomp_reference.json").read_text())
NBOOT = 1000


def _case(name):
    return next(c for c in REF["cases"] if c["name"] == name)


def _ml(formula, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jaxlme.lmm(formula, load_csv(data), reml=False)


@pytest.fixture(scope="module")
def sleep_int():
    return _ml("Reaction ~ Days + (1|Subject)", "sleepstudy")


@pytest.fixture(scope="module")
def sleep_slope():
    return _ml("Reaction ~ Days + (Days|Subject)", "sleepstudy")


def test_rows_are_named_by_formula(sleep_int, sleep_slope):
    tab = jaxlme.lrt(sleep_slope, sleep_int)
    assert list(tab.index) == ["Reaction ~ Days + (1|Subject)", "Reaction ~ Days + (Days|Subject)"]
    assert list(tab.columns) == ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "p"]
    named = jaxlme.lrt(sleep_int, sleep_slope, names=["null", "alt"])
    assert list(named.index) == ["null", "alt"]
    same = jaxlme.lrt(sleep_int, sleep_int)  # the same formula twice: told apart by position
    assert list(same.index) == ["Reaction ~ Days + (1|Subject) [1]", "Reaction ~ Days + (1|Subject) [2]"]


def _check_against_pbkrtest(case, tab, p_ref_key="p_pb"):
    """Observed statistic as pbkrtest's; p_boot within 4 binomial SEs of pbkrtest's p
    (both Monte-Carlo estimates: SE² = p(1-p)/n_ours + p(1-p)/n_ref, over the replicates
    with LRT* > 0 that each p is a fraction of)."""
    row = tab.iloc[1]
    assert row["Chisq"] == pytest.approx(case["stat"], rel=1e-6, abs=1e-6)
    assert row["Df"] == case["df"]
    assert row["p"] == pytest.approx(case["p_chisq"], rel=1e-5, abs=1e-9)
    info = tab.attrs["bootstrap"]
    name = tab.index[1]
    assert info["nsim"] == NBOOT and info["usable"][name] >= NBOOT - 5
    p_ref = case[p_ref_key]
    npos_ref = case["npos_tol" if p_ref_key == "p_pb_tol" else "npos"]
    p = row["p_boot"]
    var = p_ref * (1 - p_ref)
    se = np.sqrt(var / info["positive"][name] + var / npos_ref)
    assert abs(p - p_ref) <= 4 * se + 1.0 / NBOOT, (p, p_ref, se)
    return p, p_ref, se


def test_correlation_test_matches_pbkrtest(sleep_slope):
    """(1|S) + (0+Days|S) vs (Days|S): p ≈ 0.81, where the Monte-Carlo band is widest."""
    case = _case("sleep_uncorr_vs_corr")
    null = _ml(case["small"], case["data"])
    tab = jaxlme.lrt(null, sleep_slope, bootstrap=NBOOT, seed=2)
    _check_against_pbkrtest(case, tab)


@pytest.mark.slow
def test_boundary_variance_tests_match_pbkrtest(sleep_int, sleep_slope):
    """Variance components tested at the boundary: (1|S) vs (Days|S) on sleepstudy (p at
    its floor 1/(1+N)) and Pastes' batch variance (half the replicates at LRT* = 0)."""
    case = _case("sleep_int_vs_slope")
    tab = jaxlme.lrt(sleep_int, sleep_slope, bootstrap=NBOOT, seed=3)
    _check_against_pbkrtest(case, tab)
    assert tab["p_boot"].iloc[1] == pytest.approx(1 / (1 + tab.attrs["bootstrap"]["positive"][tab.index[1]]))
    # Pastes: pbkrtest counts LRT* > 0 exactly, and ~7% of its replicates are lme4's
    # rounding noise at the boundary (+1e-13), which it counts as positive (its p 0.412);
    # jaxlme counts |LRT*| <= PB_ZERO as 0, i.e. pbkrtest's formula with the noise as 0
    # (p_pb_tol, 0.485 from pbkrtest's own replicates): compared with that
    case = _case("pastes_batch")
    assert case["npos"] - case["npos_tol"] > 0.05 * case["nsim"]  # the noise the rule leaves out
    small, large = _ml(case["small"], case["data"]), _ml(case["large"], case["data"])
    tab = jaxlme.lrt(small, large, bootstrap=NBOOT, seed=4)
    _check_against_pbkrtest(case, tab, "p_pb_tol")
    info = tab.attrs["bootstrap"]
    frac_zero = 1 - info["positive"][tab.index[1]] / info["usable"][tab.index[1]]
    # pbkrtest's LRT* ≤ 1e-6 fraction (a binomial proportion, here ~0.5)
    assert abs(frac_zero - case["frac_le_tol"]) <= 4 * np.sqrt(0.25 / NBOOT + 0.25 / case["nsim"])


@pytest.mark.parametrize("name", ["pastes_batch", "sleep_uncorr_vs_corr"])
def test_replicate_statistics_equal_pbkrtests_on_the_same_responses(name):
    """pbkrtest's LRT* of lme4-simulated responses (pbmodcomp_replicates.json), refitted by
    fit_many as lrt(bootstrap=) does: the deviances to 1e-5 (jaxlme's never above lme4's by
    more), so the statistics and which of them are 0 agree; Monte-Carlo-free."""
    case = next(c for c in json.loads((DATA / "pbmodcomp_replicates.json").read_text())["cases"] if c["name"] == name)
    small, large = _ml(case["small"], case["data"]), _ml(case["large"], case["data"])
    ys = np.asarray(case["responses"]).T
    d0 = small.model.fit_many(ys, reml=False, theta0=small.theta)
    d1 = large.model.fit_many(ys, reml=False, theta0=large.theta)
    assert d0["converged"].all() and d1["converged"].all()
    for got, ref in ((d0, case["deviance_small"]), (d1, case["deviance_large"])):
        diff = got["objective"].to_numpy() - np.asarray(ref)
        assert diff.max() <= 1e-6 and diff.min() >= -1e-5, (diff.min(), diff.max())
    lrt_star = d0["objective"].to_numpy() - d1["objective"].to_numpy()
    np.testing.assert_allclose(lrt_star, case["lrt"], atol=2e-5)
    zero = jaxlme.inference.PB_ZERO
    np.testing.assert_array_equal(lrt_star > zero, np.asarray(case["lrt"]) > zero)


def test_reproducible_by_seed_and_recorded(sleep_int, sleep_slope):
    a = jaxlme.lrt(sleep_int, sleep_slope, bootstrap=40, seed=123)
    b = jaxlme.lrt(sleep_slope, sleep_int, bootstrap=40, seed=123)
    c = jaxlme.lrt(sleep_int, sleep_slope, bootstrap=40, seed=124)
    name = a.index[1]
    assert a.attrs["bootstrap"]["seed"] == 123 and a.attrs["bootstrap"]["nsim"] == 40
    np.testing.assert_allclose(a.attrs["bootstrap"]["lrt"][name], b.attrs["bootstrap"]["lrt"][name], atol=1e-6)
    assert a["p_boot"].iloc[1] == b["p_boot"].iloc[1]
    assert not np.allclose(a.attrs["bootstrap"]["lrt"][name], c.attrs["bootstrap"]["lrt"][name])
    assert np.isnan(a["p_boot"].iloc[0])
    fresh = jaxlme.lrt(sleep_int, sleep_slope, bootstrap=5, seed=None)
    assert isinstance(fresh.attrs["bootstrap"]["seed"], int)


def test_statistics_are_refits_of_simulated_responses(sleep_int, sleep_slope):
    """LRT* of replicate i is the ML deviance difference of refits to simulate()'s response i."""
    tab = jaxlme.lrt(sleep_int, sleep_slope, bootstrap=3, seed=9)
    stats = tab.attrs["bootstrap"]["lrt"][tab.index[1]]
    ys = sleep_int.simulate(3, seed=9)
    for i in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d0 = sleep_int.model.refit(ys[i], reml=False).objective
            d1 = sleep_slope.model.refit(ys[i], reml=False).objective
        assert stats[i] == pytest.approx(d0 - d1, abs=1e-6)


def test_more_than_two_models_test_each_adjacent_pair(sleep_int, sleep_slope):
    uncorr = _ml("Reaction ~ Days + (1|Subject) + (0+Days|Subject)", "sleepstudy")
    tab = jaxlme.lrt(sleep_slope, sleep_int, uncorr, bootstrap=30, seed=5)
    assert list(tab["npar"]) == [4, 5, 6]
    assert np.isnan(tab["p_boot"].iloc[0])
    assert np.all((tab["p_boot"].iloc[1:] > 0) & (tab["p_boot"].iloc[1:] <= 1))
    assert set(tab.attrs["bootstrap"]["usable"]) == set(tab.index[1:])
    # each row's statistics are its own pair's: the uncorrelated model is row 2's null
    pair = jaxlme.lrt(uncorr, sleep_slope, bootstrap=30, seed=5)
    np.testing.assert_allclose(
        tab.attrs["bootstrap"]["lrt"][tab.index[2]], pair.attrs["bootstrap"]["lrt"][pair.index[1]], atol=1e-6
    )


def test_reml_fits_are_refitted_by_ml_for_the_bootstrap(sleep_int, sleep_slope):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r0 = jaxlme.lmm("Reaction ~ Days + (1|Subject)", load_csv("sleepstudy"))
        r1 = jaxlme.lmm("Reaction ~ Days + (Days|Subject)", load_csv("sleepstudy"))
    with pytest.warns(UserWarning, match="refitting"):
        tab = jaxlme.lrt(r0, r1, bootstrap=10, seed=1)
    ml = jaxlme.lrt(sleep_int, sleep_slope, bootstrap=10, seed=1)
    np.testing.assert_allclose(
        tab.attrs["bootstrap"]["lrt"][tab.index[1]], ml.attrs["bootstrap"]["lrt"][ml.index[1]], atol=1e-5
    )


def test_bootstrap_bad_input(sleep_int, sleep_slope):
    for bad in (0, -3, 2.5, True, "100"):
        with pytest.raises(ValueError, match="bootstrap must be a positive number"):
            jaxlme.lrt(sleep_int, sleep_slope, bootstrap=bad)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r0 = jaxlme.lmm("Reaction ~ Days + (1|Subject)", load_csv("sleepstudy"))
        r1 = jaxlme.lmm("Reaction ~ Days + (Days|Subject)", load_csv("sleepstudy"))
    with pytest.raises(ValueError, match="bootstrap p-values compare ML fits"):
        jaxlme.lrt(r0, r1, refit=False, bootstrap=10)
