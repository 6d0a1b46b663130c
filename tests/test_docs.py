"""Every code block in README.md and docs/*.md runs, and every output the docs show is checked.

Rules (they apply to any Markdown file added under docs/):

* ```python blocks of one file run in order in one namespace, in a scratch directory.
* ```bash blocks: each ``jaxlme ...`` command (also after ``&&``) runs through the CLI's
  entry point (``jaxlme.cli.main``, in this process: programs compiled for one command
  serve the next; ``tests/test_cli.py`` runs the executable itself); data files
  (``.csv``/``.parquet``) a command names that do not exist are written first (columns
  y, x, g, w).  Install, test, lint and
  benchmark commands (:data:`NOT_RUN`) are not run here: CI runs them itself.  Any
  other command fails the test until it is run here or marked.
* A ```text or ```json block right after a code block (only blank lines or an HTML
  comment between) is that block's expected output: what it printed must match line by
  line, numbers within a tolerance (:func:`numbers_match`), a line ``...`` standing for
  any number of lines and ``~5.1`` for any number (a timing).  A ```text/```json block
  anywhere else is an error unless marked.
* ``<!-- no-test: reason -->`` right before a block leaves it out (say why).
* ``JAXLME_DOCS_UPDATE=1`` writes printed outputs that differ into the docs (review with git diff).
* Every jaxlme fit a python block leaves in the namespace must have converged.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jaxlme import LMMResult, cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

# Commands the docs show that CI itself runs (installs, the test suite, lint) or that are
# long benchmarks: the collector does not run them, and fails on any other non-jaxlme command.
NOT_RUN = ("pip install", "python -m pip install", "python -m pytest", "ruff ", "python benchmarks/", "apt-get ")

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
MARK = re.compile(r"<!--\s*no-test:\s*(.*?)\s*-->\s*$", re.S)
NUMBER = re.compile(r"~?[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


@dataclass
class Block:
    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    skip: str | None  # the no-test reason, if marked
    output: Block | None = None  # the text/json block that follows, if any


def parse(path: Path) -> list[Block]:
    """The file's fenced blocks, each code block with its expected output attached."""
    text = path.read_text()
    blocks: list[Block] = []
    prev_end = 0
    for m in FENCE.finditer(text):
        between = text[prev_end : m.start()]
        mark = MARK.search(between)
        block = Block(m.group(1) or "text", m.group(2), text.count("\n", 0, m.start()) + 1, mark and mark.group(1))
        adjacent = not re.sub(r"<!--.*?-->", "", between, flags=re.S).strip()
        if block.lang in ("text", "json") and block.skip is None:
            owner = blocks[-1] if blocks and adjacent else None
            if owner is None or owner.lang not in ("python", "bash") or owner.output is not None:
                raise AssertionError(
                    f"{path.name}:{block.line}: a ```{block.lang} block that is not the output of the code block "
                    "right before it; place it right after that block or mark it <!-- no-test: reason -->"
                )
            owner.output = block
        blocks.append(block)
        prev_end = m.end()
    return blocks


def last_digit(number: str) -> float:
    """One unit in the last printed digit of ``number`` (0 for an integer: counts match exactly)."""
    mantissa, _, exponent = number.lower().partition("e")
    if "." not in mantissa:
        return 0.0
    return 10.0 ** (-len(mantissa.split(".")[1]) + int(exponent or 0))


