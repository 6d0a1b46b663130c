"""Dask DataFrames: the two passes of :mod:`jaxlme.partitions` as tasks on the cluster.

Pass 1 maps every partition to its levels and tree-reduces them; pass 2 maps every
partition to its :class:`jaxlme.structure.CrossProducts` and tree-reduces those, so the
driver receives one value of the model's size.  Dask is optional (``pip install
"jaxlme[dask]"``): this module imports it only when called.
"""

from __future__ import annotations

import functools
import operator
import time

import numpy as np
import pandas as pd

from .design import DataError, model_variables
from .partitions import PartitionPlan, collect_levels, parse_partitioned_formula, partition_fitted

__all__ = ["is_dask_frame", "dask_crossproducts", "dask_fitted"]

# Partial results added per tree node: a few adds per task keep the graph small.
_FANIN = 8


def is_dask_frame(data) -> bool:
    """Whether ``data`` is a ``dask.dataframe.DataFrame`` (without importing Dask)."""
    return type(data).__module__.split(".")[0] == "dask" and hasattr(data, "to_delayed")


def _add_all(*parts):
    return functools.reduce(operator.add, parts)


def _tree_sum(items):
    """One delayed value: ``items`` added up in a tree of ``_FANIN``-way sums (on the workers)."""
    import dask

    while len(items) > 1:
        groups = [items[i : i + _FANIN] for i in range(0, len(items), _FANIN)]
        items = [dask.delayed(_add_all)(*g) if len(g) > 1 else g[0] for g in groups]
    return items[0]


class _Counted(tuple):
    """(levels, per-partition complete-row counts), added pairwise in the tree."""

    def __add__(self, other):
        return _Counted((self[0] + other[0], np.concatenate([self[1], other[1]])))


def _levels_and_count(formula, frame, weights):
    part = collect_levels(formula, frame, weights)
    return _Counted((part, np.array([part.n])))


def _compute(value, progress: bool):
    """``value.compute()``, with Dask's own progress bar when asked (the distributed one
    when a client is active, else ``dask.diagnostics.ProgressBar``)."""
    if not progress:
        return value.compute()
    try:
        from distributed import default_client
        from distributed import progress as show_progress

        client = default_client()
    except (ImportError, ValueError):  # no distributed, or no client: the local schedulers
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            return value.compute()
    future = client.compute(value)
    show_progress(future)
    return future.result()


def dask_crossproducts(
    formula, ddf, *, weights: str | None = None, progress: bool = False
) -> tuple[PartitionPlan, object, dict]:
    """The two passes over a Dask DataFrame's partitions.

    Args:
        formula: lme4-style formula.
        ddf: a ``dask.dataframe.DataFrame`` with the model's columns.
        weights: the prior weights' column name, or None.
        progress: Show Dask's progress bar for each pass.

    Returns:
        ``(plan, total, timings)`` as :func:`jaxlme.parquet.parquet_crossproducts`.
    """
    import dask

    parsed = parse_partitioned_formula(formula)
    used = model_variables(parsed)[0] | ({weights} if weights else set())
    missing = sorted(c for c in used if c not in ddf.columns)
    if missing:
        raise DataError(f"Column(s) {', '.join(repr(m) for m in missing)} used in the formula not found in data")
    parts = ddf[[c for c in ddf.columns if c in used]].to_delayed()
    t0 = time.perf_counter()
    first = [dask.delayed(_levels_and_count)(parsed, p, weights) for p in parts]
    levels, counts = _compute(_tree_sum(first), progress)
    t1 = time.perf_counter()
    nonempty = np.flatnonzero(counts)
    if not len(nonempty):
        raise DataError("no complete rows remain after dropping missing values")
    head = parts[int(nonempty[0])].compute()
    plan = PartitionPlan(parsed, levels, head, weights)
    plan_d = dask.delayed(plan, traverse=False)
    cps = [dask.delayed(PartitionPlan.crossproducts)(plan_d, p) for p in parts]
    total = _compute(_tree_sum(cps), progress)
    t2 = time.perf_counter()
    return plan, total, {"levels": t1 - t0, "crossproducts": t2 - t1}


def dask_fitted(result, ddf, kind: str = "fitted"):
    """Fitted values or residuals of a model fitted from a Dask DataFrame, computed per
    partition: a lazy Dask Series indexed like the complete rows.

    Args:
        result: the fitted :class:`jaxlme.LMMResult`.
        ddf: the Dask DataFrame (the fit's, or new rows with the same columns).
        kind: "fitted" or "residuals".

    Returns:
        A ``dask.dataframe.Series``.
    """
    plan = result.model.plan
    fixef = result.fixef
    b = [np.asarray(x) for x in result.effects.b]
    meta = pd.Series([], dtype=float, name=kind)
    return ddf.map_partitions(partition_fitted, plan, fixef, b, kind, meta=meta)
