"""`patron purge`: keep exposure logs no longer than the shop needs (retention)."""

from __future__ import annotations

HELP = "delete exposure records older than a retention period (file logs, daily files, table)"


def add_arguments(parser) -> None:
    parser.add_argument("--retention-days", type=float, required=True,
                        help="keep this many days of records (older ones are deleted)")
    parser.add_argument("--exposure-log", action="append", default=[], metavar="PATH",
                        help="an exposure log besides those the project recorded (repeatable)")
    parser.add_argument("--exposure-url", action="append", default=[], metavar="URL",
                        help="a PostgreSQL exposure table (default $PATRON_EXPOSURE_URL)")
    parser.epilog = ("example (cron, daily): patron purge --retention-days 90 ; serve with "
                     "PATRON_EXPOSURE_ROLL=daily to write one file per day")


def run(args) -> int:
    from features.errors import PatronError
    from patron.privacy import purge

    if args.retention_days < 0:
        raise PatronError("--retention-days must be >= 0")
    purge(args.retention_days, exposure_logs=args.exposure_log, exposure_urls=args.exposure_url)
    return 0
