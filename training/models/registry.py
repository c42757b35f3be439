"""Every trainable model by name: one line per model.

The contract test (``tests/test_models_contract.py``) runs over every entry, so a new
model is covered as soon as it is registered here.
"""

from __future__ import annotations

from features.errors import PatronError
from training.models.als import ALSRecommender
from training.models.base import Recommender
from training.models.baselines import PopularityModel, RecentPopularityModel, RepeatBuyModel
from training.models.blend import BlendRecommender
from training.models.bpr import BPRRecommender
from training.models.ease import EASERecommender
from training.models.knn import ItemKNNRecommender
from training.spark_als import SparkALSRecommender  # pyspark is imported only when it fits

MODELS: dict[str, type[Recommender]] = {
    "popularity": PopularityModel,
    "recent_popularity": RecentPopularityModel,
    "repeat_buy": RepeatBuyModel,
    "als": ALSRecommender,
    "bpr": BPRRecommender,
    "itemknn": ItemKNNRecommender,
    "ease": EASERecommender,
    "blend": BlendRecommender,
    "spark_als": SparkALSRecommender,
}

__all__ = ["MODELS", "get_model", "load_model"]


def get_model(name: str) -> type[Recommender]:
    """The model class registered as ``name``; a PatronError lists the known names."""
    try:
        return MODELS[name]
    except KeyError:
        raise PatronError(f"unknown model {name!r}; known models: {sorted(MODELS)}") from None


def load_model(path) -> Recommender:
    """Load a saved artifact as the model class that wrote it."""
    from features.artifact import load_artifact

    art = load_artifact(path)
    return get_model(art.model_name).from_artifact(art)
