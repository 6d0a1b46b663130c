"""R's meaning for the functions and operators of a model formula, on top of formulaic.

formulaic evaluates a call such as ``I(x^2)`` as Python, where ``^`` is XOR, and its
default functions differ from R's in places (``exp10(x)`` is x¹⁰, ``bs()`` is not
``splines::bs``, ``lag()`` shifts values).  Every formula side jaxlme hands to formulaic
goes through :func:`to_python` first: inside calls R's operators become Python's (``^`` ->
``**``, ``%%`` -> ``%``, ``%/%`` -> ``//``, ``TRUE`` -> ``True``, ``as.factor`` ->
``as_factor``), and a function or operator whose R meaning jaxlme does not give is a
one-line :class:`FormulaError` naming the term.  The functions are evaluated in
:func:`r_context` (R's ``scale``, ``center``, orthogonal ``poly``, ``factor``,
``log(x, base)``, ...); the stateful ones keep the training data's centre, scale and
polynomial basis in formulaic's model spec, so prediction on new data reuses them, as
lme4 does through ``makepredictcall``.  :class:`RModelSpec` wraps a formulaic ModelSpec
so that it evaluates in that context and names columns as lme4 prints them
(``I(Days^2)``, ``poly(Days, 2)1``, ``factor(period)1``).
"""

from __future__ import annotations

import ast
import math
import re

import numpy as np
import pandas as pd

from .formula import FormulaError

__all__ = ["r_context", "RModelSpec", "to_python", "r_deparse", "required_variables"]


def _index(x):
    return x.index if isinstance(x, pd.Series) else None


def r_log(x, base=math.e):
    """R's ``log(x, base = exp(1))``."""
    out = np.log(x)
    return out if base == math.e else out / np.log(base)


def _r_level(v) -> str:
    """R's ``as.character`` of a factor level: ``1`` not ``1.0``."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (bool, np.bool_)):
        return "TRUE" if v else "FALSE"
    return str(v)


def r_factor(x):
    """R's ``factor(x)``: a categorical with levels sorted (numbers numerically) and
    labelled as R prints them, so coefficients are named ``factor(x)2``."""
    s = pd.Series(x) if not isinstance(x, pd.Series) else x
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.cat.remove_unused_categories()
        cats = [_r_level(c) for c in s.cat.categories]
        codes = s.cat.codes.to_numpy()
        values = np.array([cats[c] if c >= 0 else None for c in codes], dtype=object)
        return pd.Series(pd.Categorical(values, categories=cats), index=s.index)
    levels = sorted(s.dropna().unique())
    cats = list(dict.fromkeys(_r_level(v) for v in levels))
    values = np.array([None if pd.isna(v) else _r_level(v) for v in s], dtype=object)
    return pd.Series(pd.Categorical(values, categories=cats), index=s.index)


def r_as_numeric(x):
    """R's ``as.numeric`` of numbers or numeric strings (a factor's codes are not given)."""
    s = pd.Series(x) if not isinstance(x, pd.Series) else x
    if isinstance(s.dtype, pd.CategoricalDtype):
        raise ValueError("as.numeric() of a factor gives its codes in R; use the column itself")
    return pd.to_numeric(s).astype(float)


def r_identity(x):
    """R's ``I(x)``; a logical result is a factor, as R codes it (``I(Days > 3)TRUE``)."""
    values = np.asarray(x)
    if values.dtype == bool:
        labels = np.where(values, "TRUE", "FALSE")
        return pd.Series(pd.Categorical(labels, categories=["FALSE", "TRUE"]), index=_index(x))
    return x


def _r_poly(x, degree=1, raw=False, _state=None):
    """R's ``poly(x, degree, raw = FALSE)``: orthonormal polynomials (formulaic's three-term
    recurrence gives R's basis, signs included), or raw powers; columns named ``1..degree``."""
    from formulaic.materializers.types import FactorValues
    from formulaic.transforms.poly import poly

    if not raw:
        return poly(x, degree, _state=_state)
    x = np.asarray(x, dtype=float)
    out = np.stack([x**k for k in range(1, degree + 1)], axis=1)
    return FactorValues(out, column_names=tuple(str(k) for k in range(1, degree + 1)))


