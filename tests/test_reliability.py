"""Reliability: seeds, bounded compile caches, data input, column types, unused levels, CLI."""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import pandas as pd
import pytest

import jaxlme
import jaxlme.bootstrap
from jaxlme import compiled
from jaxlme.cli import main

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep_data():
    return jaxlme.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def sleep_fit(sleep_data):
    return jaxlme.lmm(FORMULA, sleep_data)


# -- seeds ------------------------------------------------------------------------------------
def test_seed_none_draws_fresh_entropy_and_records_it(sleep_fit):
    a = sleep_fit.simulate(3, seed=None)
    b = sleep_fit.simulate(3, seed=None)
    assert isinstance(a.seed, int) and isinstance(b.seed, int)
    assert a.seed != b.seed
    assert not np.allclose(a, b)
    again = sleep_fit.simulate(3, seed=a.seed)  # the recorded seed repeats the draw
    np.testing.assert_array_equal(np.asarray(again), np.asarray(a))
    assert sleep_fit.simulate(2, seed=7).seed == 7


def test_bootstrap_seed_none_is_recorded_and_repeatable(sleep_fit):
    boot = sleep_fit.bootstrap(8, seed=None, progress=False)
    assert isinstance(boot.seed, int)
    same = sleep_fit.bootstrap(8, seed=boot.seed, progress=False)
    np.testing.assert_array_equal(boot.theta.to_numpy(), same.theta.to_numpy())
    assert f"seed {boot.seed}" in boot.summary()


@pytest.mark.parametrize("bad", [1.5, "1", True, [1]])
def test_seed_must_be_an_integer(sleep_fit, bad):
    with pytest.raises(TypeError, match="seed must be an integer or None"):
        sleep_fit.simulate(2, seed=bad)


# -- bounded compile caches -------------------------------------------------------------------
def test_memory_cache_keeps_the_most_recently_used(monkeypatch):
    monkeypatch.setenv("JAXLME_MEMORY_CACHE", "3")
    assert compiled.memory_cache_size() == 3
    cache = compiled.LRUCache()
    for i in range(5):
        cache[i] = str(i)
    assert list(cache) == [2, 3, 4]
    assert cache.get(2) == "2"  # a hit makes 2 the most recent
    cache[5] = "5"
    assert list(cache) == [4, 2, 5]
    assert cache.setdefault(4, "other") == "4"
    assert cache.get(99) is None


def test_compiled_programs_in_memory_are_bounded(monkeypatch, tmp_path):
    import jax.numpy as jnp

    monkeypatch.setenv("JAXLME_MEMORY_CACHE", "2")
    monkeypatch.setenv("JAXLME_NO_CACHE", "1")
    compiled.clear_memory_cache()
    for n in range(1, 5):  # four shapes, four programs
        fn, _ = compiled.compile_program("bounded_test", lambda x: x * 2.0, (jnp.zeros(n),))
        np.testing.assert_allclose(np.asarray(fn(jnp.ones(n))), 2.0)
    assert len(compiled.MEMORY) == 2
    compiled.clear_memory_cache()


def test_disk_cache_drops_least_recently_used(tmp_path):
    now = time.time()
    for i in range(5):
        p = tmp_path / f"prog-{i}.jaxexe"
        p.write_bytes(b"x" * 1000)
        os.utime(p, (now - 100 + i, now - 100 + i))  # prog-0 oldest
    (tmp_path / "other.txt").write_bytes(b"y" * 5000)  # not an executable: never touched
    removed = compiled.prune_disk_cache(tmp_path, max_bytes=2500)
    assert removed == 3
    assert sorted(p.name for p in tmp_path.glob("*.jaxexe")) == ["prog-3.jaxexe", "prog-4.jaxexe"]
    assert (tmp_path / "other.txt").exists()
    assert compiled.prune_disk_cache(tmp_path, max_bytes=2500) == 0
    assert compiled.prune_disk_cache(tmp_path, max_bytes=5500, pattern="*") == 2  # every file counts now
    assert [p.name for p in tmp_path.iterdir()] == ["other.txt"]  # the most recent stays