def numbers_match(expected: str, actual: str, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
    """One line against another: the same words (whitespace runs count as one), the same
    count of numbers, each within one unit of the doc's last printed digit, ``rtol``
    relative or ``atol`` absolute (column widths, rounding of the last digit and tiny
    optimizer-dependent numbers such as a final gradient may differ between machines)."""
    e_words, a_words = NUMBER.split(expected), NUMBER.split(actual)
    if [" ".join(w.split()) for w in e_words] != [" ".join(w.split()) for w in a_words]:
        return False
    for e, a in zip(NUMBER.findall(expected), NUMBER.findall(actual)):
        if e.startswith("~"):  # the doc marks a number that varies from run to run (a timing)
            continue
        e_f, a_f = float(e), float(a)
        if abs(e_f - a_f) > max(rtol * max(abs(e_f), abs(a_f)), atol, 1.000001 * last_digit(e)):
            return False
    return True


def match_lines(expected: list[str], actual: list[str]) -> bool:
    """Line-by-line match; an expected line ``...`` matches any number of actual lines."""
    if not expected:
        return not actual
    if expected[0].strip() == "...":
        return any(match_lines(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and numbers_match(expected[0], actual[0]) and match_lines(expected[1:], actual[1:])


def check_output(path: Path, block: Block, printed: str) -> None:
    expected = [line.rstrip() for line in block.output.code.rstrip().splitlines()]
    actual = [line.rstrip() for line in printed.rstrip().splitlines()]
    if not match_lines(expected, actual):
        import difflib

        if os.environ.get("JAXLME_DOCS_UPDATE") == "1" and "..." not in [e.strip() for e in expected]:
            rewrite_output(path, block.output, expected, actual)
            return
        diff = "\n".join(difflib.unified_diff(expected, actual, "doc", "actual", lineterm=""))
        raise AssertionError(f"{path.name}:{block.output.line}: printed output differs from the doc\n{diff}")


def rewrite_output(path: Path, output: Block, expected: list[str], actual: list[str]) -> None:
    """Developer aid (``JAXLME_DOCS_UPDATE=1``): write the printed output into the doc's block.

    Lines are aligned by their words; lines that still match keep the doc's text (its ``~``
    timing marks and number formats), the others take the printed line.  Review the change
    with ``git diff`` before committing."""
    import difflib

    original = output.code.rstrip("\n").split("\n")

    def shape(line: str) -> str:
        return " ".join(NUMBER.sub("#", line).split())

    merged: list[str] = []
    matcher = difflib.SequenceMatcher(None, [shape(e) for e in expected], [shape(a) for a in actual], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            merged += [
                o if numbers_match(e, a) else a for o, e, a in zip(original[i1:i2], expected[i1:i2], actual[j1:j2])
            ]
        else:
            merged += actual[j1:j2]
    text = path.read_text()
    if text.count(output.code) != 1:
        raise AssertionError(f"{path.name}:{output.line}: cannot update an output block that is not unique")
    path.write_text(text.replace(output.code, "\n".join(merged) + "\n"))


def example_table(path: Path) -> None:
    """A small grouped dataset for the CLI examples' data files (y ~ x + (x | g), weights w)."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(12), 10)
    x = rng.normal(size=g.size)
    y = 2 + 0.5 * x + rng.normal(0, 1, 12)[g] + rng.normal(0, 0.3, 12)[g] * x + rng.normal(size=g.size)
    d = pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g], "w": rng.uniform(0.5, 2, g.size)})
    if path.suffix == ".parquet":
        d.to_parquet(path)
    else:
        d.to_csv(path, index=False)


def run_bash(path: Path, block: Block, cwd: Path) -> str:
    printed = []
    for raw in block.code.splitlines():
        tokens = shlex.split(raw, comments=True)
        commands, current = [], []
        for tok in [*tokens, "&&"]:
            if tok == "&&":
                commands.append(current) if current else None
                current = []
            else:
                current.append(tok)
        for argv in commands:
            text = " ".join(argv)
            if text.startswith(NOT_RUN):
                continue
            if argv[:3] == ["python", "-m", "jaxlme"]:
                argv = argv[2:]
            if argv[0] != "jaxlme":
                raise AssertionError(f"{path.name}:{block.line}: `{text}` is neither a jaxlme command nor marked")
            for arg in argv[1:]:
                if arg.endswith((".csv", ".parquet")) and not (cwd / arg).exists():
                    example_table(cwd / arg)
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    status = cli.main(argv[1:])
                except SystemExit as exc:  # argparse's own exits (--version, --help)
                    status = exc.code or 0
            assert status == 0, f"{path.name}:{block.line}: `{text}` failed:\n{err.getvalue()[-2000:]}"
            printed.append(out.getvalue())
    return "".join(printed)


def doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", DOCS, ids=doc_id)
def test_doc_blocks_parse(path: Path) -> None:
    """Every output block belongs to a code block, every fence is closed."""
    blocks = parse(path)
    assert path.read_text().count("```") == 2 * len(blocks), f"{path.name}: an unclosed or stray ``` fence"


@pytest.mark.slow
@pytest.mark.parametrize("path", DOCS, ids=doc_id)
def test_doc_code_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file's python blocks in order in one namespace, its jaxlme commands through the CLI,
    each printed output compared with the doc's."""
    blocks = [b for b in parse(path) if b.lang in ("python", "bash") and b.skip is None]
    if not blocks:
        pytest.skip(f"{path.name} has no runnable blocks")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    namespace: dict = {"__name__": "__doc__"}
    for block in blocks:
        if block.lang == "python":
            buf = io.StringIO()
            with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
                warnings.simplefilter("ignore")
                try:
                    exec(compile(block.code, f"{path.name}:{block.line}", "exec"), namespace)
                except Exception as exc:
                    raise AssertionError(f"{path.name}:{block.line}: the python block raised {exc!r}") from exc
            printed = buf.getvalue()
            unconverged = [k for k, v in namespace.items() if isinstance(v, LMMResult) and not v.converged]
            assert not unconverged, f"{path.name}:{block.line}: fits the doc shows did not converge: {unconverged}"
        else:
            printed = run_bash(path, block, tmp_path)
        if block.output is not None:
            check_output(path, block, printed)


def test_numbers_match_tolerance() -> None:
    assert numbers_match("REML criterion at convergence: 3539.7201", "REML criterion at convergence:  3539.7203")
    assert not numbers_match("REML criterion at convergence: 3539.7201", "REML criterion at convergence: 3541.0")
    assert not numbers_match("converged: True", "converged: False")
    assert numbers_match("max|grad| = 1.25e-10", "max|grad| = 3.1e-11")
    assert numbers_match("Variance 243.7", "Variance 243.8") and not numbers_match("Variance 243.7", "Variance 243.9")
    assert not numbers_match("in 6 iterations", "in 7 iterations")
    assert numbers_match("(demo ran in ~5.1 s)", "(demo ran in 12.5 s)")
    assert match_lines(["{", "...", "}"], ["{", "a", "b", "}"])
    assert not match_lines(["{", "a", "}"], ["{", "b", "}"])


def test_unmarked_output_block_is_an_error(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("Some text\n\n```text\n1.0\n```\n")
    with pytest.raises(AssertionError, match="x.md:3"):
        parse(doc)
    doc.write_text("<!-- no-test: an illustration -->\n```text\n1.0\n```\n")
    assert parse(doc)[0].skip == "an illustration"
    doc.write_text("```python\nprint(1.0)\n```\n\n```text\n1.0\n```\n")
    assert parse(doc)[0].output.code == "1.0\n"


def test_update_mode_rewrites_only_differing_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("Intro\n\n```python\nprint(...)\n```\n\n```text\nran in ~5.1 s\nvalue 2.0\n```\n\nEnd\n")
    block = parse(doc)[0]
    with pytest.raises(AssertionError, match="differs"):
        check_output(doc, block, "ran in 9.9 s\nvalue 3.0\n")
    monkeypatch.setenv("JAXLME_DOCS_UPDATE", "1")
    check_output(doc, block, "ran in 9.9 s\nvalue 3.0\nextra 1\n")
    assert (
        doc.read_text()
        == "Intro\n\n```python\nprint(...)\n```\n\n```text\nran in ~5.1 s\nvalue 3.0\nextra 1\n```\n\nEnd\n"
    )
