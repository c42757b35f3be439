"""`patron demo` (placeholder until implemented)."""

HELP = "demo (not implemented yet)"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise SystemExit("patron demo: not implemented yet")