def test_disk_bound_from_environment(monkeypatch):
    monkeypatch.setenv("JAXLME_DISK_CACHE_MB", "2")
    assert compiled.disk_cache_bytes() == 2 * 2**20
    monkeypatch.setenv("JAXLME_DISK_CACHE_MB", "nonsense")
    assert compiled.disk_cache_bytes() == 1024 * 2**20


def test_clear_cache_removes_jaxlmes_files(monkeypatch, tmp_path):
    monkeypatch.delenv("JAXLME_NO_CACHE", raising=False)
    monkeypatch.setenv("JAXLME_CACHE_DIR", str(tmp_path))
    (tmp_path / "executables").mkdir()
    (tmp_path / "executables" / "fit-abc.jaxexe").write_bytes(b"x")
    (tmp_path / "jit_program-cache").write_bytes(b"x")
    jaxlme.clear_cache()  # memory only
    assert (tmp_path / "executables" / "fit-abc.jaxexe").exists()
    jaxlme.clear_cache(disk=True)
    assert not (tmp_path / "executables").exists()
    assert not (tmp_path / "jit_program-cache").exists()


# -- data input -------------------------------------------------------------------------------
def test_arrow_table_is_converted_once(sleep_data, sleep_fit):
    pa = pytest.importorskip("pyarrow")
    table = pa.Table.from_pandas(sleep_data, preserve_index=False)
    res = jaxlme.lmm(FORMULA, table)
    assert res.objective == pytest.approx(sleep_fit.objective, rel=1e-10)
    np.testing.assert_allclose(res.fixef.to_numpy(), sleep_fit.fixef.to_numpy(), rtol=1e-8)


def test_interchange_protocol_without_to_pandas(sleep_data, sleep_fit):
    pa = pytest.importorskip("pyarrow")

    class OnlyProtocol:  # a table that speaks only the DataFrame interchange protocol
        def __init__(self, t):
            self._t = t

        def __dataframe__(self, *args, **kwargs):
            return self._t.__dataframe__(*args, **kwargs)

    res = jaxlme.lmm(FORMULA, OnlyProtocol(pa.Table.from_pandas(sleep_data, preserve_index=False)))
    assert res.objective == pytest.approx(sleep_fit.objective, rel=1e-10)


def test_other_data_is_refused_clearly():
    with pytest.raises(jaxlme.DataError, match="interchange protocol.*got list"):
        jaxlme.lmm(FORMULA, [[1, 2, 3]])


def test_datetime_predictor_is_refused_naming_it(sleep_data):
    d = sleep_data.assign(when=pd.Timestamp("2024-01-01") + pd.to_timedelta(sleep_data["Days"], unit="D"))
    with pytest.raises(jaxlme.DataError, match="Column 'when' is a date/time") as info:
        jaxlme.lmm("Reaction ~ when + (1 | Subject)", d)
    assert "\n" not in str(info.value)
    with pytest.raises(jaxlme.DataError, match="Column 'when' is a date/time"):
        jaxlme.lmm("Reaction ~ Days + (when | Subject)", d)
    span = d.assign(gap=pd.to_timedelta(d["Days"], unit="D"))
    with pytest.raises(jaxlme.DataError, match="Column 'gap' is a date/time"):
        jaxlme.lmm("Reaction ~ gap + (1 | Subject)", span)


def test_datetime_grouping_factor_is_fine(sleep_data, sleep_fit):
    subjects = sorted(sleep_data["Subject"].unique())
    stamp = {s: pd.Timestamp("2020-01-01") + pd.Timedelta(days=i) for i, s in enumerate(subjects)}
    d = sleep_data.assign(start=sleep_data["Subject"].map(stamp))
    res = jaxlme.lmm("Reaction ~ Days + (Days | start)", d)
    assert res.objective == pytest.approx(sleep_fit.objective, rel=1e-9)


