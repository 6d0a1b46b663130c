"""The README's Python examples run as written (keeps the first screen true)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1])
def test_readme_python_blocks_run(index):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(blocks[index], f"README block {index}", "exec"), namespace)
    assert namespace["res"].converged
