"""R's meaning of formula functions and operators, and offsets, against lme4 1.1-31.

The references are the ``sleep_*`` cases of tests/data/lme4_extra_reference.json (made by
tests/data/make_extra_reference.R): fits, fitted values and, for the stateful transforms,
``predict(fit, newdata, re.form = NA)`` on Days outside the training range.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import DATA, assert_matches_lme4

import jaxlme
from jaxlme.design import DataError
from jaxlme.formula import FormulaError

EXTRA = json.loads((DATA / "lme4_extra_reference.json").read_text())
IDIOMS = {
    "sleep_I_power",
    "sleep_scale",
    "sleep_scale_slope",
    "sleep_center",
    "sleep_poly",
    "sleep_poly_raw",
    "sleep_log_response",
    "sleep_factor_int",
    "sleep_as_factor",
    "sleep_offset",
    "sleep_sqrt",
    "sleep_exp",
}
CASES = [r for r in EXTRA if r["model"] in IDIOMS]
IDS = [f"{r['model']}-{'REML' if r['REML'] else 'ML'}" for r in CASES]


def _sleep() -> pd.DataFrame:
    d = jaxlme.datasets.load("sleepstudy")
    d["period"] = (d["Days"] // 3).astype(int)  # R: sleep$Days %/% 3
    return d


SLEEP = _sleep()
_MODELS: dict[str, jaxlme.LMM] = {}


def _fit(ref: dict) -> jaxlme.LMMResult:
    if ref["model"] not in _MODELS:
        _MODELS[ref["model"]] = jaxlme.LMM(ref["jformula"], SLEEP)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _MODELS[ref["model"]].fit(reml=ref["REML"])


def test_reference_has_every_idiom():
    assert {r["model"] for r in CASES} == IDIOMS
    assert len(CASES) == 2 * len(IDIOMS)


@pytest.mark.parametrize("ref", CASES, ids=IDS)
def test_idiom_matches_lme4(ref):
    res = _fit(ref)
    assert list(res.fixef.index) == list(ref["fixef"])  # lme4's coefficient names, in order
    assert_matches_lme4(res, ref)
    fitted = np.asarray(ref["fitted"])
    scale = np.std(fitted)
    np.testing.assert_allclose(res.fitted, fitted, rtol=0, atol=1e-4 * scale)
    y = np.log(SLEEP["Reaction"]) if ref["jformula"].startswith("log(") else SLEEP["Reaction"]
    np.testing.assert_allclose(res.residuals, y.to_numpy() - res.fitted, atol=1e-9)  # offsets included


@pytest.mark.parametrize("ref", [r for r in CASES if r.get("predict") is not None], ids=lambda r: r["model"])
def test_stateful_predictions_match_lme4(ref):
    """predict() on new Days applies the training data's centre, scale, polynomial basis
    and offset expression, as lme4's makepredictcall does."""
    res = _fit(ref)
    new = pd.DataFrame({"Days": ref["newdata"]["Days"], "Subject": SLEEP["Subject"].iloc[0]})
    pred = res.predict(new, random_effects=False)
    np.testing.assert_allclose(pred.to_numpy(), ref["predict"], rtol=0, atol=1e-3)


def test_uncorrelated_terms_reference():
    """(1|Subject) + (0 + Days|Subject): the fit and lme4's Subject and Subject.1 labels."""
    refs = [r for r in EXTRA if r["model"] == "sleep_uncorrelated_terms"]
    assert len(refs) == 2
    for ref in refs:
        res = jaxlme.lmm(ref["jformula"], SLEEP, reml=ref["REML"])
        assert res.objective == pytest.approx(ref["criterion"], abs=1e-3)
        np.testing.assert_allclose(res.fitted, ref["fitted"], rtol=0, atol=1e-3)
        assert_matches_lme4(res, ref)


def test_power_inside_I_is_power_not_xor():
    a = jaxlme.lmm("Reaction ~ Days + I(Days^2) + (1 | Subject)", SLEEP)
    b = jaxlme.lmm("Reaction ~ Days + I(Days**2) + (1 | Subject)", SLEEP)
    assert list(a.fixef.index) == ["(Intercept)", "Days", "I(Days^2)"]
    assert list(b.fixef.index) == list(a.fixef.index)
    np.testing.assert_allclose(b.fixef.to_numpy(), a.fixef.to_numpy(), rtol=1e-8)
    X = a.model.design.X
    np.testing.assert_array_equal(X[:, 2], SLEEP["Days"].to_numpy() ** 2)


