"""Training benchmark: tuned models against the baselines, both evaluation modes.

For each data set (default: The Complete Journey with FUEL and MISCELLANEOUS dropped by
the ingest defaults, and UCI Online Retail), the last ``--holdout-days`` are the test
period; every model is tuned with Optuna on a validation period carved from the training
period (``training.tune``), refit on the whole training period and scored once on test.
Prints P/R/nDCG/MAP@10, coverage and fit seconds per model and mode, the accuracy
targets (new mode: the tuned champion beats every baseline on nDCG@10; repeat mode: where
the blend stands against repeat_buy), and Patron's ALS fit time over raw implicit's on
the same matrix at 64 and 128 factors (``bench.models.als_overhead``).

    .venv/bin/python -m bench.train      # ~15 min on 2 idle cores (22 min seen on a shared box)
    .venv/bin/python -m bench.train --trials 30 --timeout 900 --data completejourney

Everything goes to a temporary Optuna storage and MLflow store unless
``--storage``/``--tracking-uri`` are given.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd

DEFAULT_TRIALS = {"als": 8, "itemknn": 10, "ease": 4, "blend": 6, "bpr": 4}
EASE_MIN_ITEM_CUSTOMERS = 30  # keeps EASE's dense item x item under ~10k items on CJ
COLUMNS = ["model", "mode", "precision@10", "recall@10", "ndcg@10", "map@10", "coverage@10",
           "fit_seconds", "val_value"]


def run_dataset(name: str, args, workdir: Path) -> dict:
    from features.ingest import load_dataset
    from training.tune import TuneSettings, tune

    t0 = time.perf_counter()
    purchases = load_dataset(name)
    load_s = time.perf_counter() - t0
    models = tuple(m for m in args.models.split(",") if m)
    tables, outcomes = [], []
    fixed = {"ease": {"matrix.min_item_customers": args.ease_min_item_customers}}
    t0 = time.perf_counter()
    # one session per model so each gets its own trial budget; baselines once
    for i, model in enumerate(models):
        trials = args.trials if args.trials is not None else DEFAULT_TRIALS.get(model, 6)
        mode = "repeat" if model in args.repeat_models.split(",") else "new"
        s = TuneSettings(
            models=(model,), n_trials=trials, timeout=args.timeout, study=f"bench-{name}-{mode}",
            storage=args.storage or f"sqlite:///{workdir / 'optuna.db'}", metric="ndcg@10",
            mode=mode, holdout_days=args.holdout_days, validation_days=args.validation_days,
            eval_every=args.eval_every, seed=args.seed, max_val_customers=args.max_val_customers,
            fixed=fixed, baselines=() if i else ("popularity", "recent_popularity", "repeat_buy"),
            num_threads=args.threads, progress=not args.quiet, log_model=False,
        )
        r = tune(purchases, s, tracking_uri=args.tracking_uri or f"sqlite:///{workdir / 'mlflow.db'}",
                 experiment=f"bench-{name}", source=name)
        tables.append(r.table)
        for o in r.outcomes:
            o.mode = mode  # which validation mode it was tuned for
        outcomes += r.outcomes
        description = r.description
    tune_s = time.perf_counter() - t0
    table = pd.concat(tables, ignore_index=True)
    return {"name": name, "table": table, "outcomes": outcomes, "description": description,
            "load_s": load_s, "tune_s": tune_s, "purchases": purchases}


def targets(table: pd.DataFrame, outcomes) -> list[str]:
    """The accuracy targets, stated with the numbers."""
    lines = []
    base = ["popularity", "recent_popularity", "repeat_buy"]
    tuned = [o for o in outcomes if o.best_value is not None and o.result is not None
             and getattr(o, "mode", "new") == "new"]
    if not tuned:
        return ["no tuned model finished"]
    champ = max(tuned, key=lambda o: o.best_value)  # chosen on validation, not on test

    def val(model, mode):
        sel = table[(table["model"] == model) & (table["mode"] == mode)]
        return float(sel["ndcg@10"].iloc[0]) if len(sel) else float("nan")

    c = val(champ.model, "new")
    best_base = max(base, key=lambda b: val(b, "new"))
    ok = all(c > val(b, "new") for b in base)
    lines.append(f"new mode: champion {champ.model} (picked on validation) nDCG@10 {c:.4f} vs best "
                 f"baseline {best_base} {val(best_base, 'new'):.4f} -> "
                 f"{'BEATS every baseline' if ok else 'does NOT beat every baseline'}")
    if "blend" in set(table["model"]):
        b, rb = val("blend", "repeat"), val("repeat_buy", "repeat")
        how = next((f"tuned in {o.mode} mode" for o in outcomes if o.model == "blend"), "")
        lines.append(f"repeat mode: blend ({how}) nDCG@10 {b:.4f} vs repeat_buy {rb:.4f} "
                     f"({(b / rb - 1) * 100:+.1f}%)")
    return lines


def overhead(purchases: pd.DataFrame, holdout_days: int, factors: list[int], iterations: int,
             threads: int) -> list[dict]:
    from bench.models import als_overhead
    from features.matrix import MatrixConfig, build_interactions
    from training.split import split_global_time

    split = split_global_time(purchases, holdout_days=holdout_days)
    m = build_interactions(split.train, MatrixConfig())
    return [als_overhead(m, factors=f, iterations=iterations, repeats=2, num_threads=threads)
            for f in factors]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="completejourney,online_retail")
    p.add_argument("--models", default="als,itemknn,ease,blend")
    p.add_argument("--trials", type=int, default=None,
                   help=f"trials per model (default per model: {DEFAULT_TRIALS})")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per model (default 120)")
    p.add_argument("--holdout-days", type=int, default=28)
    p.add_argument("--validation-days", type=int, default=28)
    p.add_argument("--eval-every", type=int, default=3)
    p.add_argument("--max-val-customers", type=int, default=1500)
    p.add_argument("--repeat-models", default="blend",
                   help="models tuned on repeat-mode validation (default blend); others: new mode")
    p.add_argument("--ease-min-item-customers", type=int, default=EASE_MIN_ITEM_CUSTOMERS)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--factors", type=int, nargs="*", default=[64, 128])
    p.add_argument("--overhead-iterations", type=int, default=5)
    p.add_argument("--storage", default=None)
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--json", default=None, help="write the results as JSON here")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--spark", action=argparse.BooleanOptionalAction, default=True,
                   help="also time Spark local-mode ALS against implicit on the first data set "
                        "(needs pyspark and Java; --no-spark skips it)")
    args = p.parse_args(argv)

    import logging
    import os

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    out: dict = {"datasets": []}
    with tempfile.TemporaryDirectory(prefix="patron-bench-train-") as tmp:
        for i, name in enumerate(n for n in args.data.split(",") if n):
            res = run_dataset(name, args, Path(tmp))
            table = res["table"][[c for c in COLUMNS if c in res["table"].columns]]
            print(f"\n== {name}: {res['description']['data']['rows']:,} lines, "
                  f"{res['description']['data']['customers']:,} customers, "
                  f"{res['description']['data']['items']:,} items; test = last "
                  f"{args.holdout_days} days ({res['description']['split']['cutoff']} ..), "
                  f"validation = the {args.validation_days} days before; load {res['load_s']:.1f} s, "
                  f"tuning+refit+test {res['tune_s']:.0f} s")
            for o in res["outcomes"]:
                print(f"   {o.model} (tuned in {o.mode} mode): trials {o.trials}, best validation nDCG@10 "
                      f"{'-' if o.best_value is None else f'{o.best_value:.4f}'}, "
                      f"params {json.dumps(o.best_params, default=str)}")
            for mode in ("new", "repeat"):
                print(f"\n-- {mode} mode")
                print(table[table["mode"] == mode].drop(columns="mode").to_string(
                    index=False, float_format=lambda v: f"{v:.4f}"))
            tgt = targets(res["table"], res["outcomes"])
            print("\n" + "\n".join(tgt))
            entry = {"name": name, "table": res["table"].to_dict(orient="records"),
                     "targets": tgt, "tune_s": res["tune_s"]}
            if i == 0 and args.factors:
                oh = overhead(res["purchases"], args.holdout_days, args.factors,
                              args.overhead_iterations, args.threads)
                print(f"\nALS fit overhead on {name} (train matrix, {args.overhead_iterations} "
                      "iterations, min of 2):")
                for r in oh:
                    print(f"   factors {r['factors']}: wall implicit {r['implicit_s']:.2f} s, Patron "
                          f"{r['patron_s']:.2f} s, ratio {r['ratio']:.3f}; CPU implicit "
                          f"{r['implicit_cpu_s']:.2f} s, Patron {r['patron_cpu_s']:.2f} s, ratio "
                          f"{r['cpu_ratio']:.3f} (target <= 1.05); Patron "
                          f"{r['patron_s_per_iter']:.3f} s/iteration wall, "
                          f"{r['patron_cpu_s'] / r['iterations']:.3f} CPU s/iteration")
                entry["als_overhead"] = oh
            if i == 0 and args.spark:
                from bench.spark import format_table, spark_vs_implicit

                print(f"\nimplicit vs Spark local mode on {name} (same matrix):")
                try:
                    sp = spark_vs_implicit(res["purchases"], holdout_days=args.holdout_days,
                                           num_threads=max(args.threads, 2))
                    print(format_table(sp))
                    entry["spark"] = {k: v for k, v in sp.items() if k != "table"}
                except Exception as exc:  # no Java / no pyspark: say so, keep the other rows
                    print(f"   skipped: {str(exc).splitlines()[0]}")
            out["datasets"].append(entry)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
