"""Tests for jaxlme.datasets."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pandas as pd
import pytest
from helpers import SHARED

from jaxlme import datasets

REFERENCE_DIR = SHARED  # ../shared/reference, beside the worktree
BUNDLED_CSVS = ["sleepstudy", "Dyestuff", "Dyestuff2", "Penicillin", "Pastes"]


def _assert_categorical(s: pd.Series) -> None:
    assert isinstance(s.dtype, pd.CategoricalDtype)
    assert not s.dtype.ordered
    assert all(isinstance(c, str) for c in s.cat.categories)
    assert not s.isna().any()


def _assert_float(s: pd.Series) -> None:
    assert s.dtype == np.float64
    assert np.isfinite(s.to_numpy()).all()


# ---------------------------------------------------------------- registry


def test_names_and_descriptions() -> None:
    names = datasets.names()
    assert names == [*BUNDLED_CSVS, "bounce_time"]
    assert set(datasets.DATASETS) == set(names)
    for name in names:
        desc = datasets.describe(name)
        assert isinstance(desc, str) and desc and "\n" not in desc
        assert datasets.describe(name.upper()) == desc


def test_unknown_name_raises_with_available_names() -> None:
    with pytest.raises(ValueError, match="not_a_dataset") as excinfo:
        datasets.load("not_a_dataset")
    for name in datasets.names():
        assert name in str(excinfo.value)
    with pytest.raises(ValueError, match="sleepstudy"):
        datasets.describe("InstEval")  # deliberately not shipped


@pytest.mark.parametrize("name", ["SLEEPSTUDY", "dyestuff", "penicillin", "PASTES"])
def test_load_is_case_insensitive(name: str) -> None:
    canonical = next(n for n in datasets.names() if n.lower() == name.lower())
    pd.testing.assert_frame_equal(datasets.load(name), datasets.load(canonical))


@pytest.mark.parametrize("name", BUNDLED_CSVS)
def test_bundled_csv_matches_reference(name: str) -> None:
    ref = REFERENCE_DIR / f"{name}.csv"
    if not ref.exists():
        pytest.skip(f"reference data not available: {ref}")
    shipped = (files("jaxlme") / "data" / f"{name}.csv").read_bytes()
    assert shipped == ref.read_bytes()


# ---------------------------------------------------------------- lme4 datasets


def test_sleepstudy() -> None:
    df = datasets.load("sleepstudy")
    assert df.shape == (180, 3)
    assert list(df.columns) == ["Reaction", "Days", "Subject"]
    _assert_float(df["Reaction"])
    _assert_float(df["Days"])
    _assert_categorical(df["Subject"])
    assert df["Subject"].nunique() == 18
    assert df["Subject"].iloc[0] == "308"
    assert "308" in df["Subject"].cat.categories
    assert sorted(df["Days"].unique()) == list(range(10))
    assert (df.groupby("Subject", observed=True).size() == 10).all()
    assert df["Reaction"].iloc[0] == pytest.approx(249.56)
    assert df["Reaction"].mean() == pytest.approx(298.50789, abs=1e-4)


@pytest.mark.parametrize("name", ["Dyestuff", "Dyestuff2"])
def test_dyestuff(name: str) -> None:
    df = datasets.load(name)
    assert df.shape == (30, 2)
    assert list(df.columns) == ["Batch", "Yield"]
    _assert_categorical(df["Batch"])
    _assert_float(df["Yield"])
    assert list(df["Batch"].cat.categories) == list("ABCDEF")
    assert (df.groupby("Batch", observed=True).size() == 5).all()
    expected_mean = 1527.5 if name == "Dyestuff" else 5.6656
    assert df["Yield"].mean() == pytest.approx(expected_mean, abs=1e-4)


def test_penicillin() -> None:
    df = datasets.load("Penicillin")
    assert df.shape == (144, 3)
    assert list(df.columns) == ["diameter", "plate", "sample"]
    _assert_float(df["diameter"])
    _assert_categorical(df["plate"])
    _assert_categorical(df["sample"])
    assert df["plate"].nunique() == 24
    assert df["sample"].nunique() == 6
    # fully crossed: every plate x sample cell observed exactly once
    assert (pd.crosstab(df["plate"], df["sample"]) == 1).all().all()


def test_pastes() -> None:
    df = datasets.load("Pastes")
    assert df.shape == (60, 4)
    assert list(df.columns) == ["strength", "batch", "cask", "sample"]
    _assert_float(df["strength"])
    for col in ["batch", "cask", "sample"]:
        _assert_categorical(df[col])
    assert (df["batch"].nunique(), df["cask"].nunique(), df["sample"].nunique()) == (
        10,
        3,
        30,
    )
    # sample is batch:cask
    combined = df["batch"].astype(str) + ":" + df["cask"].astype(str)
    assert (combined == df["sample"].astype(str)).all()


# ---------------------------------------------------------------- bounce_time


def test_bounce_time_structure() -> None:
    df = datasets.load("bounce_time")
    assert df.shape == (480, 5)
    assert list(df.columns) == [
        "bounce_time",
        "age",
        "age_scaled",
        "county",
        "location",
    ]
    _assert_float(df["bounce_time"])
    _assert_float(df["age_scaled"])
    assert df["age"].dtype == np.int64
    _assert_categorical(df["county"])
    _assert_categorical(df["location"])
    assert df["county"].nunique() == 8
    assert df["location"].nunique() == 3  # labels repeat across counties
    combos = df["county"].astype(str) + ":" + df["location"].astype(str)
    assert combos.nunique() == 24
    assert (combos.value_counts() == 20).all()
    assert df["age"].between(6, 50).all()
    age = df["age"].to_numpy(dtype=float)
    np.testing.assert_allclose(df["age_scaled"], (age - age.mean()) / age.std(ddof=1), atol=1e-12)
    assert (df["bounce_time"] > 0).all()


def test_bounce_time_load_matches_generator_and_shipped_csv() -> None:
    loaded = datasets.load("bounce_time")
    generated = datasets.simulate_bounce_time(seed=datasets.BOUNCE_TIME_SEED)
    pd.testing.assert_frame_equal(loaded, generated)

    resource = files("jaxlme") / "data" / "bounce_time.csv"
    with resource.open("r", encoding="utf-8") as fh:
        shipped = pd.read_csv(fh)
    assert list(shipped.columns) == list(generated.columns)
    assert len(shipped) == len(generated)
    for col in ["bounce_time", "age_scaled"]:
        np.testing.assert_allclose(shipped[col], generated[col], rtol=0, atol=1e-10)
    np.testing.assert_array_equal(shipped["age"], generated["age"])
    for col in ["county", "location"]:
        assert shipped[col].tolist() == generated[col].astype(str).tolist()


def test_bounce_time_determinism() -> None:
    a = datasets.simulate_bounce_time(seed=123)
    b = datasets.simulate_bounce_time(seed=123)
    c = datasets.simulate_bounce_time(seed=124)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["bounce_time"], c["bounce_time"])
    assert not np.array_equal(a["age"], c["age"])


def test_bounce_time_custom_sizes() -> None:
    df = datasets.simulate_bounce_time(seed=1, n_counties=5, n_locations=4, n_visitors=7)
    assert df.shape == (5 * 4 * 7, 5)
    assert df["county"].nunique() == 5
    assert df["location"].nunique() == 4
    with pytest.raises(ValueError):
        datasets.simulate_bounce_time(n_counties=0)


def test_bounce_time_noise_free_is_exact_linear_model() -> None:
    df = datasets.simulate_bounce_time(
        seed=3,
        sd_county=0.0,
        sd_county_slope=0.0,
        sd_location=0.0,
        sd_residual=0.0,
        intercept=150.0,
        beta_age=4.0,
    )
    np.testing.assert_allclose(df["bounce_time"], 150.0 + 4.0 * df["age_scaled"])


def _within_group_fit(df: pd.DataFrame) -> tuple[float, np.ndarray]:
    """OLS slope of bounce_time on age_scaled after demeaning by county:location."""
    g = df["county"].astype(str) + ":" + df["location"].astype(str)
    x = df["age_scaled"] - df.groupby(g)["age_scaled"].transform("mean")
    y = df["bounce_time"] - df.groupby(g)["bounce_time"].transform("mean")
    x, y = x.to_numpy(), y.to_numpy()
    slope = float(x @ y / (x @ x))
    return slope, y - slope * x


@pytest.mark.parametrize("seed", [datasets.BOUNCE_TIME_SEED, 1, 2])
def test_bounce_time_simpson_effect_and_parameter_recovery(seed: int) -> None:
    df = datasets.simulate_bounce_time(seed=seed)
    x = df["age_scaled"].to_numpy()
    y = df["bounce_time"].to_numpy()

    # Pooled OLS (ignoring grouping) vs. within-group OLS.
    design = np.column_stack([np.ones_like(x), x])
    pooled_intercept, pooled_slope = np.linalg.lstsq(design, y, rcond=None)[0]
    within_slope, resid = _within_group_fit(df)

    assert pooled_slope < -8.0  # misleading: strongly negative
    assert abs(within_slope - 1.0) < 6.0  # near the true beta_age = 1
    assert pooled_slope < within_slope - 8.0
    assert pooled_intercept == pytest.approx(200.0, abs=25.0)

    # Residual SD (true 8; county slopes add a little within-county spread).
    n_groups = 24
    resid_sd = np.sqrt(resid @ resid / (len(y) - n_groups - 1))
    assert 6.5 < resid_sd < 10.0

    # Location-within-county SD (true 10) from location means around county means.
    g = df["county"].astype(str) + ":" + df["location"].astype(str)
    loc_means = df.groupby(g)["bounce_time"].mean()
    county_of = loc_means.index.str.split(":").str[0]
    dev = loc_means - loc_means.groupby(county_of).transform("mean")
    loc_sd = np.sqrt((dev**2).sum() / (n_groups - 8))
    assert 4.0 < loc_sd < 18.0

    # County SD (true 20) and the built-in confound: younger counties bounce later.
    by_county = df.groupby("county", observed=True)
    county_means = by_county["bounce_time"].mean()
    assert 8.0 < county_means.std() < 40.0
    r = np.corrcoef(by_county["age"].mean(), county_means)[0, 1]
    assert r < -0.5
