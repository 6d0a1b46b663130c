"""summary(): lme4's "Correlation of Fixed Effects:" block and the variance-components table.

Reference text: tests/data/predict_r2_reference.json (``print(summary(fit))`` of lme4 1.1-31 and
R's ``abbreviate``), made by make_predict_r2_reference.R.
"""

from __future__ import annotations

import pytest
from reference_fits import FITS, REF, fit

from jaxlme.results import abbreviate

WITH_BLOCK = [c for c in FITS if FITS[c]["summary"]["correlation"]]


def _block(text: str) -> list[str]:
    assert text.count("Correlation of Fixed Effects:") == 1
    return text.split("Correlation of Fixed Effects:\n")[1].split("\n\n")[0].split("\n")


@pytest.mark.parametrize("case", WITH_BLOCK)
def test_correlation_block_is_lme4s_text(case):
    """Lower triangle, 3 decimals, R's abbreviations; 'wide' (p = 12) wraps at 80 columns."""
    assert _block(fit(case).summary()) == FITS[case]["summary"]["correlation"]


def test_no_block_for_a_single_fixed_effect():
    for case in ("singular", "penicillin"):
        assert FITS[case]["summary"]["correlation"] is None
        assert "Correlation" not in fit(case).summary()


def test_more_than_twelve_fixed_effects_gives_lme4s_note():
    res = fit("cake_full")
    message = FITS["cake_full"]["summary"]["message"]  # lme4's message(), one string
    first = [line for line in "".join(message).split("\n") if line][0]
    assert first == "Correlation matrix not shown by default, as p = 18 > 12."
    text = res.summary()
    assert first in text and "Correlation of Fixed Effects:" not in text
    shown = _block(res.summary(correlation=True))
    assert len(shown) == 2 * (1 + 17)  # 17 columns need two blocks of 80 characters, 17 rows each
    assert shown[1].startswith("recipeB     -0.707")


def test_correlation_false_hides_the_block():
    res = fit("sleepstudy")
    assert "Correlation" not in res.summary(correlation=False)
    assert _block(res.summary(correlation=True)) == FITS["sleepstudy"]["summary"]["correlation"]


def test_abbreviate_matches_r():
    a = REF["abbreviate"]
    for m, expected in zip(a["minlength"], a["abbreviations"]):
        assert abbreviate(a["names"], m) == expected, m


def test_variance_table_columns_align_for_long_group_names():
    text = fit("bounce").summary()
    table = text.split("Random effects:\n")[1].split("\nNumber of obs")[0].split("\n")
    header = table[0]
    assert header.split() == ["Groups", "Name", "Variance", "Std.Dev.", "Corr"]
    name_at, var_end = header.index("Name"), header.index("Variance") + len("Variance")
    sd_end = header.index("Std.Dev.") + len("Std.Dev.")
    groups = []
    for line in table[1:]:
        groups.append(line[1:name_at].strip())
        assert line[name_at - 1] == " " and line[var_end - 1] != " " and line[var_end] == " ", line
        assert line[sd_end - 1] != " ", line
    assert groups == ["county:location", "county", "", "Residual"]
    assert table[1][name_at:].split()[0] == "(Intercept)"
    assert table[3][name_at:].split()[0] == "age_scaled"
