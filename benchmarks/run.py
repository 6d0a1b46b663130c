"""jaxlme's benchmark suite: fits timed side by side with lme4 and statsmodels (issue 3).

    python benchmarks/run.py                          # all cases, writes $TMPDIR/jaxlme-run.md (+ .json)
    python benchmarks/run.py --cases sleepstudy insteval --reps 3
    python benchmarks/run.py --cases scale --scale-n 1e4 1e5 1e6

Cases:
  sleepstudy  Reaction ~ Days + (Days|Subject), REML: first fit in a fresh process (compile
              included; cold and with the persistent cache warm), warm refit, whole process.
  insteval    y ~ 1 + service + (1|s) + (1|d) + (1|dept), ML (73,421 obs, 2,972 × 1,128 × 14):
              the same, plus the cost of a gradient and a Hessian relative to an evaluation.
  scale       synthetic y ~ x + (1 + x|g1) + (1|g2), ML, n = 1e4 … 1e7 at fixed levels
              (benchmarks/peers/make_synthetic.py): O(n) set-up reported apart from the
              optimization, which must not grow with n.
Peers run in the same invocation: lme4 through ``Rscript`` (benchmarks/peers/lme4_bench.R)
when R with lme4 is installed, statsmodels (benchmarks/peers/statsmodels_bench.py) always,
with a timeout.  Every timing is a median of ``--reps`` runs; ratios are peer / jaxlme.
Benchmarks never run inside the unit tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "benchmarks" / "peers"
SHARED = ROOT.parent / "shared" / "reference"
DATA = {
    "sleepstudy": ROOT / "tests" / "data" / "sleepstudy.csv",
    "insteval": SHARED / "InstEval.csv",
}
FORMULA = {
    "sleepstudy": ("Reaction ~ Days + (Days | Subject)", True),
    "insteval": ("y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)", False),
    "scale": ("y ~ x + (1 + x | g1) + (1 | g2)", False),
}

# A fresh process: import, read, fit, print — what a user waits for.
CHILD = r"""
import json, sys, time, warnings
t0 = time.perf_counter()
import pandas as pd
import jaxlme
warnings.simplefilter("ignore")
case, path, formula, reml = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
dtype = {"s": str, "d": str, "dept": str, "service": str} if case == "insteval" else None
d = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path, dtype=dtype)
if case == "scale":
    d["g1"] = d["g1"].astype("category"); d["g2"] = d["g2"].astype("category")
