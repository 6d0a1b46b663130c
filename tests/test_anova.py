"""F tests and ANOVA tables of the fixed effects against lmerTest 3.1 (contestMD, anova types
I/II/III with Satterthwaite's and Kenward-Roger's df) and pbkrtest 0.5.2.

Reference numbers: tests/data/anova_reference.json, made by make_anova_reference.R.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import DATA

import jaxlme
from jaxlme import anova

REF = json.loads((DATA / "anova_reference.json").read_text())
MODELS = [k for k in REF if k != "cake_contrast"]
_FITS: dict = {}


def fit(name: str, reml: bool = True):
    """The reference model ``name`` fitted to its CSV (cached per module run)."""
    key = (name, reml)
    if key not in _FITS:
        r = REF[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[key] = jaxlme.LMM(r["formula"], pd.read_csv(DATA / r["data"])).fit(reml=reml)
    return _FITS[key]


def _rows(x) -> list:
    return [x] if isinstance(x, (str, int, float)) else list(x)


@pytest.mark.parametrize("ddf", ["satterthwaite", "kenward-roger"])
def test_f_test_matches_contestmd(ddf):
    c = REF["cake_contrast"]
    ref = c["tests"][ddf]
    L = pd.DataFrame(c["L"], columns=c["coef_names"])
    out = anova.f_test(fit("cake"), L, ddf=ddf)
    assert list(out.index[:4]) == ["F", "NumDF", "DenDF", "p"]
    np.testing.assert_allclose(out["F"], ref["f"], rtol=1e-4)
    np.testing.assert_allclose(out["NumDF"], ref["numdf"], rtol=0)
    np.testing.assert_allclose(out["DenDF"], ref["dendf"], rtol=1e-4)
    np.testing.assert_allclose(out["p"], ref["p"], rtol=1e-4)
    np.testing.assert_allclose(out[["Sum Sq", "Mean Sq"]], [ref["sum_sq"], ref["mean_sq"]], rtol=1e-4)
    # the same test from a plain array, and with the rows in another basis (same hypothesis)
    arr = np.asarray(c["L"], dtype=float)
    np.testing.assert_allclose(anova.f_test(fit("cake"), arr, ddf=ddf)["F"], out["F"], rtol=1e-10)
    mixed = np.array([[1.0, 1.0], [0.0, 2.0]]) @ arr
    other = anova.f_test(fit("cake"), mixed, ddf=ddf)
    np.testing.assert_allclose(other["F"], out["F"], rtol=1e-8)
    if ddf == "kenward-roger":  # KR's df is invariant; lmerTest's eigen-contrast combination is not
        np.testing.assert_allclose(other["DenDF"], out["DenDF"], rtol=1e-8)


def test_f_test_single_row_is_the_squared_t_test():
    res = fit("sleepstudy")
    L = pd.Series({"Days": 1.0})
    out = anova.f_test(res, L)
    ct = res.coefs()
    np.testing.assert_allclose(out["F"], ct.loc["Days", "t"] ** 2, rtol=1e-10)
    np.testing.assert_allclose(out["DenDF"], ct.loc["Days", "df"], rtol=1e-10)
    np.testing.assert_allclose(out["p"], ct.loc["Days", "p"], rtol=1e-8)
    kr = anova.f_test(res, L, ddf="kenward-roger")
    np.testing.assert_allclose(kr["DenDF"], REF["sleepstudy"]["kr_df"][1], rtol=1e-4)


def test_f_test_bad_input():
    res = fit("sleepstudy")
    with pytest.raises(ValueError, match="unknown ddf"):
        anova.f_test(res, [[0, 1]], ddf="lme4")
    with pytest.raises(ValueError, match="2 columns"):
        anova.f_test(res, [[0, 1, 0]])
    with pytest.raises(ValueError, match="not fixed effects"):
        anova.f_test(res, pd.DataFrame({"days": [1.0]}))
    with pytest.raises(ValueError, match="missing or infinite"):
        anova.f_test(res, [[0, np.nan]])
    with pytest.raises(ValueError, match="only available for REML"):
        anova.f_test(fit("sleepstudy", reml=False), [[0, 1]], ddf="kenward-roger")


# -- ANOVA tables -------------------------------------------------------------------------
@pytest.mark.parametrize("ddf", ["satterthwaite", "kenward-roger"])
@pytest.mark.parametrize("type_", ["1", "2", "3"])
@pytest.mark.parametrize("name", MODELS)
def test_anova_matches_lmertest(name, type_, ddf):
    ref = REF[name]["anova"][ddf][type_]
    tab = fit(name).anova(type=int(type_), ddf=ddf)
    assert list(tab.columns) == ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
    assert list(tab.index) == _rows(ref["rows"])
    np.testing.assert_allclose(tab["NumDF"], _rows(ref["numdf"]), rtol=0)
    np.testing.assert_allclose(tab["DenDF"], _rows(ref["dendf"]), rtol=1e-4)
    np.testing.assert_allclose(tab["F value"], _rows(ref["f"]), rtol=1e-4)
    np.testing.assert_allclose(tab["Pr(>F)"], _rows(ref["p"]), rtol=1e-4)
    np.testing.assert_allclose(tab["Sum Sq"], _rows(ref["sum_sq"]), rtol=1e-4)
    np.testing.assert_allclose(tab["Mean Sq"], _rows(ref["mean_sq"]), rtol=1e-4)
    roman = {"1": "I", "2": "II", "3": "III"}[type_]
    assert tab.attrs["heading"].startswith(f"Type {roman} Analysis of Variance Table")


def test_anova_types_differ_where_lmertest_does():
    """The unbalanced fits discriminate between the types: a check that could not fail if
    all three built the same hypotheses would be worthless."""
    for name in ("crossed", "singular", "bounce_interaction"):
        f = {t: np.asarray(_rows(REF[name]["anova"]["satterthwaite"][t]["f"])) for t in "123"}
        assert np.max(np.abs(f["1"] / f["2"] - 1)) > 1e-3 and np.max(np.abs(f["2"] / f["3"] - 1)) > 1e-3
    # type III of a main effect in a treatment-coded interaction model is not the test of
    # its own columns (the naive "drop columns" test: lmerTest's type "marginal")
    res = fit("singular")
    from jaxlme.anova import hypotheses

    H = hypotheses(res, 3)["x"]
    assert H.shape == (1, 6) and np.count_nonzero(H) > 1
    naive = anova.f_test(res, pd.DataFrame({"x": [1.0]}))
    assert abs(naive["F"] / res.anova(type=3).loc["x", "F value"] - 1) > 1e-2


def test_anova_type_spellings_and_defaults():
    res = fit("crossed")
    default = res.anova()
    assert default.attrs["heading"] == "Type III Analysis of Variance Table with Satterthwaite's method"
    for spelled in (3, "3", "III", "iii"):
        pd.testing.assert_frame_equal(res.anova(type=spelled), default)
    pd.testing.assert_frame_equal(res.anova(type="II"), res.anova(type=2))
    pd.testing.assert_frame_equal(res.anova(type="I", ddf="Kenward-Roger"), res.anova(type=1, ddf="kenward-roger"))
    assert set(default.attrs["hypotheses"]) == {"A", "B", "x", "A:B"}


def test_anova_with_other_models_is_still_the_lrt():
    a, b = fit("bounce"), fit("bounce_factor")
    with pytest.warns(UserWarning, match="refitting"):
        tab = a.anova(b)
    assert list(tab.columns) == ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "p"]
    with pytest.raises(ValueError, match="LRT"):
        a.anova(b, type=3)
    with pytest.raises(TypeError, match="takes type and ddf"):
        a.anova(refit=False)


def test_anova_bad_arguments():
    res = fit("cake")
    with pytest.raises(ValueError, match="unknown type"):
        res.anova(type=4)
    with pytest.raises(ValueError, match="unknown ddf"):
        res.anova(ddf="lme4")
    with pytest.raises(ValueError, match="only available for REML"):
        fit("cake", reml=False).anova(ddf="kenward-roger")


def test_type3_refuses_what_needs_the_data():
    cake = pd.read_csv(DATA / "cake.csv")
    empty = cake[~((cake.recipe == "A") & (cake.temperature == "t175"))]  # an empty cell
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = jaxlme.LMM(REF["cake"]["formula"], empty).fit()
    assert res.model.design.aliased
    with pytest.raises(ValueError, match="depend on the data"):
        res.anova(type=3)
    assert np.all(np.isfinite(res.anova(type=1)["F value"]))  # types I and II need only X


def test_kr_f_test_of_a_rank_deficient_l_falls_back_to_satterthwaite():
    """pbkrtest cannot invert LΦL' for repeated rows; lmerTest then warns and uses
    Satterthwaite's test, whose eigen-reduction drops the repeated direction."""
    res = fit("cake")
    L = pd.DataFrame({"recipeB": [1.0, 2.0], "recipeC": [-1.0, -2.0]})
    with pytest.warns(UserWarning, match="using Satterthwaite instead"):
        out = anova.f_test(res, L, ddf="kenward-roger")
    single = anova.f_test(res, L.iloc[:1], ddf="satterthwaite")
    assert out["NumDF"] == 1
    np.testing.assert_allclose(out[["F", "DenDF", "p"]], single[["F", "DenDF", "p"]], rtol=1e-8)
