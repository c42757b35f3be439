"""A/B analysis on simulated exposure logs (written by the real ExposureLog) and outcomes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from experiments.ab_analyze import analyze
from experiments.ab_run import check_loopback, read_outcomes, write_outcomes
from experiments.interleaving import analyze_credit, credit
from experiments.shoppers import attribute, plan_visits
from features.errors import PatronError
from serving.exposure import ExposureLog
from serving.interleave import team_draft


def write_config(path, experiment="exp1", weights=(0.5, 0.5), names=("control", "treatment"),
                 kind="split"):
    variants = {n: {"model": f"/models/{n}", "weight": w} for n, w in zip(names, weights, strict=True)}
    path.write_text(json.dumps({"experiments": {experiment: {"type": kind, "variants": variants}}}))
    return path


def simulate_split(tmp_path, n=4000, rates=None, shares=None, experiment="exp1", seed=0):
    """Exposure log + outcomes: customer i gets a variant by ``shares`` and converts with
    its variant's rate. Returns (log path, outcomes DataFrame)."""
    rates = rates or {"control": 0.10, "treatment": 0.10}
    names = list(rates)
    shares = shares or [1 / len(names)] * len(names)
    rng = np.random.default_rng(seed)
    variant = rng.choice(names, size=n, p=shares)
    conv = rng.random(n) < np.array([rates[v] for v in variant])
    revenue = np.where(conv, rng.lognormal(3, 1, n), 0.0)
    path = tmp_path / "exposures.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    # the documented record format, written in bulk (the real ExposureLog fsyncs each
    # record: see the interleaving test, which uses it)
    path.write_bytes(b"".join(ExposureLog.encode({
        "ts": 1_700_000_000 + i, "request_id": f"r{i}", "endpoint": "recommend",
        "experiment": experiment, "variant": str(variant[i]), "model_version": "m/1",
        "strategy": "personalised", "customer_key": f"c{i}", "items": ["a", "b"],
    }) for i in range(n)))
    outcomes = pd.DataFrame({
        "request_id": [f"r{i}" for i in range(n)], "status": 200, "experiment": experiment,
        "variant": variant, "converted": conv.astype(int), "revenue": revenue,
        "converted_items": [["a"] if c else [] for c in conv],
        "visit_time": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n), unit="min"),
    })
    return path, outcomes


def test_planted_effect_is_detected_with_intervals(tmp_path):
    log, out = simulate_split(tmp_path, n=6000, rates={"control": 0.10, "treatment": 0.15})
    a = analyze(log, out, config=write_config(tmp_path / "exp.json"))
    assert a.verdict == "SIGNIFICANT", a.text()
    row = a.comparisons.set_index("metric").loc["conversion_rate"]
    assert row["diff_low"] < 0.05 < row["diff_high"]
    assert row["relative_low"] < 0.5 < row["relative_high"]
    assert row["p_value"] < 1e-4 and row["p_always_valid"] < 0.05
    assert set(a.comparisons["metric"]) == {"conversion_rate", "revenue_per_customer"}
    assert a.variants["customers"].sum() == 6000
    assert not a.srm["flagged"]


def test_a_a_without_enough_customers_refuses_a_fixed_horizon_verdict(tmp_path):
    log, out = simulate_split(tmp_path, n=1000, seed=3)
    a = analyze(log, out, mde=0.02)
    assert a.verdict == "KEEP RUNNING", a.text()
    assert a.plan["needed_per_arm"] > a.plan["smallest_arm"]
    assert "not acted on" in a.verdict_detail


def test_sample_ratio_mismatch_is_flagged_loudly(tmp_path):
    log, out = simulate_split(tmp_path, n=5000, shares=[0.55, 0.45],
                              rates={"control": 0.1, "treatment": 0.2})
    a = analyze(log, out, config=write_config(tmp_path / "exp.json"))
    assert a.srm["flagged"] and a.verdict == "INVALID"
    assert "SAMPLE RATIO MISMATCH" in a.text()
    # the same counts against the weights actually used are fine
    b = analyze(log, out, config=write_config(tmp_path / "w.json", weights=(0.55, 0.45)))
    assert not b.srm["flagged"]


