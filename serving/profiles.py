"""Customer profiles served from precomputed customer tables; nothing is computed per request.

Training stores the customer analytics of :mod:`features.customers` in the model artifact
(``ModelArtifact.tables``: ``customers`` and ``reminders``, as of the end of the training
period; see :func:`training.pipeline.customer_tables`). :class:`ProfileTables` indexes them
once when the model loads, and ``/customer_profile`` answers
:func:`features.customers.customer_profile` for one customer: RFM values and scores, value
segment (EN + ZH), named segment, NES stage and cycle, items due for replenishment, plus
``as_of`` (the tables' reference date).

Fallback for artifacts without tables: a ``customers.parquet`` placed beside the artifact
(not listed in its manifest), one row per ``customer_id`` with any columns; the endpoint
returns that row as it is. With neither, the endpoint answers 404 saying so.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features import columns as C
from features.artifact import ModelArtifact
from features.customers import customer_profile

if TYPE_CHECKING:
    from serving.engine import Engine

__all__ = ["ProfileTables", "profile_for", "PROFILE_TABLE", "MAX_DUE_ITEMS"]

PROFILE_TABLE = "customers.parquet"
MAX_DUE_ITEMS = 20
_cache: dict[int, pd.DataFrame | None] = {}
_lock = threading.Lock()


def id_key(value: Any, numeric: bool) -> Any:
    """A request's id as a dictionary key: an int for integer ids ("123" and 123 alike, None
    when it is not a whole number), else the string."""
    if numeric:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | np.integer):
            return int(value)
        try:
            f = float(str(value).strip())
        except ValueError:
            return None
        return int(f) if math.isfinite(f) and f.is_integer() else None
    return str(value)


class ProfileTables:
    """The artifact's ``customers`` and ``reminders`` tables, indexed by customer once."""

    def __init__(self, customers: pd.DataFrame, reminders: pd.DataFrame | None = None,
                 as_of: str | None = None) -> None:
        if C.CUSTOMER_ID not in customers.columns:
            raise ValueError(f"customers table has no {C.CUSTOMER_ID} column")
        self.customers = customers.reset_index(drop=True)
        ids = self.customers[C.CUSTOMER_ID]
        self.numeric = pd.api.types.is_integer_dtype(ids)
        self.as_of = as_of
        self._pos: dict[Any, int] = {}
        for i, k in enumerate(ids.tolist()):
            self._pos.setdefault(id_key(k, self.numeric), i)
        self._due: dict[Any, tuple[int, int]] = {}
        self.reminders = None
        if reminders is not None and len(reminders) and C.CUSTOMER_ID in reminders.columns:
            codes, uniques = pd.factorize(reminders[C.CUSTOMER_ID])
            order = np.argsort(codes, kind="stable")
            self.reminders = reminders.iloc[order].reset_index(drop=True)
            bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
            for j, k in enumerate(uniques.tolist()):
                self._due[id_key(k, self.numeric)] = (int(bounds[j]), int(bounds[j + 1]))

    @classmethod
    def from_artifact(cls, art: ModelArtifact) -> ProfileTables | None:
        customers = art.tables.get("customers")
        if customers is None or C.CUSTOMER_ID not in customers.columns:
            return None
        as_of = (art.metadata.get("customer_tables") or {}).get("reference_date")
        return cls(customers, art.tables.get("reminders"), as_of)

    def __len__(self) -> int:
        return len(self.customers)

    def profile(self, customer_id: Any, max_items: int = 10) -> dict | None:
        """The customer's profile, or None when the tables do not know them."""
        key = id_key(customer_id, self.numeric)
        pos = self._pos.get(key)
        if pos is None:
            return None
        row = self.customers.iloc[pos:pos + 1]
        lo, hi = self._due.get(key, (0, 0))
        due = self.reminders.iloc[lo:hi] if self.reminders is not None else None
        out = customer_profile(row[C.CUSTOMER_ID].iat[0], row, due, max_items=max_items)
        out["as_of"] = self.as_of
        return out


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


def profile_for(engine: Engine, customer_id, max_items: int = 10) -> dict:
    """The customer's profile from the artifact's tables (else the row of a
    ``customers.parquet`` beside the model); LookupError without tables, KeyError for an
    unknown customer."""
    tables: ProfileTables | None = getattr(engine, "profiles", None)
    if tables is not None:
        out = tables.profile(customer_id, max_items)
        if out is None:
            raise KeyError(f"customer_id: no profile for customer {customer_id!r}")
        return out
    table = _table(engine)
    if table is None:
        raise LookupError(
            f"customer_profile: the model has no customer tables (retrain it with this "
            f"Patron) and there is no {PROFILE_TABLE} beside it"
        )
    key = str(customer_id)
    if key not in table.index:
        raise KeyError(f"customer_id: no profile for customer {customer_id!r}")
    row = table.loc[key]
    if isinstance(row, pd.DataFrame):
        row = row.iloc[0]
    return {str(k): _plain(v) for k, v in row.items()}
