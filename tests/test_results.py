"""jaxlme.results: the result object's own contract (what it holds and how it delegates).

Numbers against lme4 are in test_lme4_reference.py; here: the optimizer's record, the
relations between the result's attributes, and that every analysis method reaches its module.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import DATA

import jaxlme
from jaxlme import anova, emmeans, inference, predict, r2
from jaxlme.optimizer import STATUS, Status


@pytest.fixture(scope="module")
def sleep():
    return jaxlme.lmm("Reaction ~ Days + (Days | Subject)", jaxlme.datasets.load("sleepstudy"))


def test_opt_records_the_solver_outcome_by_name_and_text(sleep):
    opt = sleep.opt
    assert isinstance(opt, jaxlme.OptSummary)
    assert opt.code in (Status.CONVERGED, Status.NO_FURTHER_DECREASE)
    assert opt.status == STATUS[Status(opt.code)] == Status(opt.code).message
    assert opt.converged and Status(opt.code).converged
    np.testing.assert_array_equal(opt.theta_final, sleep.theta)
    assert opt.objective == pytest.approx(sleep.objective, rel=1e-12)
    assert opt.evaluations >= opt.iterations >= 1
    text = str(opt)
    assert text.startswith("Optimization summary") and "code" in text and "status" in text


def test_status_enumeration_names_every_outcome():
    assert [s.value for s in Status] == list(range(6))
    assert {s for s in Status if s.converged} == {Status.CONVERGED, Status.NO_FURTHER_DECREASE}
    assert Status.MAX_ITERATIONS.message == "max iterations"


def test_attributes_are_consistent(sleep):
    n, p, k = sleep.nobs, len(sleep.fixef), len(sleep.theta)
    assert sleep.npar == p + k + 1 and sleep.df_resid == n - sleep.npar  # lme4's df.residual
    assert np.allclose(sleep.stderr, np.sqrt(np.diag(sleep.vcov)), rtol=1e-12)
    np.testing.assert_allclose(sleep.fitted + sleep.residuals, sleep.y, rtol=1e-12)
    cov = sleep.covariance_matrices()["Subject"].to_numpy()
    vc = sleep.varcorr
    sd0 = vc[(vc["group"] == "Subject") & (vc["var1"] == "(Intercept)") & vc["var2"].isna()]["sdcor"]
    assert np.sqrt(cov[0, 0]) == pytest.approx(float(sd0.iloc[0]), rel=1e-12)
    assert sleep.varcorr["sdcor"].iloc[-1] == pytest.approx(sleep.sigma, rel=1e-12)  # the residual row
    assert list(sleep.ranef["Subject"].columns) == ["(Intercept)", "Days"]
    assert sleep.ngroups == {"Subject": 18}


def test_methods_delegate_to_their_analysis_modules(sleep):
    pd.testing.assert_frame_equal(sleep.coefs(), inference.coefs(sleep))
    pd.testing.assert_frame_equal(sleep.anova(), anova.anova_table(sleep, 3, "satterthwaite"))
    pd.testing.assert_series_equal(sleep.r2(), r2.r2(sleep))
    np.testing.assert_allclose(np.asarray(sleep.predict()), np.asarray(predict.predict(sleep)))
    frame = sleep.emmeans("Days", at={"Days": [0, 9]})
    pd.testing.assert_frame_equal(frame, emmeans.emmeans(sleep, "Days", at={"Days": [0, 9]}))


def test_summary_footer_is_shared_by_linear_and_generalized_fits(sleep):
    cbpp = pd.read_csv(DATA / "cbpp.csv")
    g = jaxlme.glmm("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
    for res in (sleep, g):
        tail = res.summary().splitlines()[-1]
        assert tail.startswith(("Optimizer: converged", "boundary (singular) fit"))
        assert "Correlation of Fixed Effects:" in res.summary()
