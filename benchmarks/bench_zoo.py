"""A model zoo: simulated shapes with known truth, jaxlme timed against lme4 (issue 16).

    python benchmarks/bench_zoo.py --reps 3 --busy --out /tmp/zoo.md
    python benchmarks/bench_zoo.py --shapes kb07 sleepstudy --reps 5
    python benchmarks/bench_zoo.py --quick          # tiny sizes, a smoke test

Each shape simulates y from stated fixed effects, random-effect SDs and correlations and a
residual SD with a fixed numpy seed (the truth table below the results), writes one CSV to a
temporary directory and fits the same formula with jaxlme and with lme4 (``lmer`` with
``lmerControl(optCtrl = list(maxfun = 1e5))``, same REML/ML setting).  Both run as worker
processes that read the CSV once and fit on command, so the repeats interleave: jaxlme, lme4,
jaxlme, lme4, ... and never run at the same time.

* jaxlme first fit: the first ``jaxlme.lmm(...)`` of a fresh Python process whose
  ``JAXLME_CACHE_DIR`` is an empty temporary directory (nothing compiled before: JAX's
  persistent cache lives there too), so compilation is included.
* jaxlme warm fit: ``jaxlme.lmm(...)`` again in the same process (model set-up included, as
  ``lmer`` includes its own); median and min-max of ``--reps`` repeats.
* lme4 fit: ``system.time(lmer(...))`` inside one R process (R's start-up and reading the
  CSV excluded); one untimed warm-up fit first on shapes under 200,000 rows; median of
  ``--reps`` repeats.  A fit (either side) that takes longer than ``--timeout`` seconds
  (default 600) is stopped and recorded as a timeout.
* criteria: jaxlme's ``res.objective`` and lme4's REML criterion or deviance (-2 log L), both
  minimized: Δ = jaxlme - lme4 > 0 means jaxlme stopped at a worse point.

Grouping columns are factors on both sides before the timing starts.  The machine may be
shared: the load average at the start and the end of the run is part of the output, each
timed fit first waits (``--quiet-wait``) for other processes to leave the CPUs, and a column
gives the cores other processes kept busy during the timed fits (from /proc/stat).

``--busy`` adds the contention check: after the idle repeats, ``--reps`` more warm jaxlme
fits while one other single-threaded process spins at the same priority, and their
slowdown against the idle median (lme4, on R's single-threaded BLAS, just runs on the free
core).  Benchmarks never run inside the unit tests.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from run import machine  # noqa: E402  (the fit benchmarks' machine description)


@dataclass
class Term:
    """One random-effect term: its grouping (a column, or ``"a:b"``), the columns of its
    model matrix (``"1"`` = intercept), their true SDs and one correlation for every pair
    (0 for ``||``)."""

    group: str
    cols: list[str]
    sds: list[float]
    corr: float = 0.0

    def covariance(self) -> np.ndarray:
        sd = np.asarray(self.sds, float)
        k = len(sd)
        r = np.full((k, k), self.corr) + (1 - self.corr) * np.eye(k)
        return r * np.outer(sd, sd)


@dataclass
class Shape:
    name: str
    formula: str
    reml: bool
    covers: str
    build: Callable[[np.random.Generator, dict], pd.DataFrame]  # predictors and grouping codes
    full: dict
    quick: dict
    beta: dict[str, float]
    terms: list[Term]
    sigma: float
    factors: list[str] = field(default_factory=list)
    seed: int = 0


# --- designs: predictors and grouping codes, no response ---------------------------------


def _repeated(rng, size):
    """sleepstudy-like: ``ngroup`` subjects x ``nobs`` days 0..nobs-1."""
    g, n = size["ngroup"], size["nobs"]
    return pd.DataFrame({"Subject": np.repeat(np.arange(g), n), "Days": np.tile(np.arange(n), g).astype(float)})


def _kb07(rng, size):
    """kb07-like: subjects x items fully crossed, S/P/L at ±0.5 counterbalanced over the
    8 conditions (Latin square by subject + item); ``drop`` random rows removed."""
    ns, ni = size["nsubj"], size["nitem"]
    subj, item = np.repeat(np.arange(ns), ni), np.tile(np.arange(ni), ns)
    cond = (subj + item) % 8
    d = pd.DataFrame(
        {
            "subj": subj,
            "item": item,
            "S": (cond & 1) - 0.5,
            "P": ((cond >> 1) & 1) - 0.5,
            "L": ((cond >> 2) & 1) - 0.5,
        }
    )
    drop = rng.choice(len(d), size["drop"], replace=False)
    return d.drop(index=drop).reset_index(drop=True)


def _grouped(rng, size, ncov):
    """``ngroup`` groups x ``nobs`` rows, covariates x1..x{ncov} ~ N(0, 1)."""
    g, n = size["ngroup"], size["nobs"]
    d = {"g": np.repeat(np.arange(g), n)}
    for j in range(1, ncov + 1):
        d[f"x{j}"] = rng.normal(size=g * n)
    return pd.DataFrame(d)


def _grouped_xz(rng, size):
    d = _grouped(rng, size, 2)
    return d.rename(columns={"x1": "x", "x2": "z"})


def _crossed_cells(rng, size):
    """g1 x g2 fully crossed, ``ncell`` rows per cell, x ~ N(0, 1)."""
    n1, n2, c = size["n1"], size["n2"], size["ncell"]
    g1 = np.repeat(np.arange(n1), n2 * c)
    g2 = np.tile(np.repeat(np.arange(n2), c), n1)
    return pd.DataFrame({"g1": g1, "g2": g2, "x": rng.normal(size=len(g1))})


def _nested(rng, size, top="a", mid="b"):
    """``ntop`` units, ``nmid`` sub-units in each (codes repeat across units: only
    ``top:mid`` identifies one), ``nobs`` rows in each; x ~ N(0, 1)."""
    a, b, n = size["ntop"], size["nmid"], size["nobs"]
    top_code = np.repeat(np.arange(a), b * n)
    mid_code = np.tile(np.repeat(np.arange(b), n), a)
    return pd.DataFrame({top: top_code, mid: mid_code, "x": rng.normal(size=a * b * n)})


def _school(rng, size):
    return _nested(rng, size, "school", "class")


def _partial(rng, size):
    """Partially crossed: subjects and items in ``nblock`` blocks; each subject sees
    ``nobs`` items, from its own block with probability 1 - ``pout``, else from any block."""
    ns, ni, nb, n = size["nsubj"], size["nitem"], size["nblock"], size["nobs"]
    per = ni // nb
    subj = np.repeat(np.arange(ns), n)
    own = (subj % nb) * per + rng.integers(0, per, subj.size)
    anywhere = rng.integers(0, ni, subj.size)
    item = np.where(rng.random(subj.size) < size["pout"], anywhere, own)
    return pd.DataFrame({"subj": subj, "item": item, "x": rng.normal(size=subj.size)})


def _ratings(rng, size):
    """ml-1m-like: ratings of movies by users, skewed activity and popularity (log-normal
    weights, as in MovieLens: a few users and movies have most of the ratings)."""
    nu, nm, n = size["nuser"], size["nmovie"], size["nrow"]
    pu = rng.lognormal(0, 1.0, nu)
    pm = rng.lognormal(0, 1.5, nm)
    user = np.concatenate([np.arange(nu), rng.choice(nu, n - nu, p=pu / pu.sum())])  # every level seen
    movie = np.concatenate([rng.permutation(np.resize(np.arange(nm), nu)), rng.choice(nm, n - nu, p=pm / pm.sum())])
    return pd.DataFrame({"user": user, "movie": movie})


def _crossed_random(rng, size):
    """g1 and g2 drawn independently per row (as benchmarks/peers/make_synthetic.py)."""
    n, n1, n2 = size["nrow"], size["n1"], size["n2"]
    return pd.DataFrame({"g1": rng.integers(0, n1, n), "g2": rng.integers(0, n2, n), "x": rng.normal(size=n)})


KB07_BETA = {"1": 2.2, "S": 0.07, "P": -0.33, "L": 0.09}
SPL = ["1", "S", "P", "L"]

SHAPES = [
    Shape(
        "sleepstudy",
        "y ~ 1 + Days + (1 + Days | Subject)",
        True,
        "vector 2, single grouping, few levels",
        _repeated,
        {"ngroup": 18, "nobs": 10},
        {"ngroup": 18, "nobs": 10},
        {"1": 251.4, "Days": 10.5},
        [Term("Subject", ["1", "Days"], [24.7, 5.9], 0.07)],
        25.6,
        ["Subject"],
    ),
    Shape(
        "sleepstudy_10k",
        "y ~ 1 + Days + (1 + Days | Subject)",
        True,
        "vector 2, single grouping, many levels",
        _repeated,
        {"ngroup": 1000, "nobs": 10},
        {"ngroup": 100, "nobs": 10},
        {"1": 251.4, "Days": 10.5},
        [Term("Subject", ["1", "Days"], [24.7, 5.9], 0.07)],
        25.6,
        ["Subject"],
    ),
    Shape(
        "kb07",
        "y ~ 1 + S + P + L + (1 + S + P + L | subj) + (1 + S + P + L | item)",
        False,
        "vector 4 correlated, crossed, 20 θ",
        _kb07,
        {"nsubj": 56, "nitem": 32, "drop": 3},
        {"nsubj": 56, "nitem": 32, "drop": 3},
        KB07_BETA,
        [Term("subj", SPL, [0.30, 0.10, 0.15, 0.10], 0.3), Term("item", SPL, [0.35, 0.10, 0.20, 0.05], -0.2)],
        0.5,
        ["subj", "item"],
    ),
    Shape(
        "kb07_zerocorr",
        "y ~ 1 + S + P + L + (1 + S + P + L || subj) + (1 + S + P + L || item)",
        False,
        "vector 4 uncorrelated (||), crossed, 8 θ",
        _kb07,
        {"nsubj": 56, "nitem": 32, "drop": 3},
        {"nsubj": 56, "nitem": 32, "drop": 3},
        KB07_BETA,
        [Term("subj", SPL, [0.30, 0.10, 0.15, 0.10]), Term("item", SPL, [0.35, 0.10, 0.20, 0.05])],
        0.5,
        ["subj", "item"],
    ),
    Shape(
        "five_col",
        "y ~ 1 + x1 + x2 + x3 + x4 + (1 + x1 + x2 + x3 + x4 | g)",
        True,
        "vector 5 correlated, single grouping, 15 θ",
        lambda rng, s: _grouped(rng, s, 4),
        {"ngroup": 300, "nobs": 20},
        {"ngroup": 60, "nobs": 20},
        {"1": 1.0, "x1": 0.5, "x2": -0.3, "x3": 0.2, "x4": 0.0},
        [Term("g", ["1", "x1", "x2", "x3", "x4"], [1.0, 0.5, 0.4, 0.3, 0.2], 0.25)],
        1.0,
        ["g"],
    ),
    Shape(
        "zerocorr3_small",
        "y ~ 1 + x + z + (1 + x + z || g)",
        True,
        "vector 3 uncorrelated (||), few levels",
        _grouped_xz,
        {"ngroup": 30, "nobs": 40},
        {"ngroup": 30, "nobs": 40},
        {"1": 5.0, "x": 1.0, "z": -0.5},
        [Term("g", ["1", "x", "z"], [1.0, 0.5, 0.3])],
        1.0,
        ["g"],
    ),
    Shape(
        "corr3_100k",
        "y ~ 1 + x + z + (1 + x + z | g)",
        True,
        "vector 3 correlated, many levels",
        _grouped_xz,
        {"ngroup": 10000, "nobs": 10},
        {"ngroup": 200, "nobs": 10},
        {"1": 5.0, "x": 1.0, "z": -0.5},
        [Term("g", ["1", "x", "z"], [1.0, 0.5, 0.3], 0.3)],
        1.0,
        ["g"],
    ),
    Shape(
        "crossed_small",
        "y ~ 1 + x + (1 + x | g1) + (1 | g2)",
        False,
        "vector 2 + scalar, fully crossed, few levels",
        _crossed_cells,
        {"n1": 12, "n2": 8, "ncell": 25},
        {"n1": 12, "n2": 8, "ncell": 10},
        {"1": 1.0, "x": 0.5},
        [Term("g1", ["1", "x"], [1.0, 0.3], 0.2), Term("g2", ["1"], [0.7])],
        1.0,
        ["g1", "g2"],
    ),
    Shape(
        "school_class",
        "y ~ 1 + x + (1 + x | school) + (1 | school:class)",
        True,
        "nested school/class, vector 2 at the top",
        _school,
        {"ntop": 200, "nmid": 8, "nobs": 25},
        {"ntop": 20, "nmid": 4, "nobs": 10},
        {"1": 50.0, "x": 3.0},
        [Term("school", ["1", "x"], [5.0, 1.0], -0.3), Term("school:class", ["1"], [3.0])],
        8.0,
        ["school", "class"],
    ),
    Shape(
        "nested3_small",
        "y ~ 1 + x + (1 | a) + (1 | a:b)",
        True,
        "3-level nested scalar, few levels",
        _nested,
        {"ntop": 10, "nmid": 10, "nobs": 10},
        {"ntop": 10, "nmid": 10, "nobs": 10},
        {"1": 10.0, "x": 1.0},
        [Term("a", ["1"], [2.0]), Term("a:b", ["1"], [1.0])],
        1.5,
        ["a", "b"],
    ),
    Shape(
        "nested3_100k",
        "y ~ 1 + x + (1 | a) + (1 | a:b)",
        True,
        "3-level nested scalar, many levels",
        _nested,
        {"ntop": 2000, "nmid": 10, "nobs": 5},
        {"ntop": 50, "nmid": 5, "nobs": 4},
        {"1": 10.0, "x": 1.0},
        [Term("a", ["1"], [2.0]), Term("a:b", ["1"], [1.0])],
        1.5,
        ["a", "b"],
    ),
    Shape(
        "partial_crossed",
        "y ~ 1 + x + (1 + x | subj) + (1 | item)",
        False,
        "partially crossed (blocks, 10% across), vector 2 + scalar",
        _partial,
        {"nsubj": 2000, "nitem": 400, "nblock": 20, "nobs": 25, "pout": 0.1},
        {"nsubj": 200, "nitem": 40, "nblock": 4, "nobs": 10, "pout": 0.1},
        {"1": 0.0, "x": 0.4},
        [Term("subj", ["1", "x"], [0.8, 0.3], 0.4), Term("item", ["1"], [0.5])],
        1.0,
        ["subj", "item"],
    ),
    Shape(
        "ml1m_like",
        "y ~ 1 + (1 | user) + (1 | movie)",
        False,
        "scalar crossed, skewed counts (ml-1m scaled down)",
        _ratings,
        {"nuser": 3000, "nmovie": 1000, "nrow": 300_000},
        {"nuser": 300, "nmovie": 100, "nrow": 3000},
        {"1": 3.6},
        [Term("user", ["1"], [0.45]), Term("movie", ["1"], [0.5])],
        0.9,
        ["user", "movie"],
    ),
    Shape(
        "crossed_1m",
        "y ~ 1 + x + (1 + x || g1) + (1 | g2)",
        False,
        "|| + scalar crossed, 10^6 rows",
        _crossed_random,
        {"nrow": 1_000_000, "n1": 5000, "n2": 100},
        {"nrow": 10_000, "n1": 100, "n2": 20},
        {"1": 1.0, "x": 0.5},
        [Term("g1", ["1", "x"], [1.0, 0.3]), Term("g2", ["1"], [0.7])],
        1.0,
        ["g1", "g2"],
    ),
]
for _i, _s in enumerate(SHAPES):
    _s.seed = 16_000 + _i
BY_NAME = {s.name: s for s in SHAPES}


def _codes(d: pd.DataFrame, group: str) -> np.ndarray:
    """Integer level codes of a grouping (``a:b`` = the observed (a, b) pairs)."""
    cols = group.split(":")
    if len(cols) == 1:
        return pd.factorize(d[cols[0]])[0]
    return d.groupby(cols, sort=False).ngroup().to_numpy()


def simulate(shape: Shape, quick: bool) -> pd.DataFrame:
    """The shape's data: its design, then y = X β + Σ Z b + σ ε with the stated truth."""
    rng = np.random.default_rng(shape.seed)
    d = shape.build(rng, shape.quick if quick else shape.full)
    n = len(d)

    def column(c):
        return np.ones(n) if c == "1" else d[c].to_numpy(float)

    y = sum(b * column(c) for c, b in shape.beta.items())
    for term in shape.terms:
        codes = _codes(d, term.group)
        b = rng.multivariate_normal(np.zeros(len(term.cols)), term.covariance(), codes.max() + 1)
        y = y + sum(b[codes, j] * column(c) for j, c in enumerate(term.cols))
    d["y"] = y + shape.sigma * rng.normal(size=n)
    return d


