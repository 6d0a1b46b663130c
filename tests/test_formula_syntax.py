"""The whole formula syntax against extra lme4 1.1-31 fits (tests/data/make_extra_reference.R)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from helpers import DATA, assert_matches_lme4

import jaxlme

EXTRA = json.loads((DATA / "lme4_extra_reference.json").read_text())


def _data(name: str):
    d = jaxlme.datasets.load(name)
    if name == "sleepstudy":
        d["phase"] = np.where(d["Days"] < 5, "early", "late")
        d["period3"] = np.array(["a", "b", "c"])[np.minimum(d["Days"].to_numpy() // 4, 2).astype(int)]
        d["period5"] = ["p" + str(int(v) // 2) for v in d["Days"]]
        d["period"] = (d["Days"] // 3).astype(int)  # factor(period) in tests/test_formula_semantics.py
    return d


_MODELS: dict[str, jaxlme.LMM] = {}


@pytest.mark.parametrize("ref", EXTRA, ids=[f"{r['model']}-{'REML' if r['REML'] else 'ML'}" for r in EXTRA])
def test_extra_models_match_lme4(ref):
    if ref["model"] not in _MODELS:
        _MODELS[ref["model"]] = jaxlme.LMM(ref["jformula"], _data(ref["data"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = _MODELS[ref["model"]].fit(reml=ref["REML"])
    # (0 + period5 | Subject): a 5×5 covariance from 18 subjects is nearly flat along one
    # direction; lme4 stops (with a convergence warning) at θ_55 = 6e-4, jaxlme goes on to a
    # lower criterion with θ_55 < 1e-4, so only the singular flag differs there.
    assert_matches_lme4(res, ref, check_singular=ref["model"] != "sleep_vector5")


def test_zerocorr_equals_separate_terms():
    d = _data("sleepstudy")
    a = jaxlme.lmm("Reaction ~ Days + (Days || Subject)", d)
    b = jaxlme.lmm("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", d)
    assert a.objective == pytest.approx(b.objective, abs=1e-6)
    assert list(a.varcorr.var2.dropna()) == []  # no covariance rows for ||
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-4)


def test_nested_slash_equals_explicit_interaction():
    d = jaxlme.datasets.load("Pastes")
    a = jaxlme.lmm("strength ~ 1 + (1 | batch/cask)", d)
    b = jaxlme.lmm("strength ~ 1 + (1 | batch) + (1 | batch:cask)", d)
    assert a.objective == pytest.approx(b.objective, abs=1e-8)
    assert set(a.ranef) == {"batch", "batch:cask"}
    assert a.ranef["batch:cask"].index[0] == "A:a"


@pytest.mark.parametrize(
    "formula, fixed, groups, correlated",
    [
        ("y ~ x + (1|g)", "x", [("g",)], [True]),
        ("y ~ x + (x|g)", "x", [("g",)], [True]),
        ("y ~ x + (1 + x | g)", "x", [("g",)], [True]),
        ("y ~ x + (0 + x | g)", "x", [("g",)], [True]),
        ("y ~ x + (x || g)", "x", [("g",)], [False]),
        ("y ~ x + (1 | a/b)", "x", [("a",), ("a", "b")], [True, True]),
        ("y ~ x + (1 | a/b/c)", "x", [("a",), ("a", "b"), ("a", "b", "c")], [True] * 3),
        ("y ~ x + (1 | a:b)", "x", [("a", "b")], [True]),
        ("y ~ 0 + x + (1|g) + (1|h)", "0 + x", [("g",), ("h",)], [True, True]),
        ("y ~ -1 + x + (1|g)", "1 - 1 + x", [("g",)], [True]),
        ("y ~ (1|g)", "1", [("g",)], [True]),
        ("np.log(y) ~ a*b + np.log(x) + (1|g)", "a*b + np.log(x)", [("g",)], [True]),
        ("y ~ x - 1 + (1|g)", "x - 1", [("g",)], [True]),
        ("y ~ (x + z) + (1|g)", "(x + z)", [("g",)], [True]),
    ],
)
def test_parse(formula, fixed, groups, correlated):
    p = jaxlme.parse_formula(formula)
    assert p.fixed == fixed
    assert [t.group for t in p.random] == groups
    assert [t.correlated for t in p.random] == correlated


@pytest.mark.parametrize(
    "formula, fragment",
    [
        ("y ~ x + (1|g", "Unmatched '('"),
        ("y ~ x + 1|g)", "Unmatched ')'"),
        ("y ~ x + (|g)", "Missing model expression"),
        ("y ~ x + (1|)", "Missing grouping factor"),
        ("y x + (1|g)", "exactly one '~'"),
        ("~ x + (1|g)", "Missing response"),
        ("y ~ x", "No random-effects terms"),
        ("y ~ x + 1 | g", "enclosed in parentheses"),
        ("y ~ x + (1 | g + h)", "must be a column name"),
        ("y ~ x - (1 | g)", "cannot be subtracted"),
    ],
)
def test_syntax_errors_point_at_problem(formula, fragment):
    with pytest.raises(jaxlme.FormulaError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        jaxlme.parse_formula(formula)


def test_syntax_error_shows_caret():
    with pytest.raises(jaxlme.FormulaError) as err:
        jaxlme.parse_formula("y ~ x + (1|g")
    assert "^" in str(err.value) and "y ~ x + (1|g" in str(err.value)


def test_fixed_part_syntax_error_from_formulaic_is_clear():
    d = _data("sleepstudy")
    with pytest.raises(jaxlme.FormulaError, match="Days"):
        jaxlme.LMM("Reaction ~ Days + ) + (1|Subject)", d)
