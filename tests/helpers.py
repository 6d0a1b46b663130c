"""Test helpers: paths to the reference data and a CSV loader."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference"


def load_csv(name: str) -> pd.DataFrame:
    """Load a dataset, reading InstEval from ../shared (it is too big to ship)."""
    if name == "InstEval":
        path = SHARED / "InstEval.csv"
        if not path.exists():
            pytest.skip("InstEval.csv not available in ../shared/reference")
        return pd.read_csv(path, dtype={"s": str, "d": str, "dept": str, "service": str})
    return pd.read_csv(DATA / f"{name}.csv")
