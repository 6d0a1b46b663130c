"""docs/differentiable.md: its python blocks run in order in one namespace, each prints the
output the page shows after it, and the showcase (a feature map trained with optax through
a mixed model's profiled deviance) does what the page says."""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "differentiable.md"
FENCE = re.compile(r"(<!--[^>]*-->\s*)?^```(\w*)\n(.*?)^```[ \t]*\n", re.S | re.M)
NUMBER = re.compile(r"[-+]?\d+\.\d+(?:[eE][-+]?\d+)?")


def runnable() -> list[tuple[str, str | None]]:
    """(python code, the text block right after it or None), skipping marked blocks."""
    text = DOC.read_text()
    out: list[tuple[str, str | None]] = []
    prev_end, prev_python = 0, False
    for m in FENCE.finditer(text):
        marked, lang, code = m.group(1), m.group(2), m.group(3)
        adjacent = not text[prev_end : m.start()].strip()
        if lang == "text" and not marked and prev_python and adjacent:
            out[-1] = (out[-1][0], code)
        prev_python = lang == "python" and not marked
        if prev_python:
            out.append((code, None))
        prev_end = m.end()
    return out


@pytest.fixture(scope="module")
def ran():
    namespace: dict = {"__name__": "__doc__"}
    outputs = []
    for code, expected in runnable():
        buf = io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
            warnings.simplefilter("ignore")
            exec(compile(code, str(DOC), "exec"), namespace)
        outputs.append((buf.getvalue(), expected))
    return namespace, outputs


@pytest.mark.slow
def test_showcase_trains_and_matches_lmm(ran):
    ns, _ = ran
    history = np.array(ns["history"])
    # the deviance falls, and so does the held-out error of the BLUP predictions
    assert np.all(np.isfinite(history))
    assert history[-1, 0] < history[0, 0] - 50.0
    assert history[-1, 1] < 0.6 * history[0, 1]
    # the public fit on the learned features reproduces the pipeline's criterion
    assert ns["res"].converged
    assert ns["res"].objective == pytest.approx(ns["final"], abs=1e-6)
    assert ns["final"] < history[-1, 0] + 1.0  # the deviance of the weights after the last step


@pytest.mark.slow
def test_showcase_numbers_in_the_page_are_the_real_ones(ran):
    _, outputs = ran
    shown = [(printed, expected) for printed, expected in outputs if expected is not None]
    assert len(shown) >= 2
    for printed, expected in shown:
        p_lines, e_lines = printed.strip().splitlines(), expected.strip().splitlines()
        assert len(p_lines) == len(e_lines), (printed, expected)
        for p, e in zip(p_lines, e_lines):
            assert NUMBER.sub("#", p).split() == NUMBER.sub("#", e).split(), (p, e)
            a, b = np.array(NUMBER.findall(p), float), np.array(NUMBER.findall(e), float)
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=0.011, err_msg=p)
