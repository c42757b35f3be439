"""Scale-out tuning on real servers: Optuna workers on PostgreSQL, MLflow server on PostgreSQL.

Needs ``PATRON_TEST_POSTGRES_URL`` (skips when unset, fails when set and unreachable). Every
test gets its own database(s), dropped afterwards; ``mlflow server`` and ``patron tune``
run as real processes on loopback ports.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import uuid

import optuna
import pandas as pd
import pytest

from features.synthetic import generate_purchases
from tests.pg import BIN, ROOT, Proc, child_env, database, mlflow_server

FIXED = {"als": {"iterations": 4, "factors": 8}}
COMMON = ["--models", "als", "--holdout-days", "21", "--validation-days", "21",
          "--no-baselines", "--no-progress", "--heartbeat", "1", "--grace-period", "2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from features.ingest import write_purchases

    d = tmp_path_factory.mktemp("scaleout-data")
    p = generate_purchases(n_customers=200, n_items=80, n_days=150, seed=1).purchases
    return write_purchases(p, d / "purchases.parquet")


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """One MLflow server (PostgreSQL backend + artifact dir) for this module's tests;
    each test uses its own experiment and registered model names."""
    tmp = tmp_path_factory.mktemp("mlflow-server")
    with database("patron_mlflow") as url:
        proc, http = mlflow_server(url, tmp)
        try:
            yield http
        finally:
            proc.stop()


def _tune(args: list[str], tmp, timeout: float = 240):
    import subprocess

    cmd = [sys.executable, "-m", "patron.cli", "tune", *args]
    return subprocess.run(cmd, env=child_env(tmp), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def _runs_of(tracking: str, experiment: str):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    exp = c.get_experiment_by_name(experiment)
    return c, ([] if exp is None else c.search_runs([exp.experiment_id], max_results=1000))


@pytest.mark.slow
def test_workers_fill_one_study_then_register_promote_serve(data, tracking, tmp_path):
    """2 workers x 6 trials -> 12 trials, each once, each with its nested MLflow run; the
    supervisor alone registers; promote through the server; a service started with
    MLFLOW_TRACKING_URI serves the champion (one test: each step needs the one before)."""
    import httpx

    from patron.cli import main
    from tests.pg import free_port, wait_http

    name = f"workers-{uuid.uuid4().hex[:6]}"
    with database() as storage:
        r = _tune(["--data", str(data), *COMMON, "--trials", "6", "--workers", "2",
                   "--storage", storage, "--study", "w", "--tracking-uri", tracking,
                   "--experiment", name, "--register", name, "--no-promote",
                   "--fixed", json.dumps(FIXED)], tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        study = optuna.load_study(study_name="w.als", storage=storage)
        trials, attrs = study.trials, study.user_attrs
    states = [t.state.name for t in trials]
    assert len(trials) == 12 and all(s in ("COMPLETE", "PRUNED") for s in states), (
        states, r.stderr[-4000:])
    assert sorted(t.number for t in trials) == list(range(12))  # each trial once
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers ran trials
    assert attrs["patron.metric"] == "ndcg@10"
    c, runs = _runs_of(tracking, name)
    trial_runs = [x for x in runs if "optuna.trial" in x.data.tags]
    assert sorted(int(x.data.tags["optuna.trial"]) for x in trial_runs) == list(range(12))
    parents = {x.info.run_id for x in runs if x.data.tags.get("patron.kind") == "tune"}
    assert {x.data.tags["mlflow.parentRunId"] for x in trial_runs} <= parents
    # only the supervisor refit and registered: one version, no champion yet (--no-promote)
    versions = c.search_model_versions(f"name = '{name}'")
    assert len(versions) == 1 and f"registered {name} version 1" in r.stdout
    assert main(["promote", "--name", name, "--version", "1", "--tracking-uri", tracking]) == 0
    assert c.get_model_version_by_alias(name, "champion").version == "1"

    env = child_env(tmp_path) | {"MLFLOW_TRACKING_URI": tracking,
                                 "PATRON_MODEL_URI": f"models:/{name}@champion",
                                 "PATRON_RUN_DIR": str(tmp_path / "run")}
    port = free_port()
    svc = Proc([str(BIN / "bentoml"), "serve", "serving.service:Recommender", "--host",
                "127.0.0.1", "--port", str(port), "--working-dir", str(ROOT)], env,
               tmp_path / "svc.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", svc, timeout=120)
        cust = str(pd.read_parquet(data)["customer_id"].iloc[0])
        res = httpx.post(f"http://127.0.0.1:{port}/recommend",
                         json={"customer_id": cust, "n": 5}, timeout=30)
        assert res.status_code == 200, res.text
        body = res.json()
        assert body["model_version"] == f"{name}/1" and len(body["items"]) == 5
    finally:
        svc.stop()


@pytest.mark.slow
def test_killed_worker_trial_fails_and_is_retried(tmp_path, tracking):
    from features.ingest import write_purchases

    # bigger data and more epochs than elsewhere: trials long enough to be caught running
    p = generate_purchases(n_customers=1500, n_items=300, n_days=150, seed=2).purchases
    path = write_purchases(p, tmp_path / "purchases.parquet")
    fixed = {"als": {"iterations": 30, "factors": 48}}
    name = f"kill-{uuid.uuid4().hex[:6]}"
    with database() as storage:
        def worker(i: int) -> Proc:
            cmd = [sys.executable, "-m", "patron.cli", "tune", "--data", str(path), *COMMON,
                   "--trials", "4", "--storage", storage, "--study", "k", "--no-refit",
                   "--eval-every", "100", "--tracking-uri", tracking, "--experiment", name,
                   "--fixed", json.dumps(fixed), "--worker-index", str(i)]
            return Proc(cmd, child_env(tmp_path), tmp_path / f"worker-{i}.log")

        a, b = worker(0), worker(1)
        victim = f"{socket.gethostname()}:{a.pid}"
        killed = None
        try:
            deadline = time.time() + 120
            while time.time() < deadline and killed is None:
                assert a.proc.poll() is None, f"worker exited early: {a.logs()[-2000:]}"
                try:
                    trials = optuna.load_study(study_name="k.als", storage=storage).trials
                except KeyError:
                    trials = []
                mine = [t for t in trials if t.user_attrs.get("worker") == victim]
                done = [t for t in mine if t.state.is_finished()]
                # inside a trial = its parameters are drawn (a trial killed between creation
                # and sampling has none to retry with: its retry draws its own)
                running = [t for t in mine if t.state.name == "RUNNING" and t.params]
                if done and running:
                    # freeze the worker, then read the state it left: a trial seen RUNNING a
                    # moment ago may have finished since (a loaded machine reads slowly)
                    os.kill(a.pid, signal.SIGSTOP)
                    time.sleep(0.2)
                    trials = optuna.load_study(study_name="k.als", storage=storage).trials
                    running = [t for t in trials if t.user_attrs.get("worker") == victim
                               and t.state.name == "RUNNING" and t.params]
                    if running:
                        a.kill9()  # mid-trial, no clean-up
                        killed = running[0].number
                    else:
                        os.kill(a.pid, signal.SIGCONT)
                time.sleep(0.05)
            assert killed is not None, "never caught worker 0 inside a trial"
            assert b.wait(timeout=180) == 0, b.logs()[-3000:]
        finally:
            a.stop()
            b.stop()
        trials = optuna.load_study(study_name="k.als", storage=storage).trials
    by_number = {t.number: t for t in trials}
    assert by_number[killed].state.name == "FAIL"
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].state.name in ("COMPLETE", "PRUNED")
    # the retry runs with the killed trial's parameters (all of those it had drawn)
    assert by_number[killed].params
    assert by_number[killed].params.items() <= retries[0].params.items()
    assert not [t for t in trials if not t.state.is_finished()]  # nothing left RUNNING
    # the failed trial and its retry each have their nested MLflow run
    _, runs = _runs_of(tracking, name)
    states = {int(x.data.tags["optuna.trial"]): x.info.status for x in runs
              if "optuna.trial" in x.data.tags}
    assert states[killed] == "FAILED" and states[retries[0].number] in ("FINISHED", "KILLED")


@pytest.fixture()
def local_tracking(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _main(args, capsys) -> tuple[int, str]:
    from patron.cli import main

    rc = main(["tune", *args])
    return rc, capsys.readouterr().err.strip()


def test_bad_storage_and_studies_are_one_line_and_write_nothing(data, local_tracking, capsys):
    from tests.pg import server_url, with_database

    base = ["--data", str(data), *COMMON, "--trials", "1", "--tracking-uri", local_tracking,
            "--fixed", json.dumps(FIXED)]
    server = server_url()
    # a closed port, a role that does not exist (the password must not be printed)
    for url, expect in [("postgresql://postgres@127.0.0.1:1/x", "cannot reach Optuna storage"),
                        (with_database(server, "postgres", username="nobody", password="s3cret"),
                         "nobody")]:
        rc, err = _main([*base, "--storage", url], capsys)
        assert rc == 2 and err.startswith("patron tune: error: cannot reach Optuna storage"), err
        assert expect in err and "s3cret" not in err and len(err.splitlines()) == 1
    with database() as storage:
        optuna.create_study(study_name="mini.als", storage=storage, direction="minimize")
        other = optuna.create_study(study_name="rec.als", storage=storage, direction="maximize")
        other.set_user_attr("patron.metric", "recall@20")
        for study, expect in [("mini", "exists but minimises"), ("rec", "metric 'recall@20'")]:
            rc, err = _main([*base, "--storage", storage, "--study", study], capsys)
            assert rc == 2 and expect in err and len(err.splitlines()) == 1, err
        rc, err = _main([*base, "--storage", storage, "--study", "rec", "--workers", "2"], capsys)
        assert rc == 2 and "metric 'recall@20'" in err  # refused before any worker starts
        assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == [
            "mini.als", "rec.als"]
        assert all(s.n_trials == 0 for s in optuna.get_all_study_summaries(storage))
    # nothing reached the tracking store: no run was started for any refused session
    _, runs = _runs_of(local_tracking, "patron")
    assert runs == []
