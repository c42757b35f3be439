"""Optuna search spaces, one function per model: ``space(trial) -> flat params``.

Flat params mix the model's config fields (``factors``, ``regularization``...) with
interaction-matrix settings prefixed ``matrix.`` (fields of
:class:`features.matrix.MatrixConfig`); :func:`training.pipeline.split_params` splits
them again. Every value is a plain int/float/str/None so it logs to MLflow as is.

=========  =======================  ==========================================  =========
model      param                    range                                       scale
=========  =======================  ==========================================  =========
als        factors                  16 .. 256 (step 16)                         linear
als        regularization           1e-4 .. 1.0                                 log
als        alpha                    0.5 .. 100                                  log
als        iterations               5 .. 30                                     linear
als        matrix.weighting         binary | log1p | count                      choice
als        matrix.reweight          none | bm25                                 choice
als        matrix.bm25_k1           0.5 .. 3.0        (only with bm25)          linear
als        matrix.bm25_b            0.2 .. 1.0        (only with bm25)          linear
als        matrix.half_life_days    none | 30 .. 720                            log
bpr        factors                  16 .. 256 (step 16)                         linear
bpr        learning_rate            1e-3 .. 0.1                                 log
bpr        regularization           1e-5 .. 0.1                                 log
bpr        iterations               20 .. 200 (step 20)                         linear
bpr        matrix.*                 as ALS, without bm25                        -
itemknn    similarity               cosine | bm25 | tfidf                       choice
itemknn    neighbours (K)           10 .. 500                                   log
itemknn    bm25_k1, bm25_b          0.5 .. 3.0, 0.2 .. 1.0 (only with bm25)     linear
itemknn    matrix.weighting         binary | log1p | count                      choice
itemknn    matrix.half_life_days    none | 30 .. 720                            log
ease       l2                       10 .. 5000                                  log
ease       matrix.weighting         binary | log1p                              choice
ease       matrix.half_life_days    none | 30 .. 720                            log
blend      ALS params               as ALS                                      -
blend      blend_weight             0.05 .. 0.95                                linear
=========  =======================  ==========================================  =========

Half-life: purchases are weighted ``0.5 ** (age_days / half_life_days)`` before the
weighting is applied (``none`` = no decay). ``fixed`` (keyword of :func:`suggest`)
pins parameters instead of searching them, e.g. ``{"matrix.min_item_customers": 3}``
to keep EASE under its item limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

MATRIX_PREFIX = "matrix."
HALF_LIFE = (30.0, 720.0)

__all__ = [
    "MATRIX_PREFIX", "SPACES", "DEFAULTS", "als_space", "bpr_space", "itemknn_space", "ease_space",
    "blend_space", "suggest",
]


def _decay(trial: optuna.Trial) -> dict[str, Any]:
    if trial.suggest_categorical("matrix.decay", ["none", "half_life"]) == "none":
        return {"matrix.half_life_days": None}
    return {"matrix.half_life_days": trial.suggest_float("matrix.half_life_days", *HALF_LIFE, log=True)}


def _matrix(trial: optuna.Trial, weightings: list[str], bm25: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"matrix.weighting": trial.suggest_categorical("matrix.weighting", weightings)}
    if bm25:
        reweight = trial.suggest_categorical("matrix.reweight", ["none", "bm25"])
        out["matrix.reweight"] = None if reweight == "none" else reweight
        if reweight == "bm25":
            out["matrix.bm25_k1"] = trial.suggest_float("matrix.bm25_k1", 0.5, 3.0)
            out["matrix.bm25_b"] = trial.suggest_float("matrix.bm25_b", 0.2, 1.0)
    out.update(_decay(trial))
    return out


def als_space(trial: optuna.Trial) -> dict[str, Any]:
    """ALS (implicit, conjugate gradient): factors, regularization, alpha, iterations, matrix."""
    return {
        "factors": trial.suggest_int("factors", 16, 256, step=16),
        "regularization": trial.suggest_float("regularization", 1e-4, 1.0, log=True),
        "alpha": trial.suggest_float("alpha", 0.5, 100.0, log=True),
        "iterations": trial.suggest_int("iterations", 5, 30),
        **_matrix(trial, ["binary", "log1p", "count"], bm25=True),
    }


def bpr_space(trial: optuna.Trial) -> dict[str, Any]:
    """BPR (implicit): factors, learning rate, regularization, iterations, matrix."""
    return {
        "factors": trial.suggest_int("factors", 16, 256, step=16),
        "learning_rate": trial.suggest_float("learning_rate", 1e-3, 0.1, log=True),
        "regularization": trial.suggest_float("regularization", 1e-5, 0.1, log=True),
        "iterations": trial.suggest_int("iterations", 20, 200, step=20),
        **_matrix(trial, ["binary", "log1p"], bm25=False),
    }


def itemknn_space(trial: optuna.Trial) -> dict[str, Any]:
    """Item-kNN (implicit): similarity, neighbours K, BM25 K1/B, matrix weighting."""
    sim = trial.suggest_categorical("similarity", ["cosine", "bm25", "tfidf"])
    out: dict[str, Any] = {"similarity": sim, "neighbours": trial.suggest_int("neighbours", 10, 500, log=True)}
    if sim == "bm25":
        out["bm25_k1"] = trial.suggest_float("bm25_k1", 0.5, 3.0)
        out["bm25_b"] = trial.suggest_float("bm25_b", 0.2, 1.0)
    out.update(_matrix(trial, ["binary", "log1p", "count"], bm25=False))
    return out


def ease_space(trial: optuna.Trial) -> dict[str, Any]:
    """EASE: L2 strength and matrix weighting."""
    return {
        "l2": trial.suggest_float("l2", 10.0, 5000.0, log=True),
        **_matrix(trial, ["binary", "log1p"], bm25=False),
    }


def blend_space(trial: optuna.Trial) -> dict[str, Any]:
    """Repeat + ALS blend: the ALS space plus the weight of the customer's own history."""
    return {**als_space(trial), "blend_weight": trial.suggest_float("blend_weight", 0.05, 0.95)}