def levels(shape: Shape, d: pd.DataFrame) -> str:
    seen = dict.fromkeys(t.group for t in shape.terms)
    return " × ".join(f"{g} {_codes(d, g).max() + 1:,}" for g in seen)


def truth(shape: Shape) -> str:
    beta = ", ".join(f"{'(Intercept)' if c == '1' else c} {v:g}" for c, v in shape.beta.items())
    parts = [f"β: {beta}"]
    for t in shape.terms:
        sds = ", ".join(f"{v:g}" for v in t.sds)
        cor = f", ρ {t.corr:g}" if len(t.cols) > 1 and t.corr else ""
        parts.append(f"{t.group} SD ({sds}){cor}")
    parts.append(f"σ {shape.sigma:g}")
    return "; ".join(parts)


# --- workers: one Python and one R process per shape, fitting on command -------------------

JAXLME_WORKER = r"""
import json, sys, time, traceback, warnings
t0 = time.perf_counter()
import pandas as pd
import jaxlme
t1 = time.perf_counter()
csv, formula, reml, factors = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4].split(",")
d = pd.read_csv(csv, dtype={f: str for f in factors})
for f in factors:
    d[f] = d[f].astype("category")
print(json.dumps(dict(ready=True, pid=__import__("os").getpid(), import_seconds=t1 - t0,
                      read_seconds=time.perf_counter() - t1)), flush=True)
for line in sys.stdin:
    if line.strip() != "fit":
        break
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t = time.perf_counter()
            res = jaxlme.lmm(formula, d, reml=reml)
            seconds = time.perf_counter() - t
        o = res.opt
        out = dict(seconds=seconds, criterion=float(res.objective), iterations=int(o.iterations),
                   evaluations=int(o.evaluations), converged=bool(res.converged), status=str(o.status),
                   optimizer=str(o.optimizer), compile_seconds=float(o.compile_seconds),
                   fit_seconds=float(o.fit_seconds), setup_seconds=float(o.setup_seconds),
                   theta=[float(v) for v in res.theta], fixef={k: float(v) for k, v in res.fixef.items()},
                   sigma=float(res.sigma),
                   warnings=sorted({f"{w.category.__name__}: {w.message}" for w in caught}))
    except Exception as e:
        traceback.print_exc()
        out = dict(error=f"{type(e).__name__}: {e}")
    print(json.dumps(out), flush=True)
"""

