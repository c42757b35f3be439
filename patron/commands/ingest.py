"""`patron ingest`: raw purchase log -> clean purchases.parquet + report.json (+ rejects)."""

from __future__ import annotations

import argparse

HELP = "validate and clean a purchase log (CSV/Parquet, completejourney, online_retail)"

_DEFAULT_OUT = "patron_data/ingest"


def _list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="completejourney, online_retail, or a path to a CSV/TSV/Parquet purchase log",
    )
    parser.add_argument(
        "-o", "--out", metavar="OUT_DIR",
        help=f"output directory (default: {_DEFAULT_OUT}/<source name>)",
    )
    parser.add_argument(
        "--map", action="append", default=[], metavar="CANONICAL=COLUMN",
        help="map a schema column onto a source column, e.g. --map customer_id=CustomerID "
        "(repeatable; schema: customer_id item_id timestamp [quantity price order_id "
        "category item_name department])",
    )
    parser.add_argument(
        "--strict", action="store_true",
        help="fail on the first invalid row instead of writing it to the rejects file",
    )
    parser.add_argument("--sep", metavar="CHAR",
                        help="CSV delimiter (default: detected from the header: , ; tab |)")
    parser.add_argument("--encoding", metavar="NAME",
                        help="text encoding of a CSV (default: utf-8 when it decodes as UTF-8, "
                        "else latin-1)")
    parser.add_argument(
        "--allow-empty", action="store_true",
        help="write an empty result when no row survives (default: that is an error, exit 2)",
    )
    parser.add_argument("--config", metavar="JSON", help="CleanConfig as a JSON file")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    rules = parser.add_argument_group("cleaning rules (default: the source's defaults)")
    for flag, field, what in (
        ("--keep-cancellations", "drop_cancellations", "cancelled lines (order-id prefix)"),
        ("--keep-returns", "drop_returns", "lines with negative quantity"),
        ("--keep-zero-quantity", "drop_zero_quantity", "lines with quantity 0"),
        ("--keep-guests", "drop_guests", "lines without a customer id (as invalid rows)"),
        ("--keep-non-products", "drop_non_products", "postage/fee/voucher codes"),
        ("--keep-nonpositive-prices", "drop_nonpositive_price", "lines with unit price <= 0"),
        ("--keep-duplicates", "drop_duplicates", "exact duplicate lines"),
    ):
        rules.add_argument(flag, dest=field, action="store_false", default=None,
                           help=f"keep {what}")
    rules.add_argument("--drop-suspected-non-products", dest="drop_suspected_non_products",
                       action="store_true", default=None,
                       help="drop the items the report suspects are postage, fees or vouchers "
                       "(default: keep them and warn)")
    rules.add_argument("--cancel-prefixes", type=_list, metavar="P1,P2",
                       help="order-id prefixes marking cancellations (Online Retail: C)")
    rules.add_argument("--non-product-codes", type=_list, metavar="CODE,...",
                       help="item ids that are not products (replaces the source's list)")
    rules.add_argument("--non-product-pattern", metavar="REGEX",
                       help="regex (full match) for item ids that are not products")
    rules.add_argument("--exclude-categories", type=_list, metavar="CAT,...",
                       help="drop lines of these categories ('' for none)")
    rules.add_argument("--exclude-departments", type=_list, metavar="DEPT,...",
                       help="drop lines of these departments ('' for none; Complete Journey "
                       "default: FUEL,MISCELLANEOUS)")
    dates = parser.add_argument_group(
        "timestamps (default: the format is detected from the values; a date such as "
        "01/02/2024 that reads two ways is an error until one of these says which)")
    dates.add_argument("--date-format", metavar="FORMAT",
                       help="strftime format of the timestamps, e.g. %%d/%%m/%%Y %%H:%%M")
    order = dates.add_mutually_exclusive_group()
    order.add_argument("--dayfirst", dest="dayfirst", action="store_true", default=None,
                       help="numeric dates are day/month/year (UK, EU)")
    order.add_argument("--monthfirst", dest="dayfirst", action="store_false",
                       help="numeric dates are month/day/year (US)")
    dates.add_argument("--min-date", metavar="YYYY-MM-DD",
                       help="earlier timestamps are implausible (default 1990-01-01)")
    day = rules.add_mutually_exclusive_group()
    day.add_argument("--day-level", dest="day_level", action="store_true", default=None,
                     help="truncate timestamps to the day")
    day.add_argument("--keep-time", dest="day_level", action="store_false",
                     help="keep full timestamps")


_RULE_FIELDS = (
    "drop_cancellations", "drop_returns", "drop_zero_quantity", "drop_guests",
    "drop_non_products", "drop_nonpositive_price", "drop_duplicates", "cancel_prefixes",
    "non_product_codes", "non_product_pattern", "exclude_categories", "exclude_departments",
    "day_level", "date_format", "dayfirst", "min_date", "drop_suspected_non_products",
)


def _config(args):
    """The CleanConfig from --config and the rule flags (only fields the user set)."""
    import json
    from pathlib import Path

    from pydantic import ValidationError as PydanticError

    from features.clean import CleanConfig
    from features.errors import PatronError

    fields: dict = {}
    if args.config:
        try:
            fields.update(json.loads(Path(args.config).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise PatronError(f"--config {args.config}: {exc}") from exc
    fields.update({f: getattr(args, f) for f in _RULE_FIELDS if getattr(args, f) is not None})
    if not fields:
        return None
    try:
        return CleanConfig(**fields)
    except PydanticError as exc:
        err = exc.errors()[0]
        loc = ".".join(map(str, err["loc"]))
        raise PatronError(f"cleaning rule {loc}: {err['msg']}") from exc


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from features.ingest import format_summary, ingest
    from features.schema import parse_mapping

    mapping = parse_mapping(args.map)
    config = _config(args)
    out = args.out or str(Path(_DEFAULT_OUT) / Path(str(args.source)).name.split(".")[0])
    result = ingest(args.source, out, config=config, mapping=mapping, strict=args.strict,
                    allow_empty=args.allow_empty, sep=args.sep, encoding=args.encoding)
    from features.project import project_dir
    from features.stores import record_store

    project_dir(create=True)  # the project starts with its first ingest
    record_store("purchases", out)  # patron forget / purge find it here
    if str(args.source) not in ("completejourney", "online_retail"):
        record_store("sources", args.source)  # the shop's own files: forget names them
    if args.json:
        print(json.dumps(result.report, indent=2, default=str))
    else:
        print(format_summary(result.report))
    return 0
