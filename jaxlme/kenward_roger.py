"""Kenward–Roger small-sample inference for the fixed effects (Kenward & Roger 1997).

As pbkrtest's ``vcovAdj``/``Lb_ddf``/``KRmodcomp`` (and lmerTest's ``ddf = "Kenward-Roger"``):
the marginal covariance is written in pbkrtest's parametrization,

    Σ = Σ_r γ_r G_r,   γ = (lower triangle of each term's covariance matrix ..., σ²),

with G_r = Z_t (I ⊗ E_r) Z_t' for a covariance entry of term t and G = I for σ².  Σ is linear
in γ, so its derivatives ∂Σ/∂γ_r are exactly the G_r and the second derivatives vanish
(pbkrtest drops them likewise).  The adjusted covariance is Φ_A = Φ + 2 Φ U Φ with
Φ = (X'Σ⁻¹X)⁻¹ and U built from P_r = -X'Σ⁻¹G_rΣ⁻¹X, Q_rs = X'Σ⁻¹G_rΣ⁻¹G_sΣ⁻¹X and
W = 2 I_E⁻¹, the inverse of the expected REML information in γ.

Σ⁻¹ is never formed: with U = ZΛ, Σ⁻¹ = σ⁻²(I − Z K Z'), K = Λ(Λ'Z'ZΛ + I)⁻¹Λ' (Woodbury),
so every trace and product above reduces to the Gram matrices Z'Z, Z'X, X'X: the cost is
O(nnz(Z)·q) for the Grams plus O(q³ + n_γ² q²) dense work in q = the number of random
effects, independent of n.  ``max_re`` bounds q (the dense q × q matrices).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

if TYPE_CHECKING:  # pragma: no cover
    from .results import LMMResult

__all__ = ["KRParts", "kr_parts", "kenward_roger", "kr_ftest", "MAX_RE"]

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # fit -> KRParts (a fit never changes)
MAX_RE = 5000  # default bound on q: about a dozen dense q × q float64 matrices (~2.4 GB at 5000)


class KRParts:
    """What Kenward–Roger needs of one REML fit, in the centred parametrization β̃ of the
    fit (see jaxlme.centering): Φ, Φ_A, the P_r and W.  Contrasts of the model's β are
    mapped by ``centering.contrasts``; every KR quantity is invariant under that map."""

    def __init__(self, phi: np.ndarray, phi_adj: np.ndarray, P: list[np.ndarray], W: np.ndarray, centering) -> None:
        self.phi = phi
        self.phi_adj = phi_adj
        self.P = P
        self.W = W
        self.centering = centering

    def vcov_adj(self) -> np.ndarray:
        """Adjusted Var(β̂) of the model's β (pbkrtest's ``vcovAdj``)."""
        return self.centering.vcov(self.phi_adj)

    def adjust(self, L: np.ndarray) -> dict:
        """pbkrtest's ``.KR_adjust`` for H0: Lβ = 0.

        Args:
            L: (k, p) contrasts of the model's β, of full row rank.

        Returns:
            dict with ``ddf`` (KR's denominator df), ``F.scaling``, ``q`` (rank of L) and
            pbkrtest's ``A1``, ``A2``.
        """
        Lt = self.centering.contrasts(L)
        phi = self.phi
        q = int(np.linalg.matrix_rank(Lt))
        theta = Lt.T @ np.linalg.solve(Lt @ phi @ Lt.T, Lt)
        tp = theta @ phi
        us = [tp @ P @ phi for P in self.P]
        tr = [np.trace(u) for u in us]
        A1 = A2 = 0.0
        n = len(us)
        for i in range(n):
            for j in range(i, n):
                e = 1.0 if i == j else 2.0
                A1 += e * self.W[i, j] * tr[i] * tr[j]
                A2 += e * self.W[i, j] * np.sum(us[i] * us[j].T)
        B = (A1 + 6.0 * A2) / (2.0 * q)
        g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
        den = 3 * q + 2 * (1 - g)
        c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
        V0 = 1.0 + c1 * B
        V1 = 1.0 - c2 * B
        V2 = 1.0 - c3 * B
        V0 = 0.0 if abs(V0) < 1e-10 else V0
        x = 1.0 - A2 / q
        ratio = 1.0 if (abs(x) < 1e-14 and abs(V1) < 1e-14) else x / V1
        rho = ratio**2 * V0 / V2 / q
        df2 = 4.0 + (q + 2) / (q * rho - 1.0)
        scaling = 1.0 if abs(df2 - 2.0) < 0.01 else df2 * (1.0 - A2 / q) / (df2 - 2.0)
        return {"ddf": float(df2), "F.scaling": float(scaling), "q": q, "A1": float(A1), "A2": float(A2)}


def _random_design(res: LMMResult):
    """Sparse Z (n × q) in lme4's column order (term by term, level-major) and per term
    (offset, nlevels, ncols, λ_t)."""
    d = res.model.design
    lambdas = res.model.layout.lambdas(res.theta)
    blocks, info, off = [], [], 0
    n = d.n
    rows = np.arange(n)
    for t, lam in zip(d.terms, lambdas):
        ell, r = t.nlevels, t.ncols
        cols = t.index[:, None] * r + np.arange(r)[None, :]
        blocks.append(sp.csc_matrix((t.Z.ravel(), (np.repeat(rows, r), cols.ravel())), shape=(n, ell * r)))
        info.append((off, ell, r, np.asarray(lam, dtype=float)))
        off += ell * r
    return sp.hstack(blocks, format="csc"), info


def _apply_E(A: np.ndarray, ell: int, r: int, i: int, j: int) -> np.ndarray:
    """(I_ℓ ⊗ E_ij) A for a term's rows of A (ℓ·r rows, level-major): E_ij has ones at
    (i, j) and (j, i)."""
    B = A.reshape(ell, r, -1)
    out = np.zeros_like(B)
    out[:, i] = B[:, j]
    if i != j:
        out[:, j] = B[:, i]
    return out.reshape(ell * r, -1)


def kr_parts(res: LMMResult, max_re: int = MAX_RE) -> KRParts:
    """Φ, Φ_A, P_r and W of pbkrtest's ``vcovAdj`` for a REML fit.

    Args:
        res: a REML fit without prior weights.
        max_re: largest number of random effects q allowed (memory and time grow as q²
            and q³).

    Returns:
        A :class:`KRParts`.

    Raises:
        ValueError: an ML fit, a weighted fit, or more than ``max_re`` random effects.
    """
    if not res.reml:
        raise ValueError("Kenward-Roger's method is only available for REML fits (refit with reml=True)")
    d = res.model.design
    if d.weights is not None:
        raise ValueError("Kenward-Roger's method is not available for fits with prior weights (weights=...)")
    if d.p == 0:
        raise ValueError("Kenward-Roger's method needs at least one fixed effect")
    q = sum(t.nlevels * t.ncols for t in d.terms)
    if q > max_re:
        raise ValueError(f"Kenward-Roger: {q} random effects exceed max_re={max_re} (dense q x q work); raise max_re")
    cached = _CACHE.get(res)
    if cached is not None:
        return cached
    Z, info = _random_design(res)
    cen = res.model.centering
    X = d.X @ cen.T  # centred columns: X β = X̃ β̃
    n, p = X.shape
    s2 = res.sigma**2
    S = (Z.T @ Z).toarray()
    ZX = np.asarray(Z.T @ X)
    XX = X.T @ X
    Lam = sp.block_diag([sp.kron(sp.identity(ell), sp.csr_matrix(lam)) for _, ell, _, lam in info], format="csr")
    LtS = np.asarray(Lam.T @ S)  # Λ'S
    M = np.asarray(Lam.T @ LtS.T) + np.eye(q)  # Λ'SΛ + I
    cM = np.linalg.cholesky(M)
    Minv_Lt = np.linalg.solve(cM.T, np.linalg.solve(cM, Lam.T.toarray()))
    K = np.asarray(Lam @ Minv_Lt)  # Λ M⁻¹ Λ'
    K = 0.5 * (K + K.T)
    KS = K @ S
    R = (np.eye(q) - KS) / s2  # Σ⁻¹Z = Z R
    C = S @ R  # Z'Σ⁻¹Z
    C = 0.5 * (C + C.T)
    F = R.T @ ZX  # Z'Σ⁻¹X
    KZX = K @ ZX
    XWX = (XX - ZX.T @ KZX) / s2
    phi = np.linalg.inv(XWX)
    phi = 0.5 * (phi + phi.T)
    # Σ⁻¹X = X a + Z b, with a = I/σ², b = -K Z'X/σ²
    a, b = np.eye(p) / s2, -KZX / s2

    def inner(a1, b1, a2, b2):  # (X a1 + Z b1)'(X a2 + Z b2)
        return a1.T @ XX @ a2 + a1.T @ ZX.T @ b2 + b1.T @ ZX @ a2 + b1.T @ S @ b2

    a2, b2 = a / s2, (-KZX @ a + (np.eye(q) - KS) @ b) / s2  # Σ⁻¹(Σ⁻¹X)
    XW2X = inner(a, b, a, b)
    XW3X = inner(a, b, a2, b2)
    ZW2Z = R.T @ S @ R
    ZW2X = R.T @ F
    trW2 = (n - 2.0 * np.trace(KS) + np.sum(KS * KS.T)) / s2**2

    # γ_r of the random terms: pbkrtest's order (each term's lower triangle, column-major)
    params = []
    for off, ell, r, _ in info:
        for j in range(r):
            for i in range(j, r):
                params.append((off, ell, r, i, j))
    DC, DF, DZW2Z = [], [], []
    for off, ell, r, i, j in params:
        sl = slice(off, off + ell * r)
        DC.append(_apply_E(C[sl], ell, r, i, j))  # rows `sl` of D_r C
        DF.append(_apply_E(F[sl], ell, r, i, j))
        DZW2Z.append(_apply_E(ZW2Z[sl], ell, r, i, j))
    slices = [slice(off, off + ell * r) for off, ell, r, _, _ in params]
    ng = len(params) + 1
    P = [-F[s].T @ DF_r for s, DF_r in zip(slices, DF)] + [-XW2X]
    Kt = np.zeros((ng, ng))
    Q: dict[tuple[int, int], np.ndarray] = {}
    for u in range(ng - 1):
        su = slices[u]
        for v in range(u, ng - 1):
            sv = slices[v]
            Kt[u, v] = Kt[v, u] = np.sum(DC[u][:, sv] * DC[v][:, su].T)  # tr(D_u C D_v C)
            Q[u, v] = DF[u].T @ C[su, sv] @ DF[v]  # F' D_u C D_v F
        Kt[u, -1] = Kt[-1, u] = np.trace(DZW2Z[u][:, su])  # tr(D_u Z'Σ⁻²Z)
        Q[u, ng - 1] = DF[u].T @ ZW2X[su]  # F' D_u Z'Σ⁻²X
    Kt[-1, -1] = trW2
    Q[ng - 1, ng - 1] = XW3X
    IE2 = np.zeros((ng, ng))
    for u in range(ng):
        pu = phi @ P[u]
        for v in range(u, ng):
            IE2[u, v] = IE2[v, u] = Kt[u, v] - 2.0 * np.sum(phi * Q[u, v]) + np.sum(pu * (P[v] @ phi))
    ev = np.linalg.eigvalsh(IE2)
    W = 2.0 * (np.linalg.inv(IE2) if np.min(np.abs(ev)) > 1e-10 else np.linalg.pinv(IE2))
    W = 0.5 * (W + W.T)
    U = np.zeros((p, p))
    for u in range(ng - 1):
        for v in range(u + 1, ng):
            U += W[u, v] * (Q[u, v] - P[u] @ phi @ P[v])
    U = U + U.T
    for u in range(ng):
        U += W[u, u] * (Q[u, u] - P[u] @ phi @ P[u])
    phi_adj = phi + 2.0 * phi @ U @ phi
    phi_adj = 0.5 * (phi_adj + phi_adj.T)
    _CACHE[res] = parts = KRParts(phi, phi_adj, P, W, cen)
    return parts


def _contrast_matrix(res: LMMResult, L) -> tuple[np.ndarray, list[str]]:
    """L as a float matrix with one column per fixed effect, and its row names (as
    ``inference.satterthwaite``)."""
    d = res.model.design
    p = d.p
    names = list(d.xnames)
    if L is None:
        return np.eye(p), names
    if isinstance(L, pd.DataFrame):
        unknown = [c for c in L.columns if c not in d.xnames]
        if unknown:
            raise ValueError(f"contrast matrix L has column(s) {unknown} that are not fixed effects")
        names = [str(i) for i in L.index]
        L = L.reindex(columns=d.xnames, fill_value=0.0).to_numpy(dtype=float)
    L = np.atleast_2d(np.asarray(L, dtype=float))
    if L.shape[1] != p:
        raise ValueError(f"contrast matrix L must have {p} columns (one per fixed effect), got {L.shape[1]}")
    if len(names) != L.shape[0]:
        names = [f"L{i + 1}" for i in range(L.shape[0])]
    return L, names


def kenward_roger(res: LMMResult, L=None, max_re: int = MAX_RE) -> pd.DataFrame:
    """Kenward–Roger estimate, adjusted standard error and df for each contrast (row) of L.

    The same columns and index conventions as ``inference.satterthwaite``: ``estimate, se,
    df`` with se = √(l'Φ_A l) from pbkrtest's adjusted covariance Φ_A (``vcovAdj``) and df
    as pbkrtest's ``Lb_ddf`` (lmerTest's ``contest1D(ddf = "Kenward-Roger")``).

    Args:
        res: a REML fit (KR is defined for REML; ML fits raise ValueError).
        L: contrasts of the fixed effects: None (each coefficient), an array with one
            column per fixed effect, or a DataFrame whose columns are fixed-effect names
            (missing ones count as 0) and whose index names the rows.
        max_re: largest number of random effects allowed (dense q × q work).

    Returns:
        DataFrame with ``estimate, se, df``, one row per contrast.
    """
    L, names = _contrast_matrix(res, L)
    parts = kr_parts(res, max_re)
    Va = parts.vcov_adj()
    est = L @ res.fixef.to_numpy()
    se = np.sqrt(np.einsum("ki,ij,kj->k", L, Va, L))
    df = np.array([parts.adjust(L[k : k + 1])["ddf"] if np.any(L[k]) else np.nan for k in range(L.shape[0])])
    return pd.DataFrame({"estimate": est, "se": se, "df": df}, index=pd.Index(names))


def kr_ftest(res: LMMResult, L, parts: KRParts | None = None) -> dict:
    """Kenward–Roger F test of H0: Lβ = 0 (pbkrtest's ``KRmodcomp`` with a restriction
    matrix, as lmerTest's ``contestMD(ddf = "Kenward-Roger")``).

    Args:
        res: a REML fit.
        L: (k, p) contrast matrix of full row rank.
        parts: :func:`kr_parts` of ``res``, to share between tests.

    Returns:
        dict with ``F`` (scaled), ``F_unscaled`` (Wald/q with Φ_A), ``NumDF`` (rank of L),
        ``DenDF``, ``scaling`` and ``p``.
    """
    from scipy import special

    parts = kr_parts(res) if parts is None else parts
    L = np.atleast_2d(np.asarray(L, dtype=float))
    adj = parts.adjust(L)
    q = adj["q"]
    Lb = L @ res.fixef.to_numpy()
    Va = parts.vcov_adj()
    wald = float(Lb @ np.linalg.solve(L @ Va @ L.T, Lb))
    Fu = wald / q
    F = adj["F.scaling"] * Fu
    return {
        "F": F,
        "F_unscaled": Fu,
        "NumDF": q,
        "DenDF": adj["ddf"],
        "scaling": adj["F.scaling"],
        "p": float(special.fdtrc(q, adj["ddf"], F)),
    }
