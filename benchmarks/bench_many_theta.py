"""Newton against BFGS finished by Newton on models with 6-20 covariance parameters.

The data: a kb07-shaped simulation (56 subjects × 32 items crossed, three ±0.5 predictors,
known truth).  Prints the warm ML fit's median of 3 and the criterion for each optimizer;
the table behind ``optimizer.BFGS_MIN_THETA`` (benchmarks/DESIGN_NOTES.md).

    python benchmarks/bench_many_theta.py
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

import jaxlme

FORMULAS = {
    "6 θ (1+S+P|subj)": "y ~ S + P + L + (1 + S + P | subj)",
    "8 θ kb07 ||": "y ~ S + P + L + (1 + S + P + L || subj) + (1 + S + P + L || item)",
    "10 θ (1+S+P+L|subj)": "y ~ S + P + L + (1 + S + P + L | subj)",
    "12 θ 3-col crossed": "y ~ S + P + L + (1 + S + P | subj) + (1 + S + P | item)",
    "20 θ maximal": "y ~ S + P + L + (1 + S + P + L | subj) + (1 + S + P + L | item)",
}


def simulate(seed: int = 5, n_subj: int = 56, n_item: int = 32) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_subj * n_item
    S, P, L = (rng.choice([-0.5, 0.5], n) for _ in range(3))
    subj, item = np.repeat(np.arange(n_subj), n_item), np.tile(np.arange(n_item), n_subj)
    sds = [0.3, 0.1, 0.1, 0.1]
    bs, bi = rng.normal(0, sds, (n_subj, 4)), rng.normal(0, sds, (n_item, 4))
    X = np.c_[np.ones(n), S, P, L]
    y = X @ [2, 0.2, 0.1, 0.1] + np.sum(X * bs[subj], 1) + np.sum(X * bi[item], 1) + rng.normal(0, 0.4, n)
    return pd.DataFrame(dict(y=y, S=S, P=P, L=L, subj=subj.astype(str), item=item.astype(str)))


def main() -> None:
    warnings.simplefilter("ignore")
    d = simulate()
    for name, formula in FORMULAS.items():
        model = jaxlme.LMM(formula, d)
        cells = []
        for optimizer in ("newton", "bfgs"):
            model.fit(reml=False, optimizer=optimizer)  # compile
            times = []
            for _ in range(3):
                t = time.perf_counter()
                res = model.fit(reml=False, optimizer=optimizer)
                times.append(time.perf_counter() - t)
            spread = f"{min(times):.3f}-{max(times):.3f}"
            cells.append(f"{optimizer} {np.median(times):.3f} s ({spread}) crit {res.objective:.6f}")
        print(f"{name:22s} ntheta {model.layout.ntheta:2d} | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
