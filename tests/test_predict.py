"""Predictions and conditional variances of the random effects against lme4.

Reference numbers: tests/data/inference_reference.json, made by make_inference_reference.R.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import DATA

import jaxlme
from jaxlme import predict as jpredict
from jaxlme.design import DataError

REF = json.loads((DATA / "inference_reference.json").read_text())
_FITS: dict = {}


def fit(formula: str, data, reml: bool = True):
    key = (formula, data if isinstance(data, str) else id(data), reml)
    if key not in _FITS:
        frame = jaxlme.datasets.load(data) if isinstance(data, str) else data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[key] = jaxlme.LMM(formula, frame).fit(reml=reml)
    return _FITS[key]


@pytest.mark.parametrize("case", REF["predict"], ids=lambda c: c["model"])
def test_predict_matches_lme4_with_new_levels(case):
    res = fit(case["formula"], case["data"])
    nd = pd.DataFrame(case["newdata"], index=[f"r{i}" for i in range(len(case["conditional"]))])
    cond = res.predict(nd, allow_new_levels=True)
    pop = res.predict(nd, random_effects=False)
    assert list(cond.index) == list(nd.index)
    scale = np.max(np.abs(case["conditional"]))
    np.testing.assert_allclose(cond, case["conditional"], rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(pop, case["population"], rtol=1e-9)
    np.testing.assert_allclose(res.predict().iloc[:10], case["fitted_head"], rtol=0, atol=1e-6 * scale)


def test_predict_new_level_without_permission_names_it():
    res = fit("Reaction ~ Days + (Days|Subject)", "sleepstudy")
    nd = pd.DataFrame({"Days": [1.0, 2.0], "Subject": ["308", "999"]})
    with pytest.raises(DataError, match=r"new level\(s\) '999' of grouping factor 'Subject'.*allow_new_levels"):
        res.predict(nd)
    # population predictions need no grouping column at all
    out = res.predict(nd[["Days"]], random_effects=False)
    np.testing.assert_allclose(out, res.fixef.iloc[0] + res.fixef.iloc[1] * nd["Days"])


def test_predict_missing_column_is_clear():
    res = fit("Reaction ~ Days + (Days|Subject)", "sleepstudy")
    with pytest.raises(DataError, match="missing column.*'Days'"):
        res.predict(pd.DataFrame({"Subject": ["308"]}))
    with pytest.raises(DataError, match="missing column.*'Subject'"):
        res.predict(pd.DataFrame({"Days": [1.0]}))
    with pytest.raises(DataError, match="DataFrame"):
        res.predict([1, 2, 3])


def test_predict_new_level_in_crossed_model_keeps_other_term():
    res = fit("diameter ~ 1 + (1|plate) + (1|sample)", "Penicillin")
    nd = pd.DataFrame({"plate": ["zz"], "sample": ["A"]})
    out = res.predict(nd, allow_new_levels=True)
    expected = res.fixef.iloc[0] + res.ranef["sample"].loc["A"].iloc[0]
    assert out.iloc[0] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(DataError, match="'zz' of grouping factor 'plate'"):
        res.predict(nd)


def test_predict_reuses_stateful_transforms_and_factor_levels():
    """center() keeps the training mean and a factor keeps its training contrasts, so predictions
    on a subset of rows equal the fitted values on those rows."""
    d = jaxlme.datasets.load("sleepstudy").copy()
    d["phase"] = np.where(d["Days"] < 3, "early", np.where(d["Days"] < 7, "mid", "late"))
    res = fit("Reaction ~ center(Days) + phase + (Days|Subject)", d)
    rows = d.index[d["phase"] == "late"][:7]
    sub = d.loc[rows]
    pred = res.predict(sub)
    np.testing.assert_allclose(pred, pd.Series(res.fitted, index=res.model.design.rows).loc[rows], rtol=1e-10)
    pop = res.predict(sub, random_effects=False)
    np.testing.assert_allclose(pop, (res.model.design.X @ res.fixef.to_numpy())[d.index.get_indexer(rows)], rtol=1e-10)
    with pytest.raises(DataError, match=r"fixed-effects model matrix.*\{.unknown.\} not seen"):
        res.predict(sub.assign(phase="unknown"))


def test_predict_nested_group_levels():
    res = fit("strength ~ 1 + (1|batch/cask)", "Pastes")
    data = jaxlme.datasets.load("Pastes")
    np.testing.assert_allclose(res.predict(data.iloc[:12]), res.fitted[:12], rtol=1e-10)


def _r_postvar(v: dict) -> np.ndarray:
    """lme4's postVar (r, r, k) in column-major order -> (k, r, r)."""
    return np.array(v["postVar"]).reshape(v["dim"][::-1]).transpose(0, 2, 1)


@pytest.mark.parametrize("case", REF["condvar"], ids=lambda c: c["model"])
def test_condvar_matches_lme4(case):
    res = fit(case["formula"], case["data"])
    cv = res.ranef_condvar()
    assert set(cv) == set(case["groups"])
    for g, v in case["groups"].items():
        ref_re = res.ranef[g]
        assert cv[g].shape == (len(ref_re), ref_re.shape[1], ref_re.shape[1])
        assert [str(x) for x in ref_re.index] == [str(x) for x in v["levels"]]
        if v["dim"]:
            expected = _r_postvar(v)
            np.testing.assert_allclose(cv[g], expected, rtol=1e-4, atol=1e-8 * np.max(np.abs(expected)))
        else:  # (a||b): lme4 splits the term and reports one variance per column
            for j, vals in enumerate(v["postVar"].values()):
                np.testing.assert_allclose(cv[g][:, j, j], vals, rtol=1e-4)
    sd = res.ranef_condsd()
    for g in cv:
        np.testing.assert_allclose(sd[g].to_numpy() ** 2, np.diagonal(cv[g], axis1=1, axis2=2))
        assert sd[g].index.equals(res.ranef[g].index)


def test_condvar_dense_limit_is_clear(monkeypatch):
    res = fit("diameter ~ 1 + (1|plate) + (1|sample)", "Penicillin")
    monkeypatch.setattr(jpredict, "MAX_DENSE_Q", 10)
    with pytest.raises(ValueError, match="q = 30"):
        res.ranef_condvar()
