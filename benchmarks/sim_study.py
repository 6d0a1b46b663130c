"""Simulation study: jaxlme against lme4 1.1-31 (maxfun = 1e5) on random designs.

Families of designs (scalar and vector-valued terms, nested and crossed, uncorrelated
and factor-valued slopes, a maximal crossed model), each with random true parameters
-- variances drawn with zeros among them, correlations anywhere in [-1, 1] -- and random
covariates.  Designs within a family share their shape (balanced layouts), so jaxlme
compiles once per family and criterion.  Every design is fitted by REML and ML by both
packages; a fit is "worse" when its criterion exceeds the other's by more than ``--tol``.

    python benchmarks/sim_study.py                   # 1008 designs -> benchmarks/SIM_STUDY.md
    python benchmarks/sim_study.py --reps 10 --out /tmp/quick.md   # a quick look

Needs Rscript with lme4 and jsonlite (``apt-get install r-cran-lme4 r-cran-jsonlite``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import jaxlme  # noqa: E402


@dataclass(frozen=True)
class Family:
    name: str
    formula: str
    make: object  # (rng) -> DataFrame


def _sd(rng, k: int) -> np.ndarray:
    """k standard deviations: a quarter of them exactly zero, the rest from 0.05 to 2."""
    sd = rng.uniform(0.05, 2.0, k)
    sd[rng.uniform(size=k) < 0.25] = 0.0
    return sd


def _cov(rng, k: int) -> np.ndarray:
    """A random k x k covariance: random SDs (some zero) and a random correlation matrix,
    sometimes near-singular (|ρ| near 1)."""
    sd = _sd(rng, k)
    a = rng.normal(size=(k, k + (1 if rng.uniform() < 0.3 else 3)))
    c = a @ a.T
    d = np.sqrt(np.diag(c))
    corr = c / np.outer(d, d)
    return corr * np.outer(sd, sd)


def _effects(rng, levels: int, k: int) -> np.ndarray:
    cov = _cov(rng, k)
    w, v = np.linalg.eigh(cov)
    return rng.normal(size=(levels, k)) @ (v * np.sqrt(np.clip(w, 0, None))).T


def _scalar(rng):
    g = np.repeat(np.arange(12), 10)
    x = rng.normal(size=g.size)
    y = 1 + 0.5 * x + _effects(rng, 12, 1)[g, 0] + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def _slope(rng, levels=20, per=10):
    g = np.repeat(np.arange(levels), per)
    x1, x2 = rng.normal(size=(2, g.size))
    b = _effects(rng, levels, 2)
    y = 1 + 0.5 * x1 - 0.3 * x2 + b[g, 0] + b[g, 1] * x1 + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g})


def _slope3(rng):
    g = np.repeat(np.arange(25), 12)
    x1, x2 = rng.normal(size=(2, g.size))
    b = _effects(rng, 25, 3)
    y = 1 + 0.5 * x1 - 0.3 * x2 + b[g, 0] + b[g, 1] * x1 + b[g, 2] * x2 + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g})


def _nested(rng):
    a = np.repeat(np.arange(10), 24)
    b = np.tile(np.repeat(np.arange(4), 6), 10)
    x = rng.normal(size=a.size)
    ea, eb = _effects(rng, 10, 1)[:, 0], _effects(rng, 40, 1)[:, 0]
    y = 1 + 0.5 * x + ea[a] + eb[a * 4 + b] + rng.normal(size=a.size)
    return pd.DataFrame({"y": y, "x": x, "a": a, "b": b})


def _crossed(rng):
    a, b = (m.ravel() for m in np.meshgrid(np.arange(15), np.arange(10), indexing="ij"))
    a, b = np.repeat(a, 2), np.repeat(b, 2)
    x = rng.normal(size=a.size)
    y = 1 + 0.5 * x + _effects(rng, 15, 1)[a, 0] + _effects(rng, 10, 1)[b, 0] + rng.normal(size=a.size)
    return pd.DataFrame({"y": y, "x": x, "a": a, "b": b})


def _crossed_slope(rng):
    a, b = (m.ravel() for m in np.meshgrid(np.arange(20), np.arange(8), indexing="ij"))
    a, b = np.repeat(a, 2), np.repeat(b, 2)
    x = rng.normal(size=a.size)
    ba = _effects(rng, 20, 2)
    y = 1 + 0.5 * x + ba[a, 0] + ba[a, 1] * x + _effects(rng, 8, 1)[b, 0] + rng.normal(size=a.size)
    return pd.DataFrame({"y": y, "x": x, "a": a, "b": b})


def _zerocorr(rng):
    d = _slope(rng)
    return d.drop(columns="x2").rename(columns={"x1": "x"})


def _factor_slope(rng):
    g = np.repeat(np.arange(20), 12)
    f = np.tile(np.arange(3), 80)
    b = _effects(rng, 20, 3)
    y = 1 + 0.4 * f + b[g, f] + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "f": np.array(["u", "v", "w"])[f], "g": g})


def _maximal(rng):
    """kb07-shaped: subjects crossed with items, maximal slopes on two covariates."""
    a, b = (m.ravel() for m in np.meshgrid(np.arange(24), np.arange(16), indexing="ij"))
    x1 = np.where((a + b) % 2 == 0, -0.5, 0.5)
    x2 = np.where((a // 2 + b) % 2 == 0, -0.5, 0.5)
    ba, bb = _effects(rng, 24, 3), _effects(rng, 16, 3)
    y = (
        1
        + 0.3 * x1
        - 0.2 * x2
        + ba[a, 0]
        + ba[a, 1] * x1
        + ba[a, 2] * x2
        + bb[b, 0]
        + bb[b, 1] * x1
        + bb[b, 2] * x2
        + rng.normal(size=a.size)
    )
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "a": a, "b": b})


FAMILIES = [
    Family("scalar", "y ~ x + (1 | g)", _scalar),
    Family("slope", "y ~ x1 + x2 + (1 + x1 | g)", _slope),
    Family("slope3", "y ~ x1 + x2 + (1 + x1 + x2 | g)", _slope3),
    Family("nested", "y ~ x + (1 | a/b)", _nested),
    Family("crossed", "y ~ x + (1 | a) + (1 | b)", _crossed),
    Family("crossed_slope", "y ~ x + (1 + x | a) + (1 | b)", _crossed_slope),
    Family("zerocorr", "y ~ x + (x || g)", _zerocorr),
    Family("factor_slope", "y ~ f + (f | g)", _factor_slope),
    Family("maximal", "y ~ x1 + x2 + (1 + x1 + x2 | a) + (1 + x1 + x2 | b)", _maximal),
]


def make_data(reps: int, seed: int, folder: Path) -> list[dict]:
    """Write one CSV per family (all replicates, column ``rep``); returns the R script's list."""
    listing = []
    for i, fam in enumerate(FAMILIES):
        rng = np.random.default_rng([seed, i])
        frames = [fam.make(rng).assign(rep=r) for r in range(reps)]
        d = pd.concat(frames, ignore_index=True)
        for c in ("g", "a", "b"):
            if c in d:
                d[c] = "L" + d[c].astype(str)
        d.to_csv(folder / f"{fam.name}.csv", index=False, float_format="%.17g")
        listing.append({"family": fam.name, "formula": fam.formula, "csv": f"{fam.name}.csv"})
    return listing


