"""Parse lme4-style mixed-model formulas into a fixed part and random-effect terms.

The fixed part is handed to formulaic (contrasts, interactions, stateful transforms; plain
lists of columns are coded by ``design.ColumnsSpec`` the same way, without formulaic);
this module only finds the bar terms ``(expr | group)`` / ``(expr || group)`` that
formulaic does not know, and expands nesting ``(expr | a/b)`` into ``(expr | a)`` and
``(expr | a:b)`` as lme4 does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["FormulaError", "RandomTerm", "ParsedFormula", "parse_formula"]


class FormulaError(ValueError):
    """A model formula that cannot be parsed or does not fit the data."""


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term: model expression ``expr`` varying over ``group``.

    ``group`` holds the factor names whose interaction defines the grouping
    (``("batch", "cask")`` for ``batch:cask``); ``correlated`` is False for ``||``.
    """

    expr: str
    group: tuple[str, ...]
    correlated: bool = True

    @property
    def group_name(self) -> str:
        return ":".join(self.group)

    def __str__(self) -> str:
        bar = "|" if self.correlated else "||"
        return f"({self.expr} {bar} {self.group_name})"


@dataclass(frozen=True)
class ParsedFormula:
    """A formula split into response, fixed-effects right-hand side and random terms."""

    text: str
    response: str
    fixed: str
    random: tuple[RandomTerm, ...]
    offsets: tuple[str, ...] = ()  # the expressions of offset(expr) terms, added with coefficient 1


def _syntax_error(message: str, text: str, pos: int) -> FormulaError:
    caret = " " * pos + "^"
    return FormulaError(f"{message} at character {pos + 1} of {text!r}:\n  {text}\n  {caret}")


def split_top_level(text: str, offset: int, full: str) -> list[tuple[str, str, int]]:
    """Split ``text`` on top-level ``+``/``-`` into (sign, piece, start) triples."""
    pieces: list[tuple[str, str, int]] = []
    depth, start, sign = 0, 0, "+"
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise _syntax_error("Unmatched ')'", full, offset + i)
        elif ch in "+-" and depth == 0:
            # a sign inside a number exponent such as 1e-3 is not an operator
            if ch == "-" and i > 0 and text[i - 1] in "eE" and i > 1 and text[i - 2].isdigit():
                continue
            pieces.append((sign, text[start:i], offset + start))
            sign, start = ch, i + 1
    if depth != 0:
        raise _syntax_error("Unmatched '('", full, offset + text.rfind("("))
    pieces.append((sign, text[start:], offset + start))
    return pieces


_OFFSET = re.compile(r"(?<![A-Za-z0-9_.])offset\s*\((?=.)", re.S)


def _closing(text: str, open_pos: int) -> int:
    """Position of the ')' matching the '(' at ``open_pos``."""
    depth = 0
    for i in range(open_pos, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    return -1


def _find_bar(inner: str) -> tuple[int, int] | None:
    """Position and width of the top-level ``|`` or ``||`` inside a parenthesised term."""
    depth = 0
    for i, ch in enumerate(inner):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            width = 2 if inner[i : i + 2] == "||" else 1
            return i, width
    return None


def _parse_group(spec: str, full: str, pos: int) -> list[tuple[str, ...]]:
    """Expand ``a``, ``a:b`` and ``a/b/c`` into the list of grouping-factor tuples."""
    spec = spec.strip()
    if not spec:
        raise _syntax_error("Missing grouping factor after '|'", full, pos)
    if any(c in spec for c in "()+*|~"):
        raise _syntax_error(f"Grouping factor '{spec}' must be a column name, 'a:b' or 'a/b'", full, pos)
    levels = [part.strip() for part in spec.split("/")]
    groups: list[tuple[str, ...]] = []
    prefix: tuple[str, ...] = ()
    for part in levels:
        names = tuple(name.strip().strip("`") for name in part.split(":"))
        if not all(names):
            raise _syntax_error(f"Empty factor name in grouping '{spec}'", full, pos)
        prefix = prefix + names
        groups.append(prefix)
    return groups


def parse_formula(formula: str) -> ParsedFormula:
    """Split ``"y ~ x + (1 + x | g) + (1 | a/b)"`` into its fixed and random parts.

    Raises FormulaError, pointing at the offending position, on malformed input.
    """
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string, got {type(formula).__name__}")
    text = " ".join(formula.split())
    if text.count("~") != 1:
        raise FormulaError(f"Formula must contain exactly one '~' (response ~ terms): {text!r}")
    tilde = text.index("~")
    response = text[:tilde].strip()
    if not response:
        raise _syntax_error("Missing response before '~'", text, 0)
    rhs_start = tilde + 1
    rhs = text[rhs_start:]
    if not rhs.strip():
        raise _syntax_error("Missing terms after '~'", text, len(text))

    fixed_parts: list[str] = []
    offsets: list[str] = []
    random: list[RandomTerm] = []
    for sign, piece, start in split_top_level(rhs, rhs_start, text):
        stripped = piece.strip()
        if not stripped:
            if sign == "+" and start == rhs_start:
                continue  # leading sign such as "~ -1 + x" or "~ + x"
            raise _syntax_error("Empty term", text, start)
        if stripped.startswith("(") and stripped.endswith(")"):
            inner = stripped[1:-1]
            bar = _find_bar(inner)
            if bar is not None:
                if sign == "-":
                    raise _syntax_error("Random-effects terms cannot be subtracted", text, start)
                pos, width = bar
                expr = inner[:pos].strip()
                if not expr:
                    raise _syntax_error("Missing model expression before '|'", text, start + 1)
                if _OFFSET.search(expr):
                    raise FormulaError(
                        f"offset() inside the random-effects term '{stripped}': offsets belong to the fixed part"
                    )
                bar_pos = start + piece.index("(") + 1 + pos + width
                for group in _parse_group(inner[pos + width :], text, bar_pos):
                    random.append(RandomTerm(expr=expr, group=group, correlated=width == 1))
                continue
        if "|" in stripped:
            raise _syntax_error(
                "A '|' term must be enclosed in parentheses, as in (1 | g)",
                text,
                start + piece.index("|"),
            )
        whole = _OFFSET.match(stripped)
        if whole and _closing(stripped, whole.end() - 1) == len(stripped) - 1:
            if sign == "-":
                raise FormulaError(f"offset() term '{stripped}' cannot be subtracted: write offset(-(...))")
            offsets.append(stripped[whole.end() : -1].strip())
            continue
        if _OFFSET.search(stripped):
            raise FormulaError(f"offset() in the term '{stripped}' must be a term of its own, as in y ~ x + offset(z)")
        fixed_parts.append(f"{sign} {stripped}" if fixed_parts or sign == "-" else stripped)

    fixed = " ".join(fixed_parts).strip() or "1"
    if fixed.startswith("- "):
        fixed = "1 " + fixed
    if not random:
        raise FormulaError(f"No random-effects terms in {text!r}: add at least one term such as (1 | group)")
    return ParsedFormula(text=text, response=response, fixed=fixed, random=tuple(random), offsets=tuple(offsets))
