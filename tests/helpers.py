"""Test helpers: paths to the reference data and a CSV loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference"


def crossed_large(seed: int, n: int = 5000, k1: int = 500, k2: int = 420) -> pd.DataFrame:
    """Synthetic y ~ x + (1 | g1) + (1 | g2) data whose dense rest block has k2 + 2 > 400 rows,
    so jaxlme treats it as a large model (BFGS, analytic gradient, difference Hessians)."""
    rng = np.random.default_rng(seed)
    g1, g2 = rng.integers(0, k1, n), rng.integers(0, k2, n)
    x = rng.normal(size=n)
    y = 1 + 0.3 * x + rng.normal(0, 0.6, k1)[g1] + rng.normal(0, 0.4, k2)[g2] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g1": g1.astype(str), "g2": g2.astype(str)})


def load_csv(name: str) -> pd.DataFrame:
    """Load a dataset, reading InstEval from ../shared (it is too big to ship)."""
    if name == "InstEval":
        path = SHARED / "InstEval.csv"
        if not path.exists():
            pytest.skip("InstEval.csv not available in ../shared/reference")
        return pd.read_csv(path, dtype={"s": str, "d": str, "dept": str, "service": str})
    return pd.read_csv(DATA / f"{name}.csv")


def lme4_group(name: str) -> str:
    """Map lme4's group labels to jaxlme's: nested 'cask:batch' -> 'batch:cask'.

    Reference models write explicit interactions as they are nested ((1|a/b) -> "b:a").
    A factor's later terms keep lme4's suffix ('Subject.1'): jaxlme labels them so too."""
    if ":" in name:  # lme4 writes the nested group (1|a/b) as "b:a"
        name = ":".join(reversed(name.split(":")))
    return name


def assert_matches_lme4(res, ref: dict, check_singular: bool = True) -> None:
    """The issue's correctness bar: criterion no worse than lme4's + 1e-3, fixef within
    0.002·SE, SEs and sigma within 0.2%, SDs within 0.5%, correlations within 0.02."""
    assert res.converged
    assert res.objective <= ref["criterion"] + 1e-3
    assert res.objective == pytest.approx(ref["criterion"], abs=0.05)
    assert res.loglike == pytest.approx(ref["logLik"], abs=0.025)
    assert res.aic == pytest.approx(ref["AIC"], abs=0.05)
    assert res.bic == pytest.approx(ref["BIC"], abs=0.05)
    assert res.nobs == ref["nobs"]
    if check_singular:
        assert res.singular == ref["singular"]
    for name, value in ref["fixef"].items():
        assert abs(res.fixef[name] - value) <= 0.002 * ref["se"][name], name
        assert res.stderr[name] == pytest.approx(ref["se"][name], rel=2e-3), name
    assert res.sigma == pytest.approx(ref["sigma"], rel=2e-3)
    vc = res.varcorr
    for row in ref["varcorr"]:
        grp = lme4_group(row["grp"])
        if grp == "Residual":
            got = vc[vc.group == "Residual"].sdcor.iloc[0]
            assert got == pytest.approx(row["sdcor"], rel=5e-3)
            continue
        sel = vc[(vc.group == grp) & (vc.var1 == row["var1"])]
        if row.get("var2") is not None:
            sel = sel[sel.var2 == row["var2"]]
            assert len(sel) == 1, (grp, row)
            assert abs(sel.sdcor.iloc[0] - row["sdcor"]) <= 0.02, (grp, row)
        else:
            sel = sel[sel.var2.isna()]
            assert len(sel) == 1, (grp, row)
            assert sel.sdcor.iloc[0] == pytest.approx(row["sdcor"], rel=5e-3, abs=1e-6), (grp, row)
    assert res.ngroups == {lme4_group(k): v for k, v in ref["ngrps"].items()}
