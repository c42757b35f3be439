"""Issue 22: every option of every command says what it does and its default; every
command's help ends with an example; the notebook example runs; fit() on a DataFrame says
what to do instead."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from patron.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                for nested, subsub in _subparsers(sub):
                    yield f"{name} {nested}", subsub


def test_every_option_has_help_and_every_command_an_example():
    problems = []
    commands = dict(_subparsers(build_parser()))
    assert set(COMMANDS) <= set(commands)
    for name, sub in commands.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            text = action.help or ""
            if not text or text == argparse.SUPPRESS:
                problems.append(f"{name} {'/'.join(action.option_strings) or action.dest}: no help")
        help_text = sub.format_help()
        if "example" not in help_text.lower():
            problems.append(f"{name}: help ends without an example")
        if "``" in help_text or ":class:" in help_text:
            problems.append(f"{name}: RST markup in the help")
    assert problems == [], "\n".join(problems)


def test_defaults_are_shown():
    # --seed's own help names no default: the formatter adds it
    text = " ".join(dict(_subparsers(build_parser()))["train"].format_help().split())
    assert "random seed (fits, samplers, simulations) (default: 42)" in text


def test_fit_on_a_dataframe_says_what_to_do():
    import pandas as pd

    from features.errors import PatronError
    from training.models.registry import MODELS

    with pytest.raises(PatronError, match="takes an InteractionMatrix.*build_interactions"):
        MODELS["itemknn"]().fit(pd.DataFrame({"customer_id": [1]}))


@pytest.mark.slow
def test_the_notebook_example_runs(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "docs" / "example_notebook.py")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "purchases of 200 customers" in r.stdout and "value_segment" in r.stdout
