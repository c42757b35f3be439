"""MLflow tracking for Patron: where runs go, and an Optuna -> MLflow trial callback.

Default store: the project's embedded SQLite file (``<project>/.patron/mlflow.db``, artifacts
in ``.patron/mlartifacts``), the project being the nearest folder at or above the working
folder that holds ``.patron/`` (:mod:`features.project`); ``MLFLOW_TRACKING_URI`` or an
explicit URI (``--tracking-uri``) points at a real server. Commands that write create the
project in the working folder when there is none; commands that read never create a store.
Telemetry is switched off. Every URI is checked before any work starts, so a store
that cannot be reached fails fast with one line (:class:`TrackingError`).
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from features.errors import PatronError
from training.recovery import process_tags

PATRON_DIR = Path(".patron")
DEFAULT_EXPERIMENT = "patron"

__all__ = [
    "TrackingError", "PATRON_DIR", "DEFAULT_EXPERIMENT", "metric_key", "resolve_tracking_uri",
    "check_tracking_uri", "setup_mlflow", "MLflowTrialCallback", "log_table", "client",
]


class TrackingError(PatronError):
    """The MLflow tracking store cannot be reached or used."""


def metric_key(name: str, mode: str | None = None, prefix: str | None = None) -> str:
    """MLflow-safe metric key: ``ndcg@10`` -> ``ndcg_at_10``, with optional prefixes
    (``test.new.ndcg_at_10``). MLflow keys may not contain ``@``."""
    key = re.sub(r"[^0-9A-Za-z_\-. /]", "_", name.replace("@", "_at_"))
    return ".".join(p for p in (prefix, mode, key) if p)


def _mask(uri: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", uri)


def resolve_tracking_uri(uri: str | None = None, create: bool = False) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else the project's SQLite store
    (:func:`features.project.tracking_uri`; without ``create`` a missing store is an error)."""
    from features.project import tracking_uri

    return tracking_uri(uri, create=create)


def default_artifact_root(uri: str) -> str:
    """Artifacts of an SQLite store live beside it (``mlartifacts/``), wherever the command
    runs from."""
    from features.project import store_path

    db = store_path(uri)
    folder = db.parent if db is not None else PATRON_DIR.resolve()
    return (folder / "mlartifacts").resolve().as_uri()


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """Raise :class:`TrackingError` naming ``uri`` when the store cannot be reached."""
    shown = _mask(uri)
    if uri.startswith(("http://", "https://")):
        import httpx

        try:
            r = httpx.get(uri.rstrip("/") + "/health", timeout=timeout)
        except httpx.HTTPError as exc:
            raise TrackingError(f"cannot reach MLflow tracking server {shown} ({exc})") from exc
        if r.status_code >= 400:
            raise TrackingError(f"MLflow tracking server {shown} answered HTTP {r.status_code}")
        return
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            sqlite3.connect(path).close()
        except (OSError, sqlite3.Error) as exc:
            raise TrackingError(f"cannot open MLflow tracking store {shown} ({exc})") from exc
        return
    if "://" in uri and not uri.startswith("file:"):
        import sqlalchemy

        try:
            engine = sqlalchemy.create_engine(uri, connect_args=_connect_args(uri, timeout))
            with engine.connect():
                pass
        except Exception as exc:  # driver-specific errors
            raise TrackingError(f"cannot reach MLflow tracking store {shown} ({_first_line(exc)})") from exc
        return
    path = Path(uri[len("file:") :].lstrip("/") if uri.startswith("file:") else uri)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrackingError(f"cannot create MLflow tracking directory {shown} ({exc})") from exc


