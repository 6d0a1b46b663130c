"""``jaxlme.lrt``: likelihood-ratio tests of nested models of either kind.

Linear mixed models are compared by :func:`jaxlme.inference.lrt` (ML refits of REML fits,
optional parametric-bootstrap p-values), generalized ones by :func:`jaxlme.glmm.lrt`; this
module only routes a call to the one that matches the models given.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from . import glmm as _glmm
from . import inference as _inference

__all__ = ["lrt"]


def lrt(
    *results,
    names: Sequence[str] | None = None,
    refit: bool = True,
    bootstrap: int | None = None,
    seed: int | None = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Likelihood-ratio tests of nested models (lme4's ``anova(m1, m2, ...)``).

    Args:
        *results: Two or more fits of one kind, all ``LMMResult`` or all ``GLMMResult``
            (or one list of them).
        names: Row names; default: each model's formula text.
        refit: Refit REML fits by ML first (lme4's default; linear models only).
        bootstrap: Parametric-bootstrap replicates per comparison (linear models only;
            None: the chi-squared test alone).
        seed: Seed of the simulated responses (None: fresh entropy, recorded).
        progress: Show progress bars for long bootstrap refits.

    Returns:
        A DataFrame indexed by model with columns npar, AIC, BIC, logLik, deviance, Chisq,
        Df, p (and p_boot with ``bootstrap``); see :func:`jaxlme.inference.lrt`.
    """
    if len(results) == 1 and isinstance(results[0], (list, tuple)):
        results = tuple(results[0])
    generalized = [isinstance(r, _glmm.GLMMResult) for r in results]
    if results and all(generalized):
        if bootstrap is not None:
            raise ValueError("lrt's bootstrap p-values are for linear mixed models; GLMMs get the chi-squared test")
        return _glmm.lrt(*results, names=names)
    if any(generalized):
        raise TypeError("lrt compares models of one kind: all LMMResult or all GLMMResult")
    return _inference.lrt(*results, names=names, refit=refit, bootstrap=bootstrap, seed=seed, progress=progress)
