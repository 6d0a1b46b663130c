"""Configuration: float64 and one BLAS thread inside jaxlme only, where the compile caches
live, and opt-in gc.freeze.

jaxlme computes in float64 without flipping JAX's global ``jax_enable_x64`` flag: every
public entry point runs under ``jax.enable_x64(True)`` (a context manager), so the user's
other JAX code keeps its own default dtype.  To use jaxlme's objective inside your own
JAX code, wrap that code in ``with jax.enable_x64(True):`` (or enable x64 globally).

On the CPU, the dense factors of jaxlme's programs go through LAPACK (JAX calls SciPy's
OpenBLAS), and they are small: a few hundred rows at most on most models.  OpenBLAS's
worker threads spin for a while after each call, so on a machine whose cores are not all
free a fit spends its time waiting for them; on one thread the same fits are faster even
on idle cores (``benchmarks/RESULTS.md``, "One BLAS thread").  So every public entry point
also runs with the BLAS libraries limited to ``$JAXLME_BLAS_THREADS`` threads (default 1;
0 leaves them as they are), through threadpoolctl, and restores the previous limits when
it returns.  The limit is process-wide while it lasts: NumPy calls made meanwhile from
other threads also run on that many threads.

Compiled XLA programs are cached on disk (``~/.cache/jaxlme/xla`` or
``$JAXLME_CACHE_DIR``) so a new process skips recompilation, and jaxlme's own programs are
also kept as ready-to-run executables in its ``executables`` subfolder (see
``jaxlme.compiled``), so a new process skips tracing them too.  Opt out of both with
``JAXLME_NO_CACHE=1``; a JAX cache directory you configured yourself is left untouched
(jaxlme's executables then go to the default location).  The caches are switched on by
:func:`jaxlme.compiled.enable_compilation_cache`.

``JAXLME_GC_FREEZE=1`` (opt-in) makes ``import jaxlme`` move the objects alive at that
point (mostly the modules of JAX, NumPy and pandas, which live until exit)
out of the cyclic garbage collector's scans with ``gc.freeze()``: later collections, and
the interpreter's last one at exit, skip them (see ``benchmarks/COMPILE_CACHE.md`` for the
measured effect).  It is a process-wide change, so importing a library does not do it
unasked; it is never done in interactive sessions (IPython, Jupyter, ``python -i``).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import sys
from pathlib import Path

import jax
import threadpoolctl

__all__ = [
    "x64",
    "blas_limit",
    "cache_root",
    "disk_cache_bytes",
    "env_number",
    "freeze_imported_objects",
]


def x64(fn):
    """Run ``fn`` with float64 enabled for JAX (locally, not globally) and the BLAS
    libraries on :func:`blas_limit`'s threads."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.enable_x64(True), blas_limit():
            return fn(*args, **kwargs)

    return wrapper


_BLAS: dict = {}  # "controller": the threadpoolctl controller once built (None: leave BLAS alone)


def _blas_controller() -> threadpoolctl.ThreadpoolController | None:
    """The BLAS libraries this process has loaded, including the one JAX's CPU LAPACK calls:
    JAX takes its LAPACK from ``scipy.linalg.cython_lapack``, whose import loads SciPy's
    BLAS (JAX itself imports it lazily, when a program first uses LAPACK).  None off the
    CPU, where no program calls LAPACK."""
    if "controller" not in _BLAS:
        controller = None
        if jax.default_backend() == "cpu":
            import scipy.linalg.cython_lapack  # noqa: F401  (loads the library before the scan)

            controller = threadpoolctl.ThreadpoolController()
        _BLAS["controller"] = controller
    return _BLAS["controller"]


@contextlib.contextmanager
def blas_limit():
    """Limit the BLAS libraries to ``$JAXLME_BLAS_THREADS`` threads (default 1; 0: leave
    them alone) for the duration of the ``with`` block, then restore their previous limits
    (see the module docstring for why)."""
    threads = int(env_number("JAXLME_BLAS_THREADS", 1))
    controller = _blas_controller() if threads else None
    if controller is None:
        yield
        return
    with controller.limit(limits=threads, user_api="blas"):
        yield


def env_number(name: str, default: float) -> float:
    """A non-negative number from the environment (``default`` when unset or malformed)."""
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value >= 0 else default


def disk_cache_bytes() -> int:
    """Most bytes each on-disk cache keeps (``$JAXLME_DISK_CACHE_MB``, default 1024 MB):
    jaxlme's executables, and JAX's persistent cache when jaxlme configured it."""
    return int(env_number("JAXLME_DISK_CACHE_MB", 1024) * 2**20)


def cache_root() -> str | None:
    """jaxlme's cache directory (``$JAXLME_CACHE_DIR`` or ``~/.cache/jaxlme/xla``), or None
    when caching is switched off with ``JAXLME_NO_CACHE``."""
    if os.environ.get("JAXLME_NO_CACHE", "").strip() not in ("", "0"):
        return None
    return os.environ.get("JAXLME_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"), "jaxlme", "xla"
    )


def freeze_imported_objects() -> bool:
    """``gc.freeze()`` once jaxlme and its dependencies are imported, when the user opted in
    with ``JAXLME_GC_FREEZE=1`` and not in an interactive session (see the module
    docstring).

    Returns:
        Whether it froze.
    """
    if os.environ.get("JAXLME_GC_FREEZE", "").strip() != "1":
        return False
    if hasattr(sys, "ps1") or sys.flags.interactive or "IPython" in sys.modules:
        return False
    gc.freeze()
    return True
