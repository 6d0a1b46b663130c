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
from jaxlme import inference

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
    out = inference.f_test(fit("cake"), L, ddf=ddf)
    assert list(out.index[:4]) == ["F", "NumDF", "DenDF", "p"]
    np.testing.assert_allclose(out["F"], ref["f"], rtol=1e-4)
    np.testing.assert_allclose(out["NumDF"], ref["numdf"], rtol=0)
    np.testing.assert_allclose(out["DenDF"], ref["dendf"], rtol=1e-4)
    np.testing.assert_allclose(out["p"], ref["p"], rtol=1e-4)
    np.testing.assert_allclose(out[["Sum Sq", "Mean Sq"]], [ref["sum_sq"], ref["mean_sq"]], rtol=1e-4)
    # the same test from a plain array, and with the rows in another basis (same hypothesis)
    arr = np.asarray(c["L"], dtype=float)
    np.testing.assert_allclose(inference.f_test(fit("cake"), arr, ddf=ddf)["F"], out["F"], rtol=1e-10)
    mixed = np.array([[1.0, 1.0], [0.0, 2.0]]) @ arr
    other = inference.f_test(fit("cake"), mixed, ddf=ddf)
    np.testing.assert_allclose(other["F"], out["F"], rtol=1e-8)
    if ddf == "kenward-roger":  # KR's df is invariant; lmerTest's eigen-contrast combination is not
        np.testing.assert_allclose(other["DenDF"], out["DenDF"], rtol=1e-8)


def test_f_test_single_row_is_the_squared_t_test():
    res = fit("sleepstudy")
    L = pd.Series({"Days": 1.0})
    out = inference.f_test(res, L)
    ct = res.coefs()
    np.testing.assert_allclose(out["F"], ct.loc["Days", "t"] ** 2, rtol=1e-10)
    np.testing.assert_allclose(out["DenDF"], ct.loc["Days", "df"], rtol=1e-10)
    np.testing.assert_allclose(out["p"], ct.loc["Days", "p"], rtol=1e-8)
    kr = inference.f_test(res, L, ddf="kenward-roger")
    np.testing.assert_allclose(kr["DenDF"], REF["sleepstudy"]["kr_df"][1], rtol=1e-4)


def test_f_test_bad_input():
    res = fit("sleepstudy")
    with pytest.raises(ValueError, match="unknown ddf"):
        inference.f_test(res, [[0, 1]], ddf="lme4")
    with pytest.raises(ValueError, match="2 columns"):
        inference.f_test(res, [[0, 1, 0]])
    with pytest.raises(ValueError, match="not fixed effects"):
        inference.f_test(res, pd.DataFrame({"days": [1.0]}))
    with pytest.raises(ValueError, match="missing or infinite"):
        inference.f_test(res, [[0, np.nan]])
    with pytest.raises(ValueError, match="only available for REML"):
        inference.f_test(fit("sleepstudy", reml=False), [[0, 1]], ddf="kenward-roger")
