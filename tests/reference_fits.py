"""Fits and newdata of tests/data/predict_r2_reference.json (made by make_predict_r2_reference.R)."""

from __future__ import annotations

import json
import warnings

import pandas as pd
from helpers import DATA

import jaxlme

REF = json.loads((DATA / "predict_r2_reference.json").read_text())
FITS = REF["fits"]
_CACHE: dict = {}

# columns of the CSV data sets that are grouping factors or factors (read as text)
_FACTORS = {
    "cake": ["replicate", "recipe", "temperature"],
    "predict_crossed": ["g1", "g2"],
    "sleepstudy_weighted": ["Subject"],
}


def frame(name: str) -> pd.DataFrame:
    if name in _FACTORS:
        return pd.read_csv(DATA / f"{name}.csv", dtype={c: str for c in _FACTORS[name]})
    return jaxlme.datasets.load(name)


def fit(case: str):
    """The jaxlme REML fit of a reference case (cached for the session)."""
    if case not in _CACHE:
        f = FITS[case]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _CACHE[case] = jaxlme.LMM(f["formula"], frame(f["data"]), weights=f.get("weights")).fit(reml=True)
    return _CACHE[case]


def newdata(case: str) -> pd.DataFrame:
    """The reference case's newdata rows (rows of its data), factors as text."""
    rows = FITS[case]["newdata"]
    return pd.DataFrame(rows, index=[f"r{i}" for i in range(len(rows))])
