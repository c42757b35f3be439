"""`patron compare`: several models on one data set and split, with confidence intervals."""

from __future__ import annotations

import argparse

from patron.commands import add_map_argument

HELP = "compare models offline: metrics with bootstrap intervals, paired differences vs a reference"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="purchases: clean parquet, raw log, completejourney or online_retail")
    add_map_argument(parser)
    parser.add_argument("--models", required=True,
                        help="comma-separated: model names (als,itemknn,popularity,...), artifact:PATH, models:/NAME@ALIAS")
    parser.add_argument("--reference", help="model the others are compared with (default: the first)")
    parser.add_argument("--k", type=int, default=10, help="list length")
    parser.add_argument("--holdout-days", type=int, default=28, help="test period: the last N days")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--max-customers", type=int, help="evaluate a random sample of test customers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", help="write an HTML report with plots to this folder")
    parser.add_argument("--json", help="write the result as JSON here")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from experiments.compare import compare, format_compare
    from patron.commands import load_data

    purchases = load_data(args)
    res = compare(
        purchases, args.models, reference=args.reference, k=args.k,
        holdout_days=args.holdout_days, n_boot=args.n_boot, seed=args.seed,
        max_customers=args.max_customers,
    )
    print(format_compare(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res.as_dict(), indent=2, default=str))
    if args.report:
        from experiments.report import write_compare_report

        print(f"report: {write_compare_report(res, args.report)}")
    return 0
