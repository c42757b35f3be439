"""`patron reminders`: replenishment reminders (items due again), or their held-out evaluation."""

from __future__ import annotations

import argparse

from patron.commands import add_map_argument

HELP = "items each customer is due to buy again within N days; --evaluate on a held-out window"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True,
                        help="completejourney | online_retail | path to a purchase file")
    add_map_argument(parser)
    parser.add_argument("--currency", metavar="CODE", default=None,
                        help="currency of the money columns in the CSVs, e.g. EUR (default: none shown)")
    parser.add_argument("--cutoff", metavar="DATE",
                        help="issue reminders as of DATE (purchases before it); default the day "
                        "after the last purchase, or with --evaluate the start of the last "
                        "--horizon-days")
    parser.add_argument("--horizon-days", type=int, default=14, metavar="N",
                        help="remind about items due within N days (default 14)")
    parser.add_argument("--level", choices=("item", "category"), default="item",
                        help="remind about items or categories (default item)")
    parser.add_argument("--min-purchases", type=int, default=2, metavar="N",
                        help="purchase days of the item needed before reminding (default 2)")
    parser.add_argument("--min-repeats", type=int, default=2, metavar="N",
                        help="repeats needed for a customer's own interval, else the item's "
                        "population median (default 2)")
    parser.add_argument("--max-per-customer", type=int, metavar="N",
                        help="keep the N best reminders per customer (default all due; "
                        "--evaluate uses --top-n instead)")
    parser.add_argument("--out", metavar="FILE", help="write reminders as .csv or .parquet")
    parser.add_argument("--evaluate", action="store_true",
                        help="hold out the window after the cutoff and print precision/recall "
                        "against the naive 'everything bought twice' baseline")
    parser.add_argument("--top-n", type=int, default=5, metavar="N",
                        help="with --evaluate: also compare the top N per customer (default 5)")


def run(args: argparse.Namespace) -> int:
    import time
    import warnings
    from pathlib import Path

    import pandas as pd

    from features import columns as C
    from features.customers import (
        CustomerDataWarning,
        ReminderConfig,
        RepurchaseConfig,
        evaluate_reminders,
        reminders,
    )
    from features.errors import PatronError

    try:
        config = ReminderConfig(horizon_days=args.horizon_days, min_purchases=args.min_purchases,
                                max_per_customer=args.max_per_customer)
        rconfig = RepurchaseConfig(min_repeats=args.min_repeats)
    except ValueError as exc:
        err = exc.errors()[0]
        raise PatronError(f"bad setting {err['loc'][0]}: {err['msg']}") from None
    if args.out and Path(args.out).suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise PatronError(f"--out {args.out}: use a .csv or .parquet file name")
    key = C.ITEM_ID if args.level == "item" else C.CATEGORY
    t0 = time.perf_counter()
    from patron.commands import load_data

    purchases = load_data(args)
    t_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CustomerDataWarning)  # spend plays no part here
        if args.evaluate:
            table = evaluate_reminders(purchases, args.cutoff, config, rconfig, key, args.top_n)
            took = time.perf_counter() - t1
            a = table.attrs
            print(f"{args.data}: reminders issued at {a['cutoff']}, checked against purchases "
                  f"up to {a['window_end']} (exclusive); {a['repeat_pairs']:,} repeat "
                  f"customer-{args.level} pairs of {a['bought_pairs']:,} bought in the window; "
                  f"load {t_load:.1f}s, evaluation {took:.1f}s")
            fmt = {"precision": "{:.3f}".format, "recall": "{:.3f}".format}
            print(table.to_string(index=False, formatters=fmt))
            if args.out:
                _write(table, Path(args.out))
            return 0
        rem = reminders(purchases, args.cutoff, config, rconfig, key)
    took = time.perf_counter() - t1
    if args.out:
        from features.customers.tables import item_names, readable

        readable_rem = readable(rem, item_names(purchases) if key == C.ITEM_ID else None,
                                args.currency)
        _write(rem if Path(args.out).suffix.lower() != ".csv" else readable_rem, Path(args.out))
    print(f"{len(rem):,} reminders for {rem[C.CUSTOMER_ID].nunique():,} customers due within "
          f"{args.horizon_days} days; load {t_load:.1f}s, reminders {took:.1f}s")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(rem.head(10).to_string(index=False))
    return 0


def _write(frame, path) -> None:
    from features.errors import PatronError

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    elif path.suffix.lower() == ".csv":
        frame.to_csv(path, index=False, encoding="utf-8-sig")
    else:
        raise PatronError(f"--out {path}: use a .csv or .parquet file name")
    print(f"wrote {path}")
