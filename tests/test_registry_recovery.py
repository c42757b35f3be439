"""Issue 14, item 8: what a kill -9 leaves in the tracking store is repaired at the next start."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from training.recovery import fail_dead_runs, tag_undecided

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh SQLite store; mlflow's process-wide URIs are put back afterwards (setup_mlflow
    sets them, and other tests' clients would follow them)."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield uri
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry)


def _killed_run(uri: str, tmp_path: Path) -> str:
    code = textwrap.dedent(f"""
        import os, signal
        from training.tracking import setup_mlflow
        from training.recovery import process_tags
        import mlflow
        uri, exp = setup_mlflow({uri!r}, "patron")
        run = mlflow.start_run(experiment_id=exp, run_name="doomed", tags=process_tags())
        print(run.info.run_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT), MLFLOW_DISABLE_TELEMETRY="true")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=tmp_path)
    assert p.returncode == -9, p.stderr[-2000:]
    return p.stdout.split()[0]


def test_runs_of_killed_processes_are_failed_at_the_next_start(store, tmp_path):
    run_id = _killed_run(store, tmp_path)
    c = MlflowClient(store, store)
    assert c.get_run(run_id).info.status == "RUNNING"
    from training.tracking import setup_mlflow

    setup_mlflow(store, "patron")  # what patron tune / train do first
    run = c.get_run(run_id)
    assert run.info.status == "FAILED" and "ended without closing" in run.data.tags["patron.recovered"]
    with mlflow.start_run(experiment_id=run.info.experiment_id) as live:  # this process: alive
        mlflow.set_tags({"patron.host": os.uname().nodename, "patron.pid": str(os.getpid())})
        assert fail_dead_runs(c)["failed"] == 0
        assert c.get_run(live.info.run_id).info.status == "RUNNING"


def test_versions_without_a_decision_are_tagged_undecided(store, tmp_path):
    from tests.serving_helpers import build_artifact
    from training.registry import log_patron_model, promote
    from training.tracking import setup_mlflow

    build_artifact(tmp_path / "a", seed=1)
    setup_mlflow(store, "patron")
    for _ in range(2):
        with mlflow.start_run():
            log_patron_model(tmp_path / "a", "shop")  # registered, then "killed": no promote
    c = MlflowClient(store, store)
    promote("shop", "2", tracking_uri=store)
    v1 = c.get_model_version("shop", "1")
    assert v1.tags["patron.promote.decision"] == "undecided"
    assert "patron promote --name shop --version 1" in v1.tags["patron.promote.reason"]
    assert c.get_model_version("shop", "2").tags["patron.promote.decision"] == "first"
    assert tag_undecided(c, "shop") == []  # idempotent
    doctor = subprocess.run([sys.executable, "-m", "patron.cli", "doctor", "--tracking-uri", store],
                            capture_output=True, text=True, cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert doctor.returncode == 0 and "every version has a decision" in doctor.stdout