def _build_context() -> dict:
    from formulaic.transforms import center, scale, stateful_transform

    return {
        "I": r_identity,
        "log": r_log,
        "log10": np.log10,
        "log2": np.log2,
        "log1p": np.log1p,
        "exp": np.exp,
        "expm1": np.expm1,
        "sqrt": np.sqrt,
        "abs": np.abs,
        "sin": np.sin,
        "cos": np.cos,
        "tan": np.tan,
        "scale": scale,
        "center": center,
        "poly": stateful_transform(_r_poly),
        "factor": r_factor,
        "as_factor": r_factor,
        "as_numeric": r_as_numeric,
        "pi": math.pi,
    }


_CONTEXT: dict | None = None


def r_context() -> dict:
    """The names formulas are evaluated with (built on first use: formulaic is imported lazily)."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = _build_context()
    return _CONTEXT


# R names with a dot that are spelled differently in Python
_R_TO_PY_NAMES = {"as.factor": "as_factor", "as.numeric": "as_numeric"}
_PY_TO_R_NAMES = {v: k for k, v in _R_TO_PY_NAMES.items()}
# functions formulas may call: r_context()'s, formulaic's C() and Q(), and numpy as np.*
_ALLOWED = {
    "I",
    "log",
    "log10",
    "log2",
    "log1p",
    "exp",
    "expm1",
    "sqrt",
    "abs",
    "sin",
    "cos",
    "tan",
    "scale",
    "center",
    "poly",
    "factor",
    "as.factor",
    "as.numeric",
    "C",
    "Q",
}
# formulaic's functions whose meaning differs from R's: why each is refused
_REFUSED = {
    "bs": "formulaic's bs() is not R's splines::bs() (knots, boundary, intercept differ)",
    "cr": "a cubic regression spline (mgcv) that lme4 formulas do not have",
    "cs": "a cubic regression spline (mgcv) that lme4 formulas do not have",
    "cc": "a cyclic cubic spline (mgcv) that lme4 formulas do not have",
    "lag": "R's lag() shifts a time series' time base, not its values",
    "hashed": "feature hashing has no R formula equivalent",
    "exp10": "formulaic's exp10(x) is x^10, not 10^x",
    "exp2": "R has no exp2(); write 2^x",
    "standardize": "a patsy function; R's is scale()",
    "contr": "contrast matrices other than treatment contrasts are not supported",
    "Treatment": "contrast objects are not supported; factors use R's treatment contrasts",
    "Sum": "contrast objects are not supported; factors use R's treatment contrasts",
    "Helmert": "contrast objects are not supported; factors use R's treatment contrasts",
    "Diff": "contrast objects are not supported; factors use R's treatment contrasts",
    "Poly": "contrast objects are not supported; factors use R's treatment contrasts",
}

_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)\s*\(")


def _matching(text: str, open_pos: int) -> int:
    depth = 0
    for i in range(open_pos, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    raise FormulaError(f"Unmatched '(' in {text!r}")


def _python_code(call: str, term: str) -> str:
    """One call's text in Python: R operators and names translated, Python-only ones refused."""
    for op, why in (
        ("//", "'//' is not an R operator (R's integer division is %/%)"),
        ("@", "'@' is not an arithmetic operator in R"),
        ("lambda", "Python lambdas are not R"),
        (" and ", "'and' is not R (use &)"),
        (" or ", "'or' is not R (use |)"),
    ):
        if op in call:
            raise FormulaError(f"Unsupported operator in term '{term}': {why}")
    other = re.search(r"%[^%/]*%", call.replace("%/%", "").replace("%%", ""))
    if other:
        raise FormulaError(f"Unsupported operator {other.group(0)} in term '{term}'")
    out = call.replace("%/%", "//").replace("%%", "%").replace("^", "**")
    out = re.sub(r"\bTRUE\b", "True", out)
    out = re.sub(r"\bFALSE\b", "False", out)
    for r_name, py_name in _R_TO_PY_NAMES.items():
        out = re.sub(rf"(?<![A-Za-z0-9_.]){re.escape(r_name)}(?=\s*\()", py_name, out)
    return out


