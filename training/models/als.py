"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) via implicit's CPU conjugate-gradient solver.

Confidence is ``alpha * value`` of the interaction matrix (implicit 0.7); scoring and the
fold-in of unknown customers live in :mod:`features.scoring` (params ``regularization``,
``alpha``, ``fold_in="als"``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from features.interactions import InteractionMatrix
from training.models.base import FitCallback, ModelConfig, Recommender, TrainingOptions
from training.threads import blas_threads

__all__ = ["ALSConfig", "ALSRecommender", "fit_implicit_als"]


class ALSConfig(ModelConfig):
    """Settings of implicit's ``AlternatingLeastSquares``."""

    factors: int = Field(64, ge=1, le=1024, description="latent factors per customer and item")
    regularization: float = Field(0.05, ge=0.0, description="L2 penalty on the factors")
    alpha: float = Field(2.0, gt=0.0, description="confidence = alpha * interaction value")
    iterations: int = Field(15, ge=1, le=500, description="ALS sweeps (one epoch = users + items)")
    use_cg: bool = Field(True, description="conjugate-gradient solver (fast) instead of Cholesky")
    cg_steps: int = Field(3, ge=1, le=20, description="CG steps per factor update")


def fit_implicit_als(
    data: InteractionMatrix,
    config: ALSConfig,
    options: TrainingOptions,
    callback: FitCallback | None = None,
    extra_arrays: dict[str, Any] | None = None,
):
    """Fit implicit's CPU ALS; returns the fitted implicit model.

    ``callback(epoch, arrays)`` is called after every iteration with the current factors
    (and ``extra_arrays``); the arrays are live views, valid during the call only.
    Anything the callback raises (e.g. ``optuna.TrialPruned``) propagates.
    """
    from implicit.cpu.als import AlternatingLeastSquares

    with blas_threads(1):
        model = AlternatingLeastSquares(
            factors=config.factors,
            regularization=config.regularization,
            alpha=config.alpha,
            dtype=np.float32,
            use_cg=config.use_cg,
            iterations=config.iterations,
            num_threads=options.num_threads,
            random_state=options.seed,
        )
        model.cg_steps = config.cg_steps
        hook = None
        if callback is not None:
            extra = dict(extra_arrays or {})

            def hook(iteration: int, _elapsed: float, _loss) -> None:
                callback(
                    iteration,
                    {"user_factors": model.user_factors, "item_factors": model.item_factors, **extra},
                )

        model.fit(data.matrix, show_progress=options.show_progress, callback=hook)
    return model


class ALSRecommender(Recommender):
    """Matrix factorisation by alternating least squares (implicit, CPU, CG solver)."""

    name = "als"
    kind = "factors"
    Config = ALSConfig
    supports_epoch_callback = True
    artifact_params = {"fold_in": "als"}

    def _fit(self, data: InteractionMatrix, callback: FitCallback | None) -> dict[str, Any]:
        model = fit_implicit_als(data, self.config, self.options, callback)
        return {
            "user_factors": np.ascontiguousarray(model.user_factors, dtype=np.float32),
            "item_factors": np.ascontiguousarray(model.item_factors, dtype=np.float32),
        }
