"""Hyper-parameter tuning with Optuna, tracked in MLflow.

One tuning session (:func:`tune`):

1. split the purchases in time: the last ``holdout_days`` are the **test** period; the
   last ``validation_days`` of the remaining training period are the **validation**
   period. Trials only ever see the training period (fit before validation, score on
   validation); the test period is used once per model, after tuning.
2. per model, one Optuna study ``<study>.<model>`` (TPE sampler, seeded; median
   pruner) in an RDB storage: an SQLite file ``.patron/optuna.db`` by default, so a
   study resumes where it stopped (``load_if_exists``), or any SQLAlchemy URL so several
   workers on several machines fill one study. Models with a per-epoch callback (ALS,
   blend) report the validation metric every ``eval_every`` epochs
   (``trial.report(value, epoch)``) and are pruned when they trail the median.
3. the best configuration of each model is refit on the whole training period and
   scored once on test (both modes), beside the baselines.
4. MLflow: a parent run per session, a nested run per trial
   (:class:`training.tracking.MLflowTrialCallback`) and per refit model; the parent
   holds the metric table (CSV + Markdown), the Optuna plots (PNG) and the data/split
   description (JSON). The model with the best *validation* value is logged as a pyfunc
   model, optionally registered and promoted through the champion guard
   (:func:`training.registry.promote`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import PatronError
from training.models.base import TrainingOptions
from training.pipeline import (
    Holdout,
    TrainResult,
    build_matrix,
    data_description,
    fit_model,
    parse_metric,
    split_id,
    split_params,
    train_model,
)
from training.recovery import process_tags
from training.tracking import metric_key

log = logging.getLogger(__name__)

BASELINES = ("popularity", "recent_popularity", "repeat_buy")
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"  # trial attr "worker": who ran it

__all__ = [
    "TuneSettings", "ModelOutcome", "TuneResult", "StorageError", "resolve_storage",
    "open_storage", "open_study", "tune", "BASELINES",
]


class StorageError(PatronError):
    """The Optuna storage cannot be reached or opened."""


@dataclass
class TuneSettings:
    """Everything a tuning session needs besides the data (CLI flags map 1:1)."""

    models: tuple[str, ...] = ("als",)
    n_trials: int | None = 20
    timeout: float | None = None  # seconds per model
    study: str = "patron"
    storage: str | None = None
    metric: str = "ndcg@10"
    mode: str = "new"
    holdout_days: int = 28
    validation_days: int = 28
    eval_every: int = 3
    seed: int = 42
    max_val_customers: int | None = 3000
    min_customers: int = 10
    fixed: dict[str, dict[str, Any]] = field(default_factory=dict)
    baselines: tuple[str, ...] = BASELINES
    ks: tuple[int, ...] = (10,)
    num_threads: int = 1
    refit: bool = True
    progress: bool = True
    n_startup_trials: int = 5
    pruner: Any = None  # an optuna pruner; None = MedianPruner over the epoch reports
    log_model: bool = True  # log the best model as pyfunc even when not registering
    heartbeat: int | None = 10  # seconds between trial heartbeats (None: no heartbeat)
    grace_period: int | None = None  # a RUNNING trial silent this long is failed (2x heartbeat)
    max_retry: int = 2  # a trial failed by a lost worker is re-queued this many times
    worker_index: int = 0  # distinct per worker on a shared study (sampler seed offset)
    defaults_first: bool = True  # a new study tries the model's defaults first
    refit_on: str = "all"  # the registered model: refit on all purchases (all) or the train part


@dataclass
class ModelOutcome:
    """One model's tuning: its study and the refit on the whole training period."""

    model: str
    study_name: str
    best_value: float | None
    best_params: dict[str, Any] | None
    trials: dict[str, int]
    result: TrainResult | None = None
    run_id: str | None = None


@dataclass
class TuneResult:
    """A session's outcome: per-model outcomes, the test table, what was registered."""

    outcomes: list[ModelOutcome]
    table: pd.DataFrame
    best: ModelOutcome | None
    description: dict
    parent_run_id: str | None = None
    registered: tuple[str, str] | None = None
    promotion: Any = None


# -- storage -------------------------------------------------------------------------

