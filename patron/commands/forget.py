"""`patron forget`: erase customers from every store of the project (GDPR art. 17, PDPA)."""

from __future__ import annotations

HELP = "forget customers everywhere: purchases, rejects, exposure logs, models (refit), registry"


def add_arguments(parser) -> None:
    parser.add_argument("customer_ids", nargs="*", metavar="CUSTOMER_ID",
                        help="ids exactly as the shop writes them")
    parser.add_argument("--from-file", metavar="FILE", help="more ids, one per line")
    parser.add_argument("--name", default="patron", help="registered model (default patron)")
    parser.add_argument("--data", default=None,
                        help="cleaned purchases to refit models on (default: the project's newest "
                        "purchase store, after the customers are removed from it)")
    parser.add_argument("--exposure-log", action="append", default=[], metavar="PATH",
                        help="an exposure log to clean besides those the project recorded (repeatable)")
    parser.add_argument("--exposure-url", action="append", default=[], metavar="URL",
                        help="a PostgreSQL exposure table (default $PATRON_EXPOSURE_URL)")
    parser.add_argument("--keep-versions", action="store_true",
                        help="refuse (exit 3, nothing changed) when registered versions hold them, "
                        "instead of refitting and retiring those versions")
    parser.add_argument("--notify", action="append", default=[], metavar="URL",
                        help="a running service to reload afterwards (uses $PATRON_ADMIN_TOKEN)")
    parser.epilog = ("examples: patron forget 17850 13047 --notify http://127.0.0.1:3000 ; "
                     "patron forget --from-file erasure-requests.txt. Safe to run again: a "
                     "killed run is finished by the next one.")


def run(args) -> int:
    from features.errors import PatronError
    from patron.privacy import forget, read_ids

    ids = read_ids(args.customer_ids, args.from_file)
    try:
        report = forget(ids, name=args.name, data=args.data, exposure_logs=args.exposure_log,
                        exposure_urls=args.exposure_url, keep_versions=args.keep_versions,
                        notify=args.notify)
    except PatronError as exc:
        if args.keep_versions and "--keep-versions" in str(exc):
            print(f"patron forget: refused: {exc}")
            return 3
        raise
    removed = sum(s["rows_removed"] for s in report.stores)
    print(f"forgot {report.customers} customer(s): {removed:,} rows/records removed from "
          f"{len(report.stores)} store file(s); versions created {report.versions_created or '-'}, "
          f"retired {report.versions_retired or '-'}")
    for note in report.notes:
        print(note)
    return 0
