"""Example datasets for linear mixed models.

Classic lme4 datasets (``sleepstudy``, ``Dyestuff``, ``Dyestuff2``, ``Penicillin``,
``Pastes``) are bundled as CSV files and read with :mod:`importlib.resources`, so
they also work from an installed wheel. ``bounce_time`` is a simulated nested
design produced by :func:`simulate_bounce_time`.

>>> from jaxlme import datasets
>>> datasets.names()
['sleepstudy', 'Dyestuff', 'Dyestuff2', 'Penicillin', 'Pastes', 'bounce_time']
>>> datasets.load("SleepStudy").shape
(180, 3)
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

import numpy as np
import pandas as pd

__all__ = [
    "BOUNCE_TIME_SEED",
    "DATASETS",
    "describe",
    "load",
    "names",
    "simulate_bounce_time",
]

#: Seed used by ``load("bounce_time")`` and for the shipped ``bounce_time.csv``.
BOUNCE_TIME_SEED = 0


@dataclass(frozen=True)
class _Spec:
    description: str
    categorical: tuple[str, ...] = ()
    floats: tuple[str, ...] = ()


_SPECS: dict[str, _Spec] = {
    "sleepstudy": _Spec(
        "Reaction time (ms) over 10 days of sleep deprivation for 18 subjects (180 x 3: Reaction, Days, Subject).",
        categorical=("Subject",),
        floats=("Reaction", "Days"),
    ),
    "Dyestuff": _Spec(
        "Yield of dyestuff (g) from 5 samples in each of 6 batches (30 x 2: Batch, Yield).",
        categorical=("Batch",),
        floats=("Yield",),
    ),
    "Dyestuff2": _Spec(
        "Simulated dyestuff-like yields with zero between-batch variance estimate (30 x 2: Batch, Yield).",
        categorical=("Batch",),
        floats=("Yield",),
    ),
    "Penicillin": _Spec(
        "Inhibition zone diameter (mm) for 6 penicillin samples on 24 plates, "
        "fully crossed (144 x 3: diameter, plate, sample).",
        categorical=("plate", "sample"),
        floats=("diameter",),
    ),
    "Pastes": _Spec(
        "Paste strength for 3 casks nested within each of 10 batches "
        "(60 x 4: strength, batch, cask, sample = batch:cask).",
        categorical=("batch", "cask", "sample"),
        floats=("strength",),
    ),
    "bounce_time": _Spec(
        "Simulated website bounce times (s) of visitors nested in 3 locations within "
        "8 counties, with an age confound (480 x 5); see simulate_bounce_time()."
    ),
}

#: Dataset name -> one-line description.
DATASETS: dict[str, str] = {name: spec.description for name, spec in _SPECS.items()}

_LOOKUP: dict[str, str] = {name.lower(): name for name in _SPECS}


def names() -> list[str]:
    """Return the names of all available datasets."""
    return list(_SPECS)


def _canonical(name: str) -> str:
    try:
        return _LOOKUP[str(name).lower()]
    except KeyError:
        raise ValueError(f"Unknown dataset {name!r}; available datasets: {', '.join(names())}") from None


def describe(name: str) -> str:
    """Return a one-line description of dataset ``name`` (case-insensitive)."""
    return DATASETS[_canonical(name)]


def load(name: str) -> pd.DataFrame:
    """Load a dataset by (case-insensitive) name as a new DataFrame.

    Grouping factors are returned as unordered ``category`` columns with string
    categories (e.g. sleepstudy ``Subject`` has categories ``"308"``, ...);
    numeric columns are ``float64``.

    Raises:
        ValueError: if ``name`` is not one of :func:`names`.
    """
    canonical = _canonical(name)
    if canonical == "bounce_time":
        return simulate_bounce_time(seed=BOUNCE_TIME_SEED)
    spec = _SPECS[canonical]
    resource = files("jaxlme") / "data" / f"{canonical}.csv"
    with resource.open("r", encoding="utf-8") as fh:
        df = pd.read_csv(fh, dtype={col: str for col in spec.categorical})
    for col in spec.categorical:
        df[col] = df[col].astype("category")
    for col in spec.floats:
        df[col] = df[col].astype("float64")
    return df


def simulate_bounce_time(
    seed: int = 0,
    n_counties: int = 8,
    n_locations: int = 3,
    n_visitors: int = 20,
    *,
    intercept: float = 200.0,
    beta_age: float = 1.0,
    sd_county: float = 20.0,
    sd_county_slope: float = 5.0,
    sd_location: float = 10.0,
    sd_residual: float = 8.0,
    county_age_means: tuple[float, float] = (12.0, 44.0),
    sd_age_within: float = 4.0,
    confounded: bool = True,
) -> pd.DataFrame:
    """Simulate a website study with visitors nested in locations nested in counties.

    There are ``n_visitors`` visitors in each of ``n_locations`` locations in each of
    ``n_counties`` counties (480 rows by default), in county/location/visitor order.
    For county ``c``, location ``l`` (within ``c``) and visitor ``i``::

        bounce_time = intercept + b_c + s_c * age_scaled + u_cl
                      + beta_age * age_scaled + eps

        b_c  ~ N(0, sd_county**2)        county intercept     (default SD 20 s)
        s_c  ~ N(0, sd_county_slope**2)  county age slope     (default SD 5)
        u_cl ~ N(0, sd_location**2)      location-in-county   (default SD 10 s)
        eps  ~ N(0, sd_residual**2)      residual             (default SD 8 s)

    with ``intercept = 200`` s and a near-zero fixed age effect ``beta_age = 1.0``
    (s per SD of age); all effects are independent.

    Ages: county mean ages are evenly spaced over ``county_age_means`` (default
    12 to 44 years); visitor ages are ``round(N(county mean, sd_age_within**2))``
    (default SD 4) clipped to 6..50. ``age_scaled = (age - mean(age)) / sd(age)``
    over the whole sample (``ddof=1``).

    Confounding (Simpson's paradox): with ``confounded=True`` (default) the mean
    ages are assigned in reverse order of the drawn county intercepts ``b_c``, so
    counties with younger visitors have longer bounce times. Each ``b_c`` is still
    marginally N(0, sd_county**2), but a pooled regression ignoring county gives a
    strongly negative age slope, while the within-county slope is about
    ``beta_age``. With ``confounded=False`` mean ages are assigned at random.

    Columns: ``bounce_time`` (float64, seconds), ``age`` (int64, years),
    ``age_scaled`` (float64), ``county`` (category ``"county_0"``, ...) and
    ``location`` (category ``"loc_0"``, ...). Location labels repeat across
    counties, so the nested term must be written ``(1|county:location)`` or
    ``(1|county/location)``.

    The output is a deterministic function of the arguments (it uses
    :func:`numpy.random.default_rng` with ``seed``).
    """
    if min(n_counties, n_locations, n_visitors) < 1:
        raise ValueError("n_counties, n_locations and n_visitors must be >= 1")
    rng = np.random.default_rng(seed)
    n_loc_total = n_counties * n_locations
    n = n_loc_total * n_visitors

    b_county = rng.normal(0.0, sd_county, n_counties)
    s_county = rng.normal(0.0, sd_county_slope, n_counties)
    u_location = rng.normal(0.0, sd_location, n_loc_total)

    means = np.linspace(county_age_means[0], county_age_means[1], n_counties)
    if confounded:
        mean_age = np.empty(n_counties)
        mean_age[np.argsort(-b_county, kind="stable")] = means  # high b_c -> young
    else:
        mean_age = rng.permutation(means)

    county_idx = np.repeat(np.arange(n_counties), n_locations * n_visitors)
    loc_idx = np.tile(np.repeat(np.arange(n_locations), n_visitors), n_counties)
    cl_idx = county_idx * n_locations + loc_idx

    age_raw = rng.normal(mean_age[county_idx], sd_age_within)
    age = np.clip(np.rint(age_raw), 6, 50).astype(np.int64)
    sd_age = age.std(ddof=1) if n > 1 else 0.0
    age_scaled = (age - age.mean()) / (sd_age if sd_age > 0 else 1.0)

    eps = rng.normal(0.0, sd_residual, n)
    bounce = (
        intercept + b_county[county_idx] + (beta_age + s_county[county_idx]) * age_scaled + u_location[cl_idx] + eps
    )

    county_labels = [f"county_{c}" for c in range(n_counties)]
    loc_labels = [f"loc_{j}" for j in range(n_locations)]
    return pd.DataFrame(
        {
            "bounce_time": bounce.astype(np.float64),
            "age": age,
            "age_scaled": age_scaled.astype(np.float64),
            "county": pd.Categorical.from_codes(county_idx, categories=county_labels),
            "location": pd.Categorical.from_codes(loc_idx, categories=loc_labels),
        }
    )
