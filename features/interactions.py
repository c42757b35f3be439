"""The customers x items interaction matrix handed to every model."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from features.idmap import IdMap


@dataclass(frozen=True)
class InteractionMatrix:
    """CSR ``customers x items`` (float32, weighted) with its id maps.

    ``weighting`` records the settings the values were built with (weighting scheme,
    reweighting, half-life, support filters) so a model artifact can carry them.
    ``counts`` optionally holds raw purchase counts on the same shape (used by the
    repeat-buy baseline and by evaluation of repeat purchases).
    """

    matrix: sp.csr_matrix
    customers: IdMap
    items: IdMap
    weighting: dict = field(default_factory=dict)
    counts: sp.csr_matrix | None = None

    def __post_init__(self) -> None:
        m = self.matrix
        if not sp.issparse(m):
            raise TypeError("matrix must be a scipy.sparse matrix")
        m = sp.csr_matrix(m, dtype=np.float32)
        m.sort_indices()
        object.__setattr__(self, "matrix", m)
        if m.shape != (len(self.customers), len(self.items)):
            raise ValueError(
                f"matrix shape {m.shape} does not match id maps "
                f"({len(self.customers)} customers, {len(self.items)} items)"
            )
        if self.counts is not None and self.counts.shape != m.shape:
            raise ValueError("counts shape differs from matrix shape")

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    @property
    def n_customers(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_items(self) -> int:
        return self.matrix.shape[1]
