"""jaxlme.dask_frames: fits of a dask.dataframe.DataFrame on a real LocalCluster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import jaxlme
from jaxlme.design import DataError

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        with distributed.Client(c) as cl:
            yield cl


@pytest.mark.parametrize("k", [1, 7, 64])
def test_dask_equals_in_memory(client, k):
    data = jaxlme.datasets.load("Penicillin")
    f = "diameter ~ 1 + (1 | plate) + (1 | sample)"
    ref = jaxlme.LMM(f, data).fit(gtol=1e-10)  # past the default stop point (see test_partitions)
    res = jaxlme.LMM(f, dd.from_pandas(data, npartitions=k, sort=False)).fit(gtol=1e-10)
    np.testing.assert_allclose(res.fixef, ref.fixef, rtol=1e-9)
    # θ where the criterion is flat to rounding: the in-memory fit stops at "no further
    # decrease" 4e-9 away (tests/test_partitions.py, THETA_REL)
    np.testing.assert_allclose(res.theta, ref.theta, rtol=1e-7)
    np.testing.assert_allclose(res.stderr, ref.stderr, rtol=1e-7)
    assert res.objective == pytest.approx(ref.objective, rel=1e-9)


def test_dask_missing_values_levels_and_fitted(client):
    from jaxlme.dask_frames import dask_fitted

    data = jaxlme.datasets.load("sleepstudy").sort_values("Subject", kind="stable").reset_index(drop=True)
    data.loc[[4, 100], "Reaction"] = np.nan
    data["Subject"] = data["Subject"].astype(str)
    f = "Reaction ~ Days + (Days | Subject)"
    with pytest.warns(UserWarning, match="^2 row"):
        ref = jaxlme.LMM(f, data).fit(gtol=1e-10)
    ddf = dd.from_pandas(data, npartitions=7, sort=False)  # each partition misses most subjects
    with pytest.warns(UserWarning, match="^2 row"):
        res = jaxlme.LMM(f, ddf).fit(gtol=1e-10)
    np.testing.assert_allclose(res.fixef, ref.fixef, rtol=1e-9)
    fitted = dask_fitted(res, ddf).compute()
    np.testing.assert_allclose(fitted.sort_index(), ref.fitted.sort_index(), rtol=1e-8)
    resid = dask_fitted(res, ddf, "residuals").compute()
    assert len(resid) == 178


def test_dask_bad_input(client):
    data = jaxlme.datasets.load("sleepstudy")
    f = "Reaction ~ Days + (1 | Subject)"
    one = dd.from_pandas(data.assign(Subject="s1"), npartitions=4)
    with pytest.raises(DataError, match="has 1 level"):
        jaxlme.lmm(f, one)
    gone = dd.from_pandas(data.assign(Reaction=np.nan), npartitions=3)
    with pytest.raises(DataError, match="no complete rows remain"):
        jaxlme.lmm(f, gone)
    a = data.iloc[:90].assign(Subject=lambda d: d.Subject.astype(int))
    b = data.iloc[90:].assign(Subject=lambda d: d.Subject.astype(str))
    mixed = dd.concat([dd.from_pandas(a, npartitions=1), dd.from_pandas(b, npartitions=1)])
    with pytest.raises(DataError, match="'Subject' (holds|mixes)"):  # dask's concat makes both object
        jaxlme.lmm(f, mixed)
    assert isinstance(pd.DataFrame(), pd.DataFrame)  # pandas frames still take the in-memory path


def test_progress_bars(client, capsys):
    data = jaxlme.datasets.load("sleepstudy")
    f = "Reaction ~ Days + (1 | Subject)"
    model = jaxlme.LMM.from_dask(f, dd.from_pandas(data, npartitions=3), progress=True)
    out = capsys.readouterr()
    assert "100%" in out.out + out.err  # one bar per pass
    assert model.nobs == 180