def test_torn_log_is_read_up_to_the_tear_and_every_exclusion_counted(tmp_path):
    log, out = simulate_split(tmp_path, n=500)
    with open(log, "ab") as fh:  # a crash mid-append
        fh.write(b'{"ts": 1700000999, "request_id": "r-torn", "endpo')
    out = pd.concat([out, pd.DataFrame([
        {"request_id": "r-torn", "status": 200, "experiment": "exp1", "variant": "control",
         "converted": 1, "revenue": 5.0, "converted_items": ["a"]},
        {"request_id": "r-failed", "status": 503, "converted": None, "revenue": None},
    ])], ignore_index=True)
    out = out[out["request_id"] != "r7"]  # an exposure whose outcome is missing
    a = analyze(log, out)
    assert a.torn is not None and a.torn["line"] == 501
    reasons = {e["reason"].split(" (")[0]: e["rows"] for e in a.exclusions}
    assert any(r.startswith("unreadable, the first at line 501") for r in reasons)
    assert reasons["no outcome for the request"] == 1
    assert reasons["no exposure for the request"] == 1  # r-torn
    assert reasons["request failed"] == 1
    assert a.variants["exposures"].sum() == 499
    assert "the first at line 501" in a.text()


def test_unknown_variants_mismatched_names_and_empty_arms_are_clear_errors(tmp_path):
    log, out = simulate_split(tmp_path, n=300, rates={"control": 0.1, "treatment": 0.1, "rogue": 0.1})
    with pytest.raises(PatronError, match="rogue"):
        analyze(log, out, config=write_config(tmp_path / "a.json"))
    with pytest.raises(PatronError, match="not in the exposure log"):
        analyze(log, out, experiment="other")
    with pytest.raises(PatronError, match="not in the experiment config"):
        analyze(log, out, config=write_config(tmp_path / "b.json"), experiment="nope")
    with pytest.raises(PatronError, match="no exposures"):
        analyze(log, out, config=write_config(
            tmp_path / "c.json", weights=(0.3, 0.3, 0.3, 0.1),
            names=("control", "treatment", "rogue", "empty")))
    log1, out1 = simulate_split(tmp_path / "one", n=100, rates={"control": 0.1})
    with pytest.raises(PatronError, match="only one variant"):
        analyze(log1, out1)


def test_outcomes_round_trip_and_bad_line_is_named(tmp_path):
    _, out = simulate_split(tmp_path, n=20)
    p = write_outcomes(out, tmp_path / "o.jsonl")
    back = read_outcomes(p)
    assert len(back) == 20 and back["converted"].sum() == out["converted"].sum()
    with open(p, "a") as fh:
        fh.write("{oops\n")
    with pytest.raises(PatronError, match=r"o.jsonl:21"):
        read_outcomes(p)


