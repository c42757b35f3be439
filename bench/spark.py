"""Spark ALS against implicit ALS on the same matrix: seconds per iteration and nDCG@10.

``spark_vs_implicit(purchases)`` is the function the training benchmark calls. On one
training matrix (everything before the last ``holdout_days``, Patron's default log1p
weighting) it fits implicit's ALS (conjugate gradient, Patron's default, and the exact
Cholesky solve Spark also uses) and Spark MLlib's implicit ALS in local mode with
matched settings (see :mod:`training.spark_als` for the alpha/regularization mapping),
then scores both with ``training.evaluate`` in ``new`` mode on the held-out weeks.

Seconds per iteration are marginal: ``(fit(N iterations) - fit(1 iteration)) / (N - 1)``,
so fixed costs (Spark's data load, blocking, factor collection) are left out of them and
reported as ``fixed_s``. The SparkSession is started once before timing (``session_s``).

    .venv/bin/python -m bench.spark                      # Complete Journey, ~5 min on 2 cores
    .venv/bin/python -m bench.spark --iterations 10 --factors 32 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd

__all__ = ["spark_vs_implicit", "format_table"]


def _timed_fit(name: str, cfg: dict, matrix, options, iterations: int):
    from training.models.registry import get_model

    t0 = time.perf_counter()
    model = get_model(name)({**cfg, "iterations": iterations}, options).fit(matrix)
    return model, time.perf_counter() - t0


def spark_vs_implicit(
    purchases: pd.DataFrame,
    factors: int = 64,
    iterations: int = 15,
    regularization: float = 0.05,
    alpha: float = 2.0,
    holdout_days: int = 28,
    num_threads: int = 2,
    seed: int = 0,
    cholesky: bool = True,
) -> dict:
    """Fit both engines on ``purchases`` (minus the last ``holdout_days``); returns
    ``{"table": DataFrame, "ratio": spark/implicit s per iteration, "ndcg_gap": relative
    nDCG@10 difference of Spark vs implicit (CG), "matrix": shape/nnz, "session_s"}``."""
    from features.matrix import MatrixConfig, build_interactions
    from training.evaluate import build_test_set, evaluate
    from training.models.base import TrainingOptions
    from training.spark_als import spark_reg_param, spark_session
    from training.split import split_global_time

    split = split_global_time(purchases, holdout_days=holdout_days, min_customers=1)
    matrix = build_interactions(split.train, MatrixConfig())
    test = build_test_set(matrix, split.test, ("new",))
    options = TrainingOptions(seed=seed, num_threads=num_threads)
    t0 = time.perf_counter()
    spark = spark_session(num_threads)
    session_s = time.perf_counter() - t0
    base = {"factors": factors, "regularization": regularization, "alpha": alpha}
    runs = [("implicit (cg)", "als", {**base, "use_cg": True})]
    if cholesky:
        runs.append(("implicit (cholesky)", "als", {**base, "use_cg": False}))
    runs.append((f"spark {spark.sparkContext.master}", "spark_als", base))
    rows = []
    for label, name, cfg in runs:
        _, one_s = _timed_fit(name, cfg, matrix, options, 1)
        model, full_s = _timed_fit(name, cfg, matrix, options, iterations)
        per_iter = max(full_s - one_s, 0.0) / max(iterations - 1, 1)
        res = evaluate(model, matrix, test, k=10, modes=("new",))
        m = res.metrics
        ndcg = float(m[(m["metric"] == "ndcg") & (m["k"] == 10)]["value"].iloc[0])
        rows.append({"engine": label, "fit_s": round(full_s, 2), "s_per_iter": round(per_iter, 3),
                     "fixed_s": round(max(full_s - per_iter * iterations, 0.0), 2),
                     "ndcg@10": round(ndcg, 4), "customers": res.n_customers["new"]})
    table = pd.DataFrame(rows)
    imp, spk = table.iloc[0], table.iloc[-1]
    return {
        "table": table,
        "ratio": float(spk["s_per_iter"] / imp["s_per_iter"]) if imp["s_per_iter"] else float("nan"),
        "ndcg_gap": float((spk["ndcg@10"] - imp["ndcg@10"]) / imp["ndcg@10"]),
        "matrix": {"customers": matrix.n_customers, "items": matrix.n_items, "nnz": matrix.matrix.nnz},
        "settings": {**base, "iterations": iterations, "num_threads": num_threads,
                     "spark_reg_param": spark_reg_param(matrix, regularization)},
        "session_s": round(session_s, 2),
    }


def format_table(result: dict) -> str:
    """The table, the Spark/implicit ratio and the nDCG gap as text."""
    t = result["table"].to_string(index=False)
    return (f"matrix {result['matrix']}, settings {result['settings']}\n{t}\n"
            f"spark / implicit (cg) seconds per iteration: {result['ratio']:.1f}x; "
            f"nDCG@10 spark vs implicit (cg): {result['ndcg_gap']:+.1%}; "
            f"SparkSession start {result['session_s']} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="completejourney")
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--regularization", type=float, default=0.05)
    p.add_argument("--alpha", type=float, default=2.0)
    p.add_argument("--holdout-days", type=int, default=28)
    p.add_argument("--threads", type=int, default=2, help="implicit threads and Spark local[N]")
    p.add_argument("--no-cholesky", action="store_true", help="skip the implicit Cholesky run")
    p.add_argument("--json", default=None, help="also write the result here")
    args = p.parse_args(argv)

    from features.ingest import load_dataset

    purchases = load_dataset(args.data)
    res = spark_vs_implicit(purchases, args.factors, args.iterations, args.regularization,
                            args.alpha, args.holdout_days, args.threads, cholesky=not args.no_cholesky)
    print(format_table(res))
    if args.json:
        out = {**res, "table": res["table"].to_dict(orient="records")}
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
