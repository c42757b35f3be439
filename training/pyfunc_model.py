"""The MLflow pyfunc wrapper around a Patron model artifact (logged as "model from code").

``load_context`` reads the Patron artifact from ``context.artifacts["patron_model"]``
(inside the logged model: ``artifacts/patron_model/``); ``predict`` takes a DataFrame
with ``customer_id`` (and optional ``n``, default 10, and ``exclude_bought``, default
true) and returns ``customer_id, item_id, rank, score``. Customers the model does not
know get the most popular items (score = share of training customers who bought it).

It imports only :mod:`features` (no training code, no Optuna), so stock
``mlflow.pyfunc.load_model("models:/patron@champion")`` works wherever Patron's
``features`` package is installed.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import scipy.sparse as sp

from features import columns as C
from features.artifact import load_artifact
from features.scoring import score, top_k

DEFAULT_N = 10


class PatronPyfunc(mlflow.pyfunc.PythonModel):
    """Top-N recommendations from a Patron artifact, batched over the input rows."""

    def load_context(self, context) -> None:
        self.art = load_artifact(context.artifacts["patron_model"])
        h = self.art.history.copy()
        h.data[:] = 1.0
        pop = np.asarray(h.sum(axis=0)).ravel()
        self.popularity = (pop / max(self.art.n_customers, 1)).astype(np.float32)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        df = pd.DataFrame(model_input)
        if C.CUSTOMER_ID not in df.columns:
            raise ValueError(f"input needs a {C.CUSTOMER_ID!r} column; got {list(df.columns)}")
        art = self.art
        n_col = df["n"] if "n" in df.columns else pd.Series(DEFAULT_N, index=df.index)
        n = n_col.fillna(DEFAULT_N).astype(np.int64).clip(lower=0).to_numpy()
        excl_col = df.get("exclude_bought")
        exclude = (np.ones(len(df), bool) if excl_col is None
                   else excl_col.fillna(True).astype(bool).to_numpy())
        ids = df[C.CUSTOMER_ID]
        if art.customers.is_numeric:  # "1" and 1 are one customer of an integer-id model
            ids = pd.to_numeric(ids.astype(str).str.strip(), errors="coerce")
        rows = art.customers.index_of(ids.to_numpy(), missing="ignore")
        k = int(n.max()) if len(n) else 0
        known = rows >= 0
        scores = np.empty((len(rows), art.n_items), dtype=np.float32)
        if known.any():
            scores[known] = score(art, rows[known])
        scores[~known] = self.popularity
        excl = art.history[np.where(known & exclude, rows, 0)].tocsr()
        excl = sp.diags((known & exclude).astype(np.float32)) @ excl
        excl.eliminate_zeros()
        idx, vals = top_k(scores, k, exclude=excl)
        ranks = np.tile(np.arange(1, idx.shape[1] + 1), (len(rows), 1))
        keep = (idx >= 0) & (ranks <= n[:, None])
        src = np.repeat(df[C.CUSTOMER_ID].to_numpy(), idx.shape[1]).reshape(idx.shape)
        return pd.DataFrame(
            {
                C.CUSTOMER_ID: src[keep],
                C.ITEM_ID: art.items.id_of(np.where(keep, idx, 0)[keep]),
                C.RANK: ranks[keep].astype(np.int64),
                C.SCORE: vals[keep].astype(np.float64),
            }
        )


mlflow.models.set_model(PatronPyfunc())
