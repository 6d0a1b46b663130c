"""Estimated marginal means and contrasts against R's emmeans 1.8 (lme4 1.1-31, lmerTest, pbkrtest).

Reference numbers: tests/data/emmeans_reference.json, made by make_emmeans_reference.R from
the emmeans_*.csv data sets next to it (bounce_time, lme4's cake, a simulated unbalanced
crossed design, a simulated singular fit).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import DATA

import jaxlme
from jaxlme import emmeans as emm_module

REF = json.loads((DATA / "emmeans_reference.json").read_text())
CASES = {c["name"]: c for c in REF["cases"]}
NUMERIC = ("emmean", "estimate", "SE", "df", "lower.CL", "upper.CL", "asymp.LCL", "asymp.UCL", "t.ratio", "z.ratio")

_FITS: dict = {}


def _list(v) -> list:
    return [] if v is None else list(np.atleast_1d(v))


def _data(case: dict) -> pd.DataFrame:
    return pd.read_csv(DATA / case["csv"], dtype={c: str for c in _list(case["str_cols"])})


def fit(name: str):
    if name not in _FITS:
        case = CASES[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[name] = jaxlme.lmm(case["formula"], _data(case), reml=case["reml"])
    return _FITS[name]


def _num(values) -> np.ndarray:
    return np.array([np.nan if v in ("NA", None) else (np.inf if v == "Inf" else v) for v in _list(values)], float)


def _compare(ours: pd.DataFrame, theirs: dict, rtol: float = 1e-4) -> None:
    """Same columns in the same order; labels equal; numbers within rtol (p values also
    within 1e-9 absolute: R's ptukey reports tiny upper tails as 0)."""
    assert list(ours.columns) == list(theirs), (list(ours.columns), list(theirs))
    for col, values in theirs.items():
        if col in NUMERIC:  # an estimate of exactly 0 in R: a cancellation's rounding error here
            ref = _num(values)
            atol = 1e-10 * np.max(np.abs(ref[np.isfinite(ref)]), initial=0.0)
            np.testing.assert_allclose(ours[col].to_numpy(float), ref, rtol=rtol, atol=atol, err_msg=col)
        elif col == "p.value":
            np.testing.assert_allclose(ours[col].to_numpy(float), _num(values), rtol=rtol, atol=1e-9, err_msg=col)
        elif np.asarray(_list(values)).dtype.kind in "iuf":  # a covariate's grid values
            np.testing.assert_allclose(ours[col].to_numpy(float), _num(values), rtol=1e-12, err_msg=col)
        else:
            assert [str(v) for v in ours[col]] == [_r_text(v) for v in _list(values)], col


def _r_text(v) -> str:
    """A level as R prints it (a logical's TRUE/FALSE)."""
    return ("TRUE" if v else "FALSE") if isinstance(v, (bool, np.bool_)) else str(v)


def _calls():
    out = []
    for case in REF["cases"]:
        for i, call in enumerate(case["emmeans"]):
            by = f"|{','.join(_list(call['by']))}" if call["by"] else ""
            ddf = "" if call["ddf"] == "satterthwaite" else f"-{call['ddf']}"
            label = f"{case['name']}-{'*'.join(_list(call['specs']))}{by}{ddf}-{i}"
            out.append(pytest.param(case["name"], i, id=label))
    return out


def _args(call: dict) -> dict:
    at = {k: _list(v) for k, v in (call["at"] or {}).items()} or None
    return {
        "specs": _list(call["specs"]),
        "by": _list(call["by"]) or None,
        "ddf": call["ddf"],
        "level": call["level"],
        "at": at,
    }


@pytest.mark.parametrize(("name", "i"), _calls())
def test_emmeans_match_r(name, i):
    case = CASES[name]
    call = case["emmeans"][i]
    res = fit(name)
    ours = res.emmeans(**_args(call), data=_data(case))
    _compare(ours, call["table"])


@pytest.mark.parametrize(("name", "i"), _calls())
def test_contrasts_match_r(name, i):
    case = CASES[name]
    call = case["emmeans"][i]
    res = fit(name)
    data = _data(case)
    assert call["contrasts"]
    for con in call["contrasts"]:
        method = con["custom"] if con["method"] == "custom" else con["method"]
        ref = None if con["ref"] is None else int(con["ref"]) - 1  # R's 1-based level index
        ours = res.contrast(**_args(call), method=method, adjust=con["adjust"], ref=ref, infer=(True, True), data=data)
        _compare(ours, con["table"])
        per_group = len(ours) // max(1, len(ours.drop_duplicates(_list(call["by"])))) if call["by"] else len(ours)
        if per_group > 1:  # emmeans records its method even where one contrast leaves nothing to adjust
            assert ours.attrs["adjust"] == con["adjust_used"]


# -- the reference grid's meaning -------------------------------------------------------------
def test_data_defaults_to_the_fitting_data_and_function_api():
    case = CASES["bounce_time"]
    d = _data(case)
    res = jaxlme.lmm(case["formula"], d)
    a = res.emmeans("location")
    b = emm_module.emmeans(res, "location", data=d)
    pd.testing.assert_frame_equal(a, b)
    c = emm_module.contrast(res, "location", "trt.vs.ctrl", data=d)
    pd.testing.assert_frame_equal(res.contrast("location", "trt.vs.ctrl"), c)
    assert c.attrs["adjust"] == "dunnettx"


def test_covariate_at_its_mean_with_the_transform_applied_to_it():
    """poly(age, 2) at mean(age), not the mean of the poly columns (which is 0 for both)."""
    res = fit("bounce_poly")
    d = _data(CASES["bounce_poly"])
    tab = res.emmeans("location", data=d)
    grid = pd.DataFrame({"location": ["loc_0", "loc_1", "loc_2"], "age": d["age"].mean()})
    np.testing.assert_allclose(tab["emmean"], res.predict(grid, random_effects=False), rtol=1e-12)
    at_mean = res.emmeans("location", at={"age": [d["age"].mean()]}, data=d)
    np.testing.assert_allclose(at_mean["emmean"], tab["emmean"], rtol=1e-12)
    # averaging the transformed columns instead would give other numbers
    X = res.model.design.X
    mean_cols = X.mean(axis=0)
    names = list(res.model.design.xnames)
    poly_cols = [i for i, n in enumerate(names) if n.startswith("poly(")]
    assert np.allclose(mean_cols[poly_cols], 0.0, atol=1e-12)
    assert not np.allclose(res.predict(grid.assign(age=0.0), random_effects=False), tab["emmean"], rtol=1e-3)


def test_equal_weights_over_other_factors():
    res = fit("cake")
    d = _data(CASES["cake"])
    cells = res.emmeans(["recipe", "temperature"], data=d)
    marg = res.emmeans("recipe", data=d)
    assert marg.attrs["averaged_over"] == ["temperature"]
    np.testing.assert_allclose(marg["emmean"], cells.groupby("recipe", sort=False)["emmean"].mean(), rtol=1e-12)


def test_specs_formula_forms():
    res = fit("cake")
    d = _data(CASES["cake"])
    a = res.emmeans("~ temperature | recipe", data=d)
    b = res.emmeans("temperature", by="recipe", data=d)
    pd.testing.assert_frame_equal(a, b)
    c = res.emmeans("recipe * temperature", data=d)
    pd.testing.assert_frame_equal(c, res.emmeans(["recipe", "temperature"], data=d))


def test_ref_by_label_and_last_level():
    res = fit("cake")
    d = _data(CASES["cake"])
    by_pos = res.contrast("temperature", "trt.vs.ctrl", ref=2, data=d)
    by_label = res.contrast("temperature", "trt.vs.ctrl", ref="195", data=d)
    pd.testing.assert_frame_equal(by_pos, by_label)
    assert list(by_pos["contrast"])[0] == "temperature175 - temperature195"
    last = res.contrast("temperature", "trt.vs.ctrlk", data=d)
    assert list(last["contrast"]) == [f"temperature{t} - temperature225" for t in (175, 185, 195, 205, 215)]


def test_infer_selects_columns():
    res = fit("singular")
    d = _data(CASES["singular"])
    full = res.contrast("f", infer=(True, True), data=d)
    tests = res.contrast("f", data=d)
    cis = res.contrast("f", infer=(True, False), data=d)
    assert list(tests.columns) == ["contrast", "estimate", "SE", "df", "t.ratio", "p.value"]
    assert list(cis.columns) == ["contrast", "estimate", "SE", "df", "lower.CL", "upper.CL"]
    pd.testing.assert_frame_equal(tests, full[tests.columns])
    pd.testing.assert_frame_equal(cis, full[cis.columns])
    pd.testing.assert_frame_equal(res.contrast("f", infer=True, data=d), full)


# -- refusals: one line naming what is wrong -----------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"specs": "nope"}, r"\['nope'\] not variable"),
        ({"specs": "recipe", "by": "recipe"}, "both specs and by"),
        ({"specs": "recipe", "ddf": "kr"}, "unknown ddf 'kr'"),
        ({"specs": "recipe", "ddf": "residual"}, "unknown ddf 'residual'"),
        ({"specs": "recipe", "level": 1.5}, "level must be"),
        ({"specs": "recipe", "at": {"temperature": ["999"]}}, "not a level of 'temperature'"),
        ({"specs": "recipe", "at": {"angle2": [1]}}, "at names"),
        ({"specs": "pairwise ~ recipe"}, "two-sided specs"),
    ],
)
def test_emmeans_refusals(kwargs, match):
    res = fit("cake")
    with pytest.raises(ValueError, match=match):
        res.emmeans(**kwargs, data=_data(CASES["cake"]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "consec"}, "unknown contrast method"),
        ({"adjust": "mvt"}, "unknown adjust 'mvt'"),
        ({"method": "trt.vs.ctrl", "ref": 7}, "ref=7 is out of range"),
        ({"method": "trt.vs.ctrl", "ref": "Z"}, "ref='Z' is not one of"),
        ({"method": "pairwise", "ref": 1}, "ref= applies only"),
        ({"method": {"a": [1, -1]}}, "has 2 coefficients; there are 3"),
        ({"infer": (True,)}, "infer must be a pair"),
        ({"infer": "yes"}, "infer must be a pair"),
    ],
)
def test_contrast_refusals(kwargs, match):
    res = fit("cake")
    with pytest.raises(ValueError, match=match):
        res.contrast("recipe", **kwargs, data=_data(CASES["cake"]))