LME4_WORKER = r"""
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
a <- commandArgs(trailingOnly = TRUE)
form <- as.formula(a[2]); reml <- a[3] == "1"; factors <- strsplit(a[4], ",")[[1]]
d <- if (requireNamespace("data.table", quietly = TRUE)) {
  as.data.frame(data.table::fread(a[1], showProgress = FALSE))
} else read.csv(a[1])
for (f in factors) d[[f]] <- factor(d[[f]])
ctrl <- lmerControl(optCtrl = list(maxfun = 1e5))
emit <- function(x) { cat(toJSON(x, auto_unbox = TRUE, digits = NA, null = "null"), "\n", sep = ""); flush(stdout()) }
emit(list(ready = TRUE, pid = Sys.getpid(), lme4 = as.character(packageVersion("lme4")),
          r = paste(R.version$major, R.version$minor, sep = ".")))
con <- file("stdin"); open(con)
repeat {
  line <- readLines(con, n = 1)
  if (length(line) == 0 || line != "fit") break
  notes <- character(0)
  out <- tryCatch({
    tm <- system.time(fit <- withCallingHandlers(
      lmer(form, data = d, REML = reml, control = ctrl),
      warning = function(w) { notes <<- c(notes, conditionMessage(w)); invokeRestart("muffleWarning") },
      message = function(m) { notes <<- c(notes, trimws(conditionMessage(m))); invokeRestart("muffleMessage") }
    ))[["elapsed"]]
    crit <- if (reml) getME(fit, "devcomp")$cmp[["REML"]] else deviance(fit)
    list(seconds = tm, criterion = crit, evaluations = fit@optinfo$feval,
         theta = I(unname(getME(fit, "theta"))), fixef = as.list(fixef(fit)), sigma = sigma(fit),
         singular = isSingular(fit), warnings = I(unique(c(notes, fit@optinfo$conv$lme4$messages))))
  }, error = function(e) list(error = conditionMessage(e)))
  emit(out)
}
"""


