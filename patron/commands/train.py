"""`patron train`: one fit with given params; the artifact is written (with item table and
cross-sell arrays), optionally logged to MLflow and registered."""

from __future__ import annotations

import json
from pathlib import Path

from patron.commands import add_map_argument

HELP = "train one model with given params; write its artifact, optionally register it"


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True,
                        help="completejourney | online_retail | path to a purchase log")
    add_map_argument(parser)
    parser.add_argument("--model", default="als", help="model name (default als)")
    parser.add_argument("--engine", choices=("implicit", "spark"), default="implicit",
                        help="ALS engine: implicit (default) or spark (Spark MLlib; needs the "
                        "spark extra and Java 17; same params and artifact)")
    parser.add_argument("--params", default=None,
                        help="flat params as JSON (or @file.json), e.g. "
                        '\'{"factors": 64, "matrix.weighting": "binary"}\'')
    parser.add_argument("--out", default=None, help="artifact directory (default .patron/models/<model>)")
    parser.add_argument("--holdout-days", type=int, default=28,
                        help="score on the last N days, fit on the days before (default 28); "
                        "0 = no test (then the promotion guard refuses it unless --force)")
    parser.add_argument("--refit-on", choices=("all", "train"), default="all",
                        help="the saved/registered model: refit on all purchases after the test "
                        "(all, default: it knows the last weeks) or the evaluated fit (train)")
    parser.add_argument("--force", action="store_true",
                        help="promote even if the guard refuses (no test, or not better)")
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
    from patron.commands import load_data

    purchases = load_data(args)
    data_desc = data_description(purchases, args.data)
    opts = TrainingOptions(seed=args.seed, num_threads=args.threads)
    from training.release import Evidence, baseline_evidence, baselines_on, release

    evidence, res = Evidence("", {}, {}), None
    if args.holdout_days > 0:
        split = split_global_time(purchases, holdout_days=args.holdout_days, min_customers=1)
        sid = split_id(data_desc, split.description)
        res = train_model(split.train, args.model, params, split.test, ks, opts,
                          metadata={"data": data_desc, "split": split.description, "split_id": sid})
        print(f"{args.model}: fit in {res.fit_seconds:.2f} s on {res.matrix.n_customers} customers x "
              f"{res.matrix.n_items} items (training part, before {split.description.get('cutoff')})")
        m = res.metrics.pivot_table(index=["mode"], columns=["metric", "k"], values="value")
        print(m.to_string(float_format=lambda v: f"{v:.4f}"))
        base = baselines_on(split.train, split.test, ks) if uri is not None else {}
        evidence = Evidence(sid, split.description, res.flat_metrics(), baseline_evidence(base))
    elif args.refit_on == "train":
        raise PatronError("--refit-on train needs a test period (--holdout-days > 0)")
    if args.out:
        out = Path(args.out)
    else:
        from features.project import project_dir

        out = project_dir(create=True) / "models" / args.model
    if uri is None:  # no tracking: the artifact only
        final = res if (res is not None and args.refit_on == "train") else train_model(
            purchases, args.model, params, None, options=opts,
            metadata={"data": data_desc, "fit": "all", "split_id": evidence.split_id or None,
                      "evaluation": {"test_metrics": evidence.metrics}})
        final.model.save(out)
        print(f"{args.model}: artifact ({'all purchases' if final is not res else 'training part'}) "
              f"written to {out}")
        return 0
    import mlflow

    from training.recovery import process_tags

    with mlflow.start_run(experiment_id=exp_id, run_name=f"train-{args.model}",
                          tags={**process_tags(), "patron.kind": "train",
                                "patron.model": args.model}) as run:
        cfg_params = split_params(args.model, params)
        from training.pipeline import make_model

        full = {**{f"matrix.{k}": v for k, v in cfg_params[0].model_dump(mode="json").items()},
                **make_model(args.model, cfg_params[1]).config.to_params()}
        mlflow.log_params({k: str(v)[:500] for k, v in full.items()} | {"model": args.model})
        if res is not None:
            mlflow.log_metrics({**res.flat_metrics(), "fit_seconds": res.fit_seconds})
            evidence.run_id = run.info.run_id
        rel = release(purchases, args.model, params, evidence, evaluated=res,
                      refit_on=args.refit_on, register=args.register,
                      promote_registered=not args.no_promote, tracking_uri=uri, source=args.data,
                      options=opts, out_dir=out, force=args.force)
    print(f"artifact written to {out}; MLflow run {run.info.run_id}")
    if rel.registered:
        print(f"registered {args.register} version {rel.registered[1]}")
        if rel.promotion is not None:
            p = rel.promotion
            print(f"promotion: {p.decision} ({p.reason})")
    return 0
