"""Many responses, one design: fit the same mixed model to m response vectors at once.

Genes, voxels, items: only the response changes between the fits, so each costs its O(n)
cross-products and a refit of θ on the model's structure.  The refits run as the
bootstrap's vmapped lanes (:func:`jaxlme.pool.refit_pool`), with the given responses
transferred to the device chunk by chunk instead of simulated there.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .boundary import EXACT_FIT_TOL
from .compiled import enable_compilation_cache
from .optimizer import BFGS_MIN_SIZE, MAXITER, STATUS
from .params import group_labels, vc_frame
from .pool import GivenResponses, refit_pool
from .simulation import Simulated

if TYPE_CHECKING:  # pragma: no cover
    from .model import LMM

__all__ = ["fit_many", "response_matrix"]


def response_matrix(model: LMM, Y) -> tuple[np.ndarray, pd.Index]:
    """The responses as an (nobs, m) float array aligned with the model's rows, and their names.

    Rows: ``Y`` with ``model.nobs`` rows is taken as the model's rows, in order.  When the
    data had rows dropped for missing values, ``Y`` may instead have one row per row of the
    original data; the rows the model dropped are then dropped from ``Y`` too.  A pandas
    ``Y`` must carry the data's index (full length) or the model's row labels (nobs rows;
    a default 0..nobs-1 index counts as positional), so that a reordered ``Y`` raises
    instead of being fitted to the wrong rows.

    Args:
        model: the fitted model's :class:`~jaxlme.LMM`.
        Y: (n × m) array, DataFrame or Series of responses; a 1-D array is one response.
            The output of ``simulate(m)`` ((m × nobs), one response per row) is taken
            as it is laid out.

    Returns:
        ``(Y as an (nobs, m) float64 array, names of the m responses)``.
    """
    nobs = model.nobs
    n_data = nobs + model.design.n_dropped
    data_index = model._data_index
    if isinstance(Y, pd.Series):
        Y = Y.to_frame()
    if isinstance(Y, pd.DataFrame):
        names = pd.Index(Y.columns, name="response")
        rows = model.design.rows
        if len(Y) == n_data and n_data != nobs and Y.index.equals(data_index):
            pos = _data_positions(model)
            values = Y.to_numpy(dtype=float)[pos]
        elif len(Y) == nobs and (Y.index.equals(rows) or Y.index.equals(pd.RangeIndex(nobs))):
            values = Y.to_numpy(dtype=float)
        else:
            raise ValueError(
                f"Y's index matches neither the model's {nobs} rows nor the data's {n_data} rows: "
                "align Y with the data the model was built from"
            )
    else:
        if isinstance(Y, Simulated):  # simulate(n) is (n responses × nobs): one response per row
            Y = np.asarray(Y).T
        values = np.asarray(Y, dtype=float)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2:
            raise ValueError(f"Y must be 1-D or 2-D (rows × responses), got {values.ndim} dimensions")
        names = pd.RangeIndex(values.shape[1], name="response")
        if values.shape[0] == n_data and n_data != nobs:
            values = values[_data_positions(model)]
        elif values.shape[0] != nobs:
            extra = f" or the data's {n_data} rows" if n_data != nobs else ""
            raise ValueError(f"Y has {values.shape[0]} rows, the model has {nobs} rows{extra}")
    bad = ~np.isfinite(values)
    if bad.any():
        j = int(np.flatnonzero(bad.any(axis=0))[0])
        raise ValueError(
            f"Y column {names[j]!r} has non-finite values in the model's rows (rows with missing "
            "responses change the design: fit that response on its own)"
        )
    return values, names


def _data_positions(model: LMM) -> np.ndarray:
    """Positions of the model's rows in the original data."""
    index = model._data_index
    if not index.is_unique:
        raise ValueError(
            "Y has one row per data row, but the data's index has duplicate labels: pass Y with the model's rows only"
        )
    return index.get_indexer(model.design.rows)


def fit_many(
    model: LMM,
    Y,
    reml: bool = True,
    *,
    theta0=None,
    chunk_size: int | None = None,
    devices=None,
    progress: bool = False,
    gtol: float = 1e-6,
    maxiter: int = MAXITER,
    memory_bytes: float = 1e9,
) -> pd.DataFrame:
    """Fit ``model``'s design to each column of ``Y``: the implementation of :meth:`jaxlme.LMM.fit_many`.

    Args:
        model: the model whose design (rows, X, Z, weights, offset) every response shares.
        Y: the responses, aligned as :func:`response_matrix` describes.
        reml: REML (default) or maximum likelihood.
        theta0: starting θ of every response (default: the core fit's start).
        chunk_size, devices, progress, gtol, maxiter, memory_bytes: as for
            :func:`jaxlme.bootstrap.bootstrap`.

    Returns:
        One row per response: fixed effects, SDs/correlations, sigma, objective, converged,
        status, iterations (``attrs``: method, formula, seconds, chunk_size, n_devices).
    """
    enable_compilation_cache()
    t0 = time.perf_counter()
    values, names = response_matrix(model, Y)
    design, lay = model.design, model.layout
    m = values.shape[1]
    y_net = values if design.offset is None else values - design.offset[:, None]  # as refit: offset removed
    ys = y_net - model.centering.y_shift  # the cross-products are those of the centred response
    if design.weights is not None:
        ys = ys * np.sqrt(design.weights)[:, None]  # obs rows carry √w
    if theta0 is None:
        # as the core fit: lme4's start for Newton, the moment start where BFGS runs
        theta0 = model.initial_theta() if lay.size_rest >= BFGS_MIN_SIZE else lay.theta_start * model.theta_scale
    theta0 = np.asarray(theta0, dtype=float).reshape(-1)
    if theta0.shape[0] != lay.ntheta:
        raise ValueError(f"theta0 must have {lay.ntheta} elements, got {theta0.shape[0]}")
    pool = refit_pool(
        model,
        bool(reml),
        m,
        GivenResponses(ys.T),
        theta0,
        chunk_size=chunk_size,
        devices=devices,
        progress=progress,
        gtol=gtol,
        maxiter=maxiter,
        memory_bytes=memory_bytes,
        desc="fit_many",
    )
    if pool.interrupted:
        raise KeyboardInterrupt
    vc = vc_frame(model.layout, design.terms, group_labels(design.terms), pool.theta, pool.sigma)
    spread = np.std(y_net, axis=0)
    degenerate = ~np.isfinite(pool.sigma) | (pool.sigma <= EXACT_FIT_TOL * spread)
    status = np.array([STATUS.get(int(c), f"status {int(c)}") for c in pool.status], dtype=object)
    status[degenerate] = "degenerate fit: the residual standard deviation is ~0"
    out = pd.concat(
        [
            pd.DataFrame(pool.beta, columns=list(design.xnames)),
            vc,
            pd.DataFrame(
                {
                    "objective": pool.objective,
                    "converged": np.isin(pool.status, (1, 2)) & ~degenerate,
                    "status": status,
                    "iterations": pool.iterations,
                }
            ),
        ],
        axis=1,
    )
    out.index = names
    out.attrs.update(
        method="REML" if reml else "ML",
        formula=design.formula.text,
        seconds=time.perf_counter() - t0,
        chunk_size=pool.chunk_size,
        n_devices=pool.n_devices,
    )
    return out
