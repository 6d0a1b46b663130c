"""Parquet files bigger than memory: two streamed passes of record batches (pyarrow).

Pass 1 collects the levels (:func:`jaxlme.partitions.collect_levels`), pass 2 sums the
cross-products batch by batch (:meth:`jaxlme.partitions.PartitionPlan.crossproducts`); only
one batch of the model's columns is in memory at a time, so memory is bounded by
``batch_size`` and the model's size, not by the rows.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from .design import DataError, model_variables
from .partitions import LevelSet, PartitionPlan, collect_levels, parse_partitioned_formula
from .structure import CrossProducts

__all__ = ["parquet_files", "parquet_batches", "parquet_crossproducts"]

# Rows per record batch: ~10^6 rows of a few columns is tens of MB, the pass's working set.
BATCH_SIZE = 1 << 20


def parquet_files(source) -> list[str]:
    """The Parquet files of ``source``: a path, a glob pattern (``"data/*.parquet"``), a
    directory (its ``*.parquet`` files) or a list of paths; sorted, so the row order is fixed.

    Raises:
        DataError: nothing matches.
    """
    if isinstance(source, (list, tuple)):
        files = [str(f) for f in source]
    else:
        p = Path(source)
        files = sorted(glob.glob(str(p / "*.parquet"))) if p.is_dir() else sorted(glob.glob(str(source)))
    if not files:
        raise DataError(f"no Parquet files match {source!r}")
    other = [f for f in files if not f.lower().endswith((".parquet", ".pq"))]
    if other:
        raise DataError(
            f"{other[0]!r} is not a Parquet file (.parquet/.pq): data given as a path must be Parquet; "
            "read other files into a DataFrame first"
        )
    return files


def parquet_batches(files: list[str], columns: list[str], batch_size: int = BATCH_SIZE) -> Iterator[pd.DataFrame]:
    """The rows of ``files`` as pandas frames of at most ``batch_size`` rows, ``columns`` only.

    Each file is read with its own schema, so a column whose type differs between files
    reaches the type check of :class:`jaxlme.partitions.LevelSet` instead of being cast.
    """
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading Parquet needs pyarrow: pip install 'jaxlme[parquet]'") from None
    for f in files:
        pf = pq.ParquetFile(f)
        missing = [c for c in columns if c not in pf.schema_arrow.names]
        if missing:
            raise DataError(f"Column(s) {', '.join(map(repr, missing))} used in the formula not found in {f}")
        for batch in pf.iter_batches(batch_size=batch_size, columns=columns):
            yield batch.to_pandas()


def parquet_crossproducts(
    formula, source, *, weights: str | None = None, batch_size: int = BATCH_SIZE, progress: bool = False
) -> tuple[PartitionPlan, CrossProducts, dict]:
    """Stream ``source`` twice: the levels, then the summed cross-products.

    Args:
        formula: lme4-style formula.
        source: Parquet path, glob, directory or list of paths (see :func:`parquet_files`).
        weights: the prior weights' column name, or None.
        batch_size: rows per record batch.
        progress: Print one line per pass (batches and seconds) to stderr.

    Returns:
        ``(plan, total, timings)``: the :class:`PartitionPlan`, the sum of every batch's
        :class:`CrossProducts`, and seconds per pass.
    """
    import sys

    parsed = parse_partitioned_formula(formula)
    files = parquet_files(source)
    columns = sorted(model_variables(parsed)[0] | ({weights} if weights else set()))
    t0 = time.perf_counter()
    levels, head, nb = LevelSet(), None, 0
    for frame in parquet_batches(files, columns, batch_size):
        part = collect_levels(parsed, frame, weights)
        levels = levels + part
        nb += 1
        if head is None and part.n:
            head = frame
    t1 = time.perf_counter()
    if progress:
        print(f"jaxlme: levels pass, {nb} batches, {t1 - t0:.1f} s", file=sys.stderr)
    if head is None:
        raise DataError("no complete rows remain after dropping missing values")
    plan = PartitionPlan(parsed, levels, head, weights)
    total = plan.zero
    for frame in parquet_batches(files, columns, batch_size):
        total = total + plan.crossproducts(frame)
    t2 = time.perf_counter()
    if progress:
        print(f"jaxlme: cross-products pass, {nb} batches, {t2 - t1:.1f} s", file=sys.stderr)
    return plan, total, {"levels": t1 - t0, "crossproducts": t2 - t1}
