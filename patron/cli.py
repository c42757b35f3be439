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


EXAMPLES: dict[str, str] = {
    "ingest": "patron ingest exports/orders.csv -o data --map customer_id=Kunde\n"
              "  patron ingest online_retail --keep-duplicates",
    "evaluate": "patron evaluate --data data --models popularity,repeat_buy,itemknn --k 5,10",
    "demo": "patron demo --trials 4 --no-serve",
    "serve": "patron serve --model models:/patron@champion --workers 2\n"
             "  patron serve --experiments experiments/configs/ab_example.yaml --exposure-log exp.jsonl",
    "train": "patron train --data data --model ease --register patron\n"
             "  patron train --data data --model als --params '{\"factors\": 128}' --out models/als",
    "tune": "patron tune --data data --models als,itemknn,ease --trials 20 --register patron",
    "promote": "patron promote --name patron --version 3\n"
               "  patron promote --name patron --version 4 --challenger",
    "compare": "patron compare --data data --models popularity,models:/patron@champion --report cmp/",
    "ab": "patron ab run --url http://127.0.0.1:3000 --data data --out outcomes.jsonl",
    "ab run": "patron ab run --url http://127.0.0.1:3000 --data data --max-requests 2000 --out outcomes.jsonl",
    "ab analyze": "patron ab analyze --exposures exp.jsonl --outcomes outcomes.jsonl "
                  "--config experiments/configs/ab_example.yaml --report ab-report/",
    "ab validate": "patron ab validate --runs 500",
    "segments": "patron segments --data data --out segments/",
    "reminders": "patron reminders --data data --horizon-days 14 --out due.csv",
}
COMMON_HELP = {  # options many commands share
    "seed": "random seed (fits, samplers, simulations)",
    "threads": "threads per fit",
    "power": "statistical power the sample-size plan aims for",
    "alpha": "significance level of the tests and intervals",
    "mde": "minimum detectable effect the plan is sized for",
    "mlflow_experiment": "MLflow experiment of the logged report",
}


class DefaultsFormatter(argparse.HelpFormatter):
    """Every option's help says its default (unless it already does, or there is none)."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if ("default" in text.lower() or d in (None, False, [], argparse.SUPPRESS)
                or isinstance(action, argparse._HelpAction) or not action.option_strings):
            return text
        return f"{text} (default: {d})"


def _finish(parser: argparse.ArgumentParser, name: str) -> None:
    """Shared help for common options, the defaults shown, an example at the end."""
    parser.formatter_class = DefaultsFormatter
    for action in parser._actions:
        if not action.help and action.dest in COMMON_HELP:
            action.help = COMMON_HELP[action.dest]
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                _finish(sub, f"{name} {sub_name}")
    if not parser.epilog and name in EXAMPLES:
        parser.epilog = "example: " + EXAMPLES[name]
    elif parser.epilog and "example" not in parser.epilog.lower() and name in EXAMPLES:
        parser.epilog += "\nexample: " + EXAMPLES[name]


class UserError(Exception):
    """An error caused by the user's input: printed as one line, exit code 2."""


def _defaults_env() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def build_parser() -> argparse.ArgumentParser:
    from patron import __version__

    parser = argparse.ArgumentParser(prog="patron", description="Patron: recommendations for "
                                     "shops that sell to repeat customers; one command fronts "
                                     "every job (patron COMMAND --help)")
    parser.add_argument("--version", action="version", version=f"patron {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"patron.commands.{module}")
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP,
                           formatter_class=DefaultsFormatter)
        mod.add_arguments(p)
        _finish(p, name)
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
