"""Parametric bootstrap (issue 4): simulation, batched refits, determinism, sharding, robustness."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
from helpers import load_csv

import jaxlme
from jaxlme.bootstrap import BootstrapResult, draw_interval

ROOT = Path(__file__).resolve().parents[1]
SLEEP = "Reaction ~ Days + (Days | Subject)"


def _fit(formula, data, reml=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jaxlme.LMM(formula, load_csv(data)).fit(reml=reml)


@pytest.fixture(scope="module")
def sleep():
    return _fit(SLEEP, "sleepstudy")


@pytest.fixture(scope="module")
def sleep_boot(sleep):
    return sleep.bootstrap(1000, seed=42, progress=False)


def _run_subprocess(code: str, timeout: float, env_extra: dict | None = None) -> dict:
    env = dict(os.environ, **(env_extra or {}))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=str(ROOT),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- simulate --------------------------------------------------------------------------------
def test_simulate_shape_and_moments(sleep):
    ys = sleep.simulate(4000, seed=7)
    assert ys.shape == (4000, sleep.nobs)
    assert np.all(np.isfinite(ys))
    d = sleep.model.design
    mean = d.X @ sleep.fixef.to_numpy()
    cov = sleep.covariance_matrices()["Subject"].to_numpy()
    Z = d.terms[0].Z
    var = sleep.sigma**2 + np.einsum("ij,jk,ik->i", Z, cov, Z)
    se_mean = np.sqrt(var / ys.shape[0])
    assert np.all(np.abs(ys.mean(0) - mean) < 5 * se_mean)
    np.testing.assert_allclose(ys.var(0, ddof=1), var, rtol=0.15)
    # observations of one subject share its random effects: positive within-subject covariance
    same = d.terms[0].index[:, None] == d.terms[0].index[None, :]
    c = np.cov(ys[:, :20].T)
    assert np.all(c[same[:20, :20]] > 0)


def test_simulate_reproducible_and_prefix_stable(sleep):
    a = sleep.simulate(10, seed=3)
    np.testing.assert_array_equal(a, sleep.simulate(10, seed=3))
    np.testing.assert_array_equal(a[:4], sleep.simulate(4, seed=3))
    assert not np.allclose(a, sleep.simulate(10, seed=4))


# -- the refits agree with the core solver ---------------------------------------------------------
@pytest.mark.parametrize(
    "formula,data,reml",
    [
        (SLEEP, "sleepstudy", True),
        (SLEEP, "sleepstudy", False),
        ("diameter ~ 1 + (1|plate) + (1|sample)", "Penicillin", True),  # crossed
        ("strength ~ 1 + (1|batch/cask)", "Pastes", False),  # nested
        ("Reaction ~ Days + (Days || Subject)", "sleepstudy", True),  # uncorrelated vector term
    ],
    ids=["sleepstudy-REML", "sleepstudy-ML", "Penicillin-REML", "Pastes-ML", "sleepstudy-uncorr"],
)
def test_replicates_match_core_refit(formula, data, reml):
    res = _fit(formula, data, reml)
    boot = res.bootstrap(24, seed=11, progress=False, chunk_size=8)
    assert boot.n == 24 and boot.n_failed == 0
    ys = res.simulate(24, seed=11)
    for i in (0, 5, 23):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = res.model.refit(ys[i], reml=reml, theta0=res.theta)
        # same optimum: criterion equal, estimates close (flat directions allowed at the boundary)
        assert boot.objective[i] == pytest.approx(ref.objective, abs=1e-6)
        np.testing.assert_allclose(boot.fixef.loc[i].to_numpy(), ref.fixef.to_numpy(), rtol=1e-5, atol=1e-5)
        assert boot.sigma[i] == pytest.approx(ref.sigma, rel=1e-5)
        np.testing.assert_allclose(boot.theta.loc[i].to_numpy(), ref.theta, atol=2e-4)
    assert (boot.converged).all()
    ci = boot.ci(0.9)
    assert list(ci.index[: len(res.fixef)]) == list(res.fixef.index)
    assert "sigma" in ci.index


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_no_replicate_ends_above_a_standalone_fit_of_its_response(sleep, seed):
    """The lanes run the fit's own step: none of 1000 sleepstudy replicates (per seed)
    ends with a criterion above what a standalone fit of the same response reaches, by
    more than 1e-6 (the lanes once stopped 0.6-0.9 % of them at a worse boundary point)."""
    boot = sleep.bootstrap(1000, seed=seed, progress=False)
    sims = sleep.simulate(1000, seed=seed)
    assert boot.n == 1000 and boot.n_failed == 0
    worse = []
    for r in range(1000):
        alone = sleep.model.refit(sims[r], warn=False)
        assert alone.converged
        if boot.objective[r] > alone.objective + 1e-6:
            worse.append((r, boot.objective[r] - alone.objective))
    assert worse == []


def _assert_same_replicates(a, b):
    """Same replicates up to float rounding (XLA may vectorize differently per batch size).

    θ itself is compared only on non-singular replicates: with a variance at zero, a 2x2
    Λ has a flat direction (a rotation) along which θ is not identified, but the SDs are.
    """
    np.testing.assert_array_equal(a.status, b.status)
    np.testing.assert_array_equal(a.fixef.index, b.fixef.index)
    np.testing.assert_allclose(a.fixef, b.fixef, rtol=1e-10)
    np.testing.assert_allclose(a.sigma, b.sigma, rtol=1e-10)
    np.testing.assert_allclose(a.objective, b.objective, rtol=1e-12)
    sds = [c for c in a.vc.columns if not c.startswith("cor_")]
    np.testing.assert_allclose(a.vc[sds], b.vc[sds], rtol=1e-6, atol=1e-6)
    regular = (a.theta.to_numpy()[:, [0, 2]] > 1e-3).all(axis=1)
    np.testing.assert_allclose(a.theta[regular], b.theta[regular], rtol=1e-8, atol=1e-10)


def test_replicates_past_the_lane_budget_are_finished_by_the_follow_up(sleep):
    """A lane that uses up the batched loop's iteration budget is refitted on its own from
    its cross-products with the fit's own compiled program, reaching the same optimum."""
    from jaxlme import compiled

    sleep.model.objective(sleep.theta)  # the criterion program, which the follow-up's boundary checks use
    programs = compiled.STATS["compiled"] + compiled.STATS["loaded"]
    capped = sleep.bootstrap(12, seed=3, progress=False, chunk_size=4, _lane_iters=2)
    assert compiled.STATS["compiled"] + compiled.STATS["loaded"] - programs <= 2  # the simulation and the pool only
    full = sleep.bootstrap(12, seed=3, progress=False, chunk_size=4)
    assert (full.iterations > 2).sum() >= 6  # most needed more than the budget
    assert capped.n == 12 and capped.n_failed == 0 and capped.converged.all()
    assert (capped.iterations > 2).sum() == (full.iterations > 2).sum()  # lane + follow-up iterations
    np.testing.assert_allclose(capped.objective, full.objective, rtol=1e-10)
    np.testing.assert_allclose(capped.fixef, full.fixef, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(capped.sigma, full.sigma, rtol=1e-5)


# -- determinism ----------------------------------------------------------------------------------
def test_same_seed_same_replicates_any_chunk_size(sleep):
    runs = [sleep.bootstrap(40, seed=5, progress=False, chunk_size=c) for c in (4, 16, 64)]
    for other in runs[1:]:
        _assert_same_replicates(runs[0], other)
    different = sleep.bootstrap(40, seed=6, progress=False, chunk_size=16)
    assert not np.allclose(runs[0].fixef, different.fixef)


def test_sharded_over_four_devices_matches_one_device():
    out = _run_subprocess(
        f"""
        import json, warnings
        import jax, numpy as np, pandas as pd, jaxlme
        assert jax.device_count() == 4, jax.devices()
        warnings.simplefilter("ignore")
        res = jaxlme.lmm("{SLEEP}", pd.read_csv("tests/data/sleepstudy.csv"))
        b4 = res.bootstrap(50, seed=9, progress=False, chunk_size=16)
        b1 = res.bootstrap(50, seed=9, progress=False, chunk_size=16, devices=jax.devices()[:1])
        print(json.dumps(dict(ndev=b4.n_devices, b4=b4.to_frame().to_json(), b1=b1.to_frame().to_json(),
                              failed=b4.n_failed)))
        """,
        timeout=300,
        env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"},
    )
    assert out["ndev"] == 4
    assert out["failed"] == 0
    f4, f1 = (pd.read_json(io.StringIO(out[k])) for k in ("b4", "b1"))
    np.testing.assert_array_equal(f4.status, f1.status)
    for col in ["(Intercept)", "Days", "sigma", "objective", "sd_(Intercept)|Subject", "sd_Days|Subject"]:
        np.testing.assert_allclose(f4[col], f1[col], rtol=1e-6, atol=1e-6, err_msg=col)


# -- robustness -----------------------------------------------------------------------------------
def test_nonfinite_replicate_is_flagged_not_raised(sleep):
    with pytest.warns(UserWarning, match=r"2 of 30 bootstrap replicates failed: 2 non-finite"):
        boot = sleep.bootstrap(30, seed=1, progress=False, chunk_size=8, _poison=[3, 17])
    assert boot.n == 30
    assert boot.outcome[3] == boot.outcome[17] and "non-finite" in boot.outcome[3]
    assert boot.outcome.drop([3, 17]).str.startswith("converged").all()
    assert boot.status[3] == 5 and boot.status[17] == 5
    assert not boot.converged[3] and not boot.usable[17]
    assert boot.n_failed == 2 and boot.n_nonfinite == 2
    assert boot.converged.drop([3, 17]).all()
    assert len(boot.parameters()) == 28
    ci = boot.ci()
    assert np.isfinite(ci[["lower", "upper"]].to_numpy()).all()
    assert "failed/non-converged: 2" in boot.summary()


def test_all_replicates_failing_is_said_and_recorded(sleep):
    """Every replicate poisoned: each has its status, no statistic pretends otherwise."""
    with pytest.warns(UserWarning, match=r"12 of 12 bootstrap replicates failed: 12 non-finite"):
        boot = sleep.bootstrap(12, seed=4, progress=False, chunk_size=4, _poison=range(12))
    assert boot.n == 12 and boot.n_failed == 12
    assert (boot.status == 5).all() and not boot.usable.any()
    assert boot.outcome.str.contains("non-finite").all()
    assert len(boot.parameters()) == 0
    assert "failed/non-converged: 12" in boot.summary()


def test_keyboard_interrupt_returns_partial(sleep):
    calls = []

    def hook(_):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.warns(UserWarning, match="interrupted"):
        boot = jaxlme.bootstrap.bootstrap(sleep, 200, seed=2, progress=False, chunk_size=16, _on_round=hook)
    assert boot.interrupted
    assert 0 < boot.n < 200
    assert boot.converged.all()
    assert "INTERRUPTED" in boot.summary()


# -- intervals and text ---------------------------------------------------------------------------
def test_interval_methods_on_known_distributions():
    rng = np.random.default_rng(0)
    z = rng.standard_normal(200_000)
    lo, hi = draw_interval(z, 0.95, "percentile")
    assert lo == pytest.approx(-1.96, abs=0.02) and hi == pytest.approx(1.96, abs=0.02)
    lo, hi = draw_interval(z, 0.95, "shortest")  # symmetric: shortest == equal tails
    assert lo == pytest.approx(-1.96, abs=0.03) and hi == pytest.approx(1.96, abs=0.03)
    e = rng.exponential(size=200_000)
    lo, hi = draw_interval(e, 0.9, "shortest")  # monotone density: [0, q_0.9]
    assert lo == pytest.approx(0.0, abs=1e-3) and hi == pytest.approx(-np.log(0.1), abs=0.03)
    lo, hi = draw_interval(e, 0.9, "percentile")
    assert lo == pytest.approx(-np.log(0.95), abs=0.01) and hi == pytest.approx(-np.log(0.05), abs=0.05)
    # exact: shortest interval of 1..10 holding 50% is 5 points wide
    lo, hi = draw_interval(np.array([0, 1, 2, 3, 4, 10, 20, 30, 40, 50.0]), 0.5, "shortest")
    assert (lo, hi) == (0.0, 4.0)
    with pytest.raises(ValueError):
        draw_interval(z, 0.95, "bca")


def test_ci_summary_and_frame(sleep, sleep_boot):
    boot = sleep_boot
    assert isinstance(boot, BootstrapResult)
    assert boot.n == 1000 and boot.n_failed == 0  # every sleepstudy replicate converges
    ci = boot.ci(0.95)
    sh = boot.ci(0.95, method="shortest")
    assert list(ci.columns) == ["estimate", "lower", "upper"]
    for name in [
        "(Intercept)",
        "Days",
        "sd_(Intercept)|Subject",
        "sd_Days|Subject",
        "cor_Days.(Intercept)|Subject",
        "sigma",
    ]:
        assert name in ci.index and ci.loc[name, "lower"] < ci.loc[name, "upper"]
    for name in ["(Intercept)", "Days", "sigma"]:
        assert ci.loc[name, "lower"] < ci.loc[name, "estimate"] < ci.loc[name, "upper"]
    width = ci.upper - ci.lower
    assert ((sh.upper - sh.lower) <= width + 1e-9).all()
    assert boot.fixef.shape == (1000, 2)
    frame = boot.to_frame()
    assert len(frame) == 1000
    assert {"Days", "sigma", "theta_Subject.(Intercept)", "objective", "converged"} <= set(frame.columns)
    text = boot.summary()
    assert "Parametric bootstrap" in text and "1000 replicates (seed 42)" in text
    assert "Boot SE" in text and "97.5 %" in text and "sd_Days|Subject" in text
    assert "converged: 1000" in text


def test_bootstrap_sd_matches_asymptotic_se(sleep, sleep_boot):
    sd = sleep_boot.fixef.std(ddof=1)
    for name in sleep.fixef.index:
        assert sd[name] == pytest.approx(sleep.stderr[name], rel=0.15), name


# -- large batches (the vmapped while_loop hang) ---------------------------------------------------
def test_large_batch_one_chunk_completes_under_timeout():
    out = _run_subprocess(
        f"""
        import json, time, warnings
        import pandas as pd, jaxlme
        warnings.simplefilter("ignore")
        res = jaxlme.lmm("{SLEEP}", pd.read_csv("tests/data/sleepstudy.csv"))
        t = time.perf_counter()
        b = res.bootstrap(2048, seed=0, progress=False, chunk_size=1024)
        print(json.dumps(dict(n=b.n, failed=b.n_failed, chunk=b.chunk_size, s=time.perf_counter() - t)))
        """,
        timeout=240,
    )
    assert out["n"] == 2048 and out["chunk"] == 1024
    assert out["failed"] == 0


@pytest.mark.slow
def test_large_batch_default_chunking_10k():
    out = _run_subprocess(
        f"""
        import json, warnings
        import pandas as pd, jaxlme
        warnings.simplefilter("ignore")
        res = jaxlme.lmm("{SLEEP}", pd.read_csv("tests/data/sleepstudy.csv"))
        b = res.bootstrap(10_000, seed=0, progress=False)
        print(json.dumps(dict(n=b.n, failed=b.n_failed)))
        """,
        timeout=300,
    )
    assert out == {"n": 10_000, "failed": 0}


# -- large dense blocks: BFGS lanes, run one after another -----------------------------------------
def test_bfgs_lanes_match_core_refit_on_a_large_crossed_model():
    """Rest block ≥ BFGS_MIN_SIZE rows: lanes use BFGS from the Hessian at θ̂ and lax.map."""
    from jaxlme.optimizer import BFGS_MIN_SIZE

    rng = np.random.default_rng(4)
    n, k1, k2 = 4000, 400, BFGS_MIN_SIZE + 20  # just past the switch: the dense block sets the cost
    g1, g2 = rng.integers(0, k1, n), rng.integers(0, k2, n)
    y = 2.0 + rng.normal(0, 0.8, k1)[g1] + rng.normal(0, 0.5, k2)[g2] + rng.normal(0, 1.0, n)
    d = pd.DataFrame({"y": y, "g1": g1.astype(str), "g2": g2.astype(str)})
    res = jaxlme.LMM("y ~ 1 + (1 | g1) + (1 | g2)", d).fit(reml=False)
    assert res.model.layout.size_rest >= BFGS_MIN_SIZE
    boot = res.bootstrap(4, seed=2, progress=False)
    assert boot.n == 4 and boot.n_failed == 0
    ys = res.simulate(4, seed=2)
    for i in range(4):
        ref = res.model.refit(ys[i], reml=False, theta0=res.theta)
        assert boot.objective[i] == pytest.approx(ref.objective, abs=1e-6)
        np.testing.assert_allclose(boot.theta.loc[i].to_numpy(), ref.theta, rtol=1e-4)
        np.testing.assert_allclose(boot.fixef.loc[i].to_numpy(), ref.fixef.to_numpy(), rtol=1e-6)


def test_vmapped_gradient_of_a_large_dense_block_does_not_hang():
    """Batched, the recursive inverse's triangular solves hang jax 0.10.2 on CPU: under vmap
    the gradient must switch to the direct formula and agree with the unbatched one."""
    out = _run_subprocess(
        """
        import json
        import jax, jax.numpy as jnp, numpy as np, pandas as pd, jaxlme
        rng = np.random.default_rng(0)
        n = 4000
        g1, g2 = rng.integers(0, 800, n), rng.integers(0, 600, n)
        y = rng.normal(0, 1, 800)[g1] + rng.normal(0, 1, 600)[g2] + rng.normal(0, 1, n)
        d = pd.DataFrame({"y": y, "g1": g1.astype(str), "g2": g2.astype(str)})
        m = jaxlme.LMM("y ~ 1 + (1 | g1) + (1 | g2)", d)
        with jax.enable_x64(True):
            f = m.objective_function(reml=True)
            thetas = jnp.array([[0.5, 0.7], [1.0, 0.3], [0.8, 0.9]])
            batched = jax.jit(jax.vmap(jax.grad(f)))(thetas)
            single = jnp.stack([jax.grad(f)(t) for t in thetas])
        print(json.dumps(dict(size=m.layout.size_rest, err=float(jnp.max(jnp.abs(batched - single))),
                              scale=float(jnp.max(jnp.abs(single))))))
        """,
        timeout=240,
    )
    assert out["size"] > 520  # three levels of recursion: where the hang appeared
    assert out["err"] <= 1e-8 * out["scale"]


def test_standard_normals_are_independent_standard_normals():
    """The Box-Muller draws: mean 0, variance 1, normal quantiles and tails, the cosine and
    sine halves uncorrelated, an odd count honoured, and different seeds or replicates
    giving independent draws."""
    from jaxlme.simulation import seed_key, standard_normals

    m = 200_001
    draw = jax.jit(standard_normals, static_argnums=2)
    with jax.enable_x64(True):
        z = np.asarray(draw(seed_key(3), np.int32(7), m))
        other = np.asarray(draw(seed_key(4), np.int32(7), m))  # another seed
        replicate = np.asarray(draw(seed_key(3), np.int32(8), m))  # another replicate
    assert z.shape == (m,) and z.dtype == np.float64 and np.all(np.isfinite(z))
    assert abs(z.mean()) < 5 / np.sqrt(m)
    assert abs(z.var() - 1.0) < 5 * np.sqrt(2.0 / m)
    probs = [0.025, 0.16, 0.5, 0.84, 0.975]
    np.testing.assert_allclose(np.quantile(z, probs), [-1.96, -0.994, 0, 0.994, 1.96], atol=0.02)
    assert np.mean(np.abs(z) > 3) == pytest.approx(0.0027, abs=0.0006)
    half = m // 2
    assert abs(np.corrcoef(z[:half], z[half : 2 * half])[0, 1]) < 5 / np.sqrt(half)
    assert abs(np.corrcoef(z, other)[0, 1]) < 5 / np.sqrt(m)
    assert abs(np.corrcoef(z, replicate)[0, 1]) < 5 / np.sqrt(m)


@pytest.mark.parametrize("seed", [0, 1, 42, 2**31 + 5, 2**40 + 3, -1])
def test_seed_key_is_jax_prngkey(seed):
    """The host-made key is JAX's own threefry key of the seed (high and low 32 bits)."""
    from jaxlme.simulation import seed_key

    with jax.enable_x64(True):
        np.testing.assert_array_equal(seed_key(seed), np.asarray(jax.random.PRNGKey(seed)))


def test_progress_bar_waits_two_seconds_and_is_off_on_request(sleep):
    """tqdm's bar (shown only once a run passes 2 s); progress=False makes none at all."""
    from tqdm.auto import tqdm

    from jaxlme.pool import NoBar, progress_bar

    bar = progress_bar(10, True)
    try:
        assert isinstance(bar, tqdm) and bar.total == 10 and bar.delay == 2.0
    finally:
        bar.close()
    assert isinstance(progress_bar(10, False), NoBar)
    boot = sleep.bootstrap(8, seed=2, progress=True, chunk_size=8)  # a short run: bar never shown
    assert boot.n == 8 and boot.n_failed == 0


def test_lanes_on_a_zero_diagonal_are_checked_by_the_core_fit():
    """Replicates of a singular fit often stop with Λ_jj = 0 in a vector-valued term; the
    follow-up refits them with the core fit's boundary check, so none ends above the
    optimum its own response reaches (before: 16 of 44 such replicates did)."""
    from helpers import DATA

    from jaxlme.boundary import zero_columns

    d = pd.read_csv(DATA / "boundary_factor_slope_0.csv", dtype={"g": str})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = jaxlme.lmm("y ~ f + (f | g)", d)
        boot = res.bootstrap(30, seed=3, progress=False)
    sims = res.simulate(30, seed=3)
    edge = [r for r in boot.status.index if zero_columns(boot.theta.loc[r].to_numpy(), res.model.layout)]
    assert len(edge) >= 5
    for r in edge:
        alone = res.model.refit(sims[r], warn=False)
        assert boot.objective[r] <= alone.objective + 1e-6, r


def _head_model_data() -> pd.DataFrame:
    """``(1 + x || g)`` with enough levels for its terms to form one term-1 block."""
    rng = np.random.default_rng(12)
    n, k = 1300, 130
    g, x = rng.integers(0, k, n), rng.normal(size=n)
    u = rng.normal(size=(k, 2)) * [1.0, 0.4]
    return pd.DataFrame({"g": g, "x": x, "y": 1 + x + u[g, 0] + u[g, 1] * x + rng.normal(size=n)})


@pytest.mark.parametrize(
    "formula,data",
    [("Reaction ~ Days + (Days | Subject)", "sleepstudy"), ("y ~ x + (1 + x || g)", "head")],
    ids=["sleepstudy", "term1_block"],
)
def test_drawn_crossproducts_have_the_per_row_simulations_distribution(formula, data):
    """A model without rows bootstraps from cross-products drawn without the rows
    (bootstrap.draw_crossproducts): their joint law equals that of the cross-products of
    per-row simulated responses.  Checked on sleepstudy with 3000 draws each: every
    component's mean within 5 standard errors, y*'y* and a few others' variances within 15%."""
    from jaxlme.simulation import crossproducts_gram, draw_crossproducts, sim_params
    from jaxlme.structure import response_crossprods

    res = jaxlme.lmm(formula, _head_model_data() if data == "head" else jaxlme.datasets.load(data))
    assert res.model.layout.head == (2 if data == "head" else 1)
    model, N = res.model, 3000
    ys = np.asarray(res.simulate(N, seed=5)) - model.centering.y_shift
    with jax.enable_x64(True):
        zy1, ry = jax.jit(jax.vmap(lambda y: response_crossprods(model.layout, model.obs, y)))(jax.device_put(ys))
    per_row = np.concatenate([np.asarray(zy1).reshape(N, -1), np.asarray(ry)], axis=1)
    M = crossproducts_gram(model.structure)
    eig, sp, rng = np.linalg.eigh(M), sim_params(res), np.random.default_rng(6)
    drawn = np.stack(
        [
            np.concatenate([np.ravel(a), b])
            for a, b in (draw_crossproducts(M, eig, sp, model.layout, res.nobs, rng) for _ in range(N))
        ]
    )
    se = np.sqrt(per_row.var(axis=0) / N + drawn.var(axis=0) / N)
    assert np.all(np.abs(per_row.mean(axis=0) - drawn.mean(axis=0)) <= 5 * se + 1e-9)
    for j in [0, 1, per_row.shape[1] - 3, per_row.shape[1] - 2, per_row.shape[1] - 1]:  # Z1'y, X'y, y'y
        assert drawn[:, j].var() == pytest.approx(per_row[:, j].var(), rel=0.15), j
    # y*'y* and X'y* are dependent: their correlation matches too
    c1 = np.corrcoef(per_row[:, -1], per_row[:, -2])[0, 1]
    c2 = np.corrcoef(drawn[:, -1], drawn[:, -2])[0, 1]
    assert abs(c1 - c2) < 0.1


def test_bootstrap_of_a_model_without_rows():
    from jaxlme.partitions import PartitionPlan, collect_levels

    data = jaxlme.datasets.load("sleepstudy")
    f = "Reaction ~ Days + (Days | Subject)"
    parts = [data.iloc[i::4] for i in range(4)]
    plan = PartitionPlan(f, sum(collect_levels(f, p) for p in parts), parts[0])
    res = jaxlme.LMM.from_crossproducts(plan, sum(plan.crossproducts(p) for p in parts)).fit()
    ref = jaxlme.lmm(f, data)
    a = res.bootstrap(300, seed=1, progress=False)
    b = ref.bootstrap(300, seed=1, progress=False)
    assert a.n == 300 and a.converged.mean() > 0.95
    pa, pb = a.parameters(), b.parameters()
    se = np.sqrt(pa.var() / len(pa) + pb.var() / len(pb))
    assert np.all(np.abs(pa.mean() - pb.mean()) <= 5 * se)
    again = res.bootstrap(300, seed=1, progress=False, chunk_size=16)  # replicate i: its own draws
    np.testing.assert_allclose(again.parameters()["(Intercept)"], pa["(Intercept)"], rtol=1e-6)
