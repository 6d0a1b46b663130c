"""jaxlme.family: links and families against R's definitions (values computed in R 4)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlme import DataError
from jaxlme.family import binomial_trials, make_family, make_link


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


ETA = np.array([-3.0, -0.5, 0.0, 0.7, 2.5])


@pytest.mark.parametrize(
    ("name", "mu"),
    [
        # R: binomial(link)$linkinv(c(-3, -0.5, 0, 0.7, 2.5))
        ("logit", [0.04742587317756678, 0.3775406687981454, 0.5, 0.6681877721681662, 0.9241418199787566]),
        ("probit", [0.0013498980316301, 0.3085375387259869, 0.5, 0.7580363477769270, 0.9937903346742238]),
        ("cloglog", [0.0485680070995466, 0.454760788107395, 0.6321205588285577, 0.8665132033419162, 0.99999488070570]),
        ("log", np.exp(ETA)),
    ],
)
def test_linkinv_matches_r_and_inverts_linkfun(name, mu):
    link = make_link(name)
    got = np.asarray(link.linkinv(jnp.asarray(ETA)))
    np.testing.assert_allclose(got, mu, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(link.linkfun(jnp.asarray(got))), ETA, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", ["logit", "probit", "cloglog", "log", "identity", "sqrt"])
def test_mu_eta_is_the_derivative_of_linkinv(name):
    link = make_link(name)
    eta = jnp.asarray(ETA if name not in ("identity", "sqrt") else np.abs(ETA) + 0.5)
    auto = jax.vmap(jax.grad(link.linkinv))(eta)
    np.testing.assert_allclose(np.asarray(link.mu_eta(eta)), np.asarray(auto), rtol=1e-9)


def test_binomial_deviance_and_aic_match_r():
    fam = make_family("binomial")
    y = jnp.asarray([0.0, 0.25, 1.0, 0.5])
    mu = jnp.asarray([0.2, 0.3, 0.9, 0.5])
    wt = jnp.asarray([1.0, 4.0, 2.0, 6.0])
    # R: binomial()$dev.resids(y, mu, wt); binomial()$aic(y, n = wt, mu, wt)
    dev = [0.4462871026284195, 0.04931411533379931, 0.4214420626313054, 0.0]
    np.testing.assert_allclose(np.asarray(fam.dev_resid(y, mu, wt)), dev, rtol=1e-12, atol=1e-14)
    m = binomial_trials(np.asarray(wt), np.asarray(wt))
    assert float(fam.aic(y, jnp.asarray(m), mu, wt)) == pytest.approx(4.969437334915572, rel=1e-10)


def test_poisson_deviance_and_aic_match_r():
    fam = make_family("poisson")
    y = jnp.asarray([0.0, 3.0, 7.0])
    mu = jnp.asarray([0.5, 2.0, 9.0])
    wt = jnp.ones(3)
    # R: poisson()$dev.resids(y, mu, 1); poisson()$aic(y, 1, mu, 1)
    np.testing.assert_allclose(
        np.asarray(fam.dev_resid(y, mu, wt)), [1.0, 0.4327906486489863, 0.4815980040673153], rtol=1e-9
    )
    assert float(fam.aic(y, wt, mu, wt)) == pytest.approx(8.713814494520197, rel=1e-9)


def test_family_and_link_errors_name_the_problem():
    with pytest.raises(ValueError, match="'probit' is not available for the poisson"):
        make_family("poisson", "probit")
    with pytest.raises(ValueError, match="unknown family 'gamma'"):
        make_family("gamma")
    with pytest.raises(ValueError, match="unknown link 'cauchit'"):
        make_link("cauchit")


def test_response_support_checks_name_the_column():
    pois, binom = make_family("poisson"), make_family("binomial")
    with pytest.raises(DataError, match="'count' has negative values"):
        pois.check_response(np.array([1.0, -1.0]), "count")
    with pytest.raises(DataError, match="'count' has non-integer values"):
        pois.check_response(np.array([1.0, 2.5]), "count")
    with pytest.raises(DataError, match="'hit' has values outside \\[0, 1\\]"):
        binom.check_response(np.array([0.0, 2.0]), "hit")
    pois.check_response(np.array([0.0, 4.0]), "count")  # valid responses pass
    binom.check_response(np.array([0.0, 0.5]), "hit", np.array([1.0, 2.0]))