def _cpu_ticks(pid: int) -> tuple[int, int, int] | None:
    """(busy, total) clock ticks of all CPUs (/proc/stat) and the ticks process ``pid`` used,
    all its threads (/proc/PID/stat utime + stime); None where /proc is unavailable."""
    try:
        cpu = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        mine = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    idle = cpu[3] + cpu[4]  # idle + iowait
    return sum(cpu[:8]) - idle, sum(cpu[:8]), int(mine[11]) + int(mine[12])


class Quiet:
    """Before each timed fit, wait (at most ``limit`` seconds, and ``budget`` seconds over the
    whole run) until other processes use under ``threshold`` cores over a ``window``-second
    sample: a timed fit starts on idle CPUs when the machine's other work allows."""

    def __init__(self, limit: float, budget: float, threshold: float = 0.3, window: float = 0.5) -> None:
        self.limit, self.budget, self.threshold, self.window = limit, budget, threshold, window
        self.waited = 0.0

    def busy(self) -> float | None:
        a = _cpu_ticks(os.getpid())
        time.sleep(self.window)
        b = _cpu_ticks(os.getpid())
        if not a or not b or b[1] <= a[1]:
            return None
        return ((b[0] - a[0]) - (b[2] - a[2])) / (b[1] - a[1]) * (os.cpu_count() or 1)

    def fit(self, worker: Worker, timeout: float) -> dict:
        t0, busy = time.perf_counter(), None
        while self.limit > 0 and self.waited < self.budget:
            busy = self.busy()
            waited = time.perf_counter() - t0
            if busy is None or busy < self.threshold or waited >= self.limit:
                break
            if waited < self.window * 1.5:
                print(f"   waiting for quiet CPUs (others use {busy:.1f} cores)", file=sys.stderr, flush=True)
        waited = time.perf_counter() - t0 if self.limit > 0 else 0.0
        self.waited += waited
        out = worker.fit(timeout)
        out["waited"], out["busy_before"] = waited, busy
        return out


