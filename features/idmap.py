"""Frozen bidirectional maps between external ids and dense row/column indices."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class IdMap:
    """External ids (int64 or str) <-> indices 0..n-1, in the order of ``ids``.

    ``ids`` is a 1-d numpy array without duplicates (int64 or unicode). Lookups
    are vectorised through a pandas Index.
    """

    ids: np.ndarray
    _index: pd.Index = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids)
        if ids.dtype.kind in "iu":
            ids = ids.astype(np.int64, copy=False)
        elif ids.dtype.kind == "f":
            if not np.all(np.isfinite(ids)) or not np.all(ids == np.round(ids)):
                raise ValueError("float ids must be whole numbers")
            ids = ids.astype(np.int64)
        else:
            ids = ids.astype(str)
        index = pd.Index(ids)
        if not index.is_unique:
            raise ValueError("IdMap ids must be unique")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_values(cls, values: np.ndarray | pd.Series) -> IdMap:
        """Build from (possibly repeated) values, ids sorted for stability."""
        uniq = pd.unique(pd.Series(values).dropna())
        uniq = np.sort(np.asarray(uniq))
        return cls(uniq)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def is_numeric(self) -> bool:
        return self.ids.dtype.kind in "iu"

    def coerce(self, values) -> np.ndarray:
        """Cast external ids (e.g. from JSON) to this map's dtype; invalid -> None-safe."""
        arr = np.asarray(values, dtype=object if not self.is_numeric else None)
        if self.is_numeric:
            out = pd.to_numeric(pd.Series(np.atleast_1d(values), dtype=object), errors="coerce")
            return out.to_numpy()
        return np.atleast_1d(arr).astype(str)

    def index_of(self, values, missing: str = "raise") -> np.ndarray:
        """Indices of ``values``; ``missing='raise'`` raises KeyError naming unknown ids,
        ``missing='ignore'`` returns -1 for them."""
        vals = self.coerce(values)
        idx = self._index.get_indexer(vals)
        if missing == "raise" and (idx < 0).any():
            unknown = np.atleast_1d(np.asarray(values, dtype=object))[idx < 0][:10].tolist()
            raise KeyError(f"unknown ids: {unknown}")
        return idx.astype(np.int64)

    def id_of(self, index: np.ndarray) -> np.ndarray:
        return self.ids[np.asarray(index, dtype=np.int64)]

    def contains(self, values) -> np.ndarray:
        return self._index.get_indexer(self.coerce(values)) >= 0

    def to_dict(self) -> dict:
        return {"dtype": "int64" if self.is_numeric else "str", "n": len(self)}
