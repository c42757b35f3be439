"""Patron: recommender training and serving for shops that sell to repeat customers.

The notebook API: DataFrames in, DataFrames (or a fit model) out, the same code the CLI runs.

    import patron
    purchases = patron.load_purchases("export.csv", mapping={"customer_id": "Kunde"})
    metrics = patron.evaluate(purchases, models=["popularity", "itemknn"])
    model = patron.train(purchases, model="itemknn")
    recs = patron.recommend(model, purchases["customer_id"].unique()[:5], k=10)
    tables = patron.segments(purchases)      # .customers, .reminders, .winback, .offers
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load_purchases", "build_matrix", "train", "evaluate", "recommend", "segments"]


def load_purchases(source, mapping: dict | None = None, **rules):
    """Clean purchases from a file (CSV/TSV/Parquet, compressed too), a clean
    ``purchases.parquet``, or ``completejourney`` / ``online_retail``; ``rules``: fields of
    :class:`features.clean.CleanConfig` (e.g. ``dayfirst=True``)."""
    from features.clean import CleanConfig
    from features.ingest import load_dataset

    return load_dataset(source, CleanConfig(**rules) if rules else None, mapping)


def build_matrix(purchases, **settings):
    """The customers x items interaction matrix; ``settings``: fields of
    :class:`features.matrix.MatrixConfig` (``weighting="binary"``, ``half_life_days=30``...)."""
    from features.matrix import MatrixConfig, build_interactions

    _frame(purchases, "build_matrix")
    return build_interactions(purchases, MatrixConfig(**settings))


def train(purchases, model: str = "als", params: dict | None = None, seed: int = 42):
    """A model fit on every purchase (flat params as ``patron train --params`` takes them)."""
    from training.models.base import TrainingOptions
    from training.pipeline import train_model

    _frame(purchases, "train")
    return train_model(purchases, model, params or {}, options=TrainingOptions(seed=seed)).model


def evaluate(purchases, models=("popularity", "recent_popularity", "repeat_buy"),
             holdout_days: int = 28, k=(10,)):
    """Full-ranking metrics of ``models`` (names) on the last ``holdout_days``, both modes:
    a tidy DataFrame (model, mode, metric, k, value, customers)."""
    import pandas as pd

    from training.pipeline import train_model
    from training.split import split_global_time

    _frame(purchases, "evaluate")
    split = split_global_time(purchases, holdout_days=holdout_days)
    ks = (k,) if isinstance(k, int) else tuple(k)
    names = [models] if isinstance(models, str) else list(models)
    parts = [train_model(split.train, m, {}, split.test, ks, extras=False).metrics.assign(model=m)
             for m in names]
    return pd.concat(parts, ignore_index=True)


def recommend(model, customers, k: int = 10, exclude_bought: bool = True):
    """Top-k items per customer id: customer_id, item_id, rank, score."""
    return model.recommend(customers, k, filter_already_bought=exclude_bought)


def segments(purchases, reference_date=None):
    """The customer analytics: RFM, value and named segments, NES stages, reminders, win-back
    (:class:`features.customers.CustomerTables`)."""
    from features.customers import build_customer_tables

    _frame(purchases, "segments")
    return build_customer_tables(purchases, reference_date=reference_date)


def _frame(purchases, what: str) -> None:
    import pandas as pd

    from features.errors import PatronError

    if not isinstance(purchases, pd.DataFrame):
        raise PatronError(f"patron.{what} takes the purchases as a DataFrame (patron.load_purchases "
                          f"gives one), not a {type(purchases).__name__}")
