"""The one interface every Patron model shares.

A model is configured by one pydantic config (``extra="forbid"``), fit on an
:class:`~features.interactions.InteractionMatrix`, and once fit *is* its
:class:`~features.artifact.ModelArtifact`: recommending, similar items and save/load
all go through :mod:`features.scoring`, the same code serving uses. Subclasses only
implement ``_fit`` (matrix in, arrays out).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict

from features import columns as C
from features.artifact import ModelArtifact, load_artifact
from features.errors import PatronError
from features.interactions import InteractionMatrix
from features.scoring import score, similar_items, top_k


class ModelConfig(BaseModel):
    """Base of every model config: strict, JSON round-trippable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_params(self) -> dict[str, Any]:
        """Flat ``{field: scalar}`` dict (what MLflow logs and Optuna samples)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ModelConfig:
        """Rebuild from a flat dict: an Optuna trial's params or MLflow's string params
        (``"64"``, ``"0.1"``, ``"True"``, ``"None"`` are coerced; unknown keys are refused)."""
        return cls.model_validate({k: (None if v == "None" else v) for k, v in params.items()})


@dataclass(frozen=True)
class TrainingOptions:
    """Run options, kept apart from the model config."""

    seed: int = 42
    num_threads: int = 1
    show_progress: bool = False


# fit callback: (epoch, model_arrays_so_far) -> None; may raise to stop (e.g. Optuna pruning)
FitCallback = Callable[[int, dict[str, Any]], None]


class NotFittedError(RuntimeError):
    """The model has not been fit or loaded."""


class Recommender(ABC):
    """Fit on CSR, recommend in customer/item ids, save/load as a ModelArtifact."""

    name: ClassVar[str]
    Config: ClassVar[type[ModelConfig]]
    kind: ClassVar[str]  # artifact kind produced by _fit
    supports_similar_items: ClassVar[bool] = True
    supports_epoch_callback: ClassVar[bool] = False
    # fixed params every artifact of this model carries (scoring hints, e.g. fold_in mode)
    artifact_params: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: ModelConfig | dict | None = None, options: TrainingOptions | None = None):
        if config is None:
            config = self.Config()
        elif isinstance(config, dict):
            config = self.Config(**config)
        elif not isinstance(config, self.Config):
            raise TypeError(f"{self.name} takes a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config
        self.options = options or TrainingOptions()
        self.artifact: ModelArtifact | None = None

    # -- to implement -------------------------------------------------------------
    @abstractmethod
    def _fit(self, data: InteractionMatrix, callback: FitCallback | None) -> dict[str, Any]:
        """Return the artifact arrays (and optionally ``'_params'``: extra params)."""

    # -- shared ------------------------------------------------------------------
    def fit(self, data: InteractionMatrix, callback: FitCallback | None = None) -> Recommender:
        if not isinstance(data, InteractionMatrix):
            raise PatronError(
                f"{self.name}.fit takes an InteractionMatrix, not a {type(data).__name__}: build "
                "one with features.matrix.build_interactions(purchases), or train straight from "
                "a purchases DataFrame with patron.train(purchases, model=...)")
        if data.n_customers == 0 or data.n_items == 0 or data.matrix.nnz == 0:
            raise PatronError(
                f"{self.name}: cannot fit on an empty interaction matrix "
                f"({data.n_customers} customers x {data.n_items} items, {data.matrix.nnz} entries)"
            )
        self.artifact = self.make_artifact(data, self._fit(data, callback))
        return self

    def make_artifact(self, data: InteractionMatrix, arrays: Mapping[str, Any]) -> ModelArtifact:
        """Wrap model arrays (``_fit``'s, or an epoch callback's mid-fit) fit on ``data`` as
        this model's artifact: config params + ``artifact_params`` + any ``'_params'``."""
        arrays = dict(arrays)
        extra = arrays.pop("_params", {})
        return ModelArtifact(
            kind=self.kind,
            model_name=self.name,
            customers=data.customers,
            items=data.items,
            arrays=arrays,
            history=data.matrix,
            params={**self.config.model_dump(), **self.artifact_params, **extra},
            weighting=dict(data.weighting),
        )

    @property
    def fitted(self) -> ModelArtifact:
        if self.artifact is None:
            raise NotFittedError(f"{self.name} is not fit; call fit() or load()")
        return self.artifact

    def recommend_indices(
        self,
        rows: np.ndarray,
        k: int = 10,
        filter_already_bought: bool = True,
        allowed: np.ndarray | None = None,
        history: sp.csr_matrix | None = None,
        batch_size: int = 2048,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Batched top-k on indices: ``(item_idx, scores)``, each ``len(rows) x k``."""
        art = self.fitted
        rows = np.asarray(rows, dtype=np.int64)
        out_i, out_s = [], []
        for lo in range(0, len(rows), batch_size):
            r = rows[lo : lo + batch_size]
            h = None if history is None else history[lo : lo + batch_size]
            s = score(art, r, h)
            excl = None
            if filter_already_bought:
                from features.scoring import history_rows

                excl = history_rows(art, r) if h is None else h
            i, v = top_k(s, k, exclude=excl, allowed=allowed)
            out_i.append(i)
            out_s.append(v)
        if not out_i:
            return np.empty((0, k), np.int64), np.empty((0, k), np.float32)
        return np.vstack(out_i), np.vstack(out_s)

    def recommend(
        self,
        customers: Sequence | np.ndarray,
        k: int = 10,
        filter_already_bought: bool = True,
        items_allowed: Sequence | None = None,
        items_excluded: Sequence | None = None,
    ) -> pd.DataFrame:
        """Top-k per customer id as a DataFrame (customer_id, item_id, rank, score).

        Unknown customer ids raise ``KeyError`` naming them.
        """
        art = self.fitted
        rows = art.customers.index_of(np.atleast_1d(customers), missing="raise")
        allowed = _item_mask(art, items_allowed, items_excluded)
        idx, vals = self.recommend_indices(rows, k, filter_already_bought, allowed)
        return _to_frame(art.customers.id_of(rows), idx, vals, art, C.CUSTOMER_ID)

    def similar_items(self, items: Sequence | np.ndarray, k: int = 10) -> pd.DataFrame:
        """Top-k similar items per item id (the item itself excluded)."""
        art = self.fitted
        rows = art.items.index_of(np.atleast_1d(items), missing="raise")
        idx, vals = similar_items(art, rows, k)
        return _to_frame(art.items.id_of(rows), idx, vals, art, "source_item_id")

    def save(self, path: str | os.PathLike) -> None:
        self.fitted.save(path)

    @classmethod
    def from_artifact(cls, artifact: ModelArtifact) -> Recommender:
        if artifact.model_name != cls.name:
            raise ValueError(f"artifact holds a {artifact.model_name!r} model, not {cls.name!r}")
        known = set(cls.Config.model_fields)
        model = cls({k: v for k, v in artifact.params.items() if k in known})
        model.artifact = artifact
        return model

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recommender:
        return cls.from_artifact(load_artifact(path))


def _item_mask(art: ModelArtifact, allowed, excluded) -> np.ndarray | None:
    if allowed is None and excluded is None:
        return None
    mask = np.ones(art.n_items, dtype=bool)
    if allowed is not None:
        mask[:] = False
        idx = art.items.index_of(np.atleast_1d(allowed), missing="ignore")
        mask[idx[idx >= 0]] = True
    if excluded is not None:
        idx = art.items.index_of(np.atleast_1d(excluded), missing="ignore")
        mask[idx[idx >= 0]] = False
    return mask


def _to_frame(source_ids, idx, vals, art: ModelArtifact, source_col: str) -> pd.DataFrame:
    k = idx.shape[1]
    valid = idx >= 0
    src = np.repeat(np.asarray(source_ids), k).reshape(len(source_ids), k)
    ranks = np.tile(np.arange(1, k + 1), (len(source_ids), 1))
    return pd.DataFrame(
        {
            source_col: src[valid],
            C.ITEM_ID: art.items.id_of(idx[valid]),
            C.RANK: ranks[valid],
            C.SCORE: vals[valid],
        }
    )