def test_formula_level_power_is_interactions():
    """Outside calls R's (a + b)^2 is all interactions up to order two."""
    res = jaxlme.lmm("Reaction ~ (Days + period)^2 + (1 | Subject)", SLEEP)
    assert list(res.fixef.index) == ["(Intercept)", "Days", "period", "Days:period"]
    res2 = jaxlme.lmm("Reaction ~ Days/period + (1 | Subject)", SLEEP)
    assert list(res2.fixef.index) == ["(Intercept)", "Days", "Days:period"]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("log(Days + 1, 2)", np.log2(SLEEP["Days"] + 1)),
        ("log2(Days + 1)", np.log2(SLEEP["Days"] + 1)),
        ("log10(Days + 1)", np.log10(SLEEP["Days"] + 1)),
        ("np.log(Days + 1)", np.log(SLEEP["Days"] + 1)),
        ("abs(Days - 4)", np.abs(SLEEP["Days"] - 4)),
        ("I(Days %% 4)", SLEEP["Days"] % 4),  # named I(Days%%4), as R deparses it
        ("I(Days %/% 4)", SLEEP["Days"] // 4),
        ("as.numeric(period)", SLEEP["period"].astype(float)),
        ("scale(Days, center = FALSE)", SLEEP["Days"] / np.sqrt((SLEEP["Days"] ** 2).sum() / (len(SLEEP) - 1))),
    ],
)
def test_r_functions_compute_r_values(expr, expected):
    res = jaxlme.LMM(f"Reaction ~ {expr} + (1 | Subject)", SLEEP)
    assert res.design.xnames == ["(Intercept)", expr.replace(" %% ", "%%").replace(" %/% ", "%/%")]
    np.testing.assert_allclose(res.design.X[:, 1], np.asarray(expected, dtype=float), rtol=1e-12)


def test_logical_inside_I_is_coded_as_R_codes_it():
    res = jaxlme.LMM("Reaction ~ I(Days > 3) + (1 | Subject)", SLEEP)
    assert res.design.xnames == ["(Intercept)", "I(Days > 3)TRUE"]  # lme4's name
    np.testing.assert_array_equal(res.design.X[:, 1], (SLEEP["Days"] > 3).astype(float))


def test_simulate_includes_the_offset():
    """lme4's simulate() adds the offset: equal to simulating the shifted response's model
    (same estimates, same draws) plus the offset."""
    with_offset = jaxlme.lmm("Reaction ~ Days + offset(10 * Days) + (1 | Subject)", SLEEP)
    shifted = jaxlme.lmm("I(Reaction - 10 * Days) ~ Days + (1 | Subject)", SLEEP)
    np.testing.assert_allclose(with_offset.theta, shifted.theta, rtol=1e-8)
    sims = with_offset.simulate(3, seed=5)
    np.testing.assert_allclose(sims, shifted.simulate(3, seed=5) + 10 * SLEEP["Days"].to_numpy(), rtol=1e-6)


def test_factor_is_categorical_even_when_numeric_elsewhere():
    with pytest.warns(UserWarning, match="dropping 1 column"):
        res = jaxlme.lmm("Reaction ~ factor(period) + period + Days + (1 | Subject)", SLEEP)
    # period is a linear combination of the factor's indicators: R drops it as aliased
    assert list(res.fixef.index) == [
        "(Intercept)",
        "factor(period)1",
        "factor(period)2",
        "factor(period)3",
        "Days",
    ]
    assert res.model.design.aliased == ["period"]


def test_factor_predict_uses_training_levels():
    res = jaxlme.lmm("Reaction ~ factor(period) + (1 | Subject)", SLEEP)
    new = pd.DataFrame({"period": [3, 0], "Subject": SLEEP["Subject"].iloc[:2].to_numpy()})
    pred = res.predict(new, random_effects=False)
    b = res.fixef
    np.testing.assert_allclose(pred.to_numpy(), [b["(Intercept)"] + b["factor(period)3"], b["(Intercept)"]])
    with pytest.raises(DataError, match="not seen"):
        res.predict(pd.DataFrame({"period": [7], "Subject": ["308"]}), random_effects=False)


def test_transform_in_response_and_random_term():
    res = jaxlme.lmm("log(Reaction) ~ Days + (scale(Days) | Subject)", SLEEP)
    np.testing.assert_allclose(res.y, np.log(SLEEP["Reaction"]))
    assert list(res.ranef["Subject"].columns) == ["(Intercept)", "scale(Days)"]
    new = pd.DataFrame({"Days": [0.0, 12.0], "Subject": SLEEP["Subject"].iloc[[0, 0]].to_numpy()})
    # the random slope's scale(Days) uses the training mean and sd for new data
    sd = SLEEP["Days"].std()
    z = (new["Days"] - SLEEP["Days"].mean()) / sd
    b = res.ranef["Subject"].iloc[0]
    expected = res.fixef["(Intercept)"] + res.fixef["Days"] * new["Days"] + b["(Intercept)"] + b["scale(Days)"] * z
    np.testing.assert_allclose(res.predict(new).to_numpy(), expected.to_numpy(), rtol=1e-10)


