"""Response families and link functions of generalized linear mixed models, as R's.

Each :class:`Link` and :class:`Family` mirrors R's ``make.link`` / ``binomial()`` /
``poisson()`` closely enough that a glmer fit is reproduced: the same clamping of
``linkinv`` and ``mu.eta`` at machine epsilon, the same deviance residuals and the same
``aic`` (-2 log-likelihood with the binomial coefficients and log y! included), from which
lme4 reports logLik.  Everything is written with ``jax.numpy`` (traceable, vmappable and
differentiable); the host checks of a response (:meth:`Family.check_response`) use NumPy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, ndtr, ndtri

from .design import DataError

__all__ = ["Link", "Family", "make_link", "make_family", "binomial_trials", "LINKS", "FAMILIES"]

_EPS = float(np.finfo(np.float64).eps)  # R's .Machine$double.eps
_LOGIT_THRESH = 30.0  # R's C_logit_linkinv: exp(η) clamped at η = ±30
_PROBIT_THRESH = 8.125890664701906  # -qnorm(eps)


@dataclass(frozen=True)
class Link:
    """A link g: ``linkfun`` μ → η, ``linkinv`` η → μ and its derivative ``mu_eta`` dμ/dη."""

    name: str
    linkfun: Callable
    linkinv: Callable
    mu_eta: Callable


def _logit_inv(eta):
    e = jnp.exp(jnp.clip(eta, -40, 40))
    e = jnp.where(eta < -_LOGIT_THRESH, _EPS, jnp.where(eta > _LOGIT_THRESH, 1.0 / _EPS, e))
    return e / (1.0 + e)


def _logit_mu_eta(eta):
    e = jnp.exp(jnp.clip(eta, -40, 40))
    return jnp.where(jnp.abs(eta) > _LOGIT_THRESH, _EPS, e / ((1.0 + e) * (1.0 + e)))


def _probit_inv(eta):
    return ndtr(jnp.clip(eta, -_PROBIT_THRESH, _PROBIT_THRESH))


def _probit_mu_eta(eta):
    return jnp.maximum(jnp.exp(-0.5 * eta * eta) / math.sqrt(2.0 * math.pi), _EPS)


def _cloglog_inv(eta):
    return jnp.clip(-jnp.expm1(-jnp.exp(eta)), _EPS, 1.0 - _EPS)


def _cloglog_mu_eta(eta):
    eta = jnp.minimum(eta, 700.0)
    return jnp.maximum(jnp.exp(eta) * jnp.exp(-jnp.exp(eta)), _EPS)


LINKS: dict[str, Link] = {
    "logit": Link("logit", lambda mu: jnp.log(mu / (1.0 - mu)), _logit_inv, _logit_mu_eta),
    "probit": Link("probit", lambda mu: ndtri(mu), _probit_inv, _probit_mu_eta),
    "cloglog": Link("cloglog", lambda mu: jnp.log(-jnp.log1p(-mu)), _cloglog_inv, _cloglog_mu_eta),
    "log": Link(
        "log",
        jnp.log,
        lambda eta: jnp.maximum(jnp.exp(eta), _EPS),
        lambda eta: jnp.maximum(jnp.exp(eta), _EPS),
    ),
    "identity": Link("identity", lambda mu: mu, lambda eta: eta, jnp.ones_like),
    "sqrt": Link("sqrt", jnp.sqrt, lambda eta: eta * eta, lambda eta: 2.0 * eta),
}


def make_link(name: str) -> Link:
    """The link called ``name`` (R's ``make.link``): logit, probit, cloglog, log, identity, sqrt."""
    if name not in LINKS:
        raise ValueError(f"unknown link {name!r}; jaxlme has {', '.join(LINKS)}")
    return LINKS[name]


def _xlogy_ratio(y, mu):
    """y·log(y/μ), 0 at y = 0 (R's ``y_log_y``)."""
    safe = jnp.where(y > 0, y, 1.0)
    return jnp.where(y > 0, y * jnp.log(safe / mu), 0.0)


def _binomial_dev(y, mu, wt):
    return 2.0 * wt * (_xlogy_ratio(y, mu) + _xlogy_ratio(1.0 - y, 1.0 - mu))


def _binomial_aic(y, m, mu, wt):
    """-2 Σ (wt/m)·log dbinom(round(m·y), round(m), μ); R takes m = n (the trials of a
    two-column response) when any n > 1, else the prior weights: :func:`binomial_trials`."""
    k, m_r = jnp.round(m * y), jnp.round(m)
    logchoose = gammaln(m_r + 1.0) - gammaln(k + 1.0) - gammaln(m_r - k + 1.0)
    safe_mu = jnp.clip(mu, 1e-300, 1.0 - 1e-16)
    ll = (
        logchoose
        + jnp.where(k > 0, k * jnp.log(safe_mu), 0.0)
        + jnp.where(m_r - k > 0, (m_r - k) * jnp.log1p(-safe_mu), 0.0)
    )
    return -2.0 * jnp.sum(jnp.where(m > 0, wt / jnp.where(m > 0, m, 1.0), 0.0) * ll)


def binomial_trials(n: np.ndarray, wt: np.ndarray) -> np.ndarray:
    """The m of R's ``binomial()$aic``: the trials n when any n > 1, else the prior weights."""
    return n if bool(np.any(n > 1)) else wt


def _poisson_dev(y, mu, wt):
    return 2.0 * wt * (_xlogy_ratio(y, mu) - (y - mu))


def _poisson_aic(y, n, mu, wt):
    ll = jnp.where(y > 0, y * jnp.log(mu), 0.0) - mu - gammaln(y + 1.0)
    return -2.0 * jnp.sum(wt * ll)


@dataclass(frozen=True)
class Family:
    """A response distribution with its link (R's ``family`` object, the parts glmer uses).

    ``dev_resid(y, mu, wt)`` are the per-observation deviance residuals (squared), ``aic(y,
    m, mu, wt)`` is R's ``family$aic`` (-2 log-likelihood with every constant; ``m``
    binomial trials, see :func:`binomial_trials`), ``variance(mu)`` the variance function.
    """

    name: str
    link: Link
    variance: Callable
    dev_resid: Callable
    aic: Callable
    valid_links: tuple[str, ...]

    def check_response(self, y: np.ndarray, column: str, weights: np.ndarray | None = None) -> None:
        """Refuse a response outside the family's support, naming its column (as R's
        ``family$initialize`` refuses it).

        Args:
            y: the response values (binomial: proportions of successes, or 0/1).
            column: the response's name in the formula, for the message.
            weights: prior weights (binomial: the number of trials for proportions).
        """
        if self.name == "poisson":
            if np.any(y < 0):
                raise DataError(f"Response '{column}' has negative values: a poisson count must be >= 0")
            if np.any(np.abs(y - np.round(y)) > 1e-7 * np.maximum(1.0, np.abs(y))):
                raise DataError(f"Response '{column}' has non-integer values: a poisson count must be a whole number")
        elif self.name == "binomial":
            if np.any((y < 0) | (y > 1)):
                raise DataError(
                    f"Response '{column}' has values outside [0, 1]: binomial responses are 0/1, proportions with "
                    "weights = trials, or cbind(successes, failures)"
                )
            if weights is not None:
                k = y * weights
                if np.any(np.abs(k - np.round(k)) > 1e-7 * np.maximum(1.0, np.abs(k))):
                    raise DataError(
                        f"Response '{column}' times the weights is not a whole number of successes in every row: "
                        "binomial weights are numbers of trials"
                    )


def _family_links(name: str) -> tuple[str, tuple[str, ...]]:
    if name == "binomial":
        return "logit", ("logit", "probit", "cloglog", "log")
    if name == "poisson":
        return "log", ("log", "identity", "sqrt")
    raise ValueError(f"unknown family {name!r}; jaxlme fits 'binomial' and 'poisson'")


FAMILIES = ("binomial", "poisson")


def make_family(name: str, link: str | None = None) -> Family:
    """The family ``name`` ("binomial" or "poisson") with ``link`` (default: canonical).

    Args:
        name: "binomial" or "poisson".
        link: a link name valid for the family (binomial: logit, probit, cloglog, log;
            poisson: log, identity, sqrt); None for the canonical link.

    Returns:
        The :class:`Family`.
    """
    if not isinstance(name, str):
        raise TypeError(f"family must be a name ('binomial' or 'poisson'), got {type(name).__name__}")
    canonical, valid = _family_links(name)
    link = canonical if link is None else link
    if link not in valid:
        raise ValueError(f"link {link!r} is not available for the {name} family (valid: {', '.join(valid)})")
    if name == "binomial":
        return Family(name, make_link(link), lambda mu: mu * (1.0 - mu), _binomial_dev, _binomial_aic, valid)
    return Family(name, make_link(link), lambda mu: mu, _poisson_dev, _poisson_aic, valid)
