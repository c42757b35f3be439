"""`patron ingest` (placeholder until implemented)."""

HELP = "ingest (not implemented yet)"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise SystemExit("patron ingest: not implemented yet")