SPACES: dict[str, Callable[[optuna.Trial], dict[str, Any]]] = {
    "als": als_space,
    "bpr": bpr_space,
    "itemknn": itemknn_space,
    "ease": ease_space,
    "blend": blend_space,
}


_NO_DECAY = {"matrix.decay": "none"}
DEFAULTS: dict[str, dict[str, Any]] = {
    "als": {"factors": 64, "regularization": 0.05, "alpha": 2.0, "iterations": 15,
            "matrix.weighting": "log1p", "matrix.reweight": "none", **_NO_DECAY},
    "bpr": {"factors": 64, "learning_rate": 0.01, "regularization": 0.01, "iterations": 100,
            "matrix.weighting": "binary", **_NO_DECAY},
    "itemknn": {"similarity": "cosine", "neighbours": 100, "matrix.weighting": "log1p", **_NO_DECAY},
    "ease": {"l2": 500.0, "matrix.weighting": "binary", **_NO_DECAY},
    "blend": {"factors": 64, "regularization": 0.05, "alpha": 2.0, "iterations": 15,
              "matrix.weighting": "log1p", "matrix.reweight": "none", **_NO_DECAY,
              "blend_weight": 0.5},
}
"""The models' default settings in search-space names: a new study tries them first."""


def suggest(model: str, trial: optuna.Trial, fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    """Flat params for ``model`` from ``trial``; ``fixed`` entries override/extend them."""
    from features.errors import PatronError

    if model not in SPACES:
        raise PatronError(f"no search space for model {model!r}; tunable: {sorted(SPACES)}")
    fixed = dict(fixed or {})
    params = SPACES[model](_Pinned(trial, fixed) if fixed else trial)
    params.update(fixed)
    return params


class _Pinned:
    """A trial whose pinned names return their fixed value without being searched."""

    def __init__(self, trial: optuna.Trial, fixed: dict[str, Any]):
        self._trial, self._fixed = trial, fixed

    def _get(self, kind: str, name: str, *args, **kwargs):
        if name in self._fixed:
            return self._fixed[name]
        return getattr(self._trial, kind)(name, *args, **kwargs)

    def suggest_int(self, name: str, *args, **kwargs):
        return self._get("suggest_int", name, *args, **kwargs)

    def suggest_float(self, name: str, *args, **kwargs):
        return self._get("suggest_float", name, *args, **kwargs)

    def suggest_categorical(self, name: str, *args, **kwargs):
        return self._get("suggest_categorical", name, *args, **kwargs)