def resolve_storage(url: str | None) -> str:
    """``url`` or the project's SQLite file ``.patron/optuna.db`` (created on demand)."""
    if url:
        return url
    from features.project import project_dir

    return f"sqlite:///{project_dir(create=True) / 'optuna.db'}"


def _mask(url: str) -> str:
    import re

    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def open_storage(url: str | None, heartbeat: int | None = None, grace_period: int | None = None,
                 max_retry: int = 2):
    """An Optuna RDB storage; :class:`StorageError` in one line when it cannot be reached.

    With ``heartbeat`` (seconds), running trials beat; a trial whose worker died (kill -9,
    lost machine) is failed after ``grace_period`` by the next worker that starts a trial,
    and re-queued up to ``max_retry`` times with the same parameters.
    """
    import optuna

    url = resolve_storage(url)
    if url.startswith("sqlite:///"):
        parent = Path(url[len("sqlite:///"):]).parent
        if not parent.is_dir():
            raise StorageError(f"cannot open Optuna storage {url}: directory {parent} does not exist")
    kwargs = {}
    if url.startswith(("postgres", "mysql")):
        kwargs = {"connect_args": {"connect_timeout": 5}}
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            hb: dict = {}
            if heartbeat:
                hb = {"heartbeat_interval": int(heartbeat), "grace_period": grace_period,
                      "heartbeat_stale_trial_callback":
                          optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)}
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs or None, **hb)
    except Exception as exc:  # SQLAlchemy / driver errors
        msg = (" ".join(str(exc).split()) or type(exc).__name__)[:200]
        raise StorageError(f"cannot reach Optuna storage {_mask(url)} ({msg})") from exc


def check_study(storage, name: str, settings: TuneSettings) -> int:
    """Refuse an existing study ``name`` that minimises or was tuned for another metric or
    mode (before anything is written); returns its number of trials (0 when new)."""
    import optuna

    try:
        existing = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return 0
    except Exception as exc:  # storage went away, damaged database
        msg = (" ".join(str(exc).split()) or type(exc).__name__)[:200]
        raise StorageError(f"cannot open study {name!r} ({msg})") from exc
    if existing.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise StorageError(f"study {name!r} exists but minimises; Patron studies maximise "
                           "the metric: pick another --study name")
    attrs = existing.user_attrs
    for key, want in (("metric", settings.metric), ("mode", settings.mode)):
        have = attrs.get(f"patron.{key}")
        if have is not None and have != want:
            raise StorageError(f"study {name!r} exists with {key} {have!r}, this run asks for "
                               f"{want!r}: use --{key} {have} or pick another --study name")
    return len(existing.trials)