def _check_calls(text: str, term: str) -> None:
    """Every function called in ``text`` must be one with R's meaning here."""
    for m in _CALL.finditer(text):
        name = m.group(1)
        if name.startswith("np."):
            continue  # numpy's own functions, asked for by name
        if name in _REFUSED:
            raise FormulaError(f"Unsupported function {name}() in term '{term}': {_REFUSED[name]}")
        if name not in _ALLOWED:
            raise FormulaError(
                f"Unknown function {name}() in term '{term}': R functions supported in formulas are "
                "I, log, log10, log2, log1p, exp, expm1, sqrt, abs, sin, cos, tan, scale, center, "
                "poly, factor, as.factor, as.numeric (and numpy's as np.*)"
            )
        if name == "C":
            close = _matching(text, m.end() - 1)
            try:
                args = ast.parse(_python_code(text[m.start() : close + 1], term), mode="eval").body.args
            except SyntaxError:
                args = [None, None]
            if len(args) != 1:
                raise FormulaError(
                    f"Unsupported contrasts in term '{term}': only C(x) (treatment contrasts) is supported"
                )


def to_python(text: str) -> str:
    """Translate one formula side (R syntax) into what formulaic evaluates with R's meaning.

    Outside calls formulaic's formula operators already mean R's (``a*b``, ``a:b``, ``a/b``,
    ``(a + b)^2``, ``-``); R's ``%in%`` and ``.`` are refused.  Inside each top-level call
    (and everything nested in it) operators, logical constants and dotted names become
    Python's.  Raises FormulaError (one line, naming the term) for anything else.
    """
    out: list[str] = []
    pos = 0
    for m in _CALL.finditer(text):
        if m.start() < pos:
            continue  # nested inside a call already translated
        outside = text[pos : m.start()]
        _check_formula_ops(outside, text)
        close = _matching(text, m.end() - 1)
        call = text[m.start() : close + 1]
        _check_calls(call, call)
        out.append(outside)
        out.append(_python_code(call, call))
        pos = close + 1
    _check_formula_ops(text[pos:], text)
    out.append(text[pos:])
    return "".join(out)


def _check_formula_ops(piece: str, text: str) -> None:
    if "%in%" in piece:
        raise FormulaError(f"Unsupported operator %in% in '{text.strip()}': write the interaction a:b instead")
    if re.search(r"%[^%]*%", piece):
        raise FormulaError(f"Unsupported operator in '{text.strip()}': {re.search(r'%[^%]*%', piece).group(0)}")
    if re.search(r"(^|[\s+~*:(])\.($|[\s+*:)])", piece):
        raise FormulaError(f"Unsupported term '.' in '{text.strip()}': name the columns explicitly")


# --- R names for formulaic's factor expressions ------------------------------------
_BINOPS = {
    ast.Add: ("+", 4, " + "),
    ast.Sub: ("-", 4, " - "),
    ast.Mult: ("*", 5, " * "),
    ast.Div: ("/", 5, "/"),
    ast.Mod: ("%%", 6, "%%"),
    ast.FloorDiv: ("%/%", 6, "%/%"),
    ast.Pow: ("^", 8, "^"),
}
_CMPOPS = {ast.Gt: ">", ast.Lt: "<", ast.GtE: ">=", ast.LtE: "<=", ast.Eq: "==", ast.NotEq: "!="}


def _num(v) -> str:
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.15g}"
    return str(v)


