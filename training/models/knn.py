"""Item-item nearest neighbours via implicit (cosine, BM25 or TF-IDF similarity).

implicit's ``similarity`` is an items x items CSR holding each item's ``K`` nearest
neighbours; a customer's scores are ``history @ similarity`` (what implicit's
``recommend`` computes), so the artifact is of kind ``item_item``.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from features.interactions import InteractionMatrix
from training.models.base import FitCallback, ModelConfig, Recommender
from training.threads import blas_threads

__all__ = ["ItemKNNConfig", "ItemKNNRecommender"]


class ItemKNNConfig(ModelConfig):
    """Settings of implicit's item-item recommenders."""

    similarity: Literal["cosine", "bm25", "tfidf"] = Field(
        "cosine", description="item-item similarity: cosine, BM25-weighted or TF-IDF-weighted"
    )
    neighbours: int = Field(100, ge=1, le=10_000, description="K: neighbours kept per item")
    bm25_k1: float = Field(1.2, gt=0.0, description="BM25 K1 (term saturation); bm25 only")
    bm25_b: float = Field(0.75, ge=0.0, le=1.0, description="BM25 B (length normalisation); bm25 only")


class ItemKNNRecommender(Recommender):
    """Item-based collaborative filtering (implicit ``CosineRecommender`` and friends)."""

    name = "itemknn"
    kind = "item_item"
    Config = ItemKNNConfig

    def _fit(self, data: InteractionMatrix, callback: FitCallback | None) -> dict[str, Any]:
        from implicit.nearest_neighbours import (
            BM25Recommender,
            CosineRecommender,
            TFIDFRecommender,
        )

        cfg = self.config
        threads = self.options.num_threads
        if cfg.similarity == "bm25":
            model = BM25Recommender(K=cfg.neighbours, K1=cfg.bm25_k1, B=cfg.bm25_b, num_threads=threads)
        elif cfg.similarity == "tfidf":
            model = TFIDFRecommender(K=cfg.neighbours, num_threads=threads)
        else:
            model = CosineRecommender(K=cfg.neighbours, num_threads=threads)
        with blas_threads(1), warnings.catch_warnings():
            # implicit's own weighting hands its kNN a COO matrix and then warns about it
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            model.fit(data.matrix, show_progress=self.options.show_progress)
        similarity = sp.csr_matrix(model.similarity, dtype=np.float32)
        similarity.sort_indices()
        arrays = {"similarity": similarity}
        if callback is not None:  # a single "epoch": lets a tuner treat every model alike
            callback(0, arrays)
        return arrays
