"""statsmodels MixedLM peer benchmark: time fits on the jaxlme benchmark cases.

Usage::

    python statsmodels_bench.py CASE DATA [REPS] [NBOOT]
        [--warmup K] [--seed S] [--timeout SECONDS] [--dense]

CASE is one of

* ``sleepstudy``: ``Reaction ~ Days`` with correlated random intercept and slope
  per ``Subject`` (``re_formula="~Days"``), REML.
* ``insteval``: ``y ~ 1 + C(service)`` with crossed random intercepts for
  ``s``, ``d`` and ``dept``, ML.  statsmodels has no native crossed effects, so
  a single all-ones group with ``vc_formula`` is used (very slow).
* ``bootstrap_sleepstudy``: the sleepstudy fit followed by a hand-written
  parametric bootstrap (simulate from the fitted model with new random effects,
  refit, keep the fixed effects), NBOOT replicates, fixed seed.  This mirrors
  ``lme4::bootMer(..., use.u = FALSE, type = "parametric")``.
* ``synthetic``: ``y ~ x`` on a ``make_synthetic.py`` file (CSV or Parquet) with
  crossed variance components for ``g1`` intercept, ``g1`` slope on ``x`` and
  ``g2`` intercept, ML.  NB: variance components are independent, so unlike the
  lme4 model ``(1 + x | g1)`` the g1 intercept/slope correlation is fixed at 0.

REPS (default 5) timed fits follow K (default 1) untimed warm-up fits.  The
whole benchmark runs in a child process; if it is not done after ``--timeout``
seconds (default 120) the child is killed and the JSON reports
``"status": "timeout"`` together with any fits completed so far.  The
crossed-effect cases use sparse random-effect design matrices unless
``--dense`` is given.  Exactly one line of JSON is written to stdout; the exit
status is 1 if ``"status"`` is ``"error"``, else 0 (also for a timeout).

JSON keys mirror ``lme4_bench.R``: status, peer, case, n, reps, warmup,
fit_seconds_median, fit_seconds_all, reml_criterion (REML) or deviance (ML),
fixef (lme4 coefficient names), theta/theta_names (lme4 ordering and scale:
relative Cholesky factors, terms sorted by decreasing number of levels), sigma,
converged, statsmodels_version, peak_rss_mb; bootstrap adds boot_seconds,
nboot, seed, boot_fixef_sd, boot_failures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import queue
import re
import resource
import statistics
import sys
import time
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np

CASES = ("sleepstudy", "insteval", "bootstrap_sleepstudy", "synthetic")

# Crossed cases: {variance component name: (formula, lme4 grouping factor)}.
VC_FORMULAS = {
    "insteval": {"s": "0 + C(s)", "d": "0 + C(d)", "dept": "0 + C(dept)"},
    "synthetic": {"g1": "0 + C(g1)", "g1x": "0 + C(g1):x", "g2": "0 + C(g2)"},
}


def load(path: str):
    """Read a CSV or Parquet file into a pandas DataFrame."""
    import pandas as pd

    if Path(path).suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)


def build_model(case: str, data, sparse: bool):
    """Return an unfitted MixedLM for ``case`` and its REML flag."""
    import statsmodels.formula.api as smf

    if case in ("sleepstudy", "bootstrap_sleepstudy"):
        model = smf.mixedlm("Reaction ~ Days", data, groups="Subject", re_formula="~Days")
        return model, True
    fixed = "y ~ 1 + C(service)" if case == "insteval" else "y ~ x"
    model = smf.mixedlm(
        fixed,
        data,
        groups=np.ones(len(data)),
        vc_formula=VC_FORMULAS[case],
        use_sparse=sparse,
    )
    return model, False


def lme4_name(name: str) -> str:
    """Translate a patsy coefficient name into the lme4 spelling."""
    if name == "Intercept":
        return "(Intercept)"
    m = re.fullmatch(r"C\((\w+)\)\[T\.(.+)\]", name)
    return m.group(1) + m.group(2) if m else name


def theta_lme4(case: str, res, data) -> tuple[list[float], list[str]]:
    """Relative covariance factors in lme4's ``theta`` layout and term order."""
    sigma = np.sqrt(res.scale)
    if case in ("sleepstudy", "bootstrap_sleepstudy"):
        chol = np.linalg.cholesky(np.asarray(res.cov_re) / res.scale)
        theta = [chol[0, 0], chol[1, 0], chol[1, 1]]
        names = ["Subject.(Intercept)", "Subject.Days.(Intercept)", "Subject.Days"]
        return [float(t) for t in theta], names
    sd = dict(zip(res.model.exog_vc.names, np.sqrt(res.vcomp) / sigma, strict=True))
    if case == "insteval":
        terms = [(g, [sd[g]], [f"{g}.(Intercept)"]) for g in ("s", "d", "dept")]
    else:  # synthetic: g1 intercept/slope correlation is 0 by construction
        g1 = [sd["g1"], 0.0, sd["g1x"]]
        terms = [
            ("g1", g1, ["g1.(Intercept)", "g1.x.(Intercept)", "g1.x"]),
            ("g2", [sd["g2"]], ["g2.(Intercept)"]),
        ]
    # lme4 sorts random-effect terms by decreasing number of levels (stable).
    terms.sort(key=lambda t: -data[t[0]].nunique())
    theta = [float(v) for t in terms for v in t[1]]
    return theta, [n for t in terms for n in t[2]]


