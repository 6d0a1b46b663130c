"""Formulas that only name numeric columns are built without formulaic, identically."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxlme
from jaxlme import design
from jaxlme.design import ColumnsSpec, DataError, simple_terms

formulaic = pytest.importorskip("formulaic")


def _frame(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "k": rng.integers(0, 5, n),  # integer columns are numbers, as in formulaic
            "z": rng.normal(size=n).astype("float32"),
            "u": rng.integers(0, 3, n).astype("uint8"),
            "b": rng.random(n) > 0.5,  # booleans are 0/1 numbers in formulaic
            "g": rng.choice(["10", "2", "c"], n),  # factors: levels sorted as strings
            "s": pd.Series(rng.choice(["p", "q"], n), dtype="str"),  # pandas' default strings
            # a categorical keeps its category order, unused categories included
            "h": pd.Categorical(rng.choice(["v", "u"], n), categories=["v", "u", "w"]),
            "c": pd.Categorical(rng.choice([2.0, 1.5, 3.0], n)),  # numeric categories: names g[T.2.0]
        }
    )


_TOKENS = ["x", "k", "z", "u", "b", "g", "s", "h", "c", "0", "1"]
_piece = st.tuples(st.sampled_from(["+", "-", ""]), st.sampled_from(_TOKENS))


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(_piece, min_size=1, max_size=6))
def test_simple_formulas_match_formulaic(pieces):
    rhs = " ".join(f"{sign} {tok}" if sign else tok for sign, tok in pieces)
    d = _frame()
    spec = design.simple_spec(rhs, d)
    if spec is None:
        return  # not a simple formula: formulaic builds it
    ref = formulaic.model_matrix(f"~ {rhs}", d)
    got = spec.get_model_matrix(d)
    assert list(got.columns) == list(ref.columns) == spec.column_names, rhs
    np.testing.assert_array_equal(np.asarray(got, float), np.asarray(ref, float))
    assert spec.required_variables == set(formulaic.Formula(f"~ {rhs}").required_variables)
    assert design.formula_variables(f"~ {rhs}") == spec.required_variables
    # new data: the training coding (levels, contrasts) on a subset whose factors miss levels
    new = d.iloc[[0, 3, 5]]
    np.testing.assert_array_equal(
        np.asarray(spec.get_model_matrix(new), float), np.asarray(ref.model_spec.get_model_matrix(new), float)
    )


@pytest.mark.parametrize(
    "rhs",
    ["x * k", "x:k", "I(x ** 2)", "C(k)", "np.log(x)", "- 0 + x", "x - k", "`x`", "x k", "+", "lambda + x", "a.b"],
)
def test_other_formulas_are_left_to_formulaic(rhs):
    assert simple_terms(rhs) is None


def test_unusual_columns_are_left_to_formulaic():
    d = _frame()
    assert design.simple_spec("x + k", d) == ColumnsSpec(True, ("x", "k"), (None, None))
    assert design.simple_spec("x + g", d).levels == (None, ("10", "2", "c"))
    assert design.simple_spec("x + m", d.assign(m=[1, "a"] * 20)) is None  # mixed values
    assert design.simple_spec("x + t", d.assign(t=pd.Timestamp(0))) is None  # dates
    assert design.simple_spec("x + c", d.assign(c=d.x.astype(complex))) is None


def test_nullable_string_column_is_a_factor_too():
    """formulaic (1.2) passes a ``string``-dtype column through uncoded; here it is coded
    like the same column as ``str`` or ``object``."""
    d = _frame()
    want = design.simple_spec("x + s", d).get_model_matrix(d)
    for dtype in ("string", object):
        got = design.simple_spec("x + s", d.assign(s=d.s.astype(dtype))).get_model_matrix(d)
        pd.testing.assert_frame_equal(got, want)


def test_unseen_factor_level_is_named():
    d = _frame()
    spec = design.simple_spec("x + g", d)
    with pytest.raises(DataError, match=r"\{'zz'\} of 'g' not seen"):
        spec.get_model_matrix(d.head(2).assign(g=["2", "zz"]))
    nan = spec.get_model_matrix(d.head(2).assign(g=["2", None]))  # a missing level predicts NaN
    assert np.isnan(nan.iloc[1, 2:]).all() and not np.isnan(nan.iloc[1, :2]).any() and not np.isnan(nan.iloc[0]).any()


def _no_columns_spec(monkeypatch):
    monkeypatch.setattr(design, "simple_spec", lambda rhs, data: None)
    monkeypatch.setattr(design, "simple_terms", lambda rhs: None)


def test_fit_and_predictions_equal_formulaic_route(monkeypatch):
    sleep = jaxlme.datasets.load("sleepstudy")
    formula = "Reaction ~ Days + (Days | Subject)"
    fast = jaxlme.lmm(formula, sleep)
    assert isinstance(fast.model.design.fixed_spec, ColumnsSpec)
    assert all(isinstance(t.spec, ColumnsSpec) for t in fast.model.design.terms)
    _no_columns_spec(monkeypatch)
    slow = jaxlme.lmm(formula, sleep)
    assert not isinstance(slow.model.design.fixed_spec, ColumnsSpec)
    a, b = fast.model.design, slow.model.design
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.xnames == b.xnames
    assert [t.columns for t in a.terms] == [t.columns for t in b.terms]
    assert fast.objective == slow.objective
    new = sleep.iloc[[0, 15, 40]].copy()
    new.loc[new.index[1], "Days"] = np.nan  # a missing value predicts NaN on both routes
    np.testing.assert_array_equal(fast.predict(new), slow.predict(new))


def test_prediction_rejects_a_non_numeric_column():
    sleep = jaxlme.datasets.load("sleepstudy")
    res = jaxlme.lmm("Reaction ~ Days + (Days | Subject)", sleep)
    new = sleep.head(3).assign(Days=["a", "b", "c"])
    with pytest.raises(DataError, match="Days"):
        res.predict(new)


def test_missing_response_column_still_named():
    with pytest.raises(DataError, match="'yy'"):
        jaxlme.LMM("yy ~ x + (1 | g)", _frame())


def test_numeric_formula_does_not_import_formulaic():
    code = (
        "import sys, jaxlme\n"
        "m = jaxlme.LMM('Reaction ~ Days + (Days | Subject)', jaxlme.datasets.load('sleepstudy'))\n"
        "print('formulaic' in sys.modules)\n"
        "jaxlme.LMM('Reaction ~ C(Days) + (1 | Subject)', jaxlme.datasets.load('sleepstudy'))\n"
        "print('formulaic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


def test_nullable_string_column_in_a_formulaic_formula():
    """An interaction goes through formulaic, which needs the ``string`` column as a factor:
    same fit and predictions as with the column as ``object``."""
    d = _frame().assign(g2=lambda f: f.g.map({"10": "a", "2": "b", "c": "a"}))
    d["y"] = d.x + (d.s == "q") * 0.5 + np.repeat(np.arange(8.0), 5)
    d["grp"] = np.repeat(np.arange(8), 5).astype(str)
    as_string = d.assign(s=d.s.astype("string"))
    a = jaxlme.lmm("y ~ x * s + (1 | grp)", as_string, warn=False)
    b = jaxlme.lmm("y ~ x * s + (1 | grp)", d.assign(s=d.s.astype(object)), warn=False)
    assert list(a.fixef.index) == list(b.fixef.index) == ["(Intercept)", "x", "sq", "x:sq"]
    assert a.objective == pytest.approx(b.objective, rel=1e-12)
    np.testing.assert_allclose(a.predict(as_string.head(4)), b.predict(d.head(4)), rtol=1e-10)