def _deparse(node: ast.AST, prec: int = 0) -> str:
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        _, p, sym = _BINOPS[type(node.op)]
        right_assoc = isinstance(node.op, ast.Pow)
        left = _deparse(node.left, p + (1 if right_assoc else 0))
        right = _deparse(node.right, p if right_assoc else p + 1)
        s = f"{left}{sym}{right}"
        return f"({s})" if p < prec else s
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        s = ("-" if isinstance(node.op, ast.USub) else "+") + _deparse(node.operand, 7)
        return f"({s})" if 7 < prec else s
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMPOPS:
        s = f"{_deparse(node.left, 4)} {_CMPOPS[type(node.ops[0])]} {_deparse(node.comparators[0], 4)}"
        return f"({s})" if 3 < prec else s
    if isinstance(node, ast.Call):
        func = _deparse(node.func, 9)
        func = _PY_TO_R_NAMES.get(func, func)
        args = [_deparse(a) for a in node.args] + [f"{k.arg} = {_deparse(k.value)}" for k in node.keywords]
        return f"{func}({', '.join(args)})"
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_deparse(node.value, 9)}.{node.attr}"
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str):
            return '"' + node.value + '"'
        return _num(node.value)
    raise ValueError("not deparsable")


def r_deparse(expr: str) -> str:
    """R's ``deparse`` spelling of a Python expression as formulaic normalises it:
    ``I(Days ** 2)`` -> ``I(Days^2)``, ``exp(Days / 10)`` -> ``exp(Days/10)``."""
    try:
        return _deparse(ast.parse(expr, mode="eval").body)
    except (SyntaxError, ValueError):
        return expr


def _python_factors(formula):
    """The expressions of a formulaic Formula's (or ModelSpec's) factors evaluated as Python."""
    if hasattr(formula, "lhs"):
        yield from _python_factors(formula.lhs)
        yield from _python_factors(formula.rhs)
        return
    for term in formula:
        for factor in term.factors:
            if getattr(factor.eval_method, "value", "") == "python":
                yield str(factor.expr)


def _names(expr: str) -> set[str]:
    """Variables an expression reads: names that are neither called nor numpy's ``np``."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return set()
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    attr_bases = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    return {
        n.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Name) and id(n) not in called and id(n) not in attr_bases and n.id not in r_context()
    }


def required_variables(formula) -> set[str]:
    """Data columns a formulaic Formula (or ModelSpec) needs.  formulaic leaves out the
    arguments of its stateful transforms (``scale(x)`` needs no ``x``) and counts the
    context's function names, so the Python factors are read here as well."""
    spec_formula = getattr(formula, "formula", formula)
    names = {v for v in formula.required_variables if v not in r_context() and v not in _ALLOWED}
    for expr in _python_factors(spec_formula):
        names |= _names(expr)
    return names


class RModelSpec:
    """A formulaic ModelSpec evaluated in :func:`r_context`, columns named as in R.

    Offers the interface jaxlme uses (``column_names``, ``required_variables``,
    ``get_model_matrix``), so prediction rebuilds model matrices for new data with the
    training data's factor levels and stateful-transform state.
    """

    def __init__(self, spec) -> None:
        self.spec = spec
        renames = {}
        for term in spec.formula:
            for factor in term.factors:
                expr = str(factor.expr)
                if getattr(factor.eval_method, "value", "") == "python":
                    r = r_deparse(expr)
                    if r != expr:
                        renames[expr] = r
        self.renames = dict(sorted(renames.items(), key=lambda kv: -len(kv[0])))

    def _rename(self, name: str) -> str:
        for py, r in self.renames.items():
            name = name.replace(py, r)
        return name

    @property
    def column_names(self) -> list[str]:
        return [self._rename(c) for c in self.spec.column_names]

    @property
    def required_variables(self) -> set[str]:
        return required_variables(self.spec)

    def get_model_matrix(self, data: pd.DataFrame, na_action: str = "ignore"):
        mm = self.spec.get_model_matrix(data, context=r_context(), na_action=na_action)
        return self.renamed(mm)

    def renamed(self, mm):
        """``mm`` (a model matrix from this spec) with its columns named as in R."""
        if self.renames:
            mm = mm.rename(columns=self._rename)
        return mm
