"""Generate a synthetic crossed random-effects data set with known truth.

Usage::

    python make_synthetic.py N N_G1 N_G2 OUT.csv|OUT.parquet [--seed S] [--chunk C]

Model (the ``synthetic`` benchmark case, ``y ~ x + (1 + x | g1) + (1 | g2)``)::

    y = 1 + 0.5 x + b1[g1] + b2[g1] x + c[g2] + eps
    x ~ N(0, 1);  g1 ~ U{1..N_G1};  g2 ~ U{1..N_G2}  (independent, per row)
    (b1, b2)[j] ~ N(0, [[1.0^2, 0.2*1.0*0.3], [0.2*1.0*0.3, 0.3^2]])
    c[k] ~ N(0, 0.7^2);  eps ~ N(0, 1.0^2)

i.e. fixed effects (Intercept)=1.0, x=0.5; SDs 1.0 (g1 intercept), 0.3 (g1 slope),
correlation 0.2, 0.7 (g2 intercept), residual sigma 1.0.  The realised random
effects depend on ``--seed``; the population truth above does not.

Columns: ``y, x`` (float64) and ``g1, g2`` (1-based integer level labels).
Rows are generated and written in chunks, so N = 10^7 needs little memory.
The output format follows the file extension (``.csv`` or ``.parquet``).
A JSON description of the truth is printed to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

TRUTH = {
    "fixef": {"(Intercept)": 1.0, "x": 0.5},
    "sd_g1_intercept": 1.0,
    "sd_g1_slope": 0.3,
    "cor_g1": 0.2,
    "sd_g2_intercept": 0.7,
    "sigma": 1.0,
}


def _random_effects(rng: np.random.Generator, n_g1: int, n_g2: int):
    """Draw (b1, b2) per g1 level and c per g2 level from the true distribution."""
    s1, s2, r = TRUTH["sd_g1_intercept"], TRUTH["sd_g1_slope"], TRUTH["cor_g1"]
    cov = np.array([[s1 * s1, r * s1 * s2], [r * s1 * s2, s2 * s2]])
    b = rng.standard_normal((n_g1, 2)) @ np.linalg.cholesky(cov).T
    c = TRUTH["sd_g2_intercept"] * rng.standard_normal(n_g2)
    return b[:, 0], b[:, 1], c


def generate_chunks(n: int, n_g1: int, n_g2: int, seed: int, chunk: int):
    """Yield pyarrow tables of at most ``chunk`` rows that together hold ``n`` rows."""
    rng = np.random.default_rng(seed)
    b1, b2, c = _random_effects(rng, n_g1, n_g2)
    beta0, beta1 = TRUTH["fixef"]["(Intercept)"], TRUTH["fixef"]["x"]
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = rng.standard_normal(m)
        g1 = rng.integers(0, n_g1, m)
        g2 = rng.integers(0, n_g2, m)
        eps = TRUTH["sigma"] * rng.standard_normal(m)
        y = beta0 + beta1 * x + b1[g1] + b2[g1] * x + c[g2] + eps
        yield pa.table(
            {
                "y": y,
                "x": x,
                "g1": (g1 + 1).astype(np.int32),
                "g2": (g2 + 1).astype(np.int32),
            }
        )


def write(out: Path, chunks) -> None:
    """Stream ``chunks`` to ``out`` as CSV or Parquet depending on its suffix."""
    writer = None
    try:
        for table in chunks:
            if writer is None:
                if out.suffix == ".parquet":
                    writer = pq.ParquetWriter(out, table.schema)
                else:
                    writer = pacsv.CSVWriter(out, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("n", type=int, help="number of observations")
    p.add_argument("n_g1", type=int, help="levels of g1 (random intercept + slope)")
    p.add_argument("n_g2", type=int, help="levels of g2 (random intercept)")
    p.add_argument("out", type=Path, help="output file (.csv or .parquet)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk", type=int, default=1_000_000, help="rows per chunk")
    a = p.parse_args(argv)
    if a.out.suffix not in (".csv", ".parquet"):
        p.error("OUT must end in .csv or .parquet")
    write(a.out, generate_chunks(a.n, a.n_g1, a.n_g2, a.seed, a.chunk))
    info = {"n": a.n, "n_g1": a.n_g1, "n_g2": a.n_g2, "seed": a.seed, "out": str(a.out)}
    json.dump({**info, "truth": TRUTH}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
