"""`patron evaluate` (placeholder until implemented)."""

HELP = "evaluate (not implemented yet)"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise SystemExit("patron evaluate: not implemented yet")