def open_study(storage, name: str, settings: TuneSettings, model: str | None = None):
    """Create or resume study ``name`` (maximise; seeded TPE; median pruner). A new
    study's first trial is the model's default configuration (``defaults_first``)."""
    import optuna

    from training.spaces import DEFAULTS

    n_before = check_study(storage, name, settings)
    sampler = optuna.samplers.TPESampler(
        # a resumed study does not replay its first trials; workers do not repeat each other
        seed=settings.seed + n_before + 7919 * settings.worker_index,
        n_startup_trials=settings.n_startup_trials,
    )
    pruner = settings.pruner or optuna.pruners.MedianPruner(
        n_startup_trials=max(2, settings.n_startup_trials // 2),
        n_warmup_steps=settings.eval_every,
    )
    try:
        study = optuna.create_study(
            study_name=name, storage=storage, sampler=sampler, pruner=pruner,
            direction="maximize", load_if_exists=True,
        )
    except Exception as exc:  # storage errors, bad names
        msg = (" ".join(str(exc).split()) or type(exc).__name__)[:200]
        raise StorageError(f"cannot open study {name!r} ({msg})") from exc
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise StorageError(f"study {name!r} exists but minimises; Patron studies maximise "
                           "the metric: pick another --study name")
    for key, value in (("metric", settings.metric), ("mode", settings.mode)):
        if study.user_attrs.get(f"patron.{key}") is None:
            study.set_user_attr(f"patron.{key}", value)
    if n_before == 0 and settings.defaults_first and model in DEFAULTS:
        fixed = settings.fixed.get(model, {})
        study.enqueue_trial({k: v for k, v in DEFAULTS[model].items() if k not in fixed},
                            skip_if_exists=True)
    return study


# -- the objective -------------------------------------------------------------------

class _Objective:
    """Fit on the pre-validation period, score on validation; prune through epochs."""

    def __init__(self, model: str, fit_part: pd.DataFrame, val_part: pd.DataFrame,
                 settings: TuneSettings):
        self.model, self.fit_part, self.val_part, self.s = model, fit_part, val_part, settings
        self.metric, self.k = parse_metric(settings.metric)
        self._cache: dict[str, tuple] = {}

    def _data(self, mconfig):
        key = json.dumps(mconfig.model_dump(mode="json"), sort_keys=True, default=str)
        if key not in self._cache:
            if len(self._cache) >= 4:
                self._cache.pop(next(iter(self._cache)))
            matrix = build_matrix(self.fit_part, mconfig)
            holdout = Holdout(matrix, self.val_part, self.s.mode, self.k,
                              self.s.max_val_customers, self.s.seed)
            if len(holdout) == 0:
                raise PatronError(
                    f"validation period has no {self.s.mode!r}-mode purchases of known customers"
                )
            self._cache[key] = (matrix, holdout)
        return self._cache[key]

    def __call__(self, trial) -> float:
        import optuna

        from training.spaces import suggest

        trial.set_user_attr("worker", WORKER_ID)
        params = suggest(self.model, trial, self.s.fixed.get(self.model))
        trial.set_user_attr("params", params)
        mconfig, _ = split_params(self.model, params)
        matrix, holdout = self._data(mconfig)
        last: dict[str, float] = {}
        every = max(1, int(self.s.eval_every))
        n_iter = params.get("iterations")

        def on_epoch(iteration: int, arrays: dict) -> None:
            epoch = iteration + 1
            if epoch % every and epoch != n_iter:
                return
            value = holdout.score_arrays(rec_box[0], matrix, arrays, self.metric)
            last["epoch"], last["value"] = epoch, value
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} ({self.s.metric}={value:.4f})")

        from training.pipeline import make_model

        _, cparams = split_params(self.model, params)
        rec_box = [make_model(self.model, cparams)]
        cb = on_epoch if getattr(rec_box[0], "supports_epoch_callback", False) else None
        t0 = time.perf_counter()
        rec, _, fit_s = fit_model(self.fit_part, self.model, params,
                                  TrainingOptions(seed=self.s.seed, num_threads=self.s.num_threads),
                                  callback=cb, matrix=matrix)
        trial.set_user_attr("fit_seconds_with_validation", round(fit_s, 3))
        if last.get("epoch") == n_iter and cb is not None:
            value = last["value"]
        else:
            value = holdout.score(rec.fitted, self.metric)
        trial.set_user_attr("trial_seconds", round(time.perf_counter() - t0, 3))
        if not math.isfinite(value):
            raise PatronError(f"validation {self.s.metric} is not finite for {params}")
        return value


class _Progress:
    """tqdm bar over a session's trials, with the best value so far."""

    def __init__(self, model: str, total: int | None, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=f"tune {model}", unit="trial", disable=not enabled,
                        dynamic_ncols=True)
        self.counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}

    def __call__(self, study, trial) -> None:
        self.counts[trial.state.name] = self.counts.get(trial.state.name, 0) + 1
        try:
            best = f"{study.best_value:.4f}"
        except ValueError:
            best = "-"
        self.bar.set_postfix(best=best, pruned=self.counts["PRUNED"], failed=self.counts["FAIL"])
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# -- the session ---------------------------------------------------------------------

def _check_settings(s: TuneSettings) -> None:
    from training.models.registry import MODELS
    from training.spaces import SPACES

    parse_metric(s.metric)
    if s.mode not in ("new", "repeat"):
        raise PatronError(f"--mode must be new or repeat, not {s.mode!r}")
    if not s.models:
        raise PatronError("no models to tune")
    for m in s.models:
        if m not in SPACES:
            raise PatronError(f"cannot tune {m!r}: tunable models are {sorted(SPACES)}")
    for b in s.baselines:
        if b not in MODELS:
            raise PatronError(f"unknown baseline {b!r}; known models: {sorted(MODELS)}")
    if s.n_trials is not None and s.n_trials < 0:
        raise PatronError("--trials must be >= 0")
    if s.holdout_days <= 0 or s.validation_days <= 0:
        raise PatronError("--holdout-days and --validation-days must be positive")