def test_wrong_or_missing_data_is_refused():
    res = fit("cake")
    d = _data(CASES["cake"])
    shuffled = d.assign(angle=d["angle"], recipe=d["recipe"].to_numpy()[::-1])
    with pytest.raises(jaxlme.DataError, match="not the data the model was fitted to"):
        res.emmeans("recipe", data=shuffled)
    with pytest.raises(jaxlme.DataError, match="missing column\\(s\\) 'recipe'"):
        res.emmeans("temperature", data=d.drop(columns="recipe"))
    with pytest.raises(jaxlme.DataError, match="lacks 10 of the rows"):
        res.emmeans("recipe", data=d.iloc[10:])
    res.model.data, kept = None, res.model.data
    try:
        with pytest.raises(ValueError, match="pass data="):
            res.emmeans("recipe")
    finally:
        res.model.data = kept


def test_kenward_roger_needs_a_reml_fit():
    res = fit("crossed_unbalanced")  # ML
    assert not res.reml
    with pytest.raises(ValueError, match="REML"):
        res.emmeans("trt", ddf="kenward-roger", data=_data(CASES["crossed_unbalanced"]))


def test_rank_deficient_and_offset_models_are_refused():
    d = _data(CASES["singular"])
    d["f2"] = d["f"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deficient = jaxlme.lmm("y ~ f + f2 + (1 | g)", d)
        offset = jaxlme.lmm("y ~ f + offset(x) + (1 | g)", d)
    with pytest.raises(ValueError, match="rank-deficient fit"):
        deficient.emmeans("f")
    with pytest.raises(ValueError, match="offset"):
        offset.emmeans("f")


def test_nested_factors_are_refused():
    d = _data(CASES["cake"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        only_interaction = jaxlme.lmm("angle ~ recipe + recipe:temperature + (1 | replicate)", d)
    with pytest.raises(ValueError, match="'temperature' enters the fixed effects only through interactions"):
        only_interaction.emmeans("recipe")
    # a covariate at one value (its mean) may enter through interactions only: separate slopes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slopes = jaxlme.lmm("angle ~ recipe + recipe:temp + (1 | replicate)", d)
    grid = pd.DataFrame({"recipe": ["A", "B", "C"], "temp": d["temp"].mean()})
    np.testing.assert_allclose(slopes.emmeans("recipe")["emmean"], slopes.predict(grid, random_effects=False))


def test_rows_dropped_for_missing_values_and_unused_categories():
    """The grid uses the fitted rows only: covariate means without the dropped rows, and a
    categorical's unused categories are not levels."""
    case = CASES["crossed_unbalanced"]
    d = _data(case)
    holes = d.copy()
    holes.loc[holes.index[::7], "x"] = np.nan
    holes["trt"] = pd.Categorical(holes["trt"], categories=["zzz", *sorted(d["trt"].unique())])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with_holes = jaxlme.lmm(case["formula"], holes, reml=False)
        without = jaxlme.lmm(case["formula"], d.drop(index=d.index[::7]), reml=False)
    a = with_holes.emmeans("trt", by="sex", ddf="asymptotic")
    b = without.emmeans("trt", by="sex", ddf="asymptotic")
    assert list(a["trt"]) == list(b["trt"]) and "zzz" not in set(a["trt"])
    np.testing.assert_allclose(a["emmean"], b["emmean"], rtol=1e-7)
    np.testing.assert_allclose(a["SE"], b["SE"], rtol=1e-5)
