"""First-call time in a fresh process under each compile-cache setting -> benchmarks/COMPILE_CACHE.md.

Modes (each with its own empty cache directory, filled by one cold run, then timed warm):

* ``none``: no persistent cache (``JAXLME_NO_CACHE=1``): every process traces, lowers and compiles.
* ``jax``: JAX's persistent compilation cache alone (every compiled program is saved).
* ``own``: jaxlme's own executable cache (only where ``jaxlme.compiled`` still has one).

Workloads: sleepstudy ``lmm`` + ``summary()``; a sleepstudy bootstrap (200 replicates);
InstEval ``y ~ 1 + service + (1|s) + (1|d) + (1|dept)`` by ML (needs ../shared/reference).

Usage: ``python benchmarks/compile_cache.py [--repeats 3]``; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTEVAL = ROOT.parent / "shared" / "reference" / "InstEval.csv"

CHILD = r"""
import json, os, sys, time, warnings
t0 = time.perf_counter()
import jax
import jaxlme
import jaxlme.compiled as compiled
warnings.simplefilter("ignore")
mode, work = sys.argv[1], sys.argv[2]
if mode == "jax":
    jaxlme.compiled.enable_compilation_cache()
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    if hasattr(compiled, "_disk_dir"):
        compiled._disk_dir = lambda: None  # jaxlme's own executable cache off
t1 = time.perf_counter()
if work == "insteval":
    import pandas as pd
    d = pd.read_csv(sys.argv[3], dtype={"s": str, "d": str, "dept": str, "service": str})
    t1 = time.perf_counter()
    res = jaxlme.lmm("y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)", d, reml=False)
    res.summary()
else:
    d = jaxlme.datasets.load("sleepstudy")
    res = jaxlme.lmm("Reaction ~ Days + (Days | Subject)", d)
    out = res.summary()
    if work == "bootstrap":
        t1 = time.perf_counter()
        res.bootstrap(200, seed=1, progress=False).ci(0.95)
t2 = time.perf_counter()
print(json.dumps(dict(import_s=t1 - t0 if work == "sleepstudy" else None, first_call=t2 - t1, objective=res.objective)))
"""


def run_child(mode: str, work: str, cache: Path) -> dict:
    env = dict(os.environ, JAXLME_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    env.pop("JAXLME_NO_CACHE", None)
    if mode == "none":
        env["JAXLME_NO_CACHE"] = "1"
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, work, str(INSTEVAL)], env=env, capture_output=True, text=True, check=True
    )
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["process"] = time.perf_counter() - t
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default="none,jax,own")
    ap.add_argument("--work", default="sleepstudy,bootstrap,insteval")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import jaxlme.compiled

    modes = [m for m in args.modes.split(",") if m != "own" or hasattr(jaxlme.compiled, "_disk_dir")]
    works = [w for w in args.work.split(",") if w != "insteval" or INSTEVAL.exists()]
    print("| workload | cache | cold process s | warm process s (median) | warm first call s | cache MB |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for work in works:
        for mode in modes:
            with tempfile.TemporaryDirectory() as tmp:
                cache = Path(tmp) / "cache"
                cold = run_child(mode, work, cache)
                warm = [run_child(mode, work, cache) for _ in range(args.repeats)]
                size = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 2**20 if cache.exists() else 0
            print(
                f"| {work} | {mode} | {cold['process']:.2f} | {statistics.median(w['process'] for w in warm):.2f} "
                f"| {statistics.median(w['first_call'] for w in warm):.2f} | {size:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