def quiet_fit(model, reml: bool):
    """Fit ``model`` with statsmodels' (Convergence)Warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(reml=reml)


def fit(case: str, data, sparse: bool):
    """Build and fit the model for ``case``."""
    return quiet_fit(*build_model(case, data, sparse))


def bootstrap(res, nboot: int, seed: int) -> np.ndarray:
    """Parametric bootstrap of the sleepstudy fit; returns an (nboot, p) array.

    Like ``lme4::refit`` the simulated responses reuse the model matrices
    (no formula re-parsing).
    """
    from statsmodels.regression.mixed_linear_model import MixedLM

    rng = np.random.default_rng(seed)
    model = res.model
    xb = model.exog @ np.asarray(res.fe_params)
    cov_chol = np.linalg.cholesky(np.asarray(res.cov_re))
    sigma = np.sqrt(res.scale)
    out = np.full((nboot, model.exog.shape[1]), np.nan)
    for i in range(nboot):
        y = xb + sigma * rng.standard_normal(len(xb))
        for k, g in enumerate(model.group_labels):
            b = cov_chol @ rng.standard_normal(cov_chol.shape[0])
            y[model.row_indices[g]] += model.exog_re_li[k] @ b
        # A failed replicate stays NaN and is counted in boot_failures.
        with contextlib.suppress(Exception):
            refit = MixedLM(y, model.exog, model.groups, exog_re=model.exog_re)
            out[i] = quiet_fit(refit, res.model.reml).fe_params
    return out


def run(a: argparse.Namespace, report) -> None:
    """Run the benchmark in the worker process; ``report(kind, dict)`` sends results."""
    data = load(a.data)
    sparse = not a.dense
    for _ in range(a.warmup):
        res = fit(a.case, data, sparse)
    times = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        res = fit(a.case, data, sparse)
        times.append(time.perf_counter() - t0)
        report("progress", {"fit_seconds_all": times})

    theta, theta_names = theta_lme4(a.case, res, data)
    crit = "reml_criterion" if res.model.reml else "deviance"
    out = {
        "n": int(res.nobs),
        "fit_seconds_median": statistics.median(times),
        "fit_seconds_all": times,
        crit: float(-2 * res.llf),
        "fixef": {lme4_name(k): float(v) for k, v in res.fe_params.items()},
        "theta": theta,
        "theta_names": theta_names,
        "sigma": float(np.sqrt(res.scale)),
        "converged": bool(res.converged),
    }
    if a.case == "synthetic":
        out["model_note"] = "g1 intercept/slope correlation fixed at 0 (variance components)"
    if a.case in VC_FORMULAS:
        out["sparse"] = sparse
    if a.case == "bootstrap_sleepstudy":
        bootstrap(res, 5, a.seed)
        t0 = time.perf_counter()
        boot = bootstrap(res, a.nboot, a.seed)
        out["boot_seconds"] = time.perf_counter() - t0
        out["nboot"] = a.nboot
        out["seed"] = a.seed
        sds = np.nanstd(boot, axis=0, ddof=1)
        out["boot_fixef_sd"] = {lme4_name(k): float(s) for k, s in zip(res.fe_params.index, sds, strict=True)}
        out["boot_failures"] = int(np.isnan(boot).any(axis=1).sum())
    report("done", out)


def _worker(a: argparse.Namespace, q) -> None:
    """Child-process entry point: run the benchmark, forwarding messages to ``q``."""
    try:
        run(a, lambda kind, payload: q.put((kind, payload)))
    except Exception as exc:  # reported as JSON
        q.put(("error", {"error": f"{type(exc).__name__}: {exc}"}))


def children_peak_rss_mb() -> float:
    """Peak RSS (MB) of the largest finished child process (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("case", choices=CASES)
    p.add_argument("data", help="CSV or Parquet file")
    p.add_argument("reps", type=int, nargs="?", default=5, help="timed fits")
    p.add_argument("nboot", type=int, nargs="?", default=1000, help="bootstrap reps")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up fits")
    p.add_argument("--seed", type=int, default=20240101)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for the whole run")
    p.add_argument("--dense", action="store_true", help="dense design for crossed cases")
    a = p.parse_args(argv)
    if a.reps < 1 or a.nboot < 1 or a.warmup < 0:
        p.error("need REPS >= 1, NBOOT >= 1, --warmup >= 0")
    return a


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark in a child process under a timeout and print one JSON line."""
    a = parse_args(argv)
    out = {"status": "ok", "peer": "statsmodels", "case": a.case}
    out |= {"reps": a.reps, "warmup": a.warmup}
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(a, q), daemon=True)
    proc.start()
    deadline = time.monotonic() + a.timeout
    while True:
        try:
            kind, payload = q.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            if proc.is_alive() and time.monotonic() < deadline:
                continue
            if proc.is_alive():
                out |= {"status": "timeout", "timeout_seconds": a.timeout}
            else:
                out |= {"status": "error", "error": f"worker exited ({proc.exitcode})"}
            break
        out |= payload
        if kind != "progress":
            if kind == "error":
                out["status"] = "error"
            break
    if proc.is_alive():
        proc.kill()
    proc.join()
    out["statsmodels_version"] = version("statsmodels")
    out["peak_rss_mb"] = children_peak_rss_mb()
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    sys.exit(1 if out["status"] == "error" else 0)


if __name__ == "__main__":
    main()
