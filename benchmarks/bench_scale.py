"""Fits from summed cross-products at scale: Dask (rows generated on the workers) and a
Parquet stream on one machine.  Never run by the tests.

    PYTHONPATH=. python benchmarks/bench_scale.py --rows 100000000 --partitions 200   # the issue's size
    PYTHONPATH=. python benchmarks/bench_scale.py --rows 10000000 --parquet-rows 20000000

Model: y ~ x + (1 + x | g1) + (1 | g2), g1 1000 levels, g2 100.  Reports per-pass seconds
and the peak resident memory of each process (driver, workers; ru_maxrss).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

FORMULA = "y ~ x + (1 + x | g1) + (1 | g2)"


def make_partition(i: int, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(1000 + i)
    u1 = np.random.default_rng(1).normal(0, [1.0, 0.3], (1000, 2))
    u2 = np.random.default_rng(2).normal(0, 0.5, 100)
    g1, g2 = rng.integers(0, 1000, rows), rng.integers(0, 100, rows)
    x = rng.normal(size=rows)
    y = 2 + 0.5 * x + u1[g1, 0] + u1[g1, 1] * x + u2[g2] + rng.normal(size=rows)
    return pd.DataFrame({"y": y, "x": x, "g1": g1.astype(np.int32), "g2": g2.astype(np.int32)})


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def bench_dask(rows: int, partitions: int) -> None:
    import dask
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    import jaxlme

    per = rows // partitions
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="4GiB") as cluster:
        with Client(cluster) as client:
            parts = [dask.delayed(make_partition)(i, per) for i in range(partitions)]
            ddf = dd.from_delayed(parts, meta=make_partition(0, 1).iloc[:0])
            t0 = time.perf_counter()
            model = jaxlme.LMM(FORMULA, ddf)
            t1 = time.perf_counter()
            res = model.fit()
            t2 = time.perf_counter()
            workers = client.run(peak_gib)
    print(f"dask: {per * partitions:.3g} rows in {partitions} partitions, 2 worker processes")
    print(
        f"  levels pass {model.pass_seconds['levels']:.1f} s, cross-products pass "
        f"{model.pass_seconds['crossproducts']:.1f} s, setup total {t1 - t0:.1f} s, fit {t2 - t1:.1f} s"
    )
    print(
        f"  peak RSS: driver {peak_gib():.2f} GiB, workers " + ", ".join(f"{v:.2f}" for v in workers.values()) + " GiB"
    )
    print(f"  fixef {res.fixef.round(4).to_dict()}, converged {res.converged}")


def bench_parquet(rows: int, files: int) -> None:
    import jaxlme

    with tempfile.TemporaryDirectory() as tmp:
        for i in range(files):
            make_partition(i, rows // files).to_parquet(Path(tmp) / f"p{i:04d}.parquet")
        t0 = time.perf_counter()
        model = jaxlme.LMM.from_parquet(FORMULA, f"{tmp}/*.parquet")
        t1 = time.perf_counter()
        res = model.fit()
        t2 = time.perf_counter()
    print(f"parquet: {rows:.3g} rows in {files} files, streamed")
    print(
        f"  levels pass {model.pass_seconds['levels']:.1f} s, cross-products pass "
        f"{model.pass_seconds['crossproducts']:.1f} s, setup {t1 - t0:.1f} s, fit {t2 - t1:.1f} s"
    )
    print(f"  peak RSS (this process, file writing included) {peak_gib():.2f} GiB; converged {res.converged}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=100_000_000)
    ap.add_argument("--partitions", type=int, default=200)
    ap.add_argument("--parquet-rows", type=int, default=0)
    ap.add_argument("--parquet-files", type=int, default=20)
    args = ap.parse_args()
    if args.rows:
        bench_dask(args.rows, args.partitions)
    if args.parquet_rows:
        bench_parquet(args.parquet_rows, args.parquet_files)


if __name__ == "__main__":
    main()
