"""Bayesian Personalised Ranking (Rendle et al. 2009) via implicit's CPU implementation.

implicit stores an item bias in the last column of ``item_factors`` and a constant 1 in
the last column of ``user_factors``, so ``user_factors @ item_factors.T`` is exactly
implicit's score; the artifact keeps both (``factors + 1`` columns) and marks
``bias_column`` so a folded-in customer gets the constant 1 too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from features.interactions import InteractionMatrix
from training.models.base import FitCallback, ModelConfig, Recommender
from training.threads import blas_threads

__all__ = ["BPRConfig", "BPRRecommender"]


class BPRConfig(ModelConfig):
    """Settings of implicit's ``BayesianPersonalizedRanking`` (values are used as binary)."""

    factors: int = Field(64, ge=1, le=1024, description="latent factors (an item bias is added)")
    learning_rate: float = Field(0.01, gt=0.0, le=1.0, description="SGD step size")
    regularization: float = Field(0.01, ge=0.0, description="L2 penalty on the factors")
    iterations: int = Field(100, ge=1, le=5000, description="epochs of SGD over all positives")
    verify_negative_samples: bool = Field(
        True, description="resample negatives the customer actually bought (slower, better)"
    )


class BPRRecommender(Recommender):
    """Pairwise ranking matrix factorisation (implicit, CPU)."""

    name = "bpr"
    kind = "factors"
    Config = BPRConfig
    supports_epoch_callback = True
    artifact_params = {"fold_in": "mean", "bias_column": True}

    def _fit(self, data: InteractionMatrix, callback: FitCallback | None) -> dict[str, Any]:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        cfg = self.config
        with blas_threads(1):
            model = BayesianPersonalizedRanking(
                factors=cfg.factors,
                learning_rate=cfg.learning_rate,
                regularization=cfg.regularization,
                dtype=np.float32,
                num_threads=self.options.num_threads,
                iterations=cfg.iterations,
                verify_negative_samples=cfg.verify_negative_samples,
                random_state=self.options.seed,
            )
            hook = None
            if callback is not None:

                def hook(epoch: int, *_progress) -> None:
                    callback(
                        epoch,
                        {"user_factors": model.user_factors, "item_factors": model.item_factors},
                    )

            model.fit(data.matrix, show_progress=self.options.show_progress, callback=hook)
        return {
            "user_factors": np.ascontiguousarray(model.user_factors, dtype=np.float32),
            "item_factors": np.ascontiguousarray(model.item_factors, dtype=np.float32),
        }
