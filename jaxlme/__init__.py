"""jaxlme: linear mixed-effects models in JAX, matching lme4, fast on CPU and GPU.

>>> import jaxlme
>>> res = jaxlme.lmm("Reaction ~ Days + (Days | Subject)", jaxlme.datasets.load("sleepstudy"))
>>> print(res.summary())                                         # doctest: +SKIP
"""

from . import _config, datasets, diff
from .comparison import lrt
from .compat import MixedLM, MixedLMParams, mixedlm
from .compiled import clear_cache
from .design import DataError
from .formula import FormulaError, parse_formula
from .glmm import GLMM, GLMMResult, glmm
from .model import LMM, lmm
from .results import LMMResult, OptSummary

__all__ = [
    "LMM",
    "lmm",
    "LMMResult",
    "GLMM",
    "glmm",
    "GLMMResult",
    "OptSummary",
    "DataError",
    "FormulaError",
    "parse_formula",
    "datasets",
    "diff",
    "mixedlm",
    "MixedLM",
    "MixedLMParams",
    "lrt",
    "clear_cache",
]
__version__ = "0.1.0"

_config.freeze_imported_objects()  # only with JAXLME_GC_FREEZE=1: no process-wide change unasked
