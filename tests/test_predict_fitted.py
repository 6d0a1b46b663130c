"""``predict(data)`` on training rows equals ``fitted``, index and values, for every model.

The models are those of the lme4 reference suites (tests/data/lme4_reference.json without
InstEval, tests/data/lme4_extra_reference.json), the bounce_time models of the property
tests, a grouping factor in two terms, and data with a shuffled string index and with rows
dropped for missing values.  Hypothesis draws a permutation and subset of the rows as the
new data.  ``fitted`` and ``residuals`` are Series indexed like the fitting rows.
"""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import DATA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxlme


def _sleep_extra(d: pd.DataFrame) -> pd.DataFrame:
    """The derived factors the extra reference models use (as make_extra_reference.R)."""
    d = d.copy()
    d["phase"] = np.where(d["Days"] < 5, "early", "late")
    d["period3"] = np.array(["a", "b", "c"])[np.minimum(d["Days"].to_numpy() // 4, 2).astype(int)]
    d["period5"] = ["p" + str(int(v) // 2) for v in d["Days"]]
    d["period"] = (d["Days"] // 3).astype(int)  # make_extra_reference.R: Days %/% 3
    d["Days2"] = d["Days"] ** 2 / 10  # make_terms_reference.R
    return d


def _shuffled_strings(d: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Rows in a random order, labelled by strings (not a RangeIndex)."""
    rng = np.random.default_rng(seed)
    d = d.copy()
    d.index = [f"row-{i}" for i in range(len(d))]
    return d.iloc[rng.permutation(len(d))]


def _with_missing(d: pd.DataFrame) -> pd.DataFrame:
    """sleepstudy, shuffled, string index, some responses and some predictors missing."""
    d = _shuffled_strings(_sleep_extra(d), seed=7)
    d.iloc[[3, 40, 41, 99], d.columns.get_loc("Reaction")] = np.nan
    d.iloc[[10, 77, 150], d.columns.get_loc("Days")] = np.nan
    return d


def _load(data: str, variant: str) -> pd.DataFrame:
    d = pd.read_csv(DATA / f"{data}.csv") if data == "terms_crossed" else jaxlme.datasets.load(data)
    if data == "sleepstudy":
        d = _sleep_extra(d)
    if variant == "shuffled":
        d = _shuffled_strings(d, seed=3)
    elif variant == "missing":
        d = _with_missing(d)
    return d


def _reference_models() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name in ("lme4_reference.json", "lme4_extra_reference.json", "lme4_terms_reference.json"):
        for ref in json.loads((DATA / name).read_text()):
            key = (" ".join(ref.get("jformula", ref["formula"]).split()), ref["data"])
            if ref["data"] != "InstEval" and key not in out:
                out.append(key)
    return out


BOUNCE = "bounce_time ~ age_scaled + (1 + age_scaled | county) + (1 | county:location)"
#: (formula, dataset, variant, reml)
CASES = [(f, d, "plain", True) for f, d in _reference_models()]
CASES += [
    (BOUNCE, "bounce_time", "plain", True),
    ("Reaction ~ Days + (Days|Subject)", "sleepstudy", "plain", False),
    ("Reaction ~ Days + (1|Subject) + (0+Days|Subject)", "sleepstudy", "plain", True),
    ("Reaction ~ Days + (Days|Subject)", "sleepstudy", "shuffled", True),
    ("diameter ~ 1 + (1|plate) + (1|sample)", "Penicillin", "shuffled", True),
    (BOUNCE, "bounce_time", "shuffled", True),
    ("Reaction ~ Days + (Days|Subject)", "sleepstudy", "missing", True),
    ("Reaction ~ Days * phase + (1 | Subject)", "sleepstudy", "missing", True),
]
CASES = list(dict.fromkeys(CASES))  # a hand-written case may repeat a reference model
IDS = [f"{d}:{f}:{v}:{'REML' if r else 'ML'}" for f, d, v, r in CASES]
_FITS: dict = {}


def _fit(case) -> tuple[jaxlme.LMMResult, pd.DataFrame]:
    if case not in _FITS:
        formula, data, variant, reml = case
        frame = _load(data, variant)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[case] = (jaxlme.LMM(formula, frame).fit(reml=reml), frame)
    return _FITS[case]


def _columns(res: jaxlme.LMMResult, frame: pd.DataFrame) -> list[str]:
    """The data columns the model's formula names."""
    names = set(re.findall(r"[A-Za-z_][\w.]*", res.model.design.formula.text))
    return [c for c in frame.columns if c in names]


def _kept(res: jaxlme.LMMResult, frame: pd.DataFrame) -> pd.Index:
    """The rows a fit uses: those with no missing value in the model's columns."""
    return frame.index[frame[_columns(res, frame)].notna().all(axis=1).to_numpy()]


def test_cases_cover_the_suites():
    assert len(CASES) == len(set(CASES)) >= 20
    assert any(v == "missing" for *_, v, _ in CASES) and any(v == "shuffled" for *_, v, _ in CASES)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fitted_and_residuals_are_series_on_the_kept_rows(case):
    res, frame = _fit(case)
    kept = _kept(res, frame)
    for s, name in ((res.fitted, "fitted"), (res.residuals, "residuals")):
        assert isinstance(s, pd.Series) and s.name == name
        assert list(s.index) == list(kept)
    response = res.model.design.formula.response
    y = np.log(frame.loc[kept, "Reaction"]) if "log(" in response else frame.loc[kept, response]
    np.testing.assert_allclose(res.fitted + res.residuals, y, rtol=1e-12)
    pred = res.predict()
    assert list(pred.index) == list(kept)
    np.testing.assert_allclose(pred.to_numpy(), res.fitted.to_numpy(), rtol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draw=st.data())
def test_predict_on_training_rows_equals_fitted(case, draw):
    res, frame = _fit(case)
    order = draw.draw(st.permutations(range(len(frame))), label="row order")
    size = draw.draw(st.integers(1, len(frame)), label="rows")
    new = frame.iloc[list(order[:size])]
    pred = res.predict(new)
    assert isinstance(pred, pd.Series)
    assert list(pred.index) == list(new.index)
    fitted = res.fitted
    on = new.index.isin(fitted.index)
    np.testing.assert_allclose(
        pred[on].to_numpy(), fitted.loc[new.index[on]].to_numpy(), rtol=1e-8, atol=1e-8 * np.abs(fitted).max()
    )
    # rows dropped for a missing predictor predict NaN; a missing response alone does not matter
    predictors = [c for c in _columns(res, new) if c != "Reaction"]
    missing_x = new[predictors].isna().any(axis=1).to_numpy()
    assert np.isnan(pred[missing_x]).all()
    assert np.isfinite(pred[~missing_x]).all()
