"""jaxlme.parquet: streamed Parquet fits equal the in-memory fit; the CLI takes a glob."""

from __future__ import annotations

import numpy as np
import pytest

import jaxlme
from jaxlme import cli
from jaxlme.design import DataError

pytest.importorskip("pyarrow")


def write_parts(data, tmp_path, k):
    edges = np.linspace(0, len(data), k + 1).astype(int)
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        data.iloc[a:b].to_parquet(tmp_path / f"part{i:03d}.parquet")
    return str(tmp_path / "*.parquet")


@pytest.mark.parametrize("k", [1, 7])
def test_parquet_glob_equals_in_memory(tmp_path, k):
    data = jaxlme.datasets.load("Pastes")
    f = "strength ~ 1 + (1 | batch/cask)"
    ref = jaxlme.lmm(f, data)
    res = jaxlme.lmm(f, write_parts(data, tmp_path, k))
    np.testing.assert_allclose(res.fixef, ref.fixef, rtol=1e-9)
    np.testing.assert_allclose(res.theta, ref.theta, rtol=1e-9)
    assert res.objective == pytest.approx(ref.objective, rel=1e-9)
    assert set(res.model.pass_seconds) == {"levels", "crossproducts"}


def test_small_batches_and_missing_values(tmp_path):
    data = jaxlme.datasets.load("sleepstudy")
    data.loc[[5, 77], "Reaction"] = np.nan
    f = "Reaction ~ Days + (Days | Subject)"
    with pytest.warns(UserWarning, match="^2 row"):
        ref = jaxlme.LMM(f, data).fit(gtol=1e-10)
    src = write_parts(data, tmp_path, 3)
    with pytest.warns(UserWarning, match="^2 row"):
        res = jaxlme.LMM.from_parquet(f, src, batch_size=7).fit(gtol=1e-10)  # 26 batches
    np.testing.assert_allclose(res.fixef, ref.fixef, rtol=1e-9)
    np.testing.assert_allclose(res.stderr, ref.stderr, rtol=1e-7)  # see test_partitions.THETA_REL


def test_bad_input(tmp_path):
    data = jaxlme.datasets.load("sleepstudy")
    f = "Reaction ~ Days + (1 | Subject)"
    data.iloc[:90].assign(Subject=lambda d: d.Subject.astype(int)).to_parquet(tmp_path / "a.parquet")
    data.iloc[90:].assign(Subject=lambda d: d.Subject.astype(str)).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(DataError, match="'Subject' holds numeric values in one partition and text"):
        jaxlme.lmm(f, str(tmp_path / "*.parquet"))
    with pytest.raises(DataError, match="no Parquet files match"):
        jaxlme.lmm(f, str(tmp_path / "none*.parquet"))
    data.to_csv(tmp_path / "d.csv")
    with pytest.raises(DataError, match="is not a Parquet file"):
        jaxlme.lmm(f, str(tmp_path / "d.csv"))
    with pytest.raises(DataError, match="'nope'"):
        jaxlme.lmm("Reaction ~ nope + (1 | Subject)", str(tmp_path / "a.parquet"))


def test_cli_fits_a_parquet_glob(tmp_path, capsys):
    data = jaxlme.datasets.load("sleepstudy")
    src = write_parts(data, tmp_path, 3)
    assert cli.main(["fit", src, "Reaction ~ Days + (Days | Subject)", "--json"]) == 0
    out = capsys.readouterr().out
    ref = jaxlme.lmm("Reaction ~ Days + (Days | Subject)", data)
    assert f"{ref.fixef['Days']:.6f}"[:8] in out
    assert cli.main(["fit", src, "Reaction ~ Days + (Days | Subject)", "--bootstrap", "20", "--json"]) == 0
    assert '"bootstrap"' in capsys.readouterr().out  # drawn from the cross-products, no rows


def test_progress_lines(tmp_path, capsys):
    data = jaxlme.datasets.load("sleepstudy")
    model = jaxlme.LMM.from_parquet("Reaction ~ Days + (1 | Subject)", write_parts(data, tmp_path, 2), progress=True)
    err = capsys.readouterr().err
    assert "levels pass, 2 batches" in err and "cross-products pass, 2 batches" in err
    assert model.nobs == 180