def test_complex_column_is_refused(sleep_data):
    d = sleep_data.assign(z=sleep_data["Days"] + 1j)
    with pytest.raises(jaxlme.DataError, match="Column 'z' holds complex numbers"):
        jaxlme.lmm("Reaction ~ z + (1 | Subject)", d)


def test_duplicate_column_names_are_refused(sleep_data):
    d = pd.concat([sleep_data, sleep_data[["Days"]]], axis=1)
    with pytest.raises(jaxlme.DataError, match="Column name\\(s\\) 'Days' appear more than once"):
        jaxlme.lmm(FORMULA, d)
    jaxlme.lmm("Reaction ~ 1 + (1 | Subject)", d)  # unused duplicates do not matter


# -- unused categories (lme4 drops unused levels) ---------------------------------------------
def test_unused_categories_are_dropped(sleep_data):
    phase = np.where(sleep_data["Days"] < 5, "early", "late")
    plain = sleep_data.assign(phase=pd.Categorical(phase, categories=["early", "late"]))
    padded = sleep_data.assign(phase=pd.Categorical(phase, categories=["aaa_unused", "early", "late", "zzz"]))
    ref = jaxlme.lmm("Reaction ~ phase + (1 | Subject)", plain)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no spurious rank-deficiency warning
        res = jaxlme.lmm("Reaction ~ phase + (1 | Subject)", padded)
    assert list(res.fixef.index) == list(ref.fixef.index) == ["(Intercept)", "phaselate"]
    assert res.objective == pytest.approx(ref.objective, rel=1e-10)
    slope = jaxlme.lmm("Reaction ~ phase + (0 + phase | Subject)", padded)
    ref_slope = jaxlme.lmm("Reaction ~ phase + (0 + phase | Subject)", plain)
    assert slope.theta.size == ref_slope.theta.size == 3
    assert slope.objective == pytest.approx(ref_slope.objective, rel=1e-8)


