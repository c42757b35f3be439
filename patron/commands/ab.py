"""`patron ab run|analyze|validate`: online A/B tests against a running Patron service."""

from __future__ import annotations

import argparse

HELP = "online A/B tests: run shoppers against the service, analyze exposures, validate the statistics"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="ab_command", metavar="STEP", required=True)

    run = sub.add_parser("run", help="replay held-out shoppers against a running service")
    run.add_argument("--url", required=True, help="service base URL on this machine, e.g. http://127.0.0.1:3000")
    run.add_argument("--data", required=True, help="purchases: clean parquet, raw log, completejourney or online_retail")
    run.add_argument("--experiment", required=True, help="experiment name sent with each request")
    run.add_argument("--out", default="ab-outcomes.jsonl", help="outcomes file to write (JSON Lines)")
    run.add_argument("--holdout-days", type=int, default=28, help="held-out period the shoppers come from")
    run.add_argument("--window-days", type=float, default=7.0, help="attribution window after a visit")
    run.add_argument("--k", type=int, default=10, help="items recommended per visit")
    run.add_argument("--max-requests", type=int, default=500, help="at most this many visits")
    run.add_argument("--max-seconds", type=float, default=60.0, help="stop sending after this long")
    run.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--include-bought", dest="exclude_bought", action="store_const", const=False,
                     help="ask the service to include items the shopper bought before (re-buys)")
    run.add_argument("--exclude-bought", dest="exclude_bought", action="store_const", const=True,
                     help="ask the service to leave out items bought before (default: service default)")

    an = sub.add_parser("analyze", help="join the exposure log with outcomes and test the variants")
    an.add_argument("--exposures", required=True, help="the service's exposure log (JSON Lines)")
    an.add_argument("--outcomes", required=True, help="outcomes file from `patron ab run`")
    an.add_argument("--config", help="the service's experiment config (weights, variants, type)")
    an.add_argument("--experiment", help="experiment to analyse (default: the one in the outcomes)")
    an.add_argument("--control", help="control variant (default: 'control' or the first configured)")
    an.add_argument("--mde", type=float, default=0.02, help="minimum detectable effect on conversion")
    an.add_argument("--mde-relative", action="store_true", help="--mde is relative to the baseline rate")
    an.add_argument("--power", type=float, default=0.8)
    an.add_argument("--alpha", type=float, default=0.05)
    an.add_argument("--report", help="write an HTML report with plots to this folder")
    an.add_argument("--mlflow", metavar="TRACKING_URI", nargs="?", const="",
                    help="log the report to MLflow: this tracking store, or with no value the "
                    "project's (.patron/mlflow.db found from here, or $MLFLOW_TRACKING_URI)")
    an.add_argument("--mlflow-experiment", default="patron-ab")
    an.add_argument("--json", help="also write the analysis as JSON here")

    va = sub.add_parser("validate", help="simulated A/A and planted-effect experiments: is the analysis calibrated?")
    va.add_argument("--runs", type=int, default=500, help="simulated experiments per check")
    va.add_argument("--customers", type=int, default=2000, help="customers per arm in the A/A checks")
    va.add_argument("--rate", type=float, default=0.1, help="baseline conversion rate")
    va.add_argument("--mde", type=float, default=0.02)
    va.add_argument("--power", type=float, default=0.8)
    va.add_argument("--alpha", type=float, default=0.05)
    va.add_argument("--looks", type=int, default=20, help="repeated looks in the sequential check")
    va.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    return {"run": _run, "analyze": _analyze, "validate": _validate}[args.ab_command](args)


def _run(args) -> int:
    import json

    from experiments.ab_run import run_ab
    from features.ingest import load_dataset

    purchases = load_dataset(args.data)
    res = run_ab(
        args.url, purchases, args.experiment, holdout_days=args.holdout_days,
        window_days=args.window_days, k=args.k, max_requests=args.max_requests,
        max_seconds=args.max_seconds, concurrency=args.concurrency, seed=args.seed, out=args.out,
        exclude_bought=args.exclude_bought,
    )
    print(json.dumps(res.summary, indent=2, default=str))
    print(f"outcomes: {res.path}")
    return 0 if res.summary["ok"] else 1


def _analyze(args) -> int:
    from experiments.ab_analyze import analyze, save_analysis

    a = analyze(
        args.exposures, args.outcomes, config=args.config, experiment=args.experiment,
        control=args.control, mde=args.mde, mde_relative=args.mde_relative, power=args.power,
        alpha=args.alpha,
    )
    print(a.text())
    if args.json:
        save_analysis(a, args.json)
    if args.report:
        from experiments.report import log_report_to_mlflow, write_report

        page = write_report(a, args.report)
        print(f"report: {page}")
        if args.mlflow is not None:
            from features.project import tracking_uri

            store = tracking_uri(args.mlflow or None)  # never a new store by accident
            run_id = log_report_to_mlflow(args.report, a, store, args.mlflow_experiment)
            print(f"logged to MLflow run {run_id}")
    elif args.mlflow is not None:
        print("--mlflow needs --report: nothing logged")
    return 0


def _validate(args) -> int:
    from experiments.simulate import validate

    rep = validate(
        runs=args.runs, n_per_arm=args.customers, rate=args.rate, mde=args.mde, power=args.power,
        alpha=args.alpha, looks=args.looks, seed=args.seed,
    )
    print(rep.text())
    return 0 if rep.passed else 1
