"""The executable cache (jaxlme.compiled): programs reload in a new process, bad entries are
replaced, stale ones never load, and small programs get the cheaper CPU code generation."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import uuid
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import pytest

from jaxlme import compiled
from jaxlme.structure import is_small

CHILD = r"""
import json, sys, warnings
import jax
import jaxlme
from jaxlme import compiled
events = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, d, **kw: events.append((name, kw.get("fun_name", "")))
)
warnings.simplefilter("ignore")
d = jaxlme.datasets.load("sleepstudy")
res = jaxlme.lmm("Reaction ~ Days + (Days | Subject)", d)
coefs = res.coefs()
print(json.dumps(dict(
    theta=res.theta.tolist(), df=coefs["df"].tolist(), stats=compiled.STATS, pending=len(compiled._PENDING),
    traces=sum(e == "/jax/core/compile/jaxpr_trace_duration" and f.startswith("jaxlme_") for e, f in events),
)))
"""


def _child(cache_dir, **env) -> dict:
    e = dict(os.environ, JAXLME_CACHE_DIR=str(cache_dir))
    e.pop("JAXLME_NO_CACHE", None)
    e.update(env)
    out = subprocess.run([sys.executable, "-c", CHILD], env=e, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_new_process_loads_fit_and_satterthwaite_without_tracing(tmp_path):
    first = _child(tmp_path)
    assert first["stats"]["compiled"] == 2 and first["stats"]["saved"] == 2
    files = sorted(p.name.split("-")[0] for p in (tmp_path / "executables").glob("*.jaxexe"))
    assert files == ["fit", "satterthwaite"]
    second = _child(tmp_path)
    assert second["stats"]["loaded"] == 2 and second["stats"]["compiled"] == 0
    # the Satterthwaite program was read in the background while the fit ran
    assert first["stats"]["prefetched"] == 0 and second["stats"]["prefetched"] == 1
    assert second["pending"] == 0
    assert first["traces"] == 2
    assert second["traces"] == 0  # nothing traced: the cached programs ran as loaded
    np.testing.assert_allclose(second["theta"], first["theta"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(second["df"], first["df"], rtol=1e-12)


def test_one_device_programs_reload_on_a_host_with_four_devices(tmp_path):
    # A loaded executable defaults to all devices; a one-device fit loaded that way aborted
    # the process (jax 0.8) on the call.  It must run on the device it was compiled for.
    four = dict(XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    first = _child(tmp_path, **four)
    second = _child(tmp_path, **four)
    assert second["stats"]["loaded"] == 2 and second["stats"]["compiled"] == 0
    np.testing.assert_allclose(second["theta"], first["theta"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(second["df"], first["df"], rtol=1e-12)


@pytest.mark.parametrize("program", ["fit", "satterthwaite"])  # the second one is prefetched
def test_corrupt_entry_is_replaced(tmp_path, program):
    _child(tmp_path)
    for p in (tmp_path / "executables").glob(f"{program}-*.jaxexe"):
        p.write_bytes(b"not an executable")
    again = _child(tmp_path)
    assert again["stats"]["compiled"] == 1 and again["stats"]["loaded"] == 1  # that one rebuilt
    assert again["stats"]["prefetched"] == 1
    third = _child(tmp_path)
    assert third["stats"]["loaded"] == 2 and third["stats"]["compiled"] == 0


def test_no_cache_writes_nothing(tmp_path):
    out = _child(tmp_path, JAXLME_NO_CACHE="1")
    assert out["stats"]["saved"] == 0 and out["stats"]["loaded"] == 0
    assert not (tmp_path / "executables").exists()


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXLME_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("JAXLME_NO_CACHE", raising=False)
    compiled.clear_memory_cache()
    yield tmp_path / "executables"
    compiled.clear_memory_cache()


def _fresh(name: str) -> str:
    """A program name no other test (nor an earlier run) used: JAX's persistent cache keys on
    it, so it cannot answer, whatever ran before in this process or left files on disk."""
    return f"{name}{uuid.uuid4().hex[:10]}"


def _square(x, *, power):
    return x**power


def _square_first(xs, *, power):
    return xs[0] ** power


def test_key_separates_static_args_shapes_and_source(cache_dir, monkeypatch):
    x3, x4 = np.ones(3), np.ones(4)
    sq = _fresh("sq")
    a, _ = compiled.compile_program(sq, _square, (x3,), {"power": 2})
    b, _ = compiled.compile_program(sq, _square, (x3,), {"power": 3})
    c, _ = compiled.compile_program(sq, _square, (x4,), {"power": 2})
    assert a is not b and a is not c
    again, secs = compiled.compile_program(sq, _square, (x3,), {"power": 2})
    assert again is a and secs == 0.0
    np.testing.assert_array_equal(np.asarray(b(np.full(3, 2.0))), 8.0)
    assert len(list(cache_dir.glob(f"{sq}-*.jaxexe"))) == 3
    # a changed jaxlme never loads an executable built from other source
    monkeypatch.setattr(compiled, "_SOURCE_HASH", "0" * 64)
    compiled.clear_memory_cache()
    before = dict(compiled.STATS)
    compiled.compile_program(sq, _square, (x3,), {"power": 2})
    assert compiled.STATS["compiled"] == before["compiled"] + 1
    assert compiled.STATS["loaded"] == before["loaded"]


def test_memory_hits_follow_dtypes_structure_and_key(cache_dir):
    """A program in memory is found again only for arguments of the same shapes, dtypes and
    tree structure, the same static arguments and the same extra key."""
    sq = _fresh("sqm")
    with jax.enable_x64(True):
        a, _ = compiled.compile_program(sq, _square, (np.ones(3),), {"power": 2})
        same, secs = compiled.compile_program(sq, _square, (jnp.zeros(3),), {"power": 2})
        assert same is a and secs == 0.0  # a device array of the same shape and dtype
        f32, _ = compiled.compile_program(sq, _square, (np.ones(3, np.float32),), {"power": 2})
        keyed, _ = compiled.compile_program(sq, _square, (np.ones(3),), {"power": 2}, key=("other",))
        tree, _ = compiled.compile_program(sq, _square_first, ((np.ones(3),),), {"power": 2})
        assert len({id(a), id(f32), id(keyed), id(tree)}) == 4
        np.testing.assert_array_equal(np.asarray(f32(np.full(3, 2.0, np.float32))), 4.0)
        assert np.asarray(f32(np.ones(3, np.float32))).dtype == np.float32
        compiled.clear_memory_cache()
        again, _ = compiled.compile_program(sq, _square, (np.ones(3),), {"power": 2})
        assert again is not a  # forgotten with the memory cache (loaded from disk)
        np.testing.assert_array_equal(np.asarray(again(np.full(3, 3.0))), 9.0)


def test_disk_entry_loads_in_process_and_runs(cache_dir):
    x = np.arange(3.0)
    sq = _fresh("sq")
    compiled.compile_program(sq, _square, (x,), {"power": 2})
    compiled.clear_memory_cache()
    before = dict(compiled.STATS)
    prog, _ = compiled.compile_program(sq, _square, (x,), {"power": 2})
    assert compiled.STATS["loaded"] == before["loaded"] + 1
    np.testing.assert_array_equal(np.asarray(prog(x)), x**2)


def test_prefetch_looks_for_a_program_once_per_process(cache_dir, monkeypatch):
    """Every small fit asks to prefetch its Satterthwaite program; once looked for (found on
    disk, missing, or compiled here), asking again hashes nothing and starts nothing."""
    x = np.arange(3.0)
    sq, missing = _fresh("sqp"), _fresh("sqmissing")
    compiled.compile_program(sq, _square, (x,), {"power": 2})  # saved to disk
    compiled.clear_memory_cache()
    before = dict(compiled.STATS)
    assert compiled.prefetch(sq, (x,), {"power": 2})  # on disk: the load starts
    assert not compiled.prefetch(missing, (x,), {"power": 2})  # not on disk
    hashes = []
    real = compiled.hashlib.sha256
    with monkeypatch.context() as patch:
        patch.setattr(compiled.hashlib, "sha256", lambda *a: hashes.append(a) or real(*a))
        assert not compiled.prefetch(sq, (x,), {"power": 2}) and not compiled.prefetch(missing, (x,), {"power": 2})
    assert hashes == []
    prog, _ = compiled.compile_program(sq, _square, (x,), {"power": 2})  # the prefetched load
    assert compiled.STATS["prefetched"] == before["prefetched"] + 1
    assert compiled.STATS["loaded"] == before["loaded"] + 1 and compiled.STATS["compiled"] == before["compiled"]
    np.testing.assert_array_equal(np.asarray(prog(x)), x**2)
    compiled.clear_memory_cache()  # forgets what was looked for too
    assert compiled.prefetch(sq, (x,), {"power": 2})


def test_async_compile_runs_beside_the_caller_and_shares_the_cache(cache_dir):
    """compile_program_async compiles on a background thread (its executable is cached in
    memory and on disk like compile_program's), answers memory and disk hits, and re-raises
    a failed compile on the caller's thread."""
    x = np.arange(5.0)
    sqa = _fresh("sqa")
    before = dict(compiled.STATS)
    wait = compiled.compile_program_async(sqa, _square, (x,), {"power": 3}, threads=1)
    prog = wait()
    np.testing.assert_array_equal(np.asarray(prog(x)), x**3)
    assert compiled.STATS["compiled"] == before["compiled"] + 1 and compiled.STATS["saved"] == before["saved"] + 1
    assert len(list(cache_dir.glob(f"{sqa}-*.jaxexe"))) == 1
    assert compiled.compile_program(sqa, _square, (x,), {"power": 3})[0] is prog  # the memory entry
    assert compiled.compile_program_async(sqa, _square, (x,), {"power": 3})() is prog
    compiled.clear_memory_cache()  # as in a new process: read from disk (in the background)
    again = compiled.compile_program_async(sqa, _square, (x,), {"power": 3})()
    assert compiled.STATS["loaded"] == before["loaded"] + 1
    np.testing.assert_array_equal(np.asarray(again(x)), x**3)

    # compile_program asked for a program being compiled in the background waits for that
    # compile instead of compiling it again
    sqb = _fresh("sqb")
    before = dict(compiled.STATS)
    wait = compiled.compile_program_async(sqb, _square, (x,), {"power": 2}, threads=1)
    prog, _ = compiled.compile_program(sqb, _square, (x,), {"power": 2})
    assert compiled.STATS["compiled"] == before["compiled"] + 1
    assert wait() is prog
    np.testing.assert_array_equal(np.asarray(prog(x)), x**2)

    def unlowerable(x):
        return jnp.linalg.cholesky(x)  # (5,) is no matrix: fails while tracing, on this thread

    with pytest.raises(TypeError):
        compiled.compile_program_async("chol", unlowerable, (x,))
    job = compiled.Background(lambda: 1 / 0, "jaxlme-test")  # a failed background call ...
    with pytest.raises(ZeroDivisionError):
        job.result()  # ... raises on the thread that asks for its result


JAX_HIT = r"""
import json, os, sys
from pathlib import Path
import jax
import numpy as np
from jaxlme import compiled
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
f = lambda x: jax.numpy.sin(x) * 2.0
x = np.arange(3.0)
compiled.compile_program("hit", f, (x,))  # compiled: saved here and in JAX's cache
saved = [p for p in (Path(os.environ["JAXLME_CACHE_DIR"]) / "executables").glob("hit-*")]
for p in saved:
    p.unlink()
compiled.clear_memory_cache()
before = dict(compiled.STATS)
prog, _ = compiled.compile_program("hit", f, (x,))  # JAX's cache answers this compile
print(json.dumps(dict(first=len(saved), compiled=compiled.STATS["compiled"] - before["compiled"],
    saved=compiled.STATS["saved"] - before["saved"], files=len(list(saved[0].parent.glob("hit-*"))),
    out=np.asarray(prog(x)).tolist())))
"""


def test_executable_from_jax_cache_is_not_saved(tmp_path):
    """JAX's own cache hands back executables that do not re-serialize completely on CPU:
    a compile that JAX's persistent cache answered is not written (a real hit, in a new
    process with JAX's cache in a fresh folder)."""
    env = dict(os.environ, JAXLME_CACHE_DIR=str(tmp_path / "jaxlme"))
    env.pop("JAXLME_NO_CACHE", None)
    cmd = [sys.executable, "-c", JAX_HIT, str(tmp_path / "jax")]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["first"] == 1  # the first compile was saved
    assert got["compiled"] == 1 and got["saved"] == 0 and got["files"] == 0  # the hit was not
    np.testing.assert_allclose(got["out"], 2 * np.sin(np.arange(3.0)))


def test_cache_is_versioned_and_never_unpickles_a_foreign_file(cache_dir, tmp_path):
    """A file without this format's header is not unpickled (a pickle runs code when
    loaded): it is replaced by a fresh compile."""
    x = np.arange(3.0)
    sq = _fresh("sq")
    compiled.compile_program(sq, _square, (x,), {"power": 2})
    (path,) = cache_dir.glob(f"{sq}-*.jaxexe")
    assert path.read_bytes().startswith(compiled.MAGIC)
    marker = tmp_path / "pwned"
    path.write_bytes(pickle.dumps(_Trap(str(marker))))  # a valid pickle, no header
    compiled.clear_memory_cache()
    before = dict(compiled.STATS)
    prog, _ = compiled.compile_program(sq, _square, (x,), {"power": 2})
    np.testing.assert_array_equal(np.asarray(prog(x)), x**2)
    assert not marker.exists()
    assert compiled.STATS["compiled"] == before["compiled"] + 1 and compiled.STATS["loaded"] == before["loaded"]
    assert path.read_bytes().startswith(compiled.MAGIC)  # replaced


class _Trap:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX ownership")
def test_cache_in_a_folder_others_can_write_is_neither_read_nor_written(cache_dir):
    x = np.arange(3.0)
    sq = _fresh("sq")
    compiled.compile_program(sq, _square, (x,), {"power": 2})
    (path,) = cache_dir.glob(f"{sq}-*.jaxexe")
    os.chmod(cache_dir, 0o777)  # e.g. $JAXLME_CACHE_DIR pointing at a shared folder
    compiled.clear_memory_cache()
    before = dict(compiled.STATS)
    compiled.compile_program(sq, _square, (x,), {"power": 3})
    compiled.compile_program(sq, _square, (x,), {"power": 2})
    assert compiled.STATS["loaded"] == before["loaded"] and compiled.STATS["saved"] == before["saved"]
    assert compiled.STATS["compiled"] == before["compiled"] + 2
    os.chmod(cache_dir, 0o700)
    os.chmod(path, 0o666)  # a file others can write is not loaded either (and is replaced)
    compiled.clear_memory_cache()
    before = dict(compiled.STATS)
    compiled.compile_program(sq, _square, (x,), {"power": 2})
    assert compiled.STATS["loaded"] == before["loaded"] and compiled.STATS["compiled"] == before["compiled"] + 1
    assert os.stat(path).st_mode & 0o077 == 0


def test_loaded_program_that_fails_is_recompiled(tmp_path):
    path = tmp_path / "x.jaxexe"
    path.write_bytes(b"entry")

    def broken(*args):
        raise RuntimeError("Function bitcast_concatenate_fusion not found")

    rebuilt = []

    def recompile():
        rebuilt.append(1)
        return jax.jit(lambda x: x * 2.0)

    prog = compiled.FromDisk(broken, recompile, path)
    np.testing.assert_array_equal(np.asarray(prog(jnp.ones(2))), 2.0)
    assert not path.exists() and rebuilt == [1]  # the bad entry is dropped, the program rebuilt
    np.testing.assert_array_equal(np.asarray(prog(jnp.ones(2))), 2.0)


def test_fast_options_only_for_small_models():
    import jaxlme

    small = jaxlme.LMM("Reaction ~ Days + (Days | Subject)", jaxlme.datasets.load("sleepstudy")).layout
    assert is_small(small)
    assert not is_small(SimpleNamespace(size_rest=1145, n=73421))  # InstEval: runtime matters
    assert not is_small(SimpleNamespace(size_rest=10, n=10**6))
    assert compiled.fast_compile_options(True) == {
        "xla_cpu_use_fusion_emitters": False,
        "xla_backend_optimization_level": 1,
        "xla_cpu_parallel_codegen_split_count": max(4, os.cpu_count() or 1),
        "xla_cpu_prefer_vector_width": 128,
    }
    assert compiled.fast_compile_options(False) == {}
    # jaxlib 0.9.2 and 0.10.0 crash with the option (see compiled.py): only later releases get it
    release = tuple(int(x) for x in re.match(r"\d+(\.\d+)*", jaxlib.__version__).group(0).split("."))
    native = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"} if release >= (0, 10, 1) else {}
    assert compiled.fast_compile_options(False, native_reductions=True) == native


def test_large_program_options_keep_reductions_out_of_ynnpack():
    """The option is one this XLA accepts, and it moves reductions (only) to XLA's emitters."""

    def f(x, y):
        return x @ y, jnp.sum(x * y)

    with jax.enable_x64(True):
        x = jnp.ones((300, 300))
        default = jax.jit(f).lower(x, x).compile().as_text()
        large = jax.jit(f).lower(x, x).compile(compiler_options=compiled.fast_compile_options(False, True)).as_text()
    if "__ynn_fusion" not in default:  # jaxlib < 0.10's CPU backend has no YNNPACK fusions
        pytest.skip("this XLA does not use YNNPACK: the option has nothing to move")
    assert default.count("__ynn_fusion") == 2  # the product and the reduction
    assert large.count("__ynn_fusion") == 1  # the product only


def test_unwritable_cache_still_compiles(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory would go")
    monkeypatch.setenv("JAXLME_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.delenv("JAXLME_NO_CACHE", raising=False)
    compiled.clear_memory_cache()
    before = dict(compiled.STATS)
    prog, _ = compiled.compile_program(_fresh("sq"), _square, (np.arange(3.0),), {"power": 2})
    np.testing.assert_array_equal(np.asarray(prog(np.arange(3.0))), [0.0, 1.0, 4.0])
    assert compiled.STATS["saved"] == before["saved"] and compiled.STATS["compiled"] == before["compiled"] + 1


SHARED_CHILD = r"""
import json, warnings
import numpy as np
import jaxlme
import jaxlme.model
from jaxlme import compiled
from jaxlme.structure import unpadded
warnings.simplefilter("ignore")
d = jaxlme.datasets.load("sleepstudy")
d["x"] = np.random.default_rng(0).normal(size=len(d))
fits = [  # n, the criterion, p and the term's form differ; one shape bucket
    ("Reaction ~ Days + (Days | Subject)", d, True),
    ("Reaction ~ Days + (Days | Subject)", d, False),
    ("Reaction ~ Days + (Days | Subject)", d[d.Days < 8], True),
    ("Reaction ~ 1 + (1 | Subject)", d, True),
    ("Reaction ~ Days + x + (1 | Subject)", d, False),
]
out = []
for f, data, reml in fits:
    res = jaxlme.LMM(f, data).fit(reml=reml)
    out.append(dict(theta=res.theta.tolist(), objective=res.objective, compile=res.opt.compile_seconds,
                    converged=bool(res.opt.converged), beta=res.fixef.tolist()))
shared = dict(compiled.STATS)
# the same fits without padding: every shape compiles its own program
jaxlme.model.pad_structure = unpadded
alone = [jaxlme.LMM(f, data).fit(reml=reml) for f, data, reml in fits]
print(json.dumps(dict(fits=out, shared=shared, alone=[dict(theta=r.theta.tolist(), objective=r.objective,
    beta=r.fixef.tolist()) for r in alone], after=dict(compiled.STATS))))
"""


def test_small_models_of_one_shape_bucket_share_one_fit_program(tmp_path):
    """Fits that differ in n, in the criterion, in 1-4 fixed effects and in the form of a
    single random-effects term run one compiled fit program, and give what each model's
    own (unpadded) program gives."""
    e = dict(os.environ, JAXLME_CACHE_DIR=str(tmp_path))
    e.pop("JAXLME_NO_CACHE", None)
    out = subprocess.run([sys.executable, "-c", SHARED_CHILD], env=e, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["shared"]["compiled"] == 1
    # unpadded, each (p, columns) shape compiles its own: (2, 2), (1, 1) and (3, 1)
    assert got["after"]["compiled"] == 1 + 3
    assert got["fits"][0]["compile"] > 0.05 and all(f["compile"] < 0.01 for f in got["fits"][1:])
    assert got["fits"][0]["objective"] == pytest.approx(1743.628, abs=1e-3)  # lme4's REML criterion
    assert got["fits"][1]["objective"] == pytest.approx(1751.939, abs=1e-3)  # lme4's ML deviance
    for padded, alone in zip(got["fits"], got["alone"]):
        assert padded["converged"]
        assert padded["objective"] == pytest.approx(alone["objective"], abs=1e-7)
        np.testing.assert_allclose(padded["theta"], alone["theta"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(padded["beta"], alone["beta"], rtol=1e-6)


LOOP_CHILD = r"""
import json, os, sys, warnings
from pathlib import Path
import numpy as np
import jaxlme
import jaxlme.inference, jaxlme.model
from jaxlme import compiled
from jaxlme.structure import unpadded
warnings.simplefilter("ignore")
if sys.argv[1] == "unpadded":
    jaxlme.model.pad_structure = jaxlme.inference.pad_structure = unpadded
rng = np.random.default_rng(3)
out = []
# statsmodels-style fits of data sets with 70-100 groups (one level bucket), 1-4 fixed and
# 1-2 random effects, free and diagonal covariances, REML and ML; no slope variance, so
# some fits end on the boundary and are checked there (the criterion program)
for k, (n_g, p, re, diag) in enumerate([(70, 2, 1, False), (80, 3, 2, False), (90, 1, 2, True), (100, 4, 2, False)]):
    g = np.repeat(np.arange(n_g), 4)
    n = len(g)
    X = np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))])
    Z = np.column_stack([np.ones(n), rng.normal(size=n)])[:, :re]
    y = X.sum(1) + rng.normal(size=n_g)[g] + rng.normal(size=n)
    free = jaxlme.MixedLMParams.from_components(np.ones(p), np.eye(re)) if diag else None
    res = jaxlme.MixedLM(y, X, g, exog_re=Z).fit(reml=k % 2 == 0, free=free)
    out.append(dict(params=np.asarray(res.params).tolist(), bse=np.asarray(res.bse).tolist(), llf=float(res.llf)))
names = sorted(p.name.split("-")[0] for p in (Path(os.environ["JAXLME_CACHE_DIR"]) / "executables").glob("*.jaxexe"))
print(json.dumps(dict(fits=out, compiled=compiled.STATS["compiled"], names=names)))
"""


def test_statsmodels_loop_of_small_models_compiles_three_programs(tmp_path):
    """A loop of small statsmodels-style fits over data sets of different sizes compiles one
    fit program, one program for their standard errors and one criterion (for the boundary
    checks), and gives what each model's own, unpadded programs give."""
    runs = {}
    for mode in ("padded", "unpadded"):
        e = dict(os.environ, JAXLME_CACHE_DIR=str(tmp_path / mode))
        e.pop("JAXLME_NO_CACHE", None)
        out = subprocess.run(
            [sys.executable, "-c", LOOP_CHILD, mode], env=e, capture_output=True, text=True, timeout=600
        )
        assert out.returncode == 0, out.stderr[-3000:]
        runs[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    assert runs["padded"]["names"] == ["criterion", "fit", "information"]
    assert runs["padded"]["compiled"] == 3
    assert runs["unpadded"]["compiled"] > 3 * 3  # per shape: fit, information, criterion
    for padded, alone in zip(runs["padded"]["fits"], runs["unpadded"]["fits"]):
        assert padded["llf"] == pytest.approx(alone["llf"], abs=1e-6)
        np.testing.assert_allclose(padded["params"], alone["params"], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(padded["bse"], alone["bse"], rtol=1e-3, atol=1e-6, equal_nan=True)