def tune(
    purchases: pd.DataFrame,
    settings: TuneSettings | None = None,
    tracking_uri: str | None = None,
    experiment: str = "patron",
    register: str | None = None,
    source: str | None = None,
    out_dir: str | Path | None = None,
    promote_registered: bool = True,
) -> TuneResult:
    """Run a tuning session (see the module docstring). Nothing is registered or
    promoted unless everything before it succeeded."""
    import mlflow
    import optuna

    from training.split import split_global_time, split_validation
    from training.tracking import MLflowTrialCallback, log_table, setup_mlflow

    s = settings or TuneSettings()
    _check_settings(s)
    # the progress bar and MLflow say it; Optuna's per-trial lines would break the bar
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(s.storage, s.heartbeat, s.grace_period, s.max_retry)  # fail fast:
    for model in s.models:                                     # storage, studies ...
        check_study(storage, f"{s.study}.{model}", s)
    uri, exp_id = _setup_mlflow(setup_mlflow, tracking_uri, experiment)  # ... tracking store
    split = split_global_time(purchases, holdout_days=s.holdout_days, min_customers=s.min_customers)
    val = split_validation(split.train, s.validation_days, min_customers=s.min_customers)
    data_desc = data_description(purchases, source)
    sid = split_id(data_desc, split.description)
    description = {"data": data_desc, "split": split.description, "validation": val.description,
                   "split_id": sid, "metric": s.metric, "mode": s.mode,
                   "settings": {k: v for k, v in vars(s).items() if k != "fixed"} | {"fixed": s.fixed}}
    metric_name, k = parse_metric(s.metric)
    ks = tuple(sorted(set(s.ks) | {k}))
    outcomes: list[ModelOutcome] = []
    rows: list[pd.DataFrame] = []

    with mlflow.start_run(experiment_id=exp_id, run_name=f"tune-{s.study}",
                          tags=process_tags()) as parent:
        pid = parent.info.run_id
        mlflow.set_tags({"patron.kind": "tune", "patron.study": s.study, "patron.split_id": sid,
                         "patron.models": ",".join(s.models)})
        mlflow.log_params({"metric": s.metric, "mode": s.mode, "holdout_days": s.holdout_days,
                           "validation_days": s.validation_days, "n_trials": s.n_trials,
                           "timeout": s.timeout, "seed": s.seed, "data": source or "dataframe"})
        for model in s.models:
            study_name = f"{s.study}.{model}"
            study = open_study(storage, study_name, s, model)
            objective = _Objective(model, val.train, val.test, s)
            progress = _Progress(model, s.n_trials, s.progress)
            cb = MLflowTrialCallback(uri, exp_id, pid, s.metric, model,
                                     tags={"patron.split_id": sid})
            _on_stale_trials(storage, cb)
            catch = (PatronError, MemoryError, np.linalg.LinAlgError)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", category=UserWarning)
                    if s.n_trials != 0:
                        study.optimize(objective, n_trials=s.n_trials, timeout=s.timeout,
                                       callbacks=[cb, progress], catch=catch)
                    run_retries(study, objective, [cb, progress], catch)
            finally:
                progress.close()
            outcome = _outcome(model, study)
            outcomes.append(outcome)
            log.info("%s: %s", study_name, outcome.trials)
            if outcome.best_params is not None and s.refit:
                say = print if s.progress else log.info
                say(f"refitting {model} (best configuration) on the training period and "
                    f"scoring it on the test period ...")
                with mlflow.start_run(run_name=f"best-{model}", nested=True,
                                      tags=process_tags()) as run:
                    res = train_model(split.train, model, outcome.best_params, split.test, ks,
                                      TrainingOptions(seed=s.seed, num_threads=s.num_threads),
                                      metadata={"data": data_desc, "split": split.description,
                                                "split_id": sid, "study": study_name,
                                                "validation_value": outcome.best_value})
                    outcome.result, outcome.run_id = res, run.info.run_id
                    mlflow.set_tags({"patron.kind": "refit", "patron.model": model,
                                     "patron.split_id": sid, "optuna.study": study_name})
                    mlflow.log_params({k2: str(v) for k2, v in outcome.best_params.items()})
                    mlflow.log_metrics({**res.flat_metrics(), "fit_seconds": res.fit_seconds,
                                        f"val.{metric_key(s.metric)}.best": outcome.best_value})
                rows.append(res.metrics.assign(model=model, fit_seconds=res.fit_seconds,
                                               val_value=outcome.best_value))
        baseline_results = {}
        if s.refit:
            for b in s.baselines:
                res = train_model(split.train, b, {}, split.test, ks, extras=False)
                baseline_results[b] = res
                rows.append(res.metrics.assign(model=b, fit_seconds=res.fit_seconds,
                                               val_value=np.nan))
        table = _wide(pd.concat(rows, ignore_index=True)) if rows else pd.DataFrame()
        best = _pick_best(outcomes)
        if best is not None:
            mlflow.set_tags({"patron.best_model": best.model})
            mlflow.log_metric(f"val.{metric_key(s.metric)}.best", best.best_value)
            if best.result is not None:
                mlflow.log_metrics(best.result.flat_metrics())
        _log_session_artifacts(outcomes, storage, s, table, description, log_table)

        registered = promotion = None
        if best is not None and best.result is not None and (s.log_model or register or out_dir):
            from training.release import Evidence, baseline_evidence, release

            evidence = Evidence(sid, split.description, best.result.flat_metrics(),
                                baseline_evidence(baseline_results), best.run_id)
            with mlflow.start_run(run_id=best.run_id, nested=True):
                rel = release(purchases, best.model, best.best_params, evidence,
                              evaluated=best.result, refit_on=s.refit_on, register=register,
                              promote_registered=promote_registered, metric=s.metric,
                              mode=s.mode, tracking_uri=uri, source=source,
                              options=TrainingOptions(seed=s.seed, num_threads=s.num_threads),
                              out_dir=out_dir, tags={"patron.study": best.study_name},
                              say=(print if s.progress else log.info))
            registered, promotion = rel.registered, rel.promotion
    return TuneResult(outcomes, table, best, description, pid, registered, promotion)