t1 = time.perf_counter()
model = jaxlme.LMM(formula, d)
res = model.fit(reml=reml)
t2 = time.perf_counter()
print(res.summary()[:0], end="")  # a user prints the summary: part of the whole process
t3 = time.perf_counter()
import resource
print(json.dumps(dict(
    wall=t3 - t0, read=t1 - t0, first_fit=t2 - t1, summary=t3 - t2, setup=model.setup_seconds,
    compile=res.opt.compile_seconds,
    fit=res.opt.fit_seconds, objective=res.objective, iterations=res.opt.iterations,
    converged=res.converged, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""

# Warm refits and derivative costs, in one process after a first fit.
WARM = r"""
import json, sys, time, statistics, warnings
import pandas as pd, jax, jax.numpy as jnp
import jaxlme
warnings.simplefilter("ignore")
case, path, formula, reml, reps = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", int(sys.argv[5])
dtype = {"s": str, "d": str, "dept": str, "service": str} if case == "insteval" else None
d = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path, dtype=dtype)
if case == "scale":
    d["g1"] = d["g1"].astype("category"); d["g2"] = d["g2"].astype("category")
model = jaxlme.LMM(formula, d)
res = model.fit(reml=reml)
times, progs = [], []
t_loop = time.perf_counter()
while len(times) < reps or (len(times) < 25 and time.perf_counter() - t_loop < 2.0):
    # small models: 25 refits, so one refit that meets the fit's background load of the
    # summary's program (or a GC pass) does not decide the median
    t = time.perf_counter(); r = model.fit(reml=reml); times.append(time.perf_counter() - t)
    progs.append(r.opt.fit_seconds)
out = dict(refit=statistics.median(times), refit_all=times, fit_program=statistics.median(progs),
           objective=r.objective, iterations=r.opt.iterations, evaluations=r.opt.evaluations,
           setup=model.setup_seconds, nlevels={t.name: t.nlevels for t in model.layout.terms},
           fixef=r.fixef.to_dict(), theta=r.theta.tolist())
def timed(fn, x, k=5):
    fn(x).block_until_ready() if hasattr(fn(x), "block_until_ready") else None
    ts = []
    for _ in range(k):
        t = time.perf_counter(); jax.block_until_ready(fn(x)); ts.append(time.perf_counter() - t)
    return statistics.median(ts)
with jax.enable_x64(True):
    f = jax.jit(model.objective_function(reml))
    th = jnp.asarray(r.theta)
    out["eval"] = timed(f, th)
    out["grad"] = timed(jax.jit(jax.value_and_grad(f)), th)
    out["hessian"] = timed(jax.jit(jax.hessian(f)), th, 3)
    # the same costs as the fit program pays them: its objective and compiler options, inside
    # a loop (so large temporaries are allocated once, as in the optimizer's while loop)
    from jaxlme.compiled import fast_compile_options
    from jaxlme.objective import program_flags, program_objective
    opts = fast_compile_options(**program_flags(model.layout))
    def in_loop(fn, N=10):
        def prog(x, s):
            def body(i, acc):
                out = fn(x * (1 + 1e-12 * acc), s)
                return acc + 1e-12 * sum(jnp.sum(o) for o in jax.tree.leaves(out))
            return jax.lax.fori_loop(0, N, body, jnp.zeros((), x.dtype))
        c = jax.jit(prog).lower(th, model.structure).compile(compiler_options=opts)
        return timed(lambda x: c(x, model.structure), th) / N
    out["eval_loop"] = in_loop(lambda t, s: program_objective(t, s, reml))
    out["grad_loop"] = in_loop(jax.value_and_grad(lambda t, s: program_objective(t, s, reml)))
print(json.dumps(out))
"""


def _run(cmd: list[str], env: dict | None = None, timeout: float = 3600) -> tuple[dict | None, float, str]:
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None, time.perf_counter() - t, "timeout"
    wall = time.perf_counter() - t
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return None, wall, (p.stderr.strip().splitlines() or ["failed"])[-1]
    return json.loads(lines[-1]), wall, ""


def _env(cache: str | None) -> dict:
    env = dict(os.environ)
    if cache is None:
        env["JAXLME_NO_CACHE"] = "1"
    else:
        env.pop("JAXLME_NO_CACHE", None)
        env["JAXLME_CACHE_DIR"] = cache
    return env


def _wall(cmd: list[str], env: dict, timeout: float = 3600) -> float | None:
    """Wall seconds of a successful command, else None."""
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None
    return time.perf_counter() - t if p.returncode == 0 else None


def jaxlme_case(case: str, path: Path, reps: int) -> dict:
    formula, reml = FORMULA[case]
    args = [case, str(path), formula, "1" if reml else "0"]
    cache = tempfile.mkdtemp(prefix="jaxlme-bench-cache-")
    try:
        cold = [_run([sys.executable, "-c", CHILD, *args], _env(None))[0] for _ in range(max(1, reps // 2))]
        _run([sys.executable, "-c", CHILD, *args], _env(cache))  # fill the persistent cache
        warm_proc, walls = [], []
        for _ in range(reps):
            out, wall, _ = _run([sys.executable, "-c", CHILD, *args], _env(cache))
            warm_proc.append(out)
            walls.append(wall)
        warm, _, err = _run([sys.executable, "-c", WARM, *args, str(reps)], _env(cache))
        # the command line, lme4's `Rscript -e` counterpart: read, fit, print the summary
        cli = [sys.executable, "-m", "jaxlme", "fit", str(path), formula] + ([] if reml else ["--ml"])
        cli_walls = [w for w in (_wall(cli, _env(cache)) for _ in range(reps)) if w is not None]
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    cold = [c for c in cold if c]
    warm_proc = [c for c in warm_proc if c]
    return dict(
        first_fit_cold=statistics.median(c["first_fit"] for c in cold) if cold else None,
        process_cold=statistics.median(c["wall"] for c in cold) if cold else None,
        compile_cold=statistics.median(c["compile"] for c in cold) if cold else None,
        first_fit_cached=statistics.median(c["first_fit"] for c in warm_proc) if warm_proc else None,
        process_cached=statistics.median(walls),
        cli_process=statistics.median(cli_walls) if cli_walls else None,
        peak_rss_mb=max((c["peak_rss_mb"] for c in cold + warm_proc), default=None),
        warm=warm,
        error=err,
    )


def lme4_case(case: str, path: Path, reps: int) -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    peer_case = {"scale": "synthetic"}.get(case, case)
    out, _, err = _run(["Rscript", str(PEERS / "lme4_bench.R"), peer_case, str(path), str(reps)], timeout=7200)
    if out is None:
        return {"error": err}
    formula, reml = FORMULA[case]
    rform = formula if case != "insteval" else "y ~ 1 + service + (1|s) + (1|d) + (1|dept)"
    factors = {
        "sleepstudy": "d$Subject <- factor(d$Subject)",
        "insteval": "for (v in c('s','d','dept','service')) d[[v]] <- factor(d[[v]])",
        "scale": "d$g1 <- factor(d$g1); d$g2 <- factor(d$g2)",
    }[case]
    script = (
        f"suppressMessages(library(lme4)); d <- read.csv('{path}'); {factors}; "
        f"fit <- lmer({rform}, d, REML={'TRUE' if reml else 'FALSE'}); print(summary(fit))"
    )
    walls = []
    for _ in range(max(1, reps // 2)):
        t = time.perf_counter()
        p = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True)
        if p.returncode == 0:
            walls.append(time.perf_counter() - t)
    out["process_seconds"] = statistics.median(walls) if walls else None
    return out


def statsmodels_case(case: str, path: Path, reps: int, timeout: float) -> dict:
    cmd = [sys.executable, str(PEERS / "statsmodels_bench.py"), case, str(path), str(reps)]
    out, _, err = _run([*cmd, "--timeout", str(timeout)], timeout=timeout * (reps + 2) + 120)
    return out if out is not None else {"status": "error", "error": err}


def _fmt(v, unit="s"):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if unit == "s":
        return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"
    return f"{v:.0f} {unit}"


def _ratio(peer, ours):
    numbers = isinstance(peer, (int, float)) and isinstance(ours, (int, float))
    return f"{peer / ours:.1f}×" if numbers and peer and ours else "—"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import jax

    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM; Python {platform.python_version()}, "
        f"jax {jax.__version__} ({jax.default_backend()})"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["sleepstudy", "insteval", "scale"])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--scale-n", nargs="+", type=float, default=[1e4, 1e5, 1e6, 1e7])
    ap.add_argument("--scale-levels", nargs=2, type=int, default=[2000, 100], metavar=("G1", "G2"))
    ap.add_argument("--statsmodels-timeout", type=float, default=120.0)
    # not benchmarks/RESULTS.md: that file keeps every run's section, which a rerun would replace
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "jaxlme-run.md"))
    ap.add_argument("--render", metavar="JSON", help="only rewrite --out from a run's saved JSON")
    args = ap.parse_args(argv)
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        command = saved.get("command", f"--reps {args.reps}")
        text = render(saved["rows"], saved["scale"], args, command, saved.get("date"))
        Path(args.out).write_text(text)
        print(text)
        return 0

    rows, details = [], {}
    for case in args.cases:
        if case == "scale":
            continue
        path = DATA[case]
        if not path.exists():
            print(f"skipping {case}: {path} not found", file=sys.stderr)
            continue
        print(f"== {case}", file=sys.stderr)
        ours = jaxlme_case(case, path, args.reps)
        lme4 = lme4_case(case, path, args.reps)
        sm = statsmodels_case(case, path, args.reps, args.statsmodels_timeout)
        details[case] = dict(jaxlme=ours, lme4=lme4, statsmodels=sm)
        warm = ours["warm"] or {}
        rows.append(
            dict(
                case=case,
                n=73421 if case == "insteval" else 180,
                levels=warm.get("nlevels"),
                first=ours["first_fit_cold"],
                first_cached=ours["first_fit_cached"],
                warm=warm.get("refit"),
                process=ours["process_cached"],
                cli=ours.get("cli_process"),
                mem=ours["peak_rss_mb"],
                lme4=(lme4 or {}).get("fit_seconds_median"),
                lme4_process=(lme4 or {}).get("process_seconds"),
                lme4_mem=(lme4 or {}).get("peak_rss_mb"),
                sm=sm.get("fit_seconds_median") if sm.get("status") == "ok" else sm.get("status"),
                sm_mem=sm.get("peak_rss_mb"),
                objective=warm.get("objective"),
                lme4_objective=(lme4 or {}).get("deviance", (lme4 or {}).get("reml_criterion")),
                eval=warm.get("eval"),
                grad=warm.get("grad"),
                hessian=warm.get("hessian"),
                eval_loop=warm.get("eval_loop"),
                grad_loop=warm.get("grad_loop"),
            )
        )

    scale_rows = []
    if "scale" in args.cases:
        tmp = Path(tempfile.mkdtemp(prefix="jaxlme-scale-"))
        g1, g2 = args.scale_levels
        for n in (int(v) for v in args.scale_n):
            print(f"== scale n={n}", file=sys.stderr)
            path = tmp / f"synthetic_{n}.parquet"
            subprocess.run(
                [sys.executable, str(PEERS / "make_synthetic.py"), str(n), str(g1), str(g2), str(path)],
                check=True,
                capture_output=True,
            )
            formula, reml = FORMULA["scale"]
            reps = max(1, args.reps if n <= 1e6 else 1)
            warm, _, err = _run(
                [sys.executable, "-c", WARM, "scale", str(path), formula, "0", str(reps)], _env(None), timeout=7200
            )
            row = dict(n=n, g1=g1, g2=g2, jaxlme=warm, error=err)
            if n <= 1e6:
                csv = tmp / f"synthetic_{n}.csv"
                subprocess.run(
                    [sys.executable, str(PEERS / "make_synthetic.py"), str(n), str(g1), str(g2), str(csv)],
                    check=True,
                    capture_output=True,
                )
                row["lme4"] = lme4_case("scale", csv, 1) if shutil.which("Rscript") else None
            if n <= 1e4:
                row["statsmodels"] = statsmodels_case("synthetic", path, 1, args.statsmodels_timeout)
            scale_rows.append(row)
        shutil.rmtree(tmp, ignore_errors=True)

    command, date = " ".join(sys.argv[1:] if argv is None else argv), time.strftime("%Y-%m-%d")
    text = render(rows, scale_rows, args, command, date)
    Path(args.out).write_text(text)
    print(text)
    saved = dict(rows=rows, scale=scale_rows, details=details, command=command, date=date)
    (Path(args.out).with_suffix(".json")).write_text(json.dumps(saved))
    return 0


def _levels(levels) -> str:
    return " × ".join(f"{k} {v:,}" for k, v in (levels or {}).items()) or "—"


def render(rows, scale_rows, args, command: str, date: str | None) -> str:
    out = ["# jaxlme benchmark results", "", f"Machine: {machine()}", ""]
    out.append(f"Command: `python benchmarks/run.py {command}` ({date or time.strftime('%Y-%m-%d')}).")
    out.append(f"Medians of {args.reps} runs; ratios are peer time / jaxlme time (higher is better for jaxlme).")
    out.append(
        "First fit = `LMM(...)` + `.fit()` in a fresh process (JAX compile included; 'cold' = no persistent "
        "cache); whole process = `python -c` import, read CSV, fit, print summary (persistent cache warm); "
        "`jaxlme fit` = the same through the command line (`python -m jaxlme fit data.csv formula`), "
        "the counterpart of lme4's `Rscript -e`."
    )
    out.append("")
    if rows:
        out.append(
            "| case | n | levels per factor | jaxlme first fit (cold compile) | first fit (cache warm) | warm refit "
            "| whole process | `jaxlme fit` process | peak RSS | lme4 fit | lme4 process | lme4 peak RSS "
            "| statsmodels fit | statsmodels peak RSS | lme4/jaxlme warm | lme4/jaxlme process | lme4/`jaxlme fit` "
            "| statsmodels/jaxlme warm |"
        )
        out.append("|" + "---|" * 18)
        for r in rows:
            out.append(
                f"| {r['case']} | {r['n']:,} | {_levels(r.get('levels'))} | {_fmt(r['first'])} "
                f"| {_fmt(r['first_cached'])} | {_fmt(r['warm'])} | {_fmt(r['process'])} | {_fmt(r.get('cli'))} "
                f"| {_fmt(r['mem'], 'MB')} | {_fmt(r['lme4'])} | {_fmt(r['lme4_process'])} "
                f"| {_fmt(r.get('lme4_mem'), 'MB')} | {_fmt(r['sm'])} | {_fmt(r.get('sm_mem'), 'MB')} "
                f"| {_ratio(r['lme4'], r['warm'])} | {_ratio(r['lme4_process'], r['process'])} "
                f"| {_ratio(r['lme4_process'], r.get('cli'))} | {_ratio(r['sm'], r['warm'])} |"
            )
        out.append("")
        out.append(
            "statsmodels' times and memory are its fit alone (no compile to separate); 'timeout' = not "
            f"done within {args.statsmodels_timeout:g} s, its peak RSS then at the time it was stopped."
        )
        out.append("")
        out.append("Criterion at the optimum (jaxlme vs lme4) and derivative costs at θ̂:")
        out.append("")
        out.append(
            "| case | jaxlme | lme4 | evaluation | value+gradient | Hessian | gradient/eval "
            "| in the fit's loop: evaluation | value+gradient | gradient/eval |"
        )
        out.append("|" + "---|" * 10)
        for r in rows:
            ratio = f"{r['grad'] / r['eval']:.1f}" if r["eval"] and r["grad"] else "—"
            loop_ratio = f"{r['grad_loop'] / r['eval_loop']:.1f}" if r.get("eval_loop") and r.get("grad_loop") else "—"
            lme4_obj = f"{r['lme4_objective']:.4f}" if r["lme4_objective"] else "—"
            out.append(
                f"| {r['case']} | {r['objective']:.4f} | {lme4_obj} | {_fmt(r['eval'])} | "
                f"{_fmt(r['grad'])} | {_fmt(r['hessian'])} | {ratio} | {_fmt(r.get('eval_loop'))} "
                f"| {_fmt(r.get('grad_loop'))} | {loop_ratio} |"
            )
        out.append("")
    if scale_rows:
        out.append("Scale series: `y ~ x + (1 + x | g1) + (1 | g2)`, ML, fixed levels, growing n")
        out.append("")
        out.append(
            "Optimization = the compiled optimizer (`res.opt.fit_seconds`), the part that must not grow "
            "with n; `fit()` = the whole warm `model.fit()` call, result object included."
        )
        out.append("")
        out.append(
            "| n | levels g1 × g2 | set-up (O(n)) | optimization | `fit()` | iterations | lme4 fit | statsmodels |"
        )
        out.append("|---|---|---|---|---|---|---|---|")
        for r in scale_rows:
            j = r["jaxlme"] or {}
            lme4 = (r.get("lme4") or {}).get("fit_seconds_median")
            sm = r.get("statsmodels") or {}
            smv = sm.get("fit_seconds_median") if sm.get("status") == "ok" else sm.get("status")
            out.append(
                f"| {r['n']:,} | {r['g1']} × {r['g2']} | {_fmt(j.get('setup'))} | {_fmt(j.get('fit_program'))} | "
                f"{_fmt(j.get('refit'))} | "
                f"{j.get('iterations', '—')} | {_fmt(lme4)} | {_fmt(smv)} |"
            )
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
