"""`patron ab validate|analyze` through the CLI entry point."""

from __future__ import annotations

import json

from patron.cli import main
from tests.test_experiments_analyze import simulate_split, write_config


def test_ab_validate_passes_and_reports_the_false_positive_rate(capsys):
    assert main(["ab", "validate", "--runs", "300", "--customers", "1000"]) == 0
    out = capsys.readouterr().out
    assert "A/A conversion z-test false positives" in out and "all checks passed" in out


def test_ab_analyze_prints_verdict_writes_report_and_json(tmp_path, capsys):
    log, out = simulate_split(tmp_path, n=4000, rates={"control": 0.1, "treatment": 0.2})
    from experiments.ab_run import write_outcomes

    outcomes = write_outcomes(out, tmp_path / "outcomes.jsonl")
    cfg = write_config(tmp_path / "exp.json")
    rc = main(["ab", "analyze", "--exposures", str(log), "--outcomes", str(outcomes),
               "--config", str(cfg), "--report", str(tmp_path / "rep"),
               "--json", str(tmp_path / "a.json")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "VERDICT: SIGNIFICANT" in text
    assert (tmp_path / "rep" / "index.html").read_text().count("<img") == 2
    assert json.loads((tmp_path / "a.json").read_text())["verdict"] == "SIGNIFICANT"


def test_ab_analyze_bad_input_is_one_line_exit_2(tmp_path, capsys):
    log, out = simulate_split(tmp_path, n=50)
    from experiments.ab_run import write_outcomes

    outcomes = write_outcomes(out, tmp_path / "o.jsonl")
    rc = main(["ab", "analyze", "--exposures", str(log), "--outcomes", str(outcomes),
               "--experiment", "nope"])
    err = capsys.readouterr().err
    assert rc == 2 and "not in the exposure log" in err and len(err.strip().splitlines()) == 1


def test_example_experiment_config_is_valid_for_the_service():
    from pathlib import Path

    from serving.variants import load_experiments

    cfg = load_experiments(Path(__file__).parents[1] / "experiments/configs/ab_example.yaml")
    assert cfg.experiments["home_recs_interleaved"].type == "interleave"
