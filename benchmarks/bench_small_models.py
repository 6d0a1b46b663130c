"""Benchmark many different small models in one process (issue 24): statsmodels' ``test_r``.

    python benchmarks/bench_small_models.py               # 3 interleaved rounds, prints a table
    python benchmarks/bench_small_models.py --reps 5 --write

The workload is statsmodels' own comparison against lme4 (``regression/tests/test_lme.py``'s
``do1``, called as its ``test_r`` does): 12 data sets of 229-268 rows and 100 groups, 1-3 fixed
effects, 1-2 random effects with a free or a diagonal covariance, REML and ML: 36 fits, each
followed by what the test reads (fixed effects, covariances, scale, ``cov_params``, log-
likelihood, conditional means and covariances).  Every model is small, so for a compiled
package the question is how many programs the loop compiles.

Each round runs, in fresh processes and interleaved: jaxlme with an empty compile cache
(cold: everything compiled in the loop), jaxlme again on that cache (warm disk cache),
statsmodels, and lme4's ``lmer`` on the same 36 models (``Rscript``; the fits and their
``vcov``/``ranef``/``VarCorr``, no statsmodels-style extras).  Loop times exclude the import,
reported apart, and the whole process (imports and loop) beside it.  Medians and ranges
over rounds; ratios are peer / jaxlme.

``--varied`` runs the same loop over 12 simulated data sets of test_r's format whose
shapes differ more: 30-300 groups of 2-6 rows, 1-4 fixed and 1-2 random effects (no R
results to compare with: the children report their log-likelihoods, and the table the
largest difference between jaxlme's and statsmodels').
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

CHILD = r"""
import json, os, sys, time, warnings
t0 = time.perf_counter()
import statsmodels.regression.tests.test_lme as T
if sys.argv[1] == "jaxlme":
    import jaxlme
    from jaxlme import compiled
    T.MixedLM, T.MixedLMParams = jaxlme.MixedLM, jaxlme.MixedLMParams
t1 = time.perf_counter()
folder = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(T.__file__), "results")
names = sorted(f for f in os.listdir(folder) if f.startswith("lme") and f.endswith(".csv"))
fits, llf = 0, []


def fit_varied(reml, irf, path):  # test_r's reads, without R's results to compare with
    import numpy as np
    import pandas as pd
    d = pd.read_csv(path)
    fe = d.filter(regex="^exog_fe").to_numpy()
    re = d.filter(regex="^exog_re").to_numpy()
    free = T.MixedLMParams.from_components(np.ones(fe.shape[1]), np.eye(re.shape[1])) if irf else None
    r = T.MixedLM(d.endog.to_numpy(), fe, d.groups.to_numpy(), re).fit(reml=reml, free=free)
    r.fe_params, r.cov_re, r.scale, r.cov_params(), r.random_effects, r.random_effects_cov
    llf.append(float(r.llf))


for f in names:
    header = open(os.path.join(folder, f)).readline()
    for reml in (False, True):
        for irf in (False, True):
            one_re = int(f[3:5]) < 6 if len(sys.argv) == 2 else "exog_re_1" not in header
            if irf and one_re:
                continue  # as do1: one random effect has nothing to make independent
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if len(sys.argv) == 2:
                    T.do1(reml, irf, int(f[3:5]))  # asserts agreement with R's fits
                else:
                    fit_varied(reml, irf, os.path.join(folder, f))
            fits += 1
t2 = time.perf_counter()
out = dict(import_s=t1 - t0, loop_s=t2 - t1, fits=fits, llf=llf)
if sys.argv[1] == "jaxlme":
    out["compiled"] = compiled.STATS["compiled"]
print(json.dumps(out))
"""

R_CODE = r"""
suppressMessages(library(lme4)); library(jsonlite)
dir <- commandArgs(TRUE)[1]
t0 <- proc.time()[["elapsed"]]
fits <- 0
for (f in sort(list.files(dir, pattern = "^lme[0-9]+\\.csv$"))) {
  d <- read.csv(file.path(dir, f)); d$groups <- factor(d$groups)
  fe <- grep("^exog_fe", names(d), value = TRUE); re <- grep("^exog_re", names(d), value = TRUE)
  for (reml in c(FALSE, TRUE)) for (irf in c(FALSE, TRUE)) {
    if (irf && length(re) < 2) next
    bar <- if (irf) " || " else " | "
    form <- as.formula(paste("endog ~ 0 +", paste(fe, collapse = " + "),
                             "+ (0 +", paste(re, collapse = " + "), bar, "groups)"))
    m <- suppressMessages(suppressWarnings(lmer(form, d, REML = reml)))
    invisible(list(fixef(m), vcov(m), VarCorr(m), sigma(m), logLik(m), ranef(m, condVar = TRUE)))
    fits <- fits + 1
  }
}
cat(toJSON(list(loop_s = proc.time()[["elapsed"]] - t0, fits = fits,
                lme4 = as.character(packageVersion("lme4"))), auto_unbox = TRUE), "\n")
