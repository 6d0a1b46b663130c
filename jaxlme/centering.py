"""Centring of the response and fixed-effect columns before the cross-products.

jaxlme's criterion comes from the Cholesky factor of [ZΛ X y]'[ZΛ X y], which squares the
condition number of [X y]: a response near 1e8, or a covariate such as a year near 2000,
loses most of the digits a fit needs.  When X has an intercept column the model is
unchanged by subtracting a constant from y and from each other column of X, so the
cross-products are built from

    ỹ = y − c·1,    X̃ = X T⁻¹ with X̃_j = X_j − m_j·1 (j ≠ intercept),

and the estimates are mapped back exactly: β = T β̃ + c·e₀, Var(β̂) = T Var(β̃) T'.  T is
unit triangular (det T = 1), so the REML criterion, the ML deviance, θ, σ and the random
effects are the same in both parametrizations; only the rounding differs.  The means are
weighted by the prior weights, so the √w-scaled rows stay centred too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

__all__ = ["Centering", "center_design"]


@dataclass(frozen=True)
class Centering:
    """The map between the centred parametrization β̃ and the model's β.

    Attributes:
        means: (p,) what was subtracted from each column of X (0 for the intercept and
            for every column when nothing was centred).
        y_shift: what was subtracted from the response.
        intercept: index of the intercept column, or None (then nothing is centred).
    """

    means: np.ndarray
    y_shift: float
    intercept: int | None

    @property
    def active(self) -> bool:
        return self.intercept is not None

    @property
    def T(self) -> np.ndarray:
        """β = T β̃ + y_shift·e₀: the identity with −means in the intercept's row."""
        p = len(self.means)
        T = np.eye(p)
        if self.active:
            T[self.intercept] -= self.means
            T[self.intercept, self.intercept] = 1.0
        return T

    def beta(self, beta_tilde) -> np.ndarray:
        """The model's β from β̃ (any leading batch dimensions)."""
        b = np.asarray(beta_tilde, dtype=float)
        if not self.active:
            return b
        out = b.copy()
        out[..., self.intercept] = b[..., self.intercept] - b @ self.means + self.y_shift
        return out

    def vcov(self, V) -> np.ndarray:
        """Var(β̂) = T Var(β̃) T'."""
        T = self.T
        return T @ np.asarray(V, dtype=float) @ T.T

    def contrasts(self, L) -> np.ndarray:
        """Rows of L (contrasts of β) as contrasts of β̃: L β = (L T) β̃ + constant."""
        return np.asarray(L, dtype=float) @ self.T


def _intercept_column(X: np.ndarray) -> int | None:
    for j in range(X.shape[1]):
        if np.all(X[:, j] == 1.0):
            return j
    return None


def center_design(design) -> tuple[object, Centering]:
    """The design with y and the non-intercept columns of X centred (weighted means), and
    the :class:`Centering` that maps its estimates back.  A design without an intercept
    column is returned as it is (subtracting constants would change its model).

    Args:
        design: a validated ``Design`` (response already net of any offset).

    Returns:
        ``(centred design, centering)``.
    """
    X, y = design.X, design.y
    p = X.shape[1]
    j0 = _intercept_column(X) if p else None
    if j0 is None:
        return design, Centering(np.zeros(p), 0.0, None)
    w = design.weights
    means = np.average(X, axis=0, weights=w)
    means[j0] = 0.0
    y_shift = float(np.average(y, weights=w))
    Xc = X - means
    Xc[:, j0] = 1.0
    return replace(design, X=Xc, y=y - y_shift), Centering(means, y_shift, j0)
