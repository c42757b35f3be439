"""The ``patron`` command: one CLI that fronts every job.

Each subcommand is a module in :mod:`patron.commands` with ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Modules import only argparse-level
things at top level; heavy imports (implicit, mlflow, bentoml) happen inside ``run``
so ``patron --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# subcommand name -> module under patron.commands
COMMANDS: dict[str, str] = {
    "ingest": "ingest",
    "evaluate": "evaluate",
    "demo": "demo",
    "serve": "serve",
    "train": "train",
    "tune": "tune",
    "promote": "promote",
    "compare": "compare",
    "ab": "ab",
    "segments": "segments",
    "reminders": "reminders",
    "doctor": "doctor",
    "retrain": "retrain",
    "build": "build",
    "forget": "forget",
    "purge": "purge",
    "keys": "keys",
}


class UserError(Exception):
    """An error caused by the user's input: printed as one line, exit code 2."""


def _defaults_env() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def build_parser() -> argparse.ArgumentParser:
    from patron import __version__

    parser = argparse.ArgumentParser(prog="patron", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"patron {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"patron.commands.{module}")
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    _defaults_env()
    from features.errors import PatronError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    try:
        return int(args._run(args) or 0)
    except (UserError, PatronError) as exc:
        print(f"patron {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