"""


def _run(cmd: list[str], env: dict | None = None, timeout: float = 1200) -> dict:
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def varied_data(folder: Path, seed: int = 0) -> Path:
    """12 data sets in test_r's format (``endog``, ``groups``, ``exog_fe_*``, ``exog_re_*``)
    with 30-300 groups of 2-6 rows, 1-4 fixed and 1-2 random effects."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    for k in range(12):
        k_g, p, q = int(rng.integers(30, 301)), 1 + k % 4, 1 + (k // 4) % 2
        sizes = rng.integers(2, 7, k_g)
        groups = np.repeat(np.arange(k_g), sizes)
        n = len(groups)
        fe = np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))])
        re = np.column_stack([np.ones(n), rng.normal(size=n)])[:, :q]
        b = rng.normal(size=(k_g, q)) * [1.0, 0.5][:q]
        y = fe @ rng.normal(size=p) + (re * b[groups]).sum(1) + rng.normal(size=n)
        cols = {"endog": y, "groups": groups}
        cols.update({f"exog_fe_{j}": fe[:, j] for j in range(p)})
        cols.update({f"exog_re_{j}": re[:, j] for j in range(q)})
        pd.DataFrame(cols).to_csv(folder / f"lme{k:02d}.csv", index=False)
    return folder


def one_round(results_dir: Path, with_r: bool, varied: Path | None = None) -> dict:
    cache = tempfile.mkdtemp(prefix="jaxlme-small-models-")
    env = dict(os.environ, JAXLME_CACHE_DIR=cache)
    env.pop("JAXLME_NO_CACHE", None)
    extra = [] if varied is None else [str(varied)]
    try:
        row = {
            "jaxlme_cold": _run([sys.executable, "-c", CHILD, "jaxlme", *extra], env),
            "statsmodels": _run([sys.executable, "-c", CHILD, "statsmodels", *extra]),
            "jaxlme_warm": _run([sys.executable, "-c", CHILD, "jaxlme", *extra], env),
        }
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if with_r:
        script = Path(tempfile.mkdtemp()) / "small_models.R"
        script.write_text(R_CODE)
        row["lme4"] = _run(["Rscript", str(script), str(varied or results_dir)])
    return row


def _stat(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} s [{min(xs):.2f}, {max(xs):.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip-lme4", action="store_true")
    ap.add_argument("--varied", action="store_true", help="simulated data sets of more varied shapes")
    ap.add_argument("--write", action="store_true", help="append the table to benchmarks/SMALL_MODELS.md")
    args = ap.parse_args()
    import statsmodels
    from run import machine

    results_dir = Path(statsmodels.__file__).parent / "regression" / "tests" / "results"
    with_r = not args.skip_lme4 and shutil.which("Rscript") is not None
    varied = varied_data(Path(tempfile.mkdtemp(prefix="jaxlme-varied-"))) if args.varied else None
    rounds = []
    for _ in range(args.reps):
        rounds.append(one_round(results_dir, with_r, varied))
        print(json.dumps({k: {f: v for f, v in r.items() if f != "llf"} for k, r in rounds[-1].items()}), flush=True)
    loops = {k: [row[k]["loop_s"] for row in rounds] for k in rounds[0]}
    imports = {k: [row[k]["import_s"] for row in rounds] for k in rounds[0] if "import_s" in rounds[0][k]}
    totals = {k: [a + b for a, b in zip(loops[k], imports[k])] for k in imports}
    jax_cold, jax_cold_total = statistics.median(loops["jaxlme_cold"]), statistics.median(totals["jaxlme_cold"])
    what = "12 simulated data sets of varied shapes (--varied)" if varied else "statsmodels' test_r loop"
    lines = [
        f"### {what} ({rounds[0]['statsmodels']['fits']} fits), {time.strftime('%Y-%m-%d')}, {args.reps} rounds",
        "",
        f"Machine: {machine()}.  jaxlme compiled {rounds[0]['jaxlme_cold']['compiled']} programs in the cold loop.",
    ]
    if varied:
        diff = max(abs(a - b) for r in rounds for a, b in zip(r["jaxlme_cold"]["llf"], r["statsmodels"]["llf"]))
        lines.append(f"Largest |log-likelihood difference| jaxlme - statsmodels over the fits: {diff:.2g}.")
    lines += [
        "",
        "| run | loop (median [min, max]) | import | process: import + loop | peer / jaxlme cold: loop, process |",
        "|---|---|---|---|---|",
    ]
    for k, xs in loops.items():
        imp = _stat(imports[k]) if k in imports else "-"
        total = _stat(totals[k]) if k in totals else "-"
        ratio = "-"
        if k in ("statsmodels", "lme4"):
            ratio = f"{statistics.median(xs) / jax_cold:.2f}"
            ratio += f", {statistics.median(totals[k]) / jax_cold_total:.2f}" if k in totals else ""
        lines.append(f"| {k} | {_stat(xs)} | {imp} | {total} | {ratio} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        path = ROOT / "benchmarks" / "SMALL_MODELS.md"
        title = "# Many small models in one process (issue 24)\n\nbenchmarks/bench_small_models.py\n\n"
        head = "" if path.exists() else title
        with path.open("a") as f:
            f.write(head + table + "\n\n")


if __name__ == "__main__":
    main()
