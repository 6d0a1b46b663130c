"""Configuration: float64 inside jaxlme only, where the compile caches live, and opt-in gc.freeze.

jaxlme computes in float64 without flipping JAX's global ``jax_enable_x64`` flag: every
public entry point runs under ``jax.enable_x64(True)`` (a context manager), so the user's
other JAX code keeps its own default dtype.  To use jaxlme's objective inside your own
JAX code, wrap that code in ``with jax.enable_x64(True):`` (or enable x64 globally).

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

import functools
import gc
import os
import sys
from pathlib import Path

import jax

__all__ = [
    "x64",
    "cache_root",
    "disk_cache_bytes",
    "env_number",
    "freeze_imported_objects",
]


def x64(fn):
    """Run ``fn`` with float64 enabled for JAX (locally, not globally)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapper


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
