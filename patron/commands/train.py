"""`patron train`: one fit with given params; the artifact is written (with item table and
cross-sell arrays), optionally logged to MLflow and registered."""

from __future__ import annotations

import json
from pathlib import Path

HELP = "train one model with given params; write its artifact, optionally register it"


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True,
                        help="completejourney | online_retail | path to a purchase log")
    parser.add_argument("--model", default="als", help="model name (default als)")
    parser.add_argument("--engine", choices=("implicit", "spark"), default="implicit",
                        help="ALS engine: implicit (default) or spark (Spark MLlib; needs the "
                        "spark extra and Java 17; same params and artifact)")
    parser.add_argument("--params", default=None,
                        help="flat params as JSON (or @file.json), e.g. "
                        '\'{"factors": 64, "matrix.weighting": "binary"}\'')
    parser.add_argument("--out", default=None, help="artifact directory (default .patron/models/<model>)")
    parser.add_argument("--holdout-days", type=int, default=28,
                        help="score on the last N days (trained on the days before); 0 = use all data, no test")
    parser.add_argument("--k", default="10", help="cut-offs for the test metrics, e.g. 5,10,20")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--register", default=None, metavar="NAME",
                        help="log to MLflow, register under NAME, promote if it beats the champion")
    parser.add_argument("--no-promote", action="store_true", help="register only; leave the aliases")
    parser.add_argument("--log", action="store_true", help="log the run to MLflow without registering")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    parser.add_argument("--experiment", default="patron", help="MLflow experiment (default patron)")


def _params(text: str | None) -> dict:
    from features.errors import PatronError

    if not text:
        return {}
    src = "--params"
    if text.startswith("@"):
        src = text[1:]
        try:
            text = Path(src).read_text()
        except OSError as exc:
            raise PatronError(f"--params: cannot read {src} ({exc})") from exc
    try:
        out = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PatronError(f"{src} is not valid JSON ({exc})") from exc
    if not isinstance(out, dict):
        raise PatronError(f"{src} must be a JSON object of params")
    return out


def run(args) -> int:
    from features.errors import PatronError
    from training.models.base import TrainingOptions
    from training.pipeline import (
        data_description,
        load_purchases,
        split_id,
        split_params,
        train_model,
    )
    from training.split import split_global_time

    params = _params(args.params)
    if args.engine != "implicit":
        from training.spark_als import engine_model

        args.model = engine_model(args.model, args.engine)  # checks pyspark and Java
    split_params(args.model, params)  # refuse bad params before loading data
    try:
        ks = tuple(int(x) for x in args.k.split(",") if x.strip())
    except ValueError:
        raise PatronError(f"--k must be comma-separated whole numbers, not {args.k!r}") from None
    uri = None
    if args.register or args.log:
        from training.tracking import setup_mlflow

        uri, exp_id = setup_mlflow(args.tracking_uri, args.experiment)
    purchases = load_purchases(args.data)
    data_desc = data_description(purchases, args.data)
    meta = {"data": data_desc}
    if args.holdout_days > 0:
        split = split_global_time(purchases, holdout_days=args.holdout_days, min_customers=1)
        train, test = split.train, split.test
        sid = split_id(data_desc, split.description)
        meta.update(split=split.description, split_id=sid)
    else:
        train, test, sid = purchases, None, None
    opts = TrainingOptions(seed=args.seed, num_threads=args.threads)
    res = train_model(train, args.model, params, test, ks, opts, metadata=meta)
    out = Path(args.out or Path(".patron") / "models" / args.model)
    res.model.save(out)
    print(f"{args.model}: fit in {res.fit_seconds:.2f} s on {res.matrix.n_customers} customers x "
          f"{res.matrix.n_items} items; artifact written to {out}")
    if res.metrics is not None:
        m = res.metrics.pivot_table(index=["mode"], columns=["metric", "k"], values="value")
        print(m.to_string(float_format=lambda v: f"{v:.4f}"))
    if uri is not None:
        import mlflow

        from training.registry import log_patron_model, promote

        tags = {"patron.model": args.model,
                **{f"patron.{k}": f"{v:.6g}" for k, v in res.flat_metrics().items()}}
        if sid:
            tags["patron.split_id"] = sid
        from training.recovery import process_tags

        with mlflow.start_run(experiment_id=exp_id, run_name=f"train-{args.model}",
                              tags=process_tags()) as run:
            mlflow.set_tags({"patron.kind": "train", **tags})
            mlflow.log_params({k: str(v) for k, v in params.items()} | {"model": args.model})
            mlflow.log_metrics({**res.flat_metrics(), "fit_seconds": res.fit_seconds})
            _, version = log_patron_model(out, args.register, tags)
        print(f"MLflow run {run.info.run_id}")
        if version is not None:
            print(f"registered {args.register} version {version.version}")
            if not args.no_promote:
                p = promote(args.register, version.version, tracking_uri=uri)
                print(f"promotion: {p.decision} ({p.reason})")
    return 0
