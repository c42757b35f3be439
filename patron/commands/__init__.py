

MAP_HELP = ("map a schema column onto a column of a raw log, as patron ingest does, e.g. "
            "--map customer_id=CustomerID (repeatable; default: the columns' own names)")


def add_map_argument(parser) -> None:
    """``--map CANONICAL=COLUMN`` for commands that read ``--data`` (the same as ingest's)."""
    parser.add_argument("--map", action="append", default=[], metavar="CANONICAL=COLUMN",
                        help=MAP_HELP)


def load_data(args, attr: str = "data"):
    """The clean purchases of ``--data`` with ``--map`` applied (raw logs are cleaned as
    ``patron ingest`` would)."""
    from features.ingest import load_dataset
    from features.schema import parse_mapping

    return load_dataset(getattr(args, attr), mapping=parse_mapping(getattr(args, "map", None)) or None)
