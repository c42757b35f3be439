"""`patron tune`: tune models with Optuna on a validation period, refit the best on the
whole training period, score once on test, track everything in MLflow."""

from __future__ import annotations

import json

from patron.commands import add_map_argument

HELP = "tune models with Optuna (tracked in MLflow), refit the best, optionally register it"


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True,
                        help="completejourney | online_retail | path to a purchase log")
    add_map_argument(parser)
    parser.add_argument("--models", default="als,itemknn",
                        help="comma-separated: als,bpr,itemknn,ease,blend (default als,itemknn)")
    parser.add_argument("--trials", type=int, default=20, help="trials per model this run (default 20)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per model (default none)")
    parser.add_argument("--study", default=None, help="study name (default patron-<data>); "
                        "the same name resumes the study")
    parser.add_argument("--storage", default=None, help="Optuna storage URL "
                        "(default sqlite:///.patron/optuna.db; any SQLAlchemy URL for shared studies)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI "
                        "(default $MLFLOW_TRACKING_URI or sqlite:///.patron/mlflow.db)")
    parser.add_argument("--experiment", default="patron", help="MLflow experiment (default patron)")
    parser.add_argument("--metric", default="ndcg@10", help="metric to maximise (default ndcg@10)")
    parser.add_argument("--mode", default="new", choices=["new", "repeat"], help="evaluation mode")
    parser.add_argument("--holdout-days", type=int, default=28, help="test period: last N days")
    parser.add_argument("--validation-days", type=int, default=28,
                        help="validation period: last N days of the training period")
    parser.add_argument("--eval-every", type=int, default=3, help="score every N epochs (ALS, blend)")
    parser.add_argument("--max-val-customers", type=int, default=3000,
                        help="validation customers sampled per trial (default 3000)")
    parser.add_argument("--fixed", default=None,
                        help='JSON of pinned params per model, e.g. \'{"ease": {"matrix.min_item_customers": 5}}\'')
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1, help="threads per fit (default 1)")
    parser.add_argument("--register", default=None, metavar="NAME",
                        help="register the best model under NAME and promote it if it beats the champion")
    parser.add_argument("--no-promote", action="store_true", help="register only; leave the aliases")
    parser.add_argument("--no-refit", action="store_true",
                        help="only run trials (an extra worker on a shared study)")
    parser.add_argument("--no-baselines", action="store_true", help="skip the baselines in the table")
    parser.add_argument("--refit-on", choices=("all", "train"), default="all",
                        help="the registered model: the best configuration refit on all "
                        "purchases after its test (all, default) or its training-part fit (train)")
    parser.add_argument("--out", default=None, help="also save the best model's artifact here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--workers", type=int, default=1,
                        help="N worker processes on this machine fill the study (--trials each), "
                             "then this process refits/registers once (default 1)")
    parser.add_argument("--heartbeat", type=int, default=10, metavar="SECONDS",
                        help="trial heartbeat: a trial of a killed worker is failed and retried "
                             "(default 10; 0 = off)")
    parser.add_argument("--grace-period", type=int, default=None, metavar="SECONDS",
                        help="silence after which a running trial is failed (default 2x heartbeat)")
    parser.add_argument("--max-retry", type=int, default=2,
                        help="re-runs of a trial whose worker was lost (default 2)")
    parser.add_argument("--worker-index", type=int, default=0,
                        help="distinct per worker on a shared study: offsets the sampler seed")


def run(args) -> int:
    from features.errors import PatronError
    from training.tune import BASELINES, TuneSettings, tune

    fixed = {}
    if args.fixed:
        try:
            fixed = json.loads(args.fixed)
        except json.JSONDecodeError as exc:
            raise PatronError(f"--fixed is not valid JSON ({exc})") from exc
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    study = args.study or f"patron-{_stem(args.data)}"
    settings = TuneSettings(
        models=models, n_trials=args.trials, timeout=args.timeout, study=study,
        storage=args.storage, metric=args.metric, mode=args.mode, holdout_days=args.holdout_days,
        validation_days=args.validation_days, eval_every=args.eval_every, seed=args.seed,
        max_val_customers=args.max_val_customers, fixed=fixed,
        baselines=() if args.no_baselines else BASELINES, num_threads=args.threads,
        refit=not args.no_refit, progress=not args.no_progress,
        heartbeat=args.heartbeat or None, grace_period=args.grace_period,
        max_retry=args.max_retry, worker_index=args.worker_index, refit_on=args.refit_on,
    )
    if args.workers > 1:
        from training.workers import preflight, run_workers

        preflight(args.storage, args.tracking_uri, args.experiment, study, models, settings)
        run_workers(_worker_argv(args, study), args.workers)
        settings.n_trials = 0  # the workers ran the trials; retries of lost ones run here
    elif args.workers < 1:
        raise PatronError("--workers must be at least 1")
    from patron.commands import load_data

    purchases = load_data(args)
    result = tune(purchases, settings, tracking_uri=args.tracking_uri, experiment=args.experiment,
                  register=args.register, source=args.data, out_dir=args.out,
                  promote_registered=not args.no_promote)
    print(f"split: {json.dumps(result.description['split'], default=str)}")
    for o in result.outcomes:
        best = "-" if o.best_value is None else f"{o.best_value:.4f}"
        print(f"study {o.study_name}: trials {o.trials}, best validation {args.metric} = {best}")
        if o.best_params:
            print(f"  best params: {json.dumps(o.best_params, default=str)}")
    if len(result.table):
        print(_table(result.table))
    if result.best is not None:
        print(f"best model (by validation {args.metric}, {args.mode} mode): {result.best.model}")
    if result.registered:
        name, version = result.registered
        print(f"registered {name} version {version}")
        if result.promotion is not None:
            p = result.promotion
            print(f"promotion: {p.decision} ({p.reason})")
    print(f"MLflow run {result.parent_run_id}")
    return 0


_SUPERVISOR_ONLY = {"workers", "no_refit", "no_progress", "worker_index", "register",
                    "no_promote", "out", "help", "study", "refit_on"}


def _worker_argv(args, study: str) -> list[str]:
    """The options a worker needs: every flag the user set, minus the supervisor's own."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    out = ["--study", study]
    for action in parser._actions:
        if not action.option_strings or action.dest in _SUPERVISOR_ONLY:
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default and not action.required:
            continue
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            out.append(flag)
        elif isinstance(action, argparse._AppendAction):
            for v in value or ():
                out += [flag, str(v)]
        else:
            out += [flag, str(value)]
    return out


def _stem(data: str) -> str:
    from pathlib import Path

    return Path(data).stem if ("/" in data or "." in data) else data


def _table(df) -> str:
    cols = [c for c in df.columns if c in ("model", "mode", "fit_seconds", "val_value")
            or c.split("@")[0] in ("precision", "recall", "ndcg", "map", "coverage")]
    return df[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}")
