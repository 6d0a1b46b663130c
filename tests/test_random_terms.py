"""A grouping factor in several random-effects terms: every term is its own component.

``(1 | Subject) + (0 + Days | Subject)``, ``(Days || Subject)`` (split as lme4 splits it),
three terms of one factor, and crossed models with a factor in two terms are matched to
lme4 1.1-31 (tests/data/make_terms_reference.R): criterion, fixed effects, SEs, σ,
``varcorr`` with lme4's group labels (``Subject``, ``Subject.1``) in lme4's order, θ in
lme4's order, conditional modes and SDs, fitted values, Satterthwaite df and profile
intervals.  Every output that names variance parameters uses the same labels.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import DATA, assert_matches_lme4

import jaxlme
from jaxlme.cli import main
from jaxlme.formula import FormulaError

REFERENCE = json.loads((DATA / "lme4_terms_reference.json").read_text())
CASES = [pytest.param(r, id=f"{r['model']}-{'REML' if r['REML'] else 'ML'}") for r in REFERENCE]
_MODELS: dict[str, jaxlme.LMM] = {}
_FITS: dict[tuple[str, bool], jaxlme.LMMResult] = {}


def _data(name: str) -> pd.DataFrame:
    if name == "sleepstudy":
        d = jaxlme.datasets.load("sleepstudy")
        d["Days2"] = d["Days"] ** 2 / 10
        return d
    return pd.read_csv(DATA / f"{name}.csv")


def _fit(ref: dict) -> jaxlme.LMMResult:
    key = (ref["model"], ref["REML"])
    if key not in _FITS:
        if ref["model"] not in _MODELS:
            _MODELS[ref["model"]] = jaxlme.LMM(ref["formula"], _data(ref["data"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[key] = _MODELS[ref["model"]].fit(reml=ref["REML"])
    return _FITS[key]


def _ref(model: str, reml: bool = True) -> dict:
    return next(r for r in REFERENCE if r["model"] == model and r["REML"] == reml)


@pytest.mark.parametrize("ref", CASES)
def test_matches_lme4(ref):
    res = _fit(ref)
    assert_matches_lme4(res, ref)
    vc = res.varcorr
    # every component, with lme4's label, in lme4's order
    ours = [(g, None if pd.isna(v) else v) for g, v in zip(vc.group, vc.var1)]
    assert ours == [(r["grp"], r.get("var1")) for r in ref["varcorr"]]
    np.testing.assert_allclose(vc.sdcor, [r["sdcor"] for r in ref["varcorr"]], rtol=5e-3)
    np.testing.assert_allclose(res.theta, ref["theta"], rtol=5e-3, atol=2e-4)  # θ in lme4's order
    df = res.coefs()["df"]
    for name, value in ref["df"].items():  # lmerTest's Satterthwaite df
        assert df[name] == pytest.approx(value, rel=2e-3), name


@pytest.mark.parametrize("ref", CASES)
def test_ranef_and_fitted_match_lme4(ref):
    res = _fit(ref)
    columns = {g: [c] if isinstance(c, str) else c for g, c in ref["ranef_columns"].items()}
    # one table per factor, the columns of all its terms (lme4's ranef())
    assert {g: list(df.columns) for g, df in res.ranef.items()} == columns
    condsd = res.ranef_condsd()
    for g in columns:
        rows = [r for r in ref["ranef"] if r["grpvar"] == g]
        ours = res.ranef[g]
        ours.index = ours.index.astype(str)
        sd = condsd[g]
        sd.index = sd.index.astype(str)
        assert len(rows) == ours.size
        for col in columns[g]:
            vals = [r for r in rows if r["term"] == col]
            got = ours.loc[[r["grp"] for r in vals], col].to_numpy()
            want = np.array([r["condval"] for r in vals])
            assert np.abs(got - want).max() <= 5e-3 * np.abs(want).max(), (g, col)
            got_sd = sd.loc[[r["grp"] for r in vals], col].to_numpy()
            np.testing.assert_allclose(got_sd, [r["condsd"] for r in vals], rtol=5e-3, err_msg=f"{g} {col}")
    fitted = np.asarray(res.fitted)
    scale = np.std(ref["fitted"])
    assert np.abs(fitted - np.array(ref["fitted"])).max() <= 2e-3 * scale


@pytest.mark.parametrize("ref", [c for c in CASES if c.values[0]["REML"]])
def test_predict_on_training_data_equals_fitted(ref):
    res = _fit(ref)
    data = _data(ref["data"])
    np.testing.assert_allclose(res.predict(data).to_numpy(), np.asarray(res.fitted), rtol=0, atol=1e-8)
    np.testing.assert_allclose(res.predict().to_numpy(), np.asarray(res.fitted), rtol=0, atol=1e-8)
    pop = res.predict(data, random_effects=False).to_numpy()
    np.testing.assert_allclose(pop, res.model.design.X @ res.fixef.to_numpy(), rtol=0, atol=1e-8)
    some = data.iloc[::7]
    np.testing.assert_allclose(res.predict(some).to_numpy(), np.asarray(res.fitted)[::7], rtol=0, atol=1e-8)


def test_predict_new_level_drops_every_term_of_its_factor():
    res = _fit(_ref("crossed_between"))
    data = _data("terms_crossed")
    row = data.iloc[[0]].assign(subj="new")
    with pytest.raises(jaxlme.DataError, match="subj"):
        res.predict(row)
    got = res.predict(row, allow_new_levels=True).iloc[0]
    beta = res.fixef
    want = beta["(Intercept)"] + beta["x"] * row.x.iloc[0] + res.ranef["item"].loc[row.item.iloc[0], "(Intercept)"]
    assert got == pytest.approx(want, abs=1e-10)


def test_ranef_condvar_one_entry_per_factor():
    res = _fit(_ref("sleep_three"))
    cv = res.ranef_condvar()
    assert list(cv) == ["Subject"] and cv["Subject"].shape == (18, 3, 3)
    assert np.allclose(cv["Subject"], np.swapaxes(cv["Subject"], 1, 2))
    # the diagonal is each component's own conditional variance (lme4's postVar)
    sd = res.ranef_condsd()["Subject"]
    np.testing.assert_allclose(sd.to_numpy() ** 2, np.diagonal(cv["Subject"], axis1=1, axis2=2))


def test_profile_confint_matches_lme4():
    ref = _ref("sleep_int_slope")
    res = _fit(ref)
    ci = res.confint(method="profile")
    names = {".sig01": "sd_(Intercept)|Subject", ".sig02": "sd_Days|Subject.1", ".sigma": "sigma"}
    assert list(ci.index) == [names.get(n, n) for n in ref["profile"]["names"]]
    for n, lo, hi in zip(ref["profile"]["names"], ref["profile"]["lower"], ref["profile"]["upper"]):
        row = ci.loc[names.get(n, n)]
        assert row["lower"] == pytest.approx(lo, rel=1e-3), n
        assert row["upper"] == pytest.approx(hi, rel=1e-3), n


def _varcorr_names(res) -> list[str]:
    out = []
    for r in res.varcorr.itertuples():
        if r.group == "Residual":
            out.append("sigma")
        elif r.var2 is None or pd.isna(r.var2):
            out.append(f"sd_{r.var1}|{r.group}")
        else:
            out.append(f"cor_{r.var2}.{r.var1}|{r.group}")
    return out


def test_variance_parameter_names_agree_everywhere():
    """confint (Wald, boot), the bootstrap's columns and estimates use varcorr's labels."""
    res = _fit(_ref("crossed_between"))
    expected = ["sd_x|subj", "sd_(Intercept)|subj.1", "sd_(Intercept)|item", "sigma"]
    assert _varcorr_names(res) == expected
    wald = res.confint(method="wald")
    assert list(wald.index) == expected + ["(Intercept)", "x"]
    assert wald.loc[expected].isna().all().all()  # lme4's Wald has no variance intervals
    boot = res.bootstrap(30, seed=3, progress=False)
    assert list(boot.vc.columns) == expected
    assert list(boot.theta.columns) == ["subj.x", "subj.1.(Intercept)", "item.(Intercept)"]
    est = boot.estimates()
    np.testing.assert_allclose(est[expected].to_numpy(), res.varcorr.sdcor.to_numpy(), rtol=1e-10)
    assert boot.vc.std().gt(0).all()  # each component has its own replicates
    ci = res.confint(method="boot", nsim=30, seed=3)
    assert ci.loc[expected].notna().all().all()
    np.testing.assert_allclose(ci.loc[expected, "lower"], boot.ci(0.95).loc[expected, "lower"])


def test_correlated_term_names_agree_everywhere():
    d = jaxlme.datasets.load("sleepstudy")
    res = jaxlme.lmm("Reaction ~ Days + (1 | Subject) + (1 + Days | Subject)", d)
    names = _varcorr_names(res)
    assert names == [
        "sd_(Intercept)|Subject",
        "sd_(Intercept)|Subject.1",
        "sd_Days|Subject.1",
        "cor_Days.(Intercept)|Subject.1",
        "sigma",
    ]
    assert sorted(res.confint(method="wald").index[:5]) == sorted(names)
    assert list(res.ranef["Subject"].columns) == ["(Intercept)", "(Intercept)", "Days"]  # as lme4's ranef()


def test_summary_shows_every_component():
    res = _fit(_ref("sleep_three"))
    text = res.summary()
    block = text[text.index("Random effects:") : text.index("Number of obs")]
    for label, var in [("Subject", "(Intercept)"), ("Subject.1", "Days"), ("Subject.2", "Days2")]:
        line = next(ln for ln in block.splitlines() if ln.split()[:2] == [label, var])
        sd = res.varcorr.set_index("group").loc[label, "sdcor"]
        assert f"{sd:.4g}" in line
    assert "groups:  Subject, 18" in text


def test_cli_json_has_every_component(tmp_path, capsys):
    path = tmp_path / "crossed.csv"
    _data("terms_crossed").to_csv(path, index=False)
    ref = _ref("crossed_between")
    assert main(["fit", str(path), ref["formula"], "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    got = [(r["group"], r["var1"], r["sdcor"]) for r in out["varcorr"]]
    assert [g[:2] for g in got] == [(r["grp"], r.get("var1")) for r in ref["varcorr"]]
    np.testing.assert_allclose([g[2] for g in got], [r["sdcor"] for r in ref["varcorr"]], rtol=5e-3)
    assert out["ngroups"] == ref["ngrps"]


def test_uncorrelated_term_is_split_as_lme4_splits_it():
    """Decision: ``(x || g)`` is lme4's ``(1 | g) + (0 + x | g)``: two components g, g.1,
    and a factor keeps its correlated block, ``(f || g)`` = ``(1 | g) + (0 + f | g)``."""
    d = jaxlme.datasets.load("sleepstudy")
    split = jaxlme.lmm("Reaction ~ Days + (Days || Subject)", d)
    explicit = jaxlme.lmm("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", d)
    pd.testing.assert_frame_equal(split.varcorr, explicit.varcorr)
    assert list(split.varcorr.group) == ["Subject", "Subject.1", "Residual"]
    d["phase"] = np.where(d.Days < 5, "early", "late")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = jaxlme.lmm("Reaction ~ Days + (0 + Days + phase || Subject)", d)
        g = jaxlme.lmm("Reaction ~ Days + (0 + Days | Subject) + (0 + phase | Subject)", d)
    assert f.objective == pytest.approx(g.objective, abs=1e-6)
    vc = f.varcorr
    assert list(vc.group) == ["Subject", "Subject.1", "Subject.1", "Subject.1", "Residual"]
    assert list(vc.var2.dropna()) == ["phaselate"]  # the factor's columns stay correlated


@pytest.mark.parametrize(
    "formula, name",
    [
        ("Reaction ~ Days + (Days * Days2 || Subject)", "Days * Days2"),
        ("Reaction ~ Days + (Days - Days2 || Subject)", "Days2"),
    ],
)
def test_uncorrelated_term_that_cannot_be_split(formula, name):
    d = _data("sleepstudy")
    with pytest.raises(FormulaError, match="cannot split") as err:
        jaxlme.lmm(formula, d)
    assert "\n" not in str(err.value) and name in str(err.value)


def test_statsmodels_front_end_keeps_components_apart():
    ref = _ref("sleep_int_slope")
    d = jaxlme.datasets.load("sleepstudy")
    res = jaxlme.mixedlm("Reaction ~ Days", d, groups="Subject", re_formula="1", vc_formula={"slope": "0 + Days"}).fit()
    var = {r["grp"]: r["vcov"] for r in ref["varcorr"]}
    assert res.cov_re.iloc[0, 0] == pytest.approx(var["Subject"], rel=5e-3)
    assert res.vcomp[0] == pytest.approx(var["Subject.1"], rel=5e-3)
    lmm = _fit(ref)
    first = res.random_effects["308"]
    assert list(first.index) == ["Subject", "slope[Days]"]
    assert first.to_numpy() == pytest.approx(lmm.ranef["Subject"].loc["308"].to_numpy(), rel=1e-4)


def test_plots_show_every_column_of_a_factor(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from jaxlme import plots

    res = _fit(_ref("crossed_between"))
    axes = plots.caterpillar(res, "subj")
    assert [ax.get_title() for ax in axes] == ["x | subj", "(Intercept) | subj"]
    plots.save(axes, tmp_path / "cat.png")
    assert (tmp_path / "cat.png").stat().st_size > 1000


def test_interaction_levels_follow_each_factors_level_order():
    """An interaction grouping's levels are its observed combinations in each factor's
    level order, the first factor slowest, as R's ``:`` on factors gives them (lme4's
    ranef rows; tests/data/make_interaction_order_reference.R prints lme4's order)."""
    rng = np.random.default_rng(1)
    d = pd.DataFrame({"a": np.tile(["z", "a"], 10), "b": np.repeat(["1", "2"], 10)})
    d["a"] = pd.Categorical(d["a"], categories=["z", "a"])
    d["y"] = rng.normal(size=20) + (d["a"] == "a") + (d["b"] == "2")
    res = jaxlme.lmm("y ~ 1 + (1 | a:b)", d)
    assert res.ranef["a:b"].index.tolist() == ["z:1", "z:2", "a:1", "a:2"]
    # each row's level is its own combination: predictions follow the rows' levels
    effect = res.ranef["a:b"]["(Intercept)"]
    expected = res.fixef["(Intercept)"] + effect[d["a"].astype(str) + ":" + d["b"]].to_numpy()
    np.testing.assert_allclose(res.predict(d), expected, rtol=1e-12)
    # three factors, unused combinations and an unused category dropped
    e = pd.DataFrame({"a": ["z", "a", "a", "m"], "b": ["2", "1", "2", "1"], "c": ["q", "p", "q", "p"]})
    e = e.loc[e.index.repeat(6)].reset_index(drop=True)
    e["a"] = pd.Categorical(e["a"], categories=["z", "n", "a", "m"])
    e["y"] = rng.normal(size=len(e)) + np.repeat([0.0, 1.0, 2.0, 3.0], 6)
    res3 = jaxlme.lmm("y ~ 1 + (1 | a:b:c)", e)
    assert res3.ranef["a:b:c"].index.tolist() == ["z:2:q", "a:1:p", "a:2:q", "m:1:p"]
    # plain (non-categorical) columns: sorted values, as R's factor() of them
    e["a"] = e["a"].astype(str)
    assert jaxlme.lmm("y ~ 1 + (1 | a:b:c)", e).ranef["a:b:c"].index.tolist() == [
        "a:1:p",
        "a:2:q",
        "m:1:p",
        "z:2:q",
    ]