def test_offsets_add_up_and_enter_fitted_residuals_predict():
    one = jaxlme.lmm("Reaction ~ Days + offset(10 * Days) + (1 | Subject)", SLEEP)
    two = jaxlme.lmm("Reaction ~ Days + offset(4 * Days) + offset(6 * Days) + (1 | Subject)", SLEEP)
    plain = jaxlme.lmm("Reaction ~ Days + (1 | Subject)", SLEEP)
    np.testing.assert_allclose(two.fixef.to_numpy(), one.fixef.to_numpy(), rtol=1e-8)
    # a linear offset only moves the slope by its coefficient
    assert one.fixef["Days"] == pytest.approx(plain.fixef["Days"] - 10, abs=1e-5)
    np.testing.assert_allclose(one.fitted, plain.fitted, atol=1e-4)
    np.testing.assert_allclose(one.residuals, SLEEP["Reaction"].to_numpy() - one.fitted, atol=1e-10)
    np.testing.assert_allclose(one.predict().to_numpy(), one.fitted)
    new = pd.DataFrame({"Days": [1.0, 20.0], "Subject": SLEEP["Subject"].iloc[[0, 0]].to_numpy()})
    np.testing.assert_allclose(
        one.predict(new, random_effects=False).to_numpy(),
        one.fixef["(Intercept)"] + (one.fixef["Days"] + 10) * new["Days"].to_numpy(),
    )
    with pytest.raises(DataError, match="Days"):
        one.predict(pd.DataFrame({"Subject": ["308"]}), random_effects=False)


# Each construct whose R meaning jaxlme does not give: one-line FormulaError naming it.
REFUSED = [
    ("Reaction ~ bs(Days) + (1 | Subject)", "bs()"),
    ("Reaction ~ cr(Days, df=3) + (1 | Subject)", "cr()"),
    ("Reaction ~ cc(Days, df=3) + (1 | Subject)", "cc()"),
    ("Reaction ~ cs(Days, df=3) + (1 | Subject)", "cs()"),
    ("Reaction ~ lag(Days) + (1 | Subject)", "lag()"),
    ("Reaction ~ hashed(Subject) + (1 | Subject)", "hashed()"),
    ("Reaction ~ exp10(Days) + (1 | Subject)", "exp10()"),
    ("Reaction ~ exp2(Days) + (1 | Subject)", "exp2()"),
    ("Reaction ~ standardize(Days) + (1 | Subject)", "standardize()"),
    ("Reaction ~ C(period, Sum) + (1 | Subject)", "C(period, Sum)"),
    ("Reaction ~ C(period, contr.treatment) + (1 | Subject)", "C(period, contr.treatment)"),
    ("Reaction ~ ns(Days, 3) + (1 | Subject)", "ns()"),
    ("Reaction ~ cut(Days, 3) + (1 | Subject)", "cut()"),
    ("Reaction ~ I(Days // 2) + (1 | Subject)", "I(Days // 2)"),
    ("Reaction ~ I(Days @ Days) + (1 | Subject)", "I(Days @ Days)"),
    ("Reaction ~ I(Days > 2 and Days < 5) + (1 | Subject)", "I(Days > 2 and Days < 5)"),
    ("Reaction ~ I(Days %in% 1) + (1 | Subject)", "%in%"),
    ("Reaction ~ Days %in% period + (1 | Subject)", "%in%"),
    ("Reaction ~ . + (1 | Subject)", "'.'"),
    ("Reaction ~ Days + (bs(Days) | Subject)", "bs()"),
    ("exp10(Reaction) ~ Days + (1 | Subject)", "exp10()"),
    ("Reaction ~ Days + (offset(Days) | Subject)", "(offset(Days) | Subject)"),
    ("Reaction ~ Days:offset(Days) + (1 | Subject)", "Days:offset(Days)"),
    ("Reaction ~ Days - offset(Days) + (1 | Subject)", "offset(Days)"),
]


@pytest.mark.parametrize(("formula", "term"), REFUSED, ids=[t for _, t in REFUSED])
def test_refused_constructs_raise_one_line_error(formula, term):
    with pytest.raises(FormulaError) as info:
        jaxlme.LMM(formula, SLEEP)
    msg = str(info.value)
    assert "\n" not in msg
    assert term in msg


# Constructs that keep formulaic's meaning because it is R's (each checked above or here).
def test_kept_python_spellings():
    a = jaxlme.LMM("Reaction ~ Q('Days') + C(period) + (1 | Subject)", SLEEP)
    b = jaxlme.LMM("Reaction ~ Days + factor(period) + (1 | Subject)", SLEEP)
    np.testing.assert_array_equal(a.design.X, b.design.X)
    c = jaxlme.LMM("Reaction ~ (Days + period)**2 - period + (1 | Subject)", SLEEP)
    assert c.design.xnames == ["(Intercept)", "Days", "Days:period"]