def test_attribution_window_and_one_credit_per_purchase_line():
    t0 = pd.Timestamp("2024-03-01")
    purchases = pd.DataFrame({
        "customer_id": [1, 1, 1, 1, 2, 2],
        "item_id": ["x", "y", "z", "x", "x", "y"],
        "timestamp": [t0 - pd.Timedelta(days=40), t0, t0 + pd.Timedelta(days=3),
                      t0 + pd.Timedelta(days=9), t0 + pd.Timedelta(days=1), t0 + pd.Timedelta(days=1)],
        "price": [1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
        "quantity": [1.0, 1.0, 2.0, 1.0, 1.0, 1.0],
        "order_id": [1, 2, 3, 4, 5, 5],
    })
    plan = plan_visits(purchases, holdout_days=20)
    assert len(plan.visits) == 2 and plan.description["heldout_shoppers"] == 2
    # only baskets with a full attribution window inside the data are visited
    late = plan_visits(purchases, holdout_days=20, window_days=8.5)
    assert list(late.visits["customer_id"]) == [1]
    assert late.description["shoppers_without_full_window"] == 1
    visits = pd.DataFrame({
        "visit_id": [0, 1, 2], "customer_id": [1, 1, 2],
        "visit_time": [t0, t0 + pd.Timedelta(hours=1), t0],
        "items": [["x", "y", "z"], ["z"], ["y", "nope"]],
    })
    out = attribute(visits, plan.heldout, window_days=7)
    # visit 0: y at t0 (in), z at +3d (in, 2 x 4.0), x at +9d (outside the window)
    assert out.loc[0, "converted_items"] == ["y", "z"] and out.loc[0, "revenue"] == 10.0
    # visit 1 recommended z too, but that purchase line is already credited to visit 0
    assert out.loc[1, "converted"] == 0
    assert out.loc[2, "revenue"] == 32.0 and out.loc[2, "n_converted"] == 1


def test_loopback_only():
    assert check_loopback("http://127.0.0.1:3000/") == "http://127.0.0.1:3000"
    assert check_loopback("http://localhost:1")
    for bad in ("http://10.0.0.1:3000", "http://example.com", "ftp://127.0.0.1"):
        with pytest.raises(PatronError):
            check_loopback(bad)


def _interleaved(n, p_a, p_b, seed):
    """Requests interleaving two disjoint lists; items of team A convert with p_a, B with p_b."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        a = [f"a{j}" for j in range(10)]
        b = [f"b{j}" for j in range(10)]
        items, teams = team_draft(a, b, 10, seed=i, names=("ranker_a", "ranker_b"))
        p = np.where(np.array(teams) == "ranker_a", p_a, p_b)
        conv = [it for it, hit in zip(items, rng.random(len(items)) < p, strict=True) if hit]
        rows.append({"request_id": f"r{i}", "items": items, "teams": teams, "converted_items": conv})
    return pd.DataFrame(rows)


def test_interleaving_credit_finds_the_planted_preference_and_not_a_null():
    teams = ("ranker_a", "ranker_b")
    per = credit(_interleaved(800, 0.03, 0.015, seed=1), teams)
    res = analyze_credit(per, teams)
    assert res.wins_a > res.wins_b and res.p_sign < 0.01 and res.winner == "ranker_a"
    assert res.preference_low > 0
    assert res.requests == 800 and res.wins_a + res.wins_b + res.ties == res.requests_with_conversion
    null = analyze_credit(credit(_interleaved(800, 0.02, 0.02, seed=2), teams), teams)
    assert null.preference_low < 0 < null.preference_high
    # credit counts: one request by hand
    one = pd.DataFrame([{"request_id": "q", "items": ["x", "y", "z"], "teams": ["A", "B", "A"],
                         "converted_items": ["x", "z", "other"]}])
    c = credit(one, ("A", "B"))
    assert c.loc[0, "credit_a"] == 2 and c.loc[0, "credit_b"] == 0 and c.loc[0, "score"] == 1


def test_interleave_experiment_analysis_uses_teams_from_the_log(tmp_path):
    frame = _interleaved(400, 0.04, 0.01, seed=5)
    path = tmp_path / "ilog.jsonl"
    log = ExposureLog(path, secret=b"k")
    for i, r in frame.iterrows():
        log.write({"ts": 1.7e9 + i, "request_id": r.request_id, "endpoint": "recommend",
                   "experiment": "il", "variant": "interleaved", "model_version": "m",
                   "strategy": "interleave", "customer_key": f"c{i}", "items": r["items"],
                   "teams": r["teams"]})
    log.close()
    out = frame[["request_id", "converted_items"]].assign(
        status=200, converted=[int(bool(c)) for c in frame["converted_items"]], revenue=0.0)
    cfg = write_config(tmp_path / "il.json", "il", names=("ranker_a", "ranker_b"), kind="interleave")
    a = analyze(path, out, config=cfg)
    assert a.kind == "interleave" and a.verdict == "SIGNIFICANT"
    assert a.interleaving.winner == "ranker_a"


def test_three_arms_are_each_compared_with_the_control_at_a_bonferroni_level(tmp_path):
    log, out = simulate_split(tmp_path, n=9000, rates={"control": 0.1, "t1": 0.16, "t2": 0.1})
    cfg = write_config(tmp_path / "e.json", weights=(1, 1, 1), names=("control", "t1", "t2"))
    a = analyze(log, out, config=cfg)
    assert a.plan["alpha_per_comparison"] == pytest.approx(0.025)
    assert set(a.comparisons["variant"]) == {"t1", "t2"}
    assert a.verdict == "SIGNIFICANT" and "t1 better" in a.verdict_detail
    assert "t2" not in a.verdict_detail
