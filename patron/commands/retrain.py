"""`patron retrain`: refit the champion's configuration (or re-tune) on the newest data,
compare on the newest holdout, register, promote through the guard, tell services to reload."""

from __future__ import annotations

from patron.commands import add_map_argument

HELP = "retrain the champion on the newest data; promote it if it holds up; reload services"


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True,
                        help="the newest purchases: completejourney | online_retail | a path")
    add_map_argument(parser)
    parser.add_argument("--name", default="patron", help="registered model (default patron)")
    parser.add_argument("--tune", action="store_true",
                        help="re-tune instead of refitting the champion's configuration")
    parser.add_argument("--models", default=None,
                        help="with --tune: models to tune (default: the champion's model)")
    parser.add_argument("--trials", type=int, default=10, help="with --tune: trials per model (default 10)")
    parser.add_argument("--model", default=None,
                        help="a candidate configuration to try instead: model name (with --params)")
    parser.add_argument("--params", default=None, help="flat params of --model as JSON")
    parser.add_argument("--holdout-days", type=int, default=28,
                        help="the newest N days are the test period (default 28)")
    parser.add_argument("--metric", default="ndcg@10", help="metric of the guard (default ndcg@10)")
    parser.add_argument("--mode", default="new", choices=["new", "repeat"],
                        help="evaluation mode of the guard (default new)")
    parser.add_argument("--notify", action="append", default=[], metavar="URL",
                        help="a running service to reload after a promotion (repeatable; "
                        "uses $PATRON_ADMIN_TOKEN)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI "
                        "(default $MLFLOW_TRACKING_URI or the project's .patron/mlflow.db)")
    parser.add_argument("--experiment", default="patron", help="MLflow experiment (default patron)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the fits (default 42)")
    parser.epilog = ("exit codes: 0 promoted, 3 kept (the champion is better), 4 refused (not "
                     "better than a baseline), 5 promoted but a service did not reload, 2 bad "
                     "input. example (cron): patron retrain --data shop/ingest --notify "
                     "http://127.0.0.1:3000")


def run(args) -> int:
    from patron.commands.train import _params
    from training.models.base import TrainingOptions
    from training.retrain import retrain

    settings = None
    if args.tune:
        from training.tune import TuneSettings

        settings = TuneSettings(models=tuple((args.models or "").split(",")) if args.models else None,
                                n_trials=args.trials, metric=args.metric, mode=args.mode,
                                holdout_days=args.holdout_days, log_model=False,
                                progress=False, seed=args.seed)
    from patron.commands import load_data

    purchases = load_data(args)
    if settings is not None and settings.models is None:
        from training.retrain import champion_config
        from training.tracking import resolve_tracking_uri

        _, model, _ = champion_config(args.name, resolve_tracking_uri(args.tracking_uri))
        settings.models = (model,)
    res = retrain(purchases, name=args.name, model=args.model, params=_params(args.params),
                  tune_settings=settings, holdout_days=args.holdout_days, metric=args.metric,
                  mode=args.mode, tracking_uri=args.tracking_uri, experiment=args.experiment,
                  source=args.data, notify=args.notify,
                  options=TrainingOptions(seed=args.seed))
    if res.registered:
        print(f"registered {res.registered[0]} version {res.registered[1]}")
    print(f"{res.decision.upper()}: {res.reason}")
    for n in res.notified or ():
        print(f"reload {n['url']}: {'ok' if n['ok'] else 'FAILED'} ({n['status']}) {n['detail'][:120]}")
    return res.exit_code
