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
    # G is symmetric positive definite: invert through its Cholesky factor
    c, low = scipy.linalg.cho_factor(G, overwrite_a=True, check_finite=False)
    P = scipy.linalg.cho_solve((c, low), np.eye(G.shape[0], dtype=np.float32), overwrite_b=True,
                               check_finite=False)
    P = np.asarray(P, dtype=np.float32)
    d = np.diag(P).copy()
    P /= -d[None, :]
    P[np.diag_indices_from(P)] = 0.0
    return P


class EASERecommender(Recommender):
    """Embarrassingly shallow autoencoder: dense item-item weights in closed form."""

    name = "ease"
    kind = "item_item"
    Config = EASEConfig

    def _fit(self, data: InteractionMatrix, callback: FitCallback | None) -> dict[str, Any]:
        n = data.n_items
        if n > self.config.max_items:
            gib = n * n * 4 * 3 / 2**30
            raise TooManyItemsError(
                f"ease: {n} items exceed max_items={self.config.max_items} "
                f"(a dense item x item fit needs about {gib:.1f} GiB); raise min_item_customers "
                f"to filter rare items, raise max_items, or use als/itemknn"
            )
        with blas_threads(self.options.num_threads):
            B = ease_weights(data.matrix, self.config.l2)
        arrays = {"similarity": B}
        if callback is not None:
            callback(0, arrays)
        return arrays