def _connect_args(uri: str, timeout: float) -> dict:
    return {"connect_timeout": int(timeout)} if uri.startswith(("postgres", "mysql")) else {}


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def setup_mlflow(uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> tuple[str, str]:
    """Check and select the tracking store, create ``experiment`` if needed.

    Returns ``(tracking_uri, experiment_id)``. With the local SQLite default, artifacts
    go to ``.patron/mlartifacts``.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = resolve_tracking_uri(uri, create=True)
    check_tracking_uri(uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    c = client(uri)
    try:
        exp = c.get_experiment_by_name(experiment)
        if exp is None:
            location = default_artifact_root(uri) if uri.startswith("sqlite:") else None
            exp_id = c.create_experiment(experiment, artifact_location=location)
        else:
            exp_id = exp.experiment_id
    except Exception as exc:
        if isinstance(exc, PatronError):
            raise
        raise TrackingError(f"MLflow tracking store {_mask(uri)}: {_first_line(exc)}") from exc
    mlflow.set_experiment(experiment_id=exp_id)
    from training.recovery import fail_dead_runs

    try:  # runs left RUNNING by a killed process of this host are closed as FAILED
        fail_dead_runs(c, [exp_id])
    except Exception as exc:  # recovery must never stop a run from starting
        import logging

        logging.getLogger(__name__).warning("could not check for runs of killed processes: %s", exc)
    return uri, exp_id


def client(uri: str | None = None):
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


class MLflowTrialCallback:
    """Optuna callback: one nested MLflow run per finished trial (complete, pruned, failed).

    The run carries the trial's params, its intermediate values as the metric
    ``val.<metric>`` with step = epoch, the final value, the trial's numeric user
    attributes (``fit_seconds_with_validation``...), duration and state. Pruned trials end ``KILLED``
    with tag ``optuna.state=PRUNED``; failed ones ``FAILED``.
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, metric: str,
                 model: str, tags: dict[str, str] | None = None):
        self.uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.metric = metric_key(metric)
        self.model = model
        self.tags = dict(tags or {})

    def __call__(self, study, trial) -> None:
        from mlflow.entities import Metric, Param

        state = trial.state.name
        status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}.get(state, "FAILED")
        start = int(trial.datetime_start.timestamp() * 1000) if trial.datetime_start else None
        end = int(trial.datetime_complete.timestamp() * 1000) if trial.datetime_complete else None
        c = client(self.uri)
        run = c.create_run(
            self.experiment_id,
            start_time=start,
            run_name=f"{self.model}-trial-{trial.number}",
            tags={
                **self.tags,
                **process_tags(),
                "mlflow.parentRunId": self.parent_run_id,
                "optuna.study": study.study_name,
                "optuna.trial": str(trial.number),
                "optuna.state": state,
                "patron.model": self.model,
            },
        )
        now = int(time.time() * 1000)
        metrics = [
            Metric(f"val.{self.metric}", float(v), now, int(step))
            for step, v in sorted(trial.intermediate_values.items())
        ]
        if trial.value is not None:
            metrics.append(Metric(f"val.{self.metric}.final", float(trial.value), now, 0))
        for k, v in trial.user_attrs.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                metrics.append(Metric(metric_key(k), float(v), now, 0))
        if trial.duration is not None:
            metrics.append(Metric("duration_seconds", trial.duration.total_seconds(), now, 0))
        used = dict(trial.user_attrs.get("params", {}))  # what the fit really used
        used.update({k: v for k, v in trial.params.items() if k not in used})
        params = [Param(k, str(v)[:6000]) for k, v in used.items()]
        c.log_batch(run.info.run_id, metrics=metrics, params=params)
        c.set_terminated(run.info.run_id, status=status, end_time=end)


def log_table(df, name: str, run_id: str | None = None) -> None:
    """Log a DataFrame as ``<name>.csv`` and ``<name>.md`` artifacts of the (active) run."""
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        df.to_csv(Path(tmp) / f"{name}.csv", index=False)
        (Path(tmp) / f"{name}.md").write_text(_markdown(df))
        if run_id is None:
            mlflow.log_artifacts(tmp)
        else:
            mlflow.tracking.MlflowClient().log_artifacts(run_id, tmp)


def _markdown(df) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)