class Worker:
    """A child process that answers each ``fit`` line on stdin with one JSON line."""

    def __init__(self, cmd: list[str], env: dict | None, log: Path) -> None:
        self.log = open(log, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env, cwd=ROOT
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.dead = False

    def _pump(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.put(line)
        self.lines.put(None)

    def answer(self, timeout: float) -> dict:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            return {"error": "timeout"}
        if line is None:
            self.dead = True
            return {"error": "exited: " + self.tail()}
        return json.loads(line)

    def fit(self, timeout: float) -> dict:
        """One fit, with the CPU that other processes used meanwhile (``others_cores``:
        machine-wide busy time less this worker's, in cores: 1.0 = one core taken)."""
        if self.dead:
            return {"error": "worker gone"}
        before = _cpu_ticks(self.proc.pid)
        try:
            self.proc.stdin.write("fit\n")
            self.proc.stdin.flush()
        except OSError:
            self.dead = True
            return {"error": "exited: " + self.tail()}
        out = self.answer(timeout)
        after = _cpu_ticks(self.proc.pid) if not self.dead else None
        if before and after:
            busy, total, mine = (a - b for a, b in zip(after, before))
            out["ticks"] = [busy - mine, total]  # summed over a shape's fits for others_cores
        return out

    def tail(self) -> str:
        self.log.flush()
        text = Path(self.log.name).read_text().strip().splitlines()
        return text[-1][:200] if text else "no output"

    def kill(self) -> None:
        self.dead = True
        self.proc.kill()  # this worker only, by its own handle
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        self.log.close()


def run_shape(shape: Shape, args, tmp: Path, quiet: Quiet) -> dict:
    quick = args.quick
    t = time.perf_counter()
    d = simulate(shape, quick)
    csv = tmp / f"{shape.name}.csv"
    d.to_csv(csv, index=False)
    row = dict(
        shape=shape.name,
        formula=shape.formula,
        reml=shape.reml,
        n=len(d),
        levels=levels(shape, d),
        truth=truth(shape),
        covers=shape.covers,
        seed=shape.seed,
        simulate_seconds=time.perf_counter() - t,
    )
    del d
    cache = tmp / f"cache-{shape.name}"
    cache.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("JAXLME_NO_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    env["JAXLME_CACHE_DIR"] = str(cache)  # empty: the first fit compiles everything
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    wargs = [str(csv), shape.formula, "1" if shape.reml else "0", ",".join(shape.factors)]
    r_script = tmp / "zoo_lme4.R"
    r_script.write_text(LME4_WORKER)
    use_r = shutil.which("Rscript") is not None and not args.no_lme4
    # both load in parallel; every timed fit below runs alone
    jw = Worker([sys.executable, "-c", JAXLME_WORKER, *wargs], env, tmp / f"{shape.name}.jaxlme.log")
    rw = Worker(["Rscript", str(r_script), *wargs], None, tmp / f"{shape.name}.lme4.log") if use_r else None
    try:
        row["jaxlme_ready"] = jw.answer(600)
        row["lme4_ready"] = rw.answer(600) if rw else {"error": "no Rscript" if not args.no_lme4 else "skipped"}
        row["jaxlme_first"] = quiet.fit(jw, args.timeout) if not jw.dead else row["jaxlme_ready"]
        row["lme4_warmup"] = None
        if rw and not rw.dead and row["n"] < 200_000:
            row["lme4_warmup"] = rw.fit(args.timeout)
        row["jaxlme"], row["lme4"] = [], []
        for i in range(args.reps):
            print(f"   rep {i + 1}/{args.reps}", file=sys.stderr, flush=True)
            row["jaxlme"].append(quiet.fit(jw, args.timeout))
            if rw and not rw.dead:
                row["lme4"].append(quiet.fit(rw, args.timeout))
        if rw and rw.dead and not row["lme4"] and row["lme4_warmup"]:
            row["lme4"].append(row["lme4_warmup"])  # the timeout (or error) is the answer
        if args.busy and not jw.dead:
            row["jaxlme_busy"] = busy_fits(jw, args.reps, args.timeout)
    finally:
        jw.close()
        if rw:
            rw.close()
        shutil.rmtree(cache, ignore_errors=True)
        csv.unlink(missing_ok=True)
    return row


BUSY_LOOP = "while True:\n    pass\n"


def busy_fits(jw: Worker, reps: int, timeout: float) -> list[dict]:
    """``reps`` warm jaxlme fits while one other single-threaded process spins (``--busy``).

    The spinner is a plain Python loop at this script's priority (a child inherits its
    ``nice``), started half a second before the first fit and killed after the last; the
    fits do not wait for quiet CPUs, and their ``ticks`` show the spinner's core."""
    spin = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        time.sleep(0.5)
        return [jw.fit(timeout) for _ in range(reps)]
    finally:
        spin.kill()  # the spinner started above, by its own handle
        spin.wait()


# --- the table ---------------------------------------------------------------------------


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if v < 1e-3:
        return f"{v * 1e6:.0f} µs"
    return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"


def _ok(fits: list) -> list[dict]:
    return [f for f in fits or [] if f and "error" not in f]


def _others(fits: list[dict]) -> float | None:
    """Cores other processes kept busy during these fits (ratio of summed ticks); None when
    the fits lasted under 0.2 s in all (too few clock ticks to tell)."""
    ticks = [f["ticks"] for f in fits if f.get("ticks")]
    total = sum(t[1] for t in ticks)
    ncpu = os.cpu_count() or 1
    if total < 20 * ncpu:
        return None
    return max(0.0, sum(t[0] for t in ticks) / total * ncpu)


def summarize(row: dict) -> dict:
    js, ls = _ok(row["jaxlme"]), _ok(row["lme4"])
    jt, lt = [f["seconds"] for f in js], [f["seconds"] for f in ls]
    first = row.get("jaxlme_first") or {}
    last = js[-1] if js else first if "error" not in first else {}
    lme4_last = ls[-1] if ls else {}
    errors = [f["error"] for f in (row["jaxlme"] or []) + [first] if f and "error" in f]
    lme4_errors = [f["error"] for f in (row["lme4"] or []) + [row.get("lme4_ready") or {}] if f and "error" in f]
    notes = []
    for w in sorted({w for f in js + ([first] if "error" not in first else []) for w in f.get("warnings", [])}):
        notes.append(f"jaxlme warns: {w[:120]}")
    if last and not last.get("converged", True):
        notes.append(f"jaxlme not converged ({last.get('status')})")
    if errors:
        notes.append(f"jaxlme: {errors[0][:120]}")
    for w in sorted({w for f in ls for w in (f.get("warnings") or [])}):
        notes.append(f"lme4: {w[:120]}")
    if lme4_errors:
        notes.append(f"lme4: {lme4_errors[0][:120]}")
    crit, lcrit = last.get("criterion"), lme4_last.get("criterion")
    beta_err = None
    if last.get("fixef"):
        shape = BY_NAME[row["shape"]]
        named = {("(Intercept)" if c == "1" else c): b for c, b in shape.beta.items()}
        beta_err = max(abs(last["fixef"][k] - v) for k, v in named.items())
    bt = [f["seconds"] for f in _ok(row.get("jaxlme_busy"))]
    return dict(
        busy=statistics.median(bt) if bt else None,
        busy_min=min(bt) if bt else None,
        busy_max=max(bt) if bt else None,
        slowdown=statistics.median(bt) / statistics.median(jt) if bt and jt else None,
        others_busy=_others(_ok(row.get("jaxlme_busy"))),
        warm=statistics.median(jt) if jt else None,
        warm_min=min(jt) if jt else None,
        warm_max=max(jt) if jt else None,
        first=first.get("seconds"),
        compile=first.get("compile_seconds"),
        iterations=last.get("iterations"),
        evaluations=last.get("evaluations"),
        optimizer=last.get("optimizer"),
        ntheta=len(last["theta"]) if last.get("theta") else None,
        criterion=crit,
        lme4_criterion=lcrit,
        delta=crit - lcrit if crit is not None and lcrit is not None else None,
        lme4=statistics.median(lt) if lt else ("timeout" if "timeout" in lme4_errors else None),
        lme4_evaluations=lme4_last.get("evaluations"),
        ratio=statistics.median(lt) / statistics.median(jt) if jt and lt else None,
        beta_err=beta_err,
        others_jaxlme=_others(js),
        others_lme4=_others(ls),
        notes="; ".join(notes),
    )


def _cell(text: str) -> str:
    """A Markdown table cell: ``|`` escaped (formulas, lme4's ``max|grad|``)."""
    return (text or "").replace("|", "\\|")


def render(rows: list[dict], meta: dict) -> str:
    out = [
        f"Command: `{meta['command']}` ({meta['date']}); {meta['machine']}; lme4 {meta.get('lme4') or '—'}.",
        f"Load average (1, 5, 15 min) at the start {meta['load_start']}, at the end {meta['load_end']}; "
        f"total {meta['total_seconds'] / 60:.1f} min, of which {meta.get('quiet_wait_seconds', 0) / 60:.1f} min "
        "waiting for other processes to leave the CPUs before timed fits (`--quiet-wait`).  "
        f"Warm = median [min-max] of {meta['reps']} repeats of "
        "`jaxlme.lmm(...)` (set-up included) in one process after its first fit; first fit = the first "
        "`jaxlme.lmm(...)` of a fresh process with an empty `JAXLME_CACHE_DIR` (compile included); "
        "lme4 = median of `system.time(lmer(...))` repeats interleaved with jaxlme's; "
        "Δ = jaxlme criterion - lme4 criterion (both minimized); others' CPU = cores that other "
        "processes kept busy meanwhile (from /proc/stat, — when the fits were too short to tell).",
        "",
        "| shape | n | levels | θ | REML | jaxlme warm | jaxlme first fit (cold) | iterations / evaluations "
        "| jaxlme criterion | lme4 criterion | Δ | lme4 fit | lme4 evaluations | lme4/jaxlme (warm) "
        "| max abs(β̂ - β) | others' CPU during jaxlme / lme4 fits | notes |",
        "|" + "---|" * 17,
    ]
    for r in rows:
        s = r["summary"]
        warm = f"{_fmt(s['warm'])} [{_fmt(s['warm_min'])}-{_fmt(s['warm_max'])}]" if s["warm"] else "—"
        its = f"{s['iterations']} / {s['evaluations']} ({s['optimizer']})" if s["iterations"] is not None else "—"
        crit = f"{s['criterion']:.4f}" if s["criterion"] is not None else "—"
        lcrit = f"{s['lme4_criterion']:.4f}" if s["lme4_criterion"] is not None else "—"
        delta = f"{s['delta']:+.1e}" if s["delta"] is not None else "—"
        ratio = f"{s['ratio']:.1f}×" if s["ratio"] else "—"
        beta = f"{s['beta_err']:.3g}" if s["beta_err"] is not None else "—"
        others = " / ".join("—" if v is None else f"{v:.1f}" for v in (s["others_jaxlme"], s["others_lme4"]))
        out.append(
            f"| {r['shape']} | {r['n']:,} | {r['levels']} | {s['ntheta'] or '—'} | {'REML' if r['reml'] else 'ML'} "
            f"| {warm} | {_fmt(s['first'])} | {its} | {crit} | {lcrit} | {delta} | {_fmt(s['lme4'])} "
            f"| {s['lme4_evaluations'] or '—'} | {ratio} | {beta} | {others} | {_cell(s['notes'])} |"
        )
    if any(r["summary"]["busy"] for r in rows):
        out += [
            "",
            f"Under contention (`--busy`): {meta['reps']} more warm `jaxlme.lmm(...)` repeats while one other "
            "single-threaded process spins at the same priority (a Python `while True: pass`); slowdown = "
            "median busy / median warm above.",
            "",
            "| shape | jaxlme warm | warm, one core busy | slowdown | others' CPU during the busy fits |",
            "|---|---|---|---|---|",
        ]
        for r in rows:
            s = r["summary"]
            if not s["busy"]:
                continue
            busy = f"{_fmt(s['busy'])} [{_fmt(s['busy_min'])}-{_fmt(s['busy_max'])}]"
            others = "—" if s["others_busy"] is None else f"{s['others_busy']:.1f}"
            out.append(f"| {r['shape']} | {_fmt(s['warm'])} | {busy} | {s['slowdown']:.2f}× | {others} |")
    out += ["", "Shapes: formula, truth (numpy seed) and what each covers.", ""]
    out += ["| shape | formula | truth | seed | covers |", "|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['shape']} | `{_cell(r['formula'])}` | {r['truth']} | {r['seed']} | {_cell(r['covers'])} |")
    return "\n".join(out) + "\n"


def _load() -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in os.getloadavg()) + ")"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=[s.name for s in SHAPES], choices=[s.name for s in SHAPES])
    ap.add_argument("--reps", type=int, help="warm repeats per side (default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test in under 2 minutes")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for one fit (default 600)")
    ap.add_argument("--no-lme4", action="store_true", help="jaxlme only")
    ap.add_argument(
        "--busy",
        action="store_true",
        help="also time the warm jaxlme fits while one other single-threaded process spins (contention)",
    )
    ap.add_argument(
        "--quiet-wait",
        type=float,
        help="before each timed fit, wait up to this many seconds for other processes to leave the CPUs "
        "(under 0.3 cores busy over 0.5 s; default 60, 0 with --quick; 0 = never wait)",
    )
    ap.add_argument("--quiet-budget", type=float, default=900.0, help="most seconds of such waits in all")
    ap.add_argument("--out", help="also write the Markdown table here (and the raw results beside it as .json)")
    ap.add_argument("--render", metavar="JSON", help="only print (and --out) the table of a run's saved .json")
    args = ap.parse_args(argv)
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        for row in saved["rows"]:
            row["summary"] = summarize(row)
        text = render(saved["rows"], saved["meta"])
        print(text)
        if args.out:
            Path(args.out).write_text(text)
        return 0
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if args.quick else 60.0
    quiet = Quiet(args.quiet_wait, args.quiet_budget)
    command = "python benchmarks/bench_zoo.py " + " ".join(sys.argv[1:] if argv is None else argv)
    meta = dict(
        command=command.strip(),
        date=time.strftime("%Y-%m-%d"),
        machine=machine(),
        reps=args.reps,
        load_start=_load(),
        quick=args.quick,
    )
    t0 = time.perf_counter()
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="jaxlme-zoo-"))
    try:
        for name in args.shapes:
            shape = BY_NAME[name]
            print(f"== {name}: {shape.formula} (load {_load()})", file=sys.stderr, flush=True)
            row = run_shape(shape, args, tmp, quiet)
            row["summary"] = summarize(row)
            meta["lme4"] = meta.get("lme4") or (row.get("lme4_ready") or {}).get("lme4")
            s = row["summary"]
            print(
                f"   n {row['n']:,}: jaxlme warm {_fmt(s['warm'])}, first {_fmt(s['first'])}, lme4 {_fmt(s['lme4'])}, "
                f"Δ {s['delta']} {s['notes']}",
                file=sys.stderr,
                flush=True,
            )
            rows.append(row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    meta["load_end"] = _load()
    meta["total_seconds"] = time.perf_counter() - t0
    meta["quiet_wait_seconds"] = quiet.waited
    text = render(rows, meta)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        Path(args.out).with_suffix(".json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
