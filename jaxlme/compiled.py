"""Ahead-of-time compilation of jaxlme's programs, with an on-disk cache of executables.

JAX's persistent compilation cache skips XLA's compile in a new process, but every process
still traces and lowers each program first (for a small model, longer than the fit
itself).  :func:`compile_program` keys a compiled program on everything it
depends on -- the program's name and static arguments, the argument shapes and dtypes,
the compiler options, the JAX/jaxlib versions, the backend and the number of devices, and a hash of
jaxlme's own source -- and keeps the executable in memory and, serialized, on disk
(``<cache>/executables``), so a process that meets a known shape loads it and runs.

Executables are deserialized on a background thread (XLA releases the GIL), so loading
overlaps Python work; :func:`prefetch` starts a load the caller will need soon (the fit
prefetches the Satterthwaite program a summary uses).

Small programs (where compile time dwarfs run time) are compiled with cheaper CPU code
generation: about half the compile time, same run time.

Opt out of the disk cache with ``JAXLME_NO_CACHE=1`` (as for the XLA cache).

The executables are pickles (JAX's serialization format), and unpickling runs code, so a
file is only read when it starts with this format's header and both it and its folder
belong to the current user and are writable by nobody else; a folder that fails the check
(e.g. ``$JAXLME_CACHE_DIR`` pointing at a shared directory) is neither read nor written,
and JAX's persistent cache is all that remains.  On systems without POSIX ownership the
executable cache is off.  The measured gain over JAX's cache alone is in
``benchmarks/COMPILE_CACHE.md``.

Both caches are bounded, least recently used first out: at most ``JAXLME_MEMORY_CACHE``
programs in memory (default 32) and ``JAXLME_DISK_CACHE_MB`` megabytes of executables on
disk (default 1024; JAX's own cache in the same directory gets the same bound).
:func:`clear_cache` empties them.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from ._config import cache_root, disk_cache_bytes, env_number

__all__ = [
    "compile_program",
    "compile_program_async",
    "prefetch",
    "fast_compile_options",
    "clear_memory_cache",
    "clear_cache",
    "enable_compilation_cache",
    "LRUCache",
    "memory_cache_size",
    "disk_cache_bytes",
    "prune_disk_cache",
    "STATS",
]


def memory_cache_size() -> int:
    """Most compiled programs kept in memory (``$JAXLME_MEMORY_CACHE``, default 32).

    Each distinct model shape compiles its own programs; without a bound a long session
    over many data sizes would keep every executable alive.
    """
    return max(1, int(env_number("JAXLME_MEMORY_CACHE", 32)))


class LRUCache(OrderedDict):
    """Compiled programs by key, the least recently used dropped beyond
    :func:`memory_cache_size`."""

    def get(self, key, default=None):
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        limit = memory_cache_size()
        while len(self) > limit:
            self.popitem(last=False)

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self.get(key)


MEMORY: LRUCache = LRUCache()
_PENDING: dict[str, Any] = {}  # digest -> _Loading started by prefetch(), or _Compiling
_DIGESTS: dict[tuple, str] = {}  # _memory_key -> digest of the programs asked for in this process
_MAX_DIGESTS = 4096  # then forgotten (each costs a hash on its next call)
_PREFETCHED: set[tuple] = set()  # _memory_key of the programs prefetch looked for (at most _MAX_DIGESTS)
STATS = {"compiled": 0, "loaded": 0, "saved": 0, "prefetched": 0}  # this process's disk-cache traffic
_SOURCE_HASH: str | None = None
_LAPACK_READY = False
# The on-disk format: bumped whenever the file layout changes; part of every key and the
# first bytes of every file, so no file of another format is ever unpickled.
_FORMAT = 3
MAGIC = b"jaxlme-executable-v%d\n" % _FORMAT

# XLA CPU options that halve compile time of jaxlme's small programs without slowing them:
# the older loop emitters instead of the fusion emitters, and LLVM at -O1.
# LLVM works on the program split into this many parts on a thread pool: fewer parts than
# XLA's default save per-part overhead.
_FAST_CPU = {
    "xla_cpu_use_fusion_emitters": False,
    "xla_backend_optimization_level": 1,
    "xla_cpu_parallel_codegen_split_count": max(4, os.cpu_count() or 1),
    # 128-bit vectors: less instruction selection work, no slower on these small arrays
    "xla_cpu_prefer_vector_width": 128,
}
# Programs with the analytic gradient's pass over the Schur pairs keep reductions with
# XLA's own emitters rather than YNNPACK (matrix products still go to YNNPACK): a large
# gather-multiply-reduce runs several times faster outside a YNN reduce fusion.  Other
# large programs keep XLA's defaults (dense-Schur fits are slower and use more memory with it).
_NATIVE_REDUCTIONS_CPU = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}


def _release(version: str) -> tuple[int, ...]:
    """The leading numeric fields of a version string ("0.10.1", "0.9.0.1", "0.11.0.dev1")."""
    match = re.match(r"\d+(\.\d+)*", version)
    return tuple(int(x) for x in match.group(0).split(".")) if match else ()


# Before jaxlib 0.10.1 the CPU backend uses no YNNPACK fusions by default, so the option has
# nothing to move there; setting it anyway turns YNNPACK on for products, which crashes the
# process (SIGSEGV) in the analytic-gradient fit of a large crossed model on jaxlib 0.9.2
# and 0.10.0.  Those releases keep XLA's defaults.
_NATIVE_REDUCTIONS_SAFE = _release(jaxlib.__version__) >= (0, 10, 1)


def fast_compile_options(small: bool, native_reductions: bool = False) -> dict[str, Any]:
    """Compiler options for a program on this backend (CPU: cheaper code generation for
    small programs; XLA's own reductions for programs that gather-reduce over pairs)."""
    if jax.default_backend() != "cpu":
        return {}
    if small:
        return dict(_FAST_CPU)
    return dict(_NATIVE_REDUCTIONS_CPU) if native_reductions and _NATIVE_REDUCTIONS_SAFE else {}


def clear_memory_cache() -> None:
    """Forget the in-memory compiled programs (the disk cache stays)."""
    for loading in _PENDING.values():
        loading.join()
    MEMORY.clear()
    _PENDING.clear()
    _DIGESTS.clear()
    _PREFETCHED.clear()


def prune_disk_cache(folder: Path | None = None, max_bytes: int | None = None, pattern: str = "*.jaxexe") -> int:
    """Delete the least recently used cache files until ``folder`` holds at most
    ``max_bytes`` in files matching ``pattern`` (defaults: jaxlme's executables folder and
    :func:`disk_cache_bytes`).  JAX's persistent cache in jaxlme's cache directory is
    pruned the same way (``pattern="*"``) when jaxlme sets it up.

    Args:
        folder: the folder; None for jaxlme's executables folder.
        max_bytes: the bound; None for :func:`disk_cache_bytes`.
        pattern: which files (a glob pattern, not recursive) count and may be deleted.

    Returns:
        The number of files deleted.
    """
    folder = _disk_dir() if folder is None else Path(folder)
    limit = disk_cache_bytes() if max_bytes is None else int(max_bytes)
    if folder is None or not folder.is_dir():
        return 0
    entries = []
    for path in folder.glob(pattern):
        try:
            if not path.is_file():
                continue
            st = path.stat()
        except OSError:  # removed by another process meanwhile
            continue
        entries.append((st.st_mtime, st.st_size, path))
    total = sum(size for _, size, _ in entries)
    removed = 0
    for _, size, path in sorted(entries, key=lambda e: e[0]):
        if total <= limit:
            break
        path.unlink(missing_ok=True)
        total -= size
        removed += 1
    return removed


_cache_done = False


def enable_compilation_cache() -> str | None:
    """Point JAX's persistent compilation cache at jaxlme's cache directory (once; opt out
    with ``JAXLME_NO_CACHE=1``; a directory the user configured is kept).

    Returns:
        The directory JAX caches in, or None when caching is off or already set up.
    """
    global _cache_done
    if _cache_done:
        return None
    _cache_done = True
    base = cache_root()
    if base is None:
        return None
    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    try:
        os.makedirs(base, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", base)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    prune_disk_cache(Path(base), pattern="*")  # JAX's files here get the same LRU bound
    return base


def clear_cache(disk: bool = False) -> None:
    """Forget compiled programs: those in memory, and with ``disk=True`` jaxlme's cache
    directory too (its executables and JAX's cache files there; a JAX cache directory you
    configured yourself is left alone).

    Args:
        disk: also delete the on-disk caches under ``$JAXLME_CACHE_DIR`` (or
            ``~/.cache/jaxlme/xla``).
    """
    clear_memory_cache()
    if not disk:
        return
    root = cache_root()
    if root is None or not os.path.isdir(root):
        return
    folder = _disk_dir()
    if folder is not None and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
    for entry in Path(root).iterdir():  # JAX's persistent cache files beside it
        if entry.is_file():
            entry.unlink(missing_ok=True)


def _source_hash() -> str:
    """Hash of jaxlme's source files: a changed package never loads a stale executable."""
    global _SOURCE_HASH
    if _SOURCE_HASH is None:
        h = hashlib.sha256()
        for path in sorted(Path(__file__).parent.glob("*.py")):
            h.update(path.name.encode())
            h.update(path.read_bytes())
        _SOURCE_HASH = h.hexdigest()
    return _SOURCE_HASH


def _memory_key(name: str, args: tuple, static: dict, extra: tuple, small: bool, native_reductions: bool) -> tuple:
    """What a program depends on within this process: its name, the arguments' shapes,
    dtypes and tree structure, the static arguments, the extra key and the compile flags
    (the source, versions and devices do not change here).  Cheap to build: a program
    already in memory is found by it without hashing, and every call of a fitted model's
    programs goes through here."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    avals = tuple((np.shape(x), x.dtype if hasattr(x, "dtype") else type(x)) for x in leaves)
    statics = tuple(sorted((k, repr(v)) for k, v in static.items()))
    return (name, treedef, avals, statics, repr(extra), small, native_reductions, jax.config.jax_enable_x64)


def _key(fast: tuple, options: dict) -> str:
    """The program's digest across processes: :func:`_memory_key` with the compiler
    options, versions, devices, cache format and jaxlme's source."""
    dev = jax.devices()[0]
    parts = (
        fast,
        sorted(options.items()),
        jax.__version__,
        jaxlib.__version__,
        dev.platform,
        getattr(dev.client, "platform_version", ""),
        dev.device_kind,
        jax.device_count(),  # an executable for one device count aborts the process on another (jax 0.8)
        _FORMAT,
        _source_hash(),
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:40]


def _disk_dir() -> Path | None:
    root = cache_root()
    return None if root is None else Path(root) / "executables"


def _private(path: Path) -> bool:
    """Whether ``path`` belongs to this user and nobody else can write it: the condition
    for unpickling a file there (a file anyone else can write could run their code)."""
    if not hasattr(os, "getuid"):
        return False
    try:
        st = path.stat()
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def _usable_dir(folder: Path | None) -> Path | None:
    """``folder`` if executables may be read and written there (created private when
    missing), else None: the executable cache is then off and JAX's cache remains."""
    if folder is None:
        return None
    if not folder.exists():
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            return None
    return folder if _private(folder) else None


def _ready_lapack() -> None:
    """A deserialized CPU executable calls LAPACK, whose entry points JAX binds when it
    first *lowers* a LAPACK op.  jaxlib's ``prepare_lapack_call`` does just the binding
    (cheaper than lowering a tiny Cholesky, which also starts up MLIR); the lowering
    stays as the fallback for a jaxlib without it."""
    global _LAPACK_READY
    if not _LAPACK_READY:
        try:
            from jaxlib import lapack

            lapack.prepare_lapack_call("potrf_ffi", np.dtype(np.float64))
        except Exception:
            jax.jit(jnp.linalg.cholesky).lower(jax.ShapeDtypeStruct((2, 2), jnp.float32))
        _LAPACK_READY = True


def _deserialize(path: Path):
    from jax.experimental import serialize_executable

    if not _private(path):
        raise PermissionError(f"{path}: not private to this user; not loaded")
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise ValueError(f"{path}: not a jaxlme executable of format {_FORMAT}")
    payload, in_tree, out_tree, device_ids = pickle.loads(data[len(MAGIC) :])
    by_id = {d.id: d for d in jax.devices()}
    if not all(i in by_id for i in device_ids):
        raise ValueError(f"{path}: compiled for devices {device_ids}, not all present")
    try:
        os.utime(path)  # recently used: the disk bound drops the oldest modification times first
    except OSError:
        pass
    # The devices it was compiled for: by default JAX would load it onto every device, and
    # a one-device program loaded that way aborts the process when called (jax 0.8).
    devices = [by_id[i] for i in device_ids] or None
    return serialize_executable.deserialize_and_load(payload, in_tree, out_tree, execution_devices=devices)


class Background:
    """A call running on a background thread, its result (or exception) kept for ``result``.
    XLA compiles and deserializes with the GIL released, so such work overlaps Python on
    the caller's thread."""

    def __init__(self, fn, name: str):
        self._fn, self._out, self._error = fn, None, None
        self._thread = threading.Thread(target=self._run, name=name)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._out = self._fn()
        except BaseException as exc:  # re-raised on the caller's thread
            self._error = exc

    def join(self) -> None:
        self._thread.join()

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._out


class _Loading(Background):
    """An executable being read from disk on a background thread: the load overlaps Python
    work on this thread (binding LAPACK, the fit itself, building results)."""

    def __init__(self, path: Path):
        self.path = path
        super().__init__(lambda: _deserialize(path), f"jaxlme-load-{path.stem[:24]}")

    def result(self):
        _ready_lapack()
        return super().result()


class _Compiling(Background):
    """A fresh compile started by :func:`compile_program_async`: a :func:`compile_program`
    call for the same program waits for it instead of compiling it a second time."""


def _device_ids(compiled) -> list[int]:
    """Ids of the devices a compiled program runs on, in its device-assignment order."""
    ids: list[int] = []
    for sharding in jax.tree_util.tree_leaves(compiled.input_shardings):
        assignment = getattr(sharding, "_device_assignment", None) or sorted(sharding.device_set, key=lambda d: d.id)
        for d in assignment:
            if d.id not in ids:
                ids.append(d.id)
    return ids


def _save(path: Path, compiled) -> None:
    from jax.experimental import serialize_executable

    data = MAGIC + pickle.dumps((*serialize_executable.serialize(compiled), _device_ids(compiled)))
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")  # created 0o600
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)  # atomic: concurrent processes never read half a file
    prune_disk_cache(path.parent)


_HITS = threading.local()  # JAX persistent-cache hits seen by compiles on this thread


def _count_cache_hits(event: str, **_: Any) -> None:
    # JAX records the event on the thread that compiles: counting per thread makes
    # "was this compile a JAX cache hit?" independent of compiles on other threads.
    if event == "/jax/compilation_cache/cache_hits":
        _HITS.count = getattr(_HITS, "count", 0) + 1


jax.monitoring.register_event_listener(_count_cache_hits)


class FromDisk:
    """A program loaded from the disk cache, checked on its first call: should it fail to
    run, it is recompiled (and the entry dropped) instead of failing the user's call."""

    def __init__(self, compiled, recompile, path: Path):
        self._compiled, self._recompile, self._path = compiled, recompile, path
        self._checked = False

    def __call__(self, *args):
        if self._checked:
            return self._compiled(*args)
        try:
            out = jax.block_until_ready(self._compiled(*args))
        except Exception:
            self._path.unlink(missing_ok=True)
            self._compiled = self._recompile()  # and saved again, when it can be
            out = self._compiled(*args)
        self._checked, self._recompile = True, None  # let go of the arguments it closed over
        return out


def _locate(name, args, static, key, small, native_reductions, disk, fast=None) -> tuple[str, dict, Path | None]:
    """The program's cache key, compiler options and disk-cache file (None: no disk cache);
    ``fast``: its :func:`_memory_key` when already built."""
    options = fast_compile_options(small, native_reductions)
    if fast is None:
        fast = _memory_key(name, args, static, key, small, native_reductions)
    digest = _key(fast, options)
    folder = _usable_dir(_disk_dir()) if disk else None
    return digest, options, None if folder is None else folder / f"{name}-{digest}.jaxexe"


def prefetch(
    name: str,
    args: tuple,
    static: dict | None = None,
    *,
    key: tuple = (),
    small: bool = False,
    native_reductions: bool = False,
) -> bool:
    """Start reading a program that :func:`compile_program` will be asked for soon from the
    disk cache, in the background (e.g. the Satterthwaite program while the fit runs).
    Returns whether a load started; nothing happens when it is in memory or not on disk."""
    fast = _memory_key(name, args, static or {}, key, small, native_reductions)
    if fast in _PREFETCHED or _DIGESTS.get(fast) in MEMORY:  # looked for once: no digest to hash again
        return False
    if len(_PREFETCHED) >= _MAX_DIGESTS:
        _PREFETCHED.clear()
    _PREFETCHED.add(fast)
    digest, _, path = _locate(name, args, static or {}, key, small, native_reductions, True, fast)
    if digest in MEMORY or digest in _PENDING or path is None or not path.exists():
        return False
    _PENDING[digest] = _Loading(path)
    return True


def _lower(name: str, fn, args: tuple, static: dict, salt: str = ""):
    """Trace and lower ``fn(*args, **static)`` under a name that carries the source hash, so
    JAX's own persistent cache misses whenever this cache does after a jaxlme change and the
    fresh compile can be saved (a salt does the same when a bad entry is being replaced)."""

    def program(*a, **kw):
        return fn(*a, **kw)

    program.__name__ = program.__qualname__ = f"jaxlme_{name}_{_source_hash()[:12]}{salt}"
    return jax.jit(program, static_argnames=tuple(static)).lower(*args, **static)


def _compile_fresh(lowered, options: dict, path: Path | None):
    """XLA's compile of a lowered program, saved to ``path`` when given and when JAX's own
    cache did not answer this compile."""
    hits = getattr(_HITS, "count", 0)
    out = lowered.compile(compiler_options=options or None)
    STATS["compiled"] += 1
    # An executable JAX itself read from its persistent cache does not serialize
    # completely on CPU (running the reloaded copy fails): save fresh compiles only.
    if path is not None and getattr(_HITS, "count", 0) == hits:
        try:
            _save(path, out)
            STATS["saved"] += 1
        except Exception:  # e.g. a read-only cache or a program that cannot be serialized
            pass
    return out


def compile_program_async(
    name: str,
    fn,
    args: tuple,
    static: dict | None = None,
    *,
    key: tuple = (),
    small: bool = False,
    native_reductions: bool = False,
    disk: bool = True,
    threads: int | None = None,
) -> Callable[[], Any]:
    """:func:`compile_program` with XLA's part on a background thread: traces and lowers
    here, then returns at once a function that waits for and returns the compiled program,
    so the caller can trace another program meanwhile.  ``threads=1`` keeps XLA's code
    generation to one thread (on two cores it then runs beside the caller's tracing
    instead of competing with it).  Memory and disk hits behave as in
    :func:`compile_program` (a disk load starts in the background); a
    :func:`compile_program` call for the same program meanwhile waits for this compile."""
    static = static or {}
    digest, options, path = _locate(name, args, static, key, small, native_reductions, disk)

    def blocking():
        return compile_program(
            name, fn, args, static, key=key, small=small, native_reductions=native_reductions, disk=disk
        )[0]

    if (
        digest in MEMORY
        or digest in _PENDING
        or (disk and prefetch(name, args, static, key=key, small=small, native_reductions=native_reductions))
    ):
        return blocking
    if threads is not None and jax.default_backend() == "cpu":
        options = dict(options, xla_cpu_parallel_codegen_split_count=int(threads))
    lowered = _lower(name, fn, args, static)
    job = _PENDING[digest] = _Compiling(lambda: _compile_fresh(lowered, options, path), f"jaxlme-compile-{name}")

    def result():
        if _PENDING.get(digest) is job:
            del _PENDING[digest]
        return MEMORY.setdefault(digest, job.result())

    return result


def compile_program(
    name: str,
    fn,
    args: tuple,
    static: dict | None = None,
    *,
    key: tuple = (),
    small: bool = False,
    native_reductions: bool = False,
    disk: bool = True,
) -> tuple[Any, float]:
    """Compiled ``fn(*args, **static)`` (``static``: hashable, static keyword arguments;
    ``key``: whatever else ``fn`` depends on, e.g. values it closes over, by ``repr``).

    Returns ``(compiled, seconds)``, seconds spent obtaining it (0.0 from memory).  The
    result is cached in memory and, when ``disk`` and the cache is enabled, on disk;
    an unreadable or incompatible disk entry is ignored and replaced.
    """
    static = static or {}
    fast = _memory_key(name, args, static, key, small, native_reductions)
    hit = MEMORY.get(_DIGESTS.get(fast))
    if hit is not None:
        return hit, 0.0
    digest, options, path = _locate(name, args, static, key, small, native_reductions, disk, fast)
    if len(_DIGESTS) >= _MAX_DIGESTS:
        _DIGESTS.clear()
    _DIGESTS[fast] = digest
    hit = MEMORY.get(digest)
    if hit is not None:
        return hit, 0.0
    t0 = time.perf_counter()

    def fresh(salt: str = ""):
        return _compile_fresh(_lower(name, fn, args, static, salt), options, path)

    compiled = None
    loading = _PENDING.pop(digest, None)
    if isinstance(loading, _Compiling):
        try:
            compiled = loading.result()
        except Exception:  # compiled again below, raising here if it fails again
            loading = None
        else:
            return MEMORY.setdefault(digest, compiled), time.perf_counter() - t0
    STATS["prefetched"] += loading is not None
    if loading is None and path is not None and path.exists():
        loading = _Loading(path)
    if loading is not None:
        try:
            compiled = FromDisk(loading.result(), lambda: fresh(f"_{os.getpid()}"), path)
            STATS["loaded"] += 1
        except Exception:  # corrupt entry: replace it (salted, so JAX's cache cannot answer)
            compiled = fresh(f"_{os.getpid()}")
    if compiled is None:
        compiled = fresh()
    MEMORY[digest] = compiled
    return compiled, time.perf_counter() - t0
