"""`patron segments`: RFM scores and segments, NES lifecycle stages, win-back list, one plot."""

from __future__ import annotations

import argparse

from patron.commands import add_map_argument

HELP = "RFM + value/named segments, NES lifecycle stages, win-back list; tables, summary and a PNG"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True,
                        help="completejourney | online_retail | path to a purchase file")
    add_map_argument(parser)
    parser.add_argument("--currency", metavar="CODE", default=None,
                        help="currency of the money columns in the CSVs, e.g. EUR (default: none shown)")
    parser.add_argument("--reference-date", metavar="DATE",
                        help="analyse as of DATE (purchases before it); default the day after "
                        "the last purchase")
    parser.add_argument("--out", default="segments", metavar="DIR",
                        help="output directory (default ./segments)")
    parser.add_argument("--window-days", type=int, metavar="N",
                        help="count Frequency and Monetary over the last N days only")
    parser.add_argument("--min-purchases", type=int, default=4, metavar="N",
                        help="purchase days a customer needs for an own NES cycle (default 4)")
    parser.add_argument("--horizon-days", type=int, default=14, metavar="N",
                        help="replenishment reminders due within N days (default 14)")
    parser.add_argument("--recs", metavar="FILE",
                        help="recommendations (CSV/Parquet: customer_id,item_id[,rank|score]) "
                        "to offer in the win-back list")
    parser.add_argument("--model", metavar="DIR",
                        help="a saved Patron model artifact: its top-N for the win-back customers")
    parser.add_argument("--n-recs", type=int, default=5, metavar="N",
                        help="recommended items per win-back customer (default 5)")


def read_table_file(path: str):
    """A CSV or Parquet file as a DataFrame; PatronError naming the file when it cannot be read."""
    from pathlib import Path

    import pandas as pd

    from features.errors import PatronError

    p = Path(path)
    if not p.exists():
        raise PatronError(f"{p}: file not found")
    try:
        return pd.read_parquet(p) if p.suffix.lower() in (".parquet", ".pq") else pd.read_csv(p)
    except Exception as exc:  # noqa: BLE001 - reported as one line
        raise PatronError(f"{p}: cannot read ({exc})") from exc


def align_ids(frame, like, columns=("customer_id", "item_id")):
    """Cast id columns of ``frame`` to the dtype family of ``like`` (int64 ids vs string ids)."""
    import pandas as pd

    out = frame.copy()
    for c in columns:
        if c not in out.columns or c not in like.columns:
            continue
        if pd.api.types.is_integer_dtype(like[c]) and not pd.api.types.is_integer_dtype(out[c]):
            out[c] = pd.to_numeric(out[c], errors="coerce").astype("Int64")
        elif not pd.api.types.is_integer_dtype(like[c]):
            out[c] = out[c].astype(str)
    return out


def _model_recs(path: str, customers, k: int):
    import numpy as np

    from training.models.registry import load_model

    model = load_model(path)
    known = np.asarray(customers)[model.fitted.customers.contains(np.asarray(customers))]
    if len(known) == 0:
        return None
    return model.recommend(known, k=k, filter_already_bought=False)


def run(args: argparse.Namespace) -> int:
    import time
    import warnings
    from pathlib import Path

    import pandas as pd

    from features.customers import (
        CustomerConfig,
        CustomerDataWarning,
        NESConfig,
        ReminderConfig,
        RFMConfig,
        build_customer_tables,
        plot_segments,
        save_tables,
        summarize,
    )
    from features.errors import PatronError

    try:
        config = CustomerConfig(
            rfm=RFMConfig(window_days=args.window_days),
            nes=NESConfig(min_purchases=args.min_purchases),
            reminders=ReminderConfig(horizon_days=args.horizon_days),
        )
    except ValueError as exc:
        raise PatronError(f"bad setting: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
    t0 = time.perf_counter()
    from patron.commands import load_data

    purchases = load_data(args)
    t_load = time.perf_counter() - t0
    recs = None
    if args.recs:
        recs = align_ids(read_table_file(args.recs), purchases)
    t1 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CustomerDataWarning)  # repeated in tables.notes
        tables = build_customer_tables(purchases, args.reference_date, config, recs)
    if args.model:
        from features.customers.prep import prepare
        from features.customers.winback import winback_list

        winners = tables.winback["customer_id"].to_numpy()
        model_recs = _model_recs(args.model, winners, args.n_recs + 3)
        if model_recs is not None:
            merged = model_recs if recs is None else pd.concat([recs, model_recs])
            lines, _ = prepare(purchases, tables.reference_date, warn=False)
            wb, offers = winback_list(tables.customers.set_index("customer_id"), lines, merged,
                                      n_recommended=args.n_recs)
            tables.winback, tables.offers = wb.reset_index(), offers
        else:
            tables.notes.append(f"model {args.model} knows none of the win-back customers")
    t_build = time.perf_counter() - t1
    out = Path(args.out)
    from features.customers.tables import item_names

    save_tables(tables, out, item_names(purchases), args.currency)
    c = tables.customers
    for name, by in (("segments", "segment"), ("value_segments", "value_segment"),
                     ("nes_stages", "nes_stage")):
        summarize(c, by).to_csv(out / f"summary_{name}.csv", encoding="utf-8-sig")
    png = plot_segments(
        c, out / "segments.png",
        f"{args.data}: {len(c):,} customers as of {tables.reference_date.date()}",
    )
    fmt = {"revenue": "{:,.0f}".format, "customer_share": "{:.1%}".format,
           "revenue_share": "{:.1%}".format, "avg_order_value": "{:,.2f}".format}
    print(f"{len(c):,} customers as of {tables.reference_date.date()} "
          f"(shop purchase cycle {tables.shop_cycle_days:g} days); "
          f"load {t_load:.1f}s, analytics {t_build:.1f}s")
    for note in tables.notes:
        print(f"note: {note}")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        for title, by in (("RFM segments", "segment"), ("Value segments", "value_segment"),
                          ("NES lifecycle", "nes_stage")):
            print(f"\n{title}\n{summarize(c, by).to_string(formatters=fmt)}")
    n_one = int((c["purchase_days"] == 1).sum())
    print(f"\none purchase day (no own cycle): {n_one:,} customers; "
          f"win-back list (S1+S2): {len(tables.winback):,} customers; "
          f"reminders due within {args.horizon_days} days: {len(tables.reminders):,}")
    print(f"wrote {out}/customers.parquet|csv, reminders, winback, offers, summary_*.csv, {png}")
    return 0
