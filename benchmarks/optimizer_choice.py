"""Why the core optimizer is a bounded Newton with autodiff Hessians: a measurement.

    python benchmarks/optimizer_choice.py [--insteval]

Fits the same models with (a) jaxlme's bounded Newton (exact Hessian) and (b) optax's
L-BFGS (with zoom line search; bounds by projection onto θ's feasible set after each step),
from the same start, and reports iterations, objective/gradient evaluations and the
criterion reached. Gradient-based L-BFGS pays only if a gradient costs a few evaluations.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

import jaxlme
from jaxlme.objective import objective

ROOT = Path(__file__).resolve().parents[1]


def lbfgs_fit(model: jaxlme.LMM, reml: bool, maxiter: int = 500, gtol: float = 1e-6):
    """Projected optax L-BFGS on θ̃ = θ / scale (the same unit-scale parametrization)."""
    s, scale = model.structure, jnp.asarray(model.theta_scale)
    lb = jnp.asarray(model.layout.theta_lower)

    def f(x):
        return objective(jnp.maximum(x, lb) * scale, s, reml)

    opt = optax.lbfgs()
    vg = optax.value_and_grad_from_state(f)

    @jax.jit
    def step(x, state):
        value, grad = vg(x, state=state)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=f)
        x = jnp.maximum(optax.apply_updates(x, updates), lb)
        return x, state, value, grad

    x = jnp.asarray(model.layout.theta_start)
    state = opt.init(x)
    t = time.perf_counter()
    it = 0
    while it < maxiter:
        it += 1
        x, state, value, grad = step(x, state)
        pg = jnp.where((x <= lb) & (grad > 0), 0.0, grad)
        if float(jnp.max(jnp.abs(pg))) < gtol:
            break
    return dict(iterations=it, objective=float(f(x)), seconds=time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--insteval", action="store_true", help="also InstEval (needs ../shared/reference)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    cases = [
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)", jaxlme.datasets.load("sleepstudy"), True),
        ("Penicillin", "diameter ~ 1 + (1|plate) + (1|sample)", jaxlme.datasets.load("Penicillin"), True),
        (
            "bounce_time",
            "bounce_time ~ age_scaled + (1 + age_scaled | county) + (1 | county:location)",
            jaxlme.datasets.load("bounce_time"),
            True,
        ),
    ]
    if args.insteval:
        d = pd.read_csv(
            ROOT.parent / "shared" / "reference" / "InstEval.csv",
            dtype={"s": str, "d": str, "dept": str, "service": str},
        )
        cases.append(("InstEval", "y ~ 1 + service + (1|s) + (1|d) + (1|dept)", d, False))
    print(f"{'case':<12} {'method':<14} {'iters':>6} {'evals':>6} {'criterion':>16} {'seconds':>8}")
    with jax.enable_x64(True):
        for name, formula, data, reml in cases:
            model = jaxlme.LMM(formula, data)
            model.fit(reml=reml)
            t = time.perf_counter()
            res = model.fit(reml=reml)
            secs = time.perf_counter() - t
            print(
                f"{name:<12} {'Newton':<14} {res.opt.iterations:>6} {res.opt.evaluations:>6} "
                f"{res.objective:>16.6f} {secs:>8.3f}"
            )
            lb = lbfgs_fit(model, reml)
            lb2 = lbfgs_fit(model, reml)  # warm (compiled)
            print(
                f"{name:<12} {'optax L-BFGS':<14} {lb['iterations']:>6} {'':>6} "
                f"{lb['objective']:>16.6f} {lb2['seconds']:>8.3f}"
            )


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
