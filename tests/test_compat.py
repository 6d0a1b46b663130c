"""The statsmodels-compatible front end agrees with statsmodels where statsmodels converges."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import jaxlme
from jaxlme import DataError, FormulaError
from jaxlme.compat import mixedlm, to_lme4_formula

smf = pytest.importorskip("statsmodels.formula.api")

REL = 1e-4
VREL = 1e-3


@pytest.fixture(scope="module")
def bounce() -> pd.DataFrame:
    return jaxlme.datasets.load("bounce_time")


def _pair(data, reml=True, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm = smf.mixedlm("bounce_time ~ age_scaled", data, **kw).fit(reml=reml)
    jx = mixedlm("bounce_time ~ age_scaled", data, **kw).fit(reml=reml)
    return sm, jx


@pytest.fixture(scope="module")
def slope(bounce):
    return _pair(bounce, groups=bounce["county"], re_formula="~age_scaled")


@pytest.fixture(scope="module")
def intercept(bounce):
    return _pair(bounce, groups="county")


@pytest.fixture(scope="module")
def nested(bounce):
    return _pair(bounce, groups="county", vc_formula={"location": "0 + C(location)"})


@pytest.fixture(scope="module")
def intercept_ml(bounce):
    return _pair(bounce, reml=False, groups="county")


@pytest.mark.parametrize("case", ["slope", "intercept", "nested", "intercept_ml"])
def test_matches_statsmodels(case, request):
    sm, jx = request.getfixturevalue(case)
    assert sm.converged and jx.converged
    assert list(jx.params.index) == list(sm.params.index)
    # statsmodels stops its optimizer a little early (its llf is lower than jaxlme's), so the
    # variance parameters agree to ~6e-4 relative, the fixed effects to ~1e-4
    np.testing.assert_allclose(jx.fe_params.to_numpy(), sm.fe_params.to_numpy(), rtol=REL)
    np.testing.assert_allclose(jx.params.to_numpy(), sm.params.to_numpy(), rtol=VREL, atol=1e-4)
    np.testing.assert_allclose(jx.bse.to_numpy(), sm.bse.to_numpy(), rtol=2 * VREL)
    np.testing.assert_allclose(jx.cov_re.to_numpy(), np.asarray(sm.cov_re), rtol=VREL, atol=1e-3)
    np.testing.assert_allclose(jx.vcomp, np.asarray(sm.vcomp), rtol=VREL)
    assert jx.scale == pytest.approx(sm.scale, rel=VREL)
    assert jx.llf == pytest.approx(sm.llf, rel=1e-8, abs=1e-4)
    assert jx.llf >= sm.llf - 1e-6  # jaxlme's optimum is at least as good
    np.testing.assert_allclose(jx.fittedvalues.to_numpy(), np.asarray(sm.fittedvalues), atol=1e-3)
    np.testing.assert_allclose(jx.resid.to_numpy(), np.asarray(sm.resid), atol=1e-3)
    assert list(jx.random_effects) == list(sm.random_effects)
    for g, s in sm.random_effects.items():
        assert list(jx.random_effects[g].index) == list(s.index)
        np.testing.assert_allclose(jx.random_effects[g].to_numpy(), s.to_numpy(), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("case", ["slope", "nested", "intercept_ml"])
def test_hessian_is_statsmodels_hessian_at_the_same_point(case, request):
    """bse comes from the same observed information as statsmodels': compare statsmodels'
    analytic Hessian evaluated at jaxlme's estimates with jaxlme's autodiff Hessian."""
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    sm, jx = request.getfixturevalue(case)
    point = MixedLMParams.from_components(
        fe_params=jx.fe_params.to_numpy(),
        cov_re=jx.cov_re_unscaled.to_numpy() if jx.k_re else None,
        vcomp=jx.vcomp / jx.scale,
    )
    h_sm, _ = sm.model.hessian(point)
    h_jx = jx._information[1]
    np.testing.assert_allclose(h_jx, h_sm, rtol=1e-6, atol=1e-8 * np.abs(h_sm).max())


def test_random_slope_names_and_jaxlme_attributes(slope):
    sm, jx = slope
    assert list(jx.params.index[2:]) == ["Group Var", "Group x age_scaled Cov", "age_scaled Var"]
    assert list(jx.cov_re.columns) == ["Group", "age_scaled"]
    # jaxlme's own attributes are there too
    assert jx.fixef.index.tolist() == ["(Intercept)", "age_scaled"]
    assert jx.objective == pytest.approx(-2 * jx.llf)
    assert jx.theta.shape == (3,)
    assert "Std.Dev." in jx.lmm.summary()
    assert jx.model.jaxlme_formula == "bounce_time ~ age_scaled + (age_scaled | county)"
    ci = jx.conf_int()
    assert (ci[0] < jx.params).all() and (jx.params < ci[1]).all()


def test_summary_layout(slope):
    sm, jx = slope
    text = str(jx.summary())
    assert text.splitlines()[0].strip() == "Mixed Linear Model Regression Results"
    for piece in [
        "Dependent Variable:",
        "bounce_time",
        "Method:",
        "REML",
        "Converged:",
        "Yes",
        "Group x age_scaled Cov",
        "Log-Likelihood:",
        f"{sm.llf:.3f}"[:-1],
        "P>|z|",
    ]:
        assert piece in text, piece
    # statsmodels' table shows random-effect parameters on the variance scale
    assert f"{sm.cov_re.iloc[0, 0]:.2f}" in text


def test_formula_translation(bounce):
    f, main, vc = to_lme4_formula("y ~ x", "county", "~age_scaled", {"location": "0 + C(location)"}, bounce)
    assert f == "y ~ x + (age_scaled | county) + (1 | county:location)"
    assert main == "(age_scaled | county)"
    assert vc == {"location": "(1 | county:location)"}
    # statsmodels: with variance components and no re_formula there is no group intercept
    f, main, _ = to_lme4_formula("y ~ x", "g", None, {"location": "0 + C(location)"}, bounce)
    assert main is None and f == "y ~ x + (1 | g:location)"
    f, _, _ = to_lme4_formula("y ~ x", "g", "0 + age_scaled", None, bounce)
    assert f == "y ~ x + (0 + age_scaled | g)"


def test_fit_options_ignored_with_note(bounce):
    model = mixedlm("bounce_time ~ age_scaled", bounce, groups="county")
    with pytest.warns(UserWarning, match="ignores statsmodels fit option"):
        res = model.fit(method=["lbfgs"], start_params=None, do_cg=True)
    assert res.converged
    with pytest.raises(TypeError, match="unexpected"):
        model.fit(no_such_option=1)


def test_groups_series_not_in_data(bounce):
    labels = pd.Series(bounce["county"].astype(str).str.upper().to_numpy(), name="region")
    res = mixedlm("bounce_time ~ age_scaled", bounce.drop(columns="county"), groups=labels).fit()
    assert "region" not in bounce.columns and res.converged
    assert sorted(res.random_effects) == sorted(labels.unique())
    assert list(res.params.index) == ["Intercept", "age_scaled", "Group Var"]


def test_factor_names_are_statsmodels_style(bounce):
    res = mixedlm("bounce_time ~ age_scaled + C(location)", bounce, groups="county").fit()
    expected = ["Intercept", "age_scaled", "C(location)[T.loc_1]", "C(location)[T.loc_2]"]
    assert sorted(res.fe_params.index) == sorted(expected)
    assert list(res.params.index[: len(expected)]) == list(res.fe_params.index)
    assert "(Intercept)" in res.fixef.index  # jaxlme's R-style names stay on .fixef


def test_errors(bounce):
    with pytest.raises(DataError, match="nope"):
        mixedlm("bounce_time ~ age_scaled", bounce, groups="nope")
    with pytest.raises(DataError, match="nope"):
        mixedlm("bounce_time ~ nope", bounce, groups="county")
    with pytest.raises(FormulaError, match="not supported"):
        mixedlm("bounce_time ~ 1", bounce, groups="county", vc_formula={"a": "age_scaled * location"})
    with pytest.raises(FormulaError, match="jaxlme.lmm"):
        mixedlm("bounce_time ~ 1 + (1 | county)", bounce, groups="county")
    with pytest.raises(DataError, match="values"):
        mixedlm("bounce_time ~ 1", bounce, groups=np.arange(3))


def test_top_level_export():
    assert jaxlme.mixedlm is mixedlm
