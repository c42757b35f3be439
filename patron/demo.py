"""`patron demo`: the whole path on The Complete Journey, end to end.

ingest -> evaluate the baselines -> tune ALS and item-kNN (Optuna + MLflow) and register the
champion -> train a challenger -> customer segments -> serve champion vs challenger and run a
short A/B test replayed from held-out purchases -> keep serving, with a curl line to try.
Each step is the same code as its own ``patron`` command.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from features.errors import PatronError

DEMO_EXPERIMENT = "home_recs"


_LAST: list[float] = []  # when the running step started


def _step(n: int, total: int, title: str) -> None:
    now = time.monotonic()
    if _LAST:
        print(f"(step {n - 1} took {now - _LAST[0]:.0f} s)", flush=True)
        _LAST[0] = now
    else:
        _LAST.append(now)
    bar = "=" * 78
    print(f"\n{bar}\n[{n}/{total}] {title}\n{bar}", flush=True)


def _cli(*argv: str) -> None:
    from patron.cli import main

    print("$ patron " + " ".join(argv), flush=True)
    rc = main(list(argv))
    if rc:
        raise PatronError(f"`patron {' '.join(argv)}` failed (exit {rc})")


def _free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PatronError(f"the service exited with code {proc.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise PatronError(f"the service at {url} was not ready after {timeout:.0f} s")


def _latest_version(tracking_uri: str, name: str) -> str:
    from training.tracking import client

    versions = client(tracking_uri).search_model_versions(f"name='{name}'")
    return str(max(int(v.version) for v in versions))


def run_demo(
    workdir: str | os.PathLike = ".patron/demo",
    trials: int = 4,
    timeout: float = 240.0,
    serve: bool = True,
    port: int = 3000,
    ab_requests: int = 600,
) -> int:
    """Run the demo; returns the process exit code."""
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per readiness poll otherwise
    wd = Path(workdir).resolve()
    wd.mkdir(parents=True, exist_ok=True)
    data_dir = wd / "data"
    purchases = str(data_dir / "purchases.parquet")
    tracking = f"sqlite:///{(Path('.patron') / 'mlflow.db').resolve()}"
    total = 6
    t0 = time.monotonic()

    _step(1, total, "Ingest The Complete Journey (validate, clean, report)")
    _cli("ingest", "completejourney", "-o", str(data_dir))

    _step(2, total, "Evaluate the baselines: last 4 weeks held out, both modes")
    _cli("evaluate", "--data", purchases, "--holdout-days", "28",
         "--models", "popularity,recent_popularity,repeat_buy", "--json", str(wd / "baselines.json"))

    _step(3, total, f"Tune ALS, item-kNN and EASE with Optuna ({trials} trials each), track in "
                    "MLflow, register and promote the champion")
    # EASE keeps items bought by >= 30 customers so its dense item x item matrix stays small
    _cli("tune", "--data", purchases, "--models", "als,itemknn,ease", "--trials", str(trials),
         "--timeout", str(timeout), "--study", "demo", "--tracking-uri", tracking,
         "--fixed", json.dumps({"ease": {"matrix.min_item_customers": 30}}),
         # the A/B replay below uses the held-out weeks: the served models must not have seen
         # them (a shop's own loop refits on everything: the default --refit-on all)
         "--register", "patron", "--refit-on", "train")

    _step(4, total, "Train a challenger (own repeat purchases blended with ALS) for the A/B test")
    _cli("train", "--data", purchases, "--model", "blend", "--out", str(wd / "models" / "blend"),
         "--tracking-uri", tracking, "--register", "patron", "--no-promote", "--refit-on", "train")
    version = _latest_version(tracking, "patron")
    _cli("promote", "--name", "patron", "--version", version, "--challenger",
         "--tracking-uri", tracking)

    _step(5, total, "Customer analytics: RFM segments, NES lifecycle, reminders")
    _cli("segments", "--data", purchases, "--out", str(wd / "segments"))

    _step(6, total, "Serve champion vs challenger, replay held-out shoppers as an A/B test")
    port = _free_port(port)
    url = f"http://127.0.0.1:{port}"
    config = wd / "experiments.json"
    config.write_text(json.dumps({"experiments": {
        DEMO_EXPERIMENT: {"type": "split", "salt": "demo-1", "variants": {
            "control": {"model": "models:/patron@champion", "weight": 0.5},
            "treatment": {"model": "models:/patron@challenger", "weight": 0.5}}},
        "default": {"type": "split", "variants": {
            "champion": {"model": "models:/patron@champion", "weight": 1.0}}},
    }}, indent=2))
    exposure_log = wd / "exposures.jsonl"
    exposure_log.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "patron.cli", "serve", "--port", str(port),
           "--experiments", str(config), "--exposure-log", str(exposure_log),
           "--tracking-uri", tracking]
    print("$ patron " + " ".join(cmd[3:]), flush=True)
    proc = subprocess.Popen(cmd, start_new_session=True)

    def _stop(signum, frame):  # SIGTERM (or SIGHUP) stops what the demo started, then the demo
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    try:
        _wait_ready(url, proc)
        from experiments.ab_analyze import analyze
        from experiments.ab_run import run_ab
        from experiments.report import write_report
        from features.ingest import read_purchases

        result = run_ab(url, read_purchases(purchases), DEMO_EXPERIMENT,
                        max_requests=ab_requests, max_seconds=120, concurrency=8,
                        out=wd / "ab-outcomes.jsonl")
        analysis = analyze(exposure_log, result.outcomes, config=str(config),
                           experiment=DEMO_EXPERIMENT)
        report = write_report(analysis, wd / "ab-report",
                              title="Demo: champion vs challenger on The Complete Journey")
        print(analysis.text())
        print(f"\nA/B report: {report}")
        print(f"(step {total} took {time.monotonic() - _LAST[0]:.0f} s)" if _LAST else "")
        print(f"\nDemo finished in {time.monotonic() - t0:.0f} s.")
        print("See every run, the Optuna plots and the registered champion in MLflow:\n"
              f"  .venv/bin/mlflow ui --backend-store-uri {tracking}")
        print(f"\nThe champion is being served at {url} (API docs at {url}/, widget at {url}/widget).")
        print("Try:\n"
              f"  curl -s -X POST {url}/recommend -H 'content-type: application/json' "
              "-d '{\"customer_id\": \"1\", \"n\": 5}'")
        if not serve:
            return 0
        print("\nPress Ctrl-C to stop the service.", flush=True)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            return 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
