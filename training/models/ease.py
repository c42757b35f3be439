"""EASE (Steck 2019): a closed-form linear item-item model.

``P = (X^T X + l2 I)^-1``, ``B = I - P / diag(P)`` (column-wise), ``diag(B) = 0``;
scores are ``history @ B``. ``B`` is dense ``n_items x n_items`` float32, so models above
``max_items`` items (after support filtering) are refused rather than exhausting memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
from pydantic import Field

from features.errors import PatronError
from features.interactions import InteractionMatrix
from training.models.base import FitCallback, ModelConfig, Recommender
from training.threads import blas_threads

__all__ = ["EASEConfig", "EASERecommender", "TooManyItemsError", "ease_weights"]


class TooManyItemsError(PatronError):
    """The item catalogue is too large for a dense item x item model."""


class EASEConfig(ModelConfig):
    """Settings of the EASE closed form."""

    l2: float = Field(500.0, gt=0.0, description="lambda: L2 penalty added to the Gram diagonal")
    max_items: int = Field(
        30_000, ge=1, description="refuse to fit above this many items (dense float32 n^2 memory)"
    )


def ease_weights(X, l2: float) -> np.ndarray:
    """Dense float32 EASE weights for a customers x items matrix ``X`` (CSR or dense)."""
    G = X.T @ X
    G = np.asarray(G.toarray() if hasattr(G, "toarray") else G, dtype=np.float32)
    G[np.diag_indices_from(G)] += np.float32(l2)
    P = _spd_inverse_inplace(G)
    d = np.diag(P).copy()
    P /= -d[None, :]
    P[np.diag_indices_from(P)] = 0.0
    return P


def _spd_inverse_inplace(G: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite C-ordered ``G``, computed in G's buffer.

    LAPACK potrf + potri (n^3 flops, no second n x n buffer). ``G.T`` is the same matrix
    in Fortran order, so LAPACK works in place; potri fills one triangle, mirrored after.
    """
    potrf, potri = scipy.linalg.lapack.get_lapack_funcs(("potrf", "potri"), (G,))
    F = G.T  # Fortran-ordered view: no copy
    c, info = potrf(F, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: Gram matrix is not positive definite (potrf info={info})")
    inv, info = potri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: inversion failed (potri info={info})")
    P = inv.T  # C-ordered; valid in its lower triangle
    _mirror_lower_to_upper(P)
    return P


def _mirror_lower_to_upper(P: np.ndarray, block: int = 1024) -> None:
    """Copy the lower triangle of square ``P`` onto its upper triangle, block by block."""
    n = P.shape[0]
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        P[lo:hi, hi:] = P[hi:, lo:hi].T
        diag = P[lo:hi, lo:hi]
        iu = np.triu_indices(hi - lo, k=1)
        diag[iu] = diag.T[iu]


class EASERecommender(Recommender):
    """Embarrassingly shallow autoencoder: dense item-item weights in closed form."""

    name = "ease"
    kind = "item_item"
    Config = EASEConfig

    def _fit(self, data: InteractionMatrix, callback: FitCallback | None) -> dict[str, Any]:
        n = data.n_items
        if n > self.config.max_items:
            gib = n * n * 4 / 2**30
            raise TooManyItemsError(
                f"ease: {n} items exceed max_items={self.config.max_items} "
                f"(the dense item x item weights alone take {gib:.1f} GiB); raise min_item_customers "
                f"to filter rare items, raise max_items, or use als/itemknn"
            )
        with blas_threads(self.options.num_threads):
            B = ease_weights(data.matrix, self.config.l2)
        arrays = {"similarity": B}
        if callback is not None:
            callback(0, arrays)
        return arrays