# -- command line -----------------------------------------------------------------------------
def test_cli_checks_level_before_fitting(capsys):
    t0 = time.perf_counter()
    assert main(["fit", "sleepstudy", FORMULA, "--bootstrap", "50", "--level", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "--level must be between 0 and 1" in err
    assert time.perf_counter() - t0 < 5  # no fit, no bootstrap ran


def test_cli_huge_bootstrap_is_a_clean_error(capsys):
    assert main(["fit", "sleepstudy", FORMULA, "--bootstrap", str(10**15)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxlme: error:") and "Traceback" not in err


def test_cli_interrupted_bootstrap_exits_nonzero(monkeypatch, capsys):
    import jaxlme.cli as cli

    def interrupted(res, n, seed):
        calls = []

        def hook(_):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return res.bootstrap(n, seed=seed, progress=False, chunk_size=8, _on_round=hook)

    monkeypatch.setattr(cli, "_bootstrap", interrupted)
    assert main(["fit", "sleepstudy", FORMULA, "--bootstrap", "200"]) == cli.EXIT_INTERRUPTED == 130
    captured = capsys.readouterr()
    assert "interrupted after" in captured.err
    assert "Parametric bootstrap" in captured.out  # the partial results are still printed


# -- no hang: the 45-θ factor-slope model (y ~ f + (f | g), 9-level f) -------------------------
_FIT_IN_SUBPROCESS = """
import json, sys, warnings
import pandas as pd
import jaxlme
warnings.simplefilter("ignore")
d = pd.read_csv(sys.argv[1])
model = jaxlme.LMM("y ~ f + (f | g)", d)
out = {}
for reml in (True, False):
    res = model.fit(reml=reml)
    out[str(reml)] = [res.objective, bool(res.converged), res.theta.size]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_factor_slope_45_theta_fits_without_hanging_and_reaches_lme4():
    """Once a run-time deadlock (LAPACK's batched triangular solves in jaxlib's thread pool):
    the fit runs in a subprocess with a deadline, so a hang fails the test instead of
    stalling the suite."""
    import json
    import subprocess
    import sys

    from helpers import DATA

    refs = {r["REML"]: r for r in _reliability_refs() if r["model"] == "factor_slope45"}
    proc = subprocess.run(
        [sys.executable, "-c", _FIT_IN_SUBPROCESS, str(DATA / "factor_slope45.csv")],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for reml in (True, False):
        objective, converged, ntheta = got[str(reml)]
        assert ntheta == 45
        assert converged
        assert objective <= refs[reml]["criterion"] + 1e-4, (reml, objective, refs[reml]["criterion"])


# -- degenerate fits say so -------------------------------------------------------------------
def test_exact_fit_is_degenerate_not_converged():
    rng = np.random.default_rng(1)
    d = pd.DataFrame({"x": rng.normal(size=60), "g": np.repeat(np.arange(6), 10).astype(str)})
    d["y"] = 1 + 2 * d["x"] + d["g"].astype(int)  # y is exactly X β + Z b
    with pytest.warns(UserWarning, match="Degenerate fit: residual standard deviation .* reproduces the data"):
        res = jaxlme.lmm("y ~ x + (1 | g)", d)
    assert not res.converged
    assert res.opt.status.startswith("degenerate fit")
    noisy = d.assign(y=d["y"] + rng.normal(0, 0.1, len(d)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert jaxlme.lmm("y ~ x + (1 | g)", noisy).converged


def test_constant_response_is_an_error(sleep_data):
    with pytest.raises(jaxlme.DataError, match="Response 'c' is constant"):
        jaxlme.lmm("c ~ Days + (1 | Subject)", sleep_data.assign(c=3.0))


def test_all_zero_random_effect_column_is_an_error(sleep_data):
    with pytest.raises(jaxlme.DataError, match="'z' of term \\(1 \\+ z \\| Subject\\) are zero in every row"):
        jaxlme.lmm("Reaction ~ Days + (1 + z | Subject)", sleep_data.assign(z=0.0))


def test_no_residual_degrees_of_freedom_names_the_factor(sleep_data):
    d = sleep_data.assign(xo=sleep_data["Days"].astype(str) + "_" + sleep_data.index.astype(str))
    with pytest.raises(jaxlme.DataError, match="no residual degrees of freedom.*'xo' \\(180 levels\\)"):
        jaxlme.lmm("Reaction ~ xo + (1 | Subject)", d)
    few = sleep_data.iloc[[0, 1, 2]].assign(Subject=["a", "a", "b"])
    with pytest.raises(jaxlme.DataError, match="3 observations for 3 fixed-effect columns"):
        jaxlme.lmm("Reaction ~ Days + I(Days**2) + (1 | Subject)", few)


def test_uncorrelated_terms_are_checked_per_column():
    """lme4 fits (x || g) as one term per column and checks each against nobs."""
    rng = np.random.default_rng(3)
    d = pd.DataFrame({"y": rng.normal(size=30), "x": rng.normal(size=30), "g": np.arange(30) % 12})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a singular fit, as in lme4
        res = jaxlme.lmm("y ~ x + (x || g)", d)  # 24 random effects in all, 12 per term
    assert res.theta.size == 2
    with pytest.raises(jaxlme.DataError, match="has 24 random effects for 24 observations"):
        jaxlme.lmm("y ~ x + (x | g)", d.iloc[:24].assign(g=np.arange(24) % 12))


# -- boundary optima of the Cholesky parametrization ------------------------------------------
_REFS = None


def _reliability_refs() -> list[dict]:
    global _REFS
    if _REFS is None:
        import json

        from helpers import DATA

        _REFS = json.loads((DATA / "reliability_reference.json").read_text())
    return _REFS


_BOUNDARY = [
    pytest.param(name, reml, id=f"{name}-{'REML' if reml else 'ML'}")
    for name in (
        "crossed_slope_3",
        "crossed_slope_5",
        "factor_slope_0",
        "slope3_3",
        "maximal_0",
        "slope_56",
        "maximal_32",
    )
    for reml in (True, False)
]


@pytest.mark.parametrize("name,reml", _BOUNDARY)
def test_boundary_designs_reach_lme4s_optimum(name, reml):
    """Designs where the fit once stopped at Λ_jj = 0 'converged' above lme4's optimum."""
    from helpers import DATA

    ref = next(r for r in _reliability_refs() if r["model"] == f"boundary_{name}" and r["REML"] == reml)
    d = pd.read_csv(DATA / f"boundary_{name}.csv", dtype={"g": str, "a": str, "b": str})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = jaxlme.lmm(ref["formula"], d, reml=reml)
    assert res.converged
    assert res.objective <= ref["criterion"] + 1e-4


def test_boundary_escape_first_order_sign_flip():
    """A criterion of Σ = ΛΛ' whose bounded optimum at λ11 = 0 is not a minimum: the
    escape flips the column's sign and finds the lower point."""
    from jaxlme.boundary import boundary_escape, zero_columns
    from jaxlme.structure import Layout, TermLayout

    lay = Layout(terms=(TermLayout("g", 10, 2, True, 0),), p=1, n=100, nnz=0, npairs=0, dense_schur=False)
    target = np.array([[1.0, -0.6], [-0.6, 1.0]])

    def crit(theta):
        lam = np.array([[theta[0], 0.0], [theta[1], theta[2]]])
        return float(np.sum((lam @ lam.T - target) ** 2))

    trapped = np.array([0.0, 0.6, 0.8])  # λ11 = 0 with λ21 > 0: dΣ12 has the wrong sign
    assert zero_columns(trapped, lay) == [(0, [0, 1])]
    found = boundary_escape(trapped, lay, crit, np.ones(3))
    assert found is not None
    start, value = found
    assert start[0] > 0 and start[1] < 0 and value < crit(trapped)
    optimum = np.array([1.0, -0.6, 0.8])
    assert boundary_escape(optimum, lay, crit, np.ones(3)) is None  # interior: nothing to check


def test_boundary_escape_second_order_zero_column():
    from jaxlme.boundary import boundary_escape
    from jaxlme.structure import Layout, TermLayout

    lay = Layout(terms=(TermLayout("g", 10, 2, True, 0),), p=1, n=100, nnz=0, npairs=0, dense_schur=False)
    target = np.array([[0.5, 0.5], [0.5, 0.5]])  # rank one along (1, 1)

    def crit(theta):
        lam = np.array([[theta[0], 0.0], [theta[1], theta[2]]])
        return float(np.sum((lam @ lam.T - target) ** 2))

    zero = np.zeros(3)  # a stationary point: the criterion is flat to first order
    start, value = boundary_escape(zero, lay, crit, np.ones(3))
    assert value < crit(zero) and start[0] > 0 and start[1] > 0
    minimum = np.array([np.sqrt(0.5), np.sqrt(0.5), 0.0])  # λ22 = 0 here is a genuine minimum
    assert boundary_escape(minimum, lay, crit, np.ones(3)) is None


def test_boundary_escape_scalar_saddle():
    """A scalar term's criterion is even in θ, so θ = 0 is stationary; with negative
    curvature it is a saddle, which the check of one-entry columns leaves (and only then)."""
    from jaxlme.boundary import boundary_escape, zero_columns
    from jaxlme.structure import Layout, TermLayout

    lay = Layout(
        terms=(TermLayout("g", 10, 1, True, 0), TermLayout("h", 5, 2, False, 10)),
        p=1,
        n=100,
        nnz=0,
        npairs=0,
        dense_schur=False,
    )

    def crit(theta):  # minimum at θ = (0.7, 0, 0.4): θ_0 = 0 is a saddle, θ_1 = 0 a minimum
        return float((theta[0] ** 2 - 0.49) ** 2 + theta[1] ** 2 + (theta[2] - 0.4) ** 2)

    saddle = np.array([0.0, 0.0, 0.4])
    assert zero_columns(saddle, lay) == []  # vector-valued correlated columns only, by default
    assert zero_columns(saddle, lay, single=True) == [(0, [0]), (1, [1])]
    assert boundary_escape(saddle, lay, crit, np.ones(3)) is None
    start, value = boundary_escape(saddle, lay, crit, np.ones(3), single=True)
    assert start[0] > 0 and start[1] == 0 and value < crit(saddle)
    assert boundary_escape(np.array([0.7, 0.0, 0.4]), lay, crit, np.ones(3), single=True) is None


def test_bfgs_fit_leaves_a_scalar_saddle_at_zero():
    """A large nested model (BFGS) whose line search lands on θ = 0 for the inner term,
    a saddle 328 criterion units above the optimum: the fit and the lanes restart and reach it."""
    rng = np.random.default_rng(2)
    a = np.repeat(np.arange(420), 12)
    b = np.tile(np.repeat(np.arange(4), 3), 420)
    x = rng.normal(size=len(a))
    u = rng.normal(size=(420, 2)) * [1.5, 0.5]
    y = 1 + x + u[a, 0] + u[a, 1] * x + 0.7 * rng.normal(size=1680)[a * 4 + b] + rng.normal(size=len(a))
    model = jaxlme.LMM("y ~ x + (1 | a) + (1 | a:b)", pd.DataFrame({"a": a, "b": b, "x": x, "y": y}))
    res = model.fit()  # (jax 0.10's BFGS path stops on the saddle and escapes; 0.8's misses it)
    assert res.opt.converged
    np.testing.assert_allclose(res.theta, [0.641938, 1.260214], atol=1e-4)  # scipy L-BFGS-B on the criterion
    assert res.opt.objective == pytest.approx(17782.96416, abs=1e-4)
    # the vmapped BFGS lanes (fit_many, the bootstrap) stop on the same saddles: each
    # response must reach its single fit's optimum
    Y = np.column_stack([y] + [y + rng.normal(size=len(y)) * s for s in (1.0, 2.0)])
    many = model.fit_many(Y)
    for j in range(Y.shape[1]):
        assert many["objective"].iloc[j] == pytest.approx(model.refit(Y[:, j]).opt.objective, abs=1e-6)


# -- levels matched by value, not by their text -----------------------------------------------
def _mixed_levels():
    rng = np.random.default_rng(0)
    g = np.array([1, "1", 2, "2", 3, "3"], dtype=object)[np.repeat(np.arange(6), 20)]
    y = 1 + np.repeat(rng.normal(0, 3, 6), 20) + rng.normal(size=120)
    return pd.DataFrame({"y": y, "x": rng.normal(size=120), "g": g})


def test_levels_that_print_alike_stay_apart():
    d = _mixed_levels()  # 1 and "1": two levels in the fit, so two in predict as well
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = jaxlme.lmm("y ~ x + (1 | g)", d)
    assert res.ngroups == {"g": 6}
    np.testing.assert_allclose(res.predict(d).to_numpy(), res.fitted.to_numpy(), rtol=1e-12)


def test_interaction_labels_with_colons_stay_apart():
    d = _mixed_levels()
    d["a"] = np.array(["a:b", "a"], dtype=object)[np.repeat(np.arange(2), 60)]
    d["b"] = np.array(["c", "b:c"], dtype=object)[np.tile(np.repeat(np.arange(2), 30), 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = jaxlme.lmm("y ~ x + (1 | a:b)", d)  # ("a:b", "c") and ("a", "b:c") both print a:b:c
    assert res.ngroups == {"a:b": 4}
    np.testing.assert_allclose(res.predict(d).to_numpy(), res.fitted.to_numpy(), rtol=1e-12)


def test_categorical_levels_match_plain_values_in_new_data(sleep_data, sleep_fit):
    cat = sleep_data.assign(Subject=pd.Categorical(sleep_data["Subject"].astype(str)))
    res = jaxlme.lmm(FORMULA, cat)
    plain = cat.assign(Subject=cat["Subject"].astype(str))
    np.testing.assert_allclose(res.predict(plain).to_numpy(), res.fitted.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(res.predict(cat).to_numpy(), res.fitted.to_numpy(), rtol=1e-12)