def _on_stale_trials(storage, mlflow_cb) -> None:
    """Trials failed for a lost heartbeat: re-queue them (storage's retry callback) and
    record each as a FAILED nested MLflow run of this session."""
    retry = getattr(storage, "heartbeat_stale_trial_callback", None)
    if retry is None:
        return
    retry = getattr(retry, "_patron_retry", retry)

    def on_stale(study, trial) -> None:
        retry(study, trial)
        try:
            mlflow_cb(study, trial)
        except Exception as exc:  # tracking is secondary to the study here
            log.warning("MLflow run for stale trial %d not logged: %s", trial.number, exc)

    on_stale._patron_retry = retry  # type: ignore[attr-defined]
    storage.heartbeat_stale_trial_callback = on_stale


def _suspect_trials(storage, study) -> tuple[int, int]:
    """(waiting trials, RUNNING trials of the study).

    Every RUNNING trial counts: a worker killed a moment ago still has a fresh heartbeat,
    so a leaving worker cannot tell it from a live one until the grace period has passed."""

    from optuna.trial import TrialState

    waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    return waiting, running


def run_retries(study, objective, callbacks, catch, poll: float = 0.5) -> int:
    """Before a worker leaves: run the re-queued trials of lost workers, waiting (bounded by
    about two grace periods) while other trials are RUNNING, so that one whose worker died
    goes stale, is failed and retried here. Returns trials run."""
    import optuna
    from optuna.storages._heartbeat import is_heartbeat_enabled

    storage = getattr(study._storage, "_backend", study._storage)  # under Optuna's cache
    if not is_heartbeat_enabled(storage):
        return 0
    grace = storage.grace_period or 2 * storage.get_heartbeat_interval()
    # long enough for a trial killed just now to go stale (plus slack for a loaded machine)
    deadline = time.monotonic() + 2 * grace + 2 * storage.get_heartbeat_interval() + 5
    done = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        while time.monotonic() < deadline:
            optuna.storages.fail_stale_trials(study)
            waiting, silent = _suspect_trials(storage, study)
            if waiting:
                study.optimize(objective, n_trials=waiting, callbacks=callbacks, catch=catch)
                done += waiting
            elif not silent:
                break
            else:
                time.sleep(poll)
    return done


