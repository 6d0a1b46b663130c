"""User-facing warnings attributed to the caller's line, not to jaxlme's own.

A fixed ``stacklevel`` is wrong as soon as the same warning is reached through a different
number of jaxlme frames (``lmm`` -> ``LMM`` -> ``build_design`` versus ``LMM(...)`` directly,
decorators, the statsmodels-style wrappers).  :func:`warn` instead walks out of the frames
whose code lives in the jaxlme package and reports the first frame outside it.
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["warn", "caller_stacklevel", "fit_outcome"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _inside(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_PACKAGE_DIR)


def caller_stacklevel(start: int = 1) -> int:
    """The ``stacklevel`` for ``warnings.warn`` that points at the first frame outside jaxlme.

    Args:
        start: Frames between this function and the frame that will call ``warnings.warn``
            (1: the direct caller of ``caller_stacklevel`` calls ``warnings.warn``).

    Returns:
        A stacklevel counted from the frame that calls ``warnings.warn`` (1 = that frame).
    """
    frame = sys._getframe(start)  # the frame that calls warnings.warn: stacklevel 1
    level = 1
    while frame.f_back is not None and _inside(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    return level  # the outermost frame when every frame is jaxlme's (``python -m jaxlme``)


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Issue ``message`` as a warning attributed to the user's code that called into jaxlme.

    Args:
        message: The warning text.
        category: The warning class (default ``UserWarning``).
    """
    warnings.warn(message, category, stacklevel=caller_stacklevel())


def fit_outcome(opt, singular: bool, degenerate: str | None = None) -> None:
    """The warnings lme4 gives after a fit: a degenerate fit (``degenerate``: why), else a
    failure to converge, and a boundary (singular) fit.

    Args:
        opt: the fit's ``OptSummary`` (``converged``, ``status``, ``iterations``,
            ``gradient_norm``).
        singular: whether a variance component is at (or near) zero.
        degenerate: why the fit is degenerate, or None.
    """
    if degenerate is not None:
        warn(f"Degenerate fit: {degenerate}")
    elif not opt.converged:
        warn(
            f"Model failed to converge: {opt.status} after {opt.iterations} iterations, "
            f"max|projected gradient| = {opt.gradient_norm:.3g}"
        )
    if singular:
        warn("boundary (singular) fit: a variance component is (close to) zero")
