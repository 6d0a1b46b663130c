"""Benchmark the parametric-bootstrap LRT (issue 20): ``jaxlme.lrt(..., bootstrap=1000)``
against ``pbkrtest::PBmodcomp(m_alt, m_null, nsim = 1000, cl = NULL)`` on sleepstudy.

    python benchmarks/bench_pblrt.py                 # prints JSON lines, appends to RESULTS.md
    python benchmarks/bench_pblrt.py --no-write --skip-r

Models (ML): ``Reaction ~ Days + (1 | Subject)`` vs ``Reaction ~ Days + (Days | Subject)``.
jaxlme: the first call with an empty compile cache (compilation included), then warm
repeats with other seeds; R: PBmodcomp single-core, timed in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("JAXLME_CACHE_DIR", tempfile.mkdtemp(prefix="jaxlme-pblrt-cache-"))  # cold first call
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from run import machine  # noqa: E402

import jaxlme  # noqa: E402

SLEEP_CSV = ROOT / "tests" / "data" / "sleepstudy.csv"
NULL, ALT = "Reaction ~ Days + (1 | Subject)", "Reaction ~ Days + (Days | Subject)"

R_CODE = r"""
suppressMessages({library(lme4); library(pbkrtest)}); library(jsonlite)
a <- commandArgs(TRUE); d <- read.csv(a[1]); d$Subject <- factor(d$Subject)
nsim <- as.integer(a[2]); reps <- as.integer(a[3])
m0 <- lmer(Reaction ~ Days + (1 | Subject), d, REML = FALSE)
m1 <- lmer(Reaction ~ Days + (Days | Subject), d, REML = FALSE)
times <- numeric(reps); p <- numeric(reps)
for (r in seq_len(reps)) {
  set.seed(r)
  t0 <- proc.time()[["elapsed"]]
  pb <- suppressWarnings(PBmodcomp(m1, m0, nsim = nsim, cl = NULL))
  times[r] <- proc.time()[["elapsed"]] - t0
  p[r] <- pb$test["PBtest", "p.value"]
}
cat(toJSON(list(status = "ok", seconds = times, p_pb = p, stat = pb$test["LRT", "stat"],
                pbkrtest = as.character(packageVersion("pbkrtest"))), digits = NA, auto_unbox = TRUE), "\n")
"""


def med_spread(v):
    return statistics.median(v), min(v), max(v)


def fmt(s: float) -> str:
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def run_r(nsim: int, reps: int) -> dict:
    if shutil.which("Rscript") is None:
        return {"status": "skipped", "reason": "Rscript not found"}
    with tempfile.TemporaryDirectory() as tmp:
        rpath = Path(tmp) / "bench.R"
        rpath.write_text(R_CODE)
        p = subprocess.run(
            ["Rscript", str(rpath), str(SLEEP_CSV), str(nsim), str(reps)], capture_output=True, text=True
        )
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"status": "error", "error": p.stderr[-2000:]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nsim", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=5, help="warm jaxlme repeats")
    ap.add_argument("--r-reps", type=int, default=3, help="PBmodcomp repeats")
    ap.add_argument("--skip-r", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    d = pd.read_csv(SLEEP_CSV)
    m0, m1 = jaxlme.lmm(NULL, d, reml=False), jaxlme.lmm(ALT, d, reml=False)
    t = time.perf_counter()
    tab = jaxlme.lrt(m0, m1, bootstrap=args.nsim, seed=0)
    first = time.perf_counter() - t
    warm, pvals = [], [float(tab["p_boot"].iloc[1])]
    for r in range(1, args.reps + 1):
        t = time.perf_counter()
        tab = jaxlme.lrt(m0, m1, bootstrap=args.nsim, seed=r)
        warm.append(time.perf_counter() - t)
        pvals.append(float(tab["p_boot"].iloc[1]))
    name = tab.index[1]
    out = {
        "case": "pblrt_sleepstudy",
        "nsim": args.nsim,
        "first_call": first,
        "warm": warm,
        "p_boot": pvals,
        "usable": tab.attrs["bootstrap"]["usable"][name],
        "chisq": float(tab["Chisq"].iloc[1]),
    }
    r = None if args.skip_r else run_r(args.nsim, args.r_reps)
    if r is not None:
        out["pbkrtest"] = r
    print(json.dumps(out), flush=True)
    if args.no_write:
        return 0
    w = med_spread(warm)
    lines = [
        "",
        f"## Parametric-bootstrap LRT: `lrt(..., bootstrap={args.nsim})` vs pbkrtest (2026-11-30)",
        "",
        f"`python benchmarks/bench_pblrt.py` on {machine()}; the machine's 2 cores were shared",
        f"with other jobs, so compare ratios.  sleepstudy, ML: `{NULL}` vs `{ALT}`",
        f"(Chisq {out['chisq']:.4f}); {args.nsim} replicates, each refitting both models.",
        "Median [min-max]; jaxlme's first call ran with an empty compile cache.",
        "",
        "| what | time | p_boot |",
        "|---|---|---|",
        f"| jaxlme first call (compile included) | {fmt(first)} | {pvals[0]:.4f} |",
        f"| jaxlme warm, {args.reps} repeats (seeds 1-{args.reps}) | {fmt(w[0])} [{fmt(w[1])}-{fmt(w[2])}] | "
        f"{min(pvals[1:]):.4f}-{max(pvals[1:]):.4f} |",
    ]
    if r is not None and r.get("status") == "ok":
        rr = med_spread(np.atleast_1d(r["seconds"]).tolist())
        lines.append(
            f"| pbkrtest {r['pbkrtest']} `PBmodcomp(cl = NULL)`, {np.size(r['seconds'])} repeats | {fmt(rr[0])} "
            f"[{fmt(rr[1])}-{fmt(rr[2])}] | {np.min(r['p_pb']):.4f}-{np.max(r['p_pb']):.4f} |"
        )
        lines += [
            "",
            f"jaxlme warm is {rr[0] / w[0]:.1f}× faster than PBmodcomp (first call: {rr[0] / first:.1f}×); "
            f"compile ≈ first − warm = {fmt(first - w[0])}.  Observed statistic: jaxlme {out['chisq']:.6f}, "
            f"pbkrtest {r['stat']:.6f}.",
        ]
    lines.append("")
    with open(args.out, "a") as f:
        f.write("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
