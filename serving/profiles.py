"""Customer profiles served from precomputed tables stored beside the model artifact.

Training (or ``patron segments``) may write ``customers.parquet`` into the artifact
directory: one row per ``customer_id`` with any columns (RFM scores, lifecycle stage,
repurchase intervals...). ``/customer_profile`` returns that row; nothing is computed per
request. Without the table the endpoint answers 501.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from serving.engine import Engine

__all__ = ["profile_for", "PROFILE_TABLE"]

PROFILE_TABLE = "customers.parquet"
_cache: dict[int, pd.DataFrame | None] = {}
_lock = threading.Lock()


def _table(engine: Engine) -> pd.DataFrame | None:
    key = id(engine)
    with _lock:
        if key not in _cache:
            path = Path(getattr(engine, "path", "") or "") / PROFILE_TABLE
            table = None
            if path.is_file():
                table = pd.read_parquet(path)
                if "customer_id" in table.columns:
                    table = table.set_index("customer_id")
                table.index = table.index.astype(str)
            _cache.clear()  # one engine generation at a time
            _cache[key] = table
        return _cache[key]


def _plain(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if v is pd.NaT or v is pd.NA:
        return None
    return v


def profile_for(engine: Engine, customer_id) -> dict:
    """The customer's row; LookupError without tables, KeyError for an unknown customer."""
    table = _table(engine)
    if table is None:
        raise LookupError(f"customer_profile: no {PROFILE_TABLE} beside the model")
    key = str(customer_id)
    if key not in table.index:
        raise KeyError(f"customer_id: no profile for customer {customer_id!r}")
    row = table.loc[key]
    if isinstance(row, pd.DataFrame):
        row = row.iloc[0]
    return {str(k): _plain(v) for k, v in row.items()}
