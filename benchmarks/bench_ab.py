"""Before/after check of a change to the solver or the refit pool: two source trees, interleaved.

Each measurement is a fresh ``python`` process with an empty jaxlme cache directory, run
once per tree and repeat, the trees alternating, so both see the same phases of a shared
machine.  Figures (the ones RESULTS.md and BOOTSTRAP_RESULTS.md carry for these paths):

* sleepstudy ``Reaction ~ Days + (Days | Subject)``, REML: first fit (compile included),
  warm fit (median of 7);
* kb07-shaped maximal model (``bench_zoo``'s simulation), ML and REML: first fit, warm fit
  (median of 3), evaluations, criterion;
* sleepstudy parametric bootstrap, 1000 replicates: first call (compile included), warm
  (median of 3), mean iterations, failures; 10,000 replicates: first and second call.

    python benchmarks/bench_ab.py --trees /path/to/old/checkout . --reps 3

``git worktree add /tmp/old <commit>`` gives the old tree.  Prints one JSON line per
process, then a table: median (min-max) per tree.
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

HERE = Path(__file__).resolve().parent


def child() -> None:
    import warnings

    import numpy as np

    sys.path.insert(0, str(HERE))
    from bench_zoo import SHAPES, simulate

    import jaxlme

    warnings.simplefilter("ignore")
    out: dict = {"tree": str(Path(jaxlme.__file__).parent.parent)}

    def timed(fn):
        t = time.perf_counter()
        value = fn()
        return time.perf_counter() - t, value

    model = jaxlme.LMM("Reaction ~ Days + (Days | Subject)", jaxlme.datasets.load("sleepstudy"))
    out["sleep_first"], res = timed(model.fit)
    out["sleep_warm"] = statistics.median(timed(model.fit)[0] for _ in range(7))
    kb = next(s for s in SHAPES if s.name == "kb07")
    data = simulate(kb, False)
    for reml in (False, True):
        tag = "kb07_reml" if reml else "kb07_ml"
        kb_model = jaxlme.LMM(kb.formula, data)
        out[tag + "_first"], fit = timed(lambda m=kb_model, r=reml: m.fit(reml=r))
        out[tag + "_warm"] = statistics.median(timed(lambda m=kb_model, r=reml: m.fit(reml=r))[0] for _ in range(3))
        out[tag + "_evals"] = fit.opt.evaluations
        out[tag + "_crit"] = float(fit.objective)
    out["boot1k_first"], boot = timed(lambda: res.bootstrap(1000, seed=42, progress=False))
    out["boot1k_warm"] = statistics.median(
        timed(lambda: res.bootstrap(1000, seed=42, progress=False))[0] for _ in range(3)
    )
    out["boot1k_iters"] = float(np.mean(boot.iterations))
    out["boot1k_failed"] = int(boot.n_failed)
    out["boot10k_first"] = timed(lambda: res.bootstrap(10000, seed=7, progress=False))[0]
    out["boot10k_warm"] = timed(lambda: res.bootstrap(10000, seed=7, progress=False))[0]
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", nargs=2, metavar=("OLD", "NEW"), help="two source trees (each holding jaxlme/)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child()
        return
    if not args.trees:
        ap.error("--trees OLD NEW is required")
    trees = [str(Path(t).resolve()) for t in args.trees]
    rows: dict[str, list[dict]] = {t: [] for t in trees}
    for rep in range(args.reps):
        for tree in trees:
            cache = tempfile.mkdtemp(prefix="bench_ab_")
            env = {k: v for k, v in os.environ.items() if k not in ("JAXLME_NO_CACHE",)}
            env.update(JAXLME_CACHE_DIR=cache, PYTHONPATH=tree)
            try:
                proc = subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "--child"],
                    env=env,
                    cwd=tempfile.gettempdir(),
                    capture_output=True,
                    text=True,
                )
            finally:
                shutil.rmtree(cache, ignore_errors=True)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-3000:])
            line = proc.stdout.strip().splitlines()[-1]
            print(f"rep {rep} {line}", flush=True)
            rows[tree].append(json.loads(line))
    keys = [k for k in rows[trees[0]][0] if k != "tree"]
    print()
    print(f"| figure | old: {trees[0]} | new: {trees[1]} |")
    print("| --- | --- | --- |")
    for key in keys:
        cells = []
        for tree in trees:
            values = [r[key] for r in rows[tree]]
            if isinstance(values[0], float):
                cells.append(f"{statistics.median(values):.4g} ({min(values):.4g}-{max(values):.4g})")
            else:
                cells.append(", ".join(str(v) for v in values))
        print(f"| {key} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