def fit_jaxlme(folder: Path) -> list[dict]:
    out = []
    for fam in FAMILIES:
        d = pd.read_csv(folder / f"{fam.name}.csv", dtype={"g": str, "a": str, "b": str})
        t0 = time.perf_counter()
        for r, dr in d.groupby("rep", sort=True):
            for reml in (True, False):
                row = {"family": fam.name, "rep": int(r), "REML": reml}
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        res = jaxlme.lmm(fam.formula, dr.reset_index(drop=True), reml=reml)
                    row.update(criterion=res.objective, converged=res.converged, status=res.opt.status)
                    row["theta"] = res.theta.tolist()
                except Exception as exc:  # recorded, counted as a failure
                    row.update(criterion=float("nan"), converged=False, status=f"error: {exc}")
                out.append(row)
        print(f"  jaxlme {fam.name}: {time.perf_counter() - t0:.1f} s", flush=True)
    return out


def compare(ours: list[dict], theirs: list[dict], tol: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    a = pd.DataFrame(ours).set_index(["family", "rep", "REML"])
    b = pd.DataFrame(theirs).set_index(["family", "rep", "REML"])
    m = a.join(b.add_suffix("_lme4"))
    m["diff"] = m["criterion"] - m["criterion_lme4"]
    rows = []
    for fam in FAMILIES:
        f = m.loc[fam.name]
        rows.append(
            {
                "family": fam.name,
                "formula": f"`{fam.formula}`",
                "fits": len(f),
                "jaxlme better": int((f["diff"] < -tol).sum()),
                "equal": int((f["diff"].abs() <= tol).sum()),
                "jaxlme worse": int((f["diff"] > tol).sum()),
                "max worse": f"{max(f['diff'].max(), 0.0):.2e}",
                "jaxlme errors": int(f["criterion"].isna().sum()),
                "lme4 errors": int(f["criterion_lme4"].isna().sum()),
                "not converged": int((~f["converged"].astype(bool)).sum()),
            }
        )
    worst = m[m["diff"] > tol].sort_values("diff", ascending=False)
    unconverged = m[~m["converged"].astype(bool)]
    return pd.DataFrame(rows), worst, unconverged


def _markdown(df: pd.DataFrame) -> str:
    """A pandas frame as a Markdown table (no tabulate dependency)."""
    cols = [str(c) for c in df.columns]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        out.append("| " + " | ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=112, help="designs per family (9 families)")
    ap.add_argument("--seed", type=int, default=20261130)
    ap.add_argument("--tol", type=float, default=1e-4, help="criterion difference counted as better/worse")
    ap.add_argument("--out", default=str(HERE / "SIM_STUDY.md"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        listing = make_data(args.reps, args.seed, folder)
        (folder / "designs.json").write_text(json.dumps(listing))
        t0 = time.perf_counter()
        r_out = folder / "lme4.json"
        lme4 = subprocess.Popen(
            ["Rscript", str(HERE / "peers" / "sim_study_lme4.R"), str(folder / "designs.json"), str(folder), str(r_out)]
        )
        ours = fit_jaxlme(folder)
        t_ours = time.perf_counter() - t0
        if lme4.wait() != 0:
            raise SystemExit("lme4 failed")
        t_all = time.perf_counter() - t0
        theirs = json.loads(r_out.read_text())
    for row in theirs:
        row["criterion"] = float("nan") if row["criterion"] in (None, "NA") else row["criterion"]
    table, worst, unconverged = compare(ours, theirs, args.tol)
    n_designs = args.reps * len(FAMILIES)
    lines = [
        "# Simulation study: jaxlme vs lme4 1.1-31",
        "",
        f"`python benchmarks/sim_study.py --reps {args.reps} --seed {args.seed}`: {n_designs} designs, "
        f"each fitted by REML and ML ({2 * n_designs} fits per package). lme4 with "
        f"`optCtrl = list(maxfun = 1e5)`. A fit is better/worse when its criterion differs by more than "
        f"{args.tol:g}. jaxlme {t_ours:.0f} s (compiles included, beside lme4 on a shared 2-core machine); "
        f"whole run {t_all:.0f} s.",
        "",
        _markdown(table),
        "",
        f"Total: jaxlme worse in {int(table['jaxlme worse'].sum())}, better in "
        f"{int(table['jaxlme better'].sum())} of {int(table['fits'].sum())} fits.",
        "",
    ]
    if len(worst):
        lines += [
            "## Fits where jaxlme is worse",
            "",
            _markdown(
                worst.head(30).reset_index()[
                    ["family", "rep", "REML", "criterion", "criterion_lme4", "diff", "status", "theta", "theta_lme4"]
                ]
            ),
            "",
        ]
    if len(unconverged):
        cols = ["family", "rep", "REML", "criterion", "criterion_lme4", "diff", "status"]
        lines += ["## Fits jaxlme reports as not converged", "", _markdown(unconverged.reset_index()[cols]), ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