def _setup_mlflow(setup, tracking_uri, experiment):
    """``setup_mlflow``, once more when a worker on the same study created the experiment
    between our lookup and our create (RESOURCE_ALREADY_EXISTS)."""
    from training.tracking import TrackingError

    try:
        return setup(tracking_uri, experiment)
    except TrackingError as exc:
        if "already exists" not in str(exc).lower() and "ALREADY_EXISTS" not in str(exc):
            raise
        time.sleep(0.2)
        return setup(tracking_uri, experiment)


def _outcome(model: str, study) -> ModelOutcome:
    from optuna.trial import TrialState

    counts = {st.name.lower(): 0 for st in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    for t in study.trials:
        key = t.state.name.lower()
        counts[key] = counts.get(key, 0) + 1
    try:
        bt = study.best_trial
        return ModelOutcome(model, study.study_name, float(bt.value),
                            dict(bt.user_attrs.get("params", bt.params)), counts)
    except ValueError:  # no completed trial
        return ModelOutcome(model, study.study_name, None, None, counts)


def _pick_best(outcomes: list[ModelOutcome]) -> ModelOutcome | None:
    done = [o for o in outcomes if o.best_value is not None and o.result is not None]
    return max(done, key=lambda o: o.best_value) if done else None


def _wide(tidy: pd.DataFrame) -> pd.DataFrame:
    """One row per model x mode; columns metric@k, fit_seconds, val_value."""
    tidy = tidy.copy()
    tidy["col"] = tidy["metric"] + "@" + tidy["k"].astype(str)
    wide = tidy.pivot_table(index=["model", "mode"], columns="col", values="value",
                            aggfunc="first", sort=False)
    extra = tidy.groupby(["model", "mode"], sort=False)[["fit_seconds", "val_value"]].first()
    return wide.join(extra).reset_index()


def _log_session_artifacts(outcomes, storage, s: TuneSettings, table, description, log_table) -> None:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "description.json").write_text(json.dumps(description, indent=2, default=str))
        for o in outcomes:
            _plots(storage, o.study_name, tmp, f"validation {s.metric} ({s.mode} mode)")
            (tmp / f"{o.study_name}.best.json").write_text(json.dumps(
                {"best_value": o.best_value, "params": o.best_params, "trials": o.trials},
                indent=2, default=str))
        mlflow.log_artifacts(str(tmp))
    if len(table):
        log_table(table, "metrics")


MIN_TRIALS_FOR_IMPORTANCE = 10


def _plots(storage, study_name: str, out: Path, metric: str = "validation metric") -> list[Path]:
    """Optimisation history and parameter importances as PNG, titled with the metric
    (importances from fewer than :data:`MIN_TRIALS_FOR_IMPORTANCE` trials carry a warning)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    study = optuna.load_study(study_name=study_name, storage=storage)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    paths = []
    plots = [("history", ovm.plot_optimization_history)]
    if len(done) >= 2:
        plots.append(("importances", ovm.plot_param_importances))
    for name, fn in plots:
        if not done:
            break
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = fn(study)
            fig = ax.figure if hasattr(ax, "figure") else ax
            if hasattr(ax, "set_title"):
                if name == "history":
                    ax.set_title(f"{study_name}: {metric} per trial")
                    ax.set_ylabel(metric)
                else:
                    ax.set_title(f"{study_name}: what drives {metric} ({len(done)} trials)")
                    if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
                        fig.text(0.5, 0.01, f"warning: only {len(done)} completed trials; "
                                 "importances from so few are not reliable", ha="center",
                                 color="#b00020", fontsize=9)
                        log.warning("%s: parameter importances from %d trials (fewer than %d) "
                                    "are not reliable", study_name, len(done),
                                    MIN_TRIALS_FOR_IMPORTANCE)
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            path = out / f"{study_name}.{name}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            paths.append(path)
        except Exception as exc:  # e.g. importances with a single distinct value
            log.warning("plot %s of %s skipped: %s", name, study_name, exc)
    return paths
