"""End to end: `bentoml serve` on a loopback port, replayed shoppers, analysis, report, MLflow.

One real service (two small ALS artifacts in an A/B split plus an interleave experiment,
an exposure log); the driver replays the synthetic log's held-out shoppers against it.
"""

from __future__ import annotations

import pytest

from experiments.ab_analyze import analyze
from experiments.ab_run import run_ab
from experiments.report import log_report_to_mlflow, write_report
from features.errors import PatronError
from tests.serving_helpers import LiveService, build_artifact, free_port


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    d = tmp_path_factory.mktemp("ab-live")
    _, log = build_artifact(d / "model_a", seed=1)
    build_artifact(d / "model_b", seed=2, factors=8)
    cfg = d / "experiments.yaml"
    cfg.write_text(
        "experiments:\n"
        "  ab1:\n    salt: s1\n    variants:\n"
        f"      control: {{model: {d / 'model_a'}, weight: 0.5}}\n"
        f"      treatment: {{model: {d / 'model_b'}, weight: 0.5}}\n"
        "  il:\n    type: interleave\n    variants:\n"
        f"      control: {{model: {d / 'model_a'}}}\n"
        f"      treatment: {{model: {d / 'model_b'}}}\n"
    )
    svc = LiveService(
        {"PATRON_EXPERIMENTS": str(cfg), "PATRON_EXPOSURE_LOG": str(d / "exposures.jsonl"),
         "PATRON_EXPOSURE_SECRET": "s", "BENTOML_HOME": str(d / "bentoml")},
        d,
    )
    try:
        svc.wait_ready()
        yield {"svc": svc, "dir": d, "config": cfg, "purchases": log.purchases}
    finally:
        svc.stop()


def test_ab_run_analyze_report_against_the_live_service(live, tmp_path):
    d = live["dir"]
    res = run_ab(live["svc"].url, live["purchases"], "ab1", holdout_days=28, max_requests=120,
                 max_seconds=60, concurrency=4, out=tmp_path / "outcomes.jsonl")
    s = res.summary
    assert s["sent"] == 120 and s["ok"] == 120 and s["failed"] == 0, s
    assert (tmp_path / "outcomes.jsonl").is_file()
    assert set(res.outcomes["variant"]) == {"control", "treatment"}
    assert res.outcomes["converted"].sum() > 0  # model_a knows these shoppers' future

    a = analyze(d / "exposures.jsonl", tmp_path / "outcomes.jsonl", config=live["config"],
                experiment="ab1")
    assert a.kind == "split" and a.torn is None
    assert int(a.variants["customers"].sum()) == 120
    assert int(a.variants["exposures"].sum()) == 120
    # the other tests' requests are counted, never silently dropped
    assert all(e["reason"] != "no exposure for the request" for e in a.exclusions)
    assert {"conversion_rate", "revenue_per_customer"} <= set(a.comparisons["metric"])
    assert a.verdict in {"SIGNIFICANT", "KEEP RUNNING", "INVALID", "NO DIFFERENCE DETECTED"}

    page = write_report(a, tmp_path / "report")
    assert page.is_file() and (tmp_path / "report" / "lift.png").stat().st_size > 1000
    assert (tmp_path / "report" / "conversion_over_time.png").is_file()
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = log_report_to_mlflow(tmp_path / "report", a, tracking_uri=uri,
                                  experiment_name="ab-test")
    client = mlflow.MlflowClient(uri)
    names = {f.path for f in client.list_artifacts(run_id, "report")}
    assert {"report/index.html", "report/lift.png"} <= names
    run = client.get_run(run_id)
    assert "control.conversion_rate" in run.data.metrics and run.info.status == "FINISHED"
    assert run.data.tags["patron.verdict"] == a.verdict
    assert mlflow.get_tracking_uri() != uri  # the process-wide setting is untouched
    assert (tmp_path / "mlartifacts").is_dir()  # artifacts beside the store, not in ./mlruns


def test_interleave_run_is_credited_by_team(live, tmp_path):
    res = run_ab(live["svc"].url, live["purchases"], "il", max_requests=60, max_seconds=60,
                 out=tmp_path / "il.jsonl", seed=1)
    assert res.summary["ok"] == 60
    a = analyze(live["dir"] / "exposures.jsonl", tmp_path / "il.jsonl", config=live["config"],
                experiment="il")
    r = a.interleaving
    assert a.kind == "interleave" and r.requests == 60
    assert r.wins_a + r.wins_b + r.ties == r.requests_with_conversion


def test_driver_refuses_remote_hosts_and_reports_a_dead_service(live):
    with pytest.raises(PatronError, match="only talks to a service on this machine"):
        run_ab("http://192.0.2.1:3000", live["purchases"], "ab1")
    with pytest.raises(PatronError, match="not reachable"):
        run_ab(f"http://127.0.0.1:{free_port()}", live["purchases"], "ab1", max_requests=5)
