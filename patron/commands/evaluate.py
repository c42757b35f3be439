"""`patron evaluate`: split a purchase log, fit models, print full-ranking metrics."""

from __future__ import annotations

import argparse

from patron.commands import add_map_argument

HELP = "split purchases, fit models, report top-K metrics in 'new' and 'repeat' modes"
DEFAULT_MODELS = "popularity,recent_popularity,repeat_buy"


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", help="completejourney | online_retail | path to a purchase file "
        "(not needed with --train/--test)",
    )
    add_map_argument(parser)
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--holdout-days", type=int, metavar="N",
                       help="hold out the last N days for everyone (default 28)")
    split.add_argument("--cutoff", metavar="DATE", help="train before DATE, test from DATE on")
    split.add_argument("--last-basket", action="store_true",
                       help="leave each customer's last basket out")
    split.add_argument("--train", metavar="FILE", help="your own training purchases (with --test)")
    parser.add_argument("--test", metavar="FILE", help="your own test purchases (with --train)")
    parser.add_argument("--models", default=DEFAULT_MODELS,
                        help=f"comma-separated registered model names (default {DEFAULT_MODELS})")
    parser.add_argument("--k", type=_int_list, default=[10], metavar="K[,K...]",
                        help="cut-offs, e.g. 5,10,20 (default 10)")
    parser.add_argument("--modes", default="new,repeat", help="new,repeat (default both)")
    parser.add_argument("--json", metavar="OUT", help="write the metrics as JSON")
    parser.add_argument("--recs-out", metavar="FILE",
                        help="write every recommendation as CSV: "
                        "model,mode,customer_id,item_id,rank,score")


def run(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    from features.errors import PatronError
    from features.matrix import MatrixConfig, build_interactions
    from training.evaluate import evaluate_models, fit_model, format_table
    from training.models.registry import get_model
    from training.split import split_from_files, split_global_time, split_last_basket

    if (args.train is None) != (args.test is None):
        raise PatronError("--train and --test go together")
    if args.train and args.data:
        raise PatronError("give either --data or --train/--test, not both")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    classes = {n: get_model(n) for n in names}  # unknown names fail before any work

    t0 = time.perf_counter()
    if args.train:
        split = split_from_files(args.train, args.test)
    else:
        if not args.data:
            raise PatronError("give --data (or --train and --test)")

        from patron.commands import load_data

        purchases = load_data(args)
        if args.last_basket:
            split = split_last_basket(purchases)
        elif args.cutoff:
            split = split_global_time(purchases, cutoff=args.cutoff)
        else:
            split = split_global_time(purchases, holdout_days=args.holdout_days or 28)
    d = split.description
    print(
        f"split {d['kind']}: train {d['train_rows']} rows / {d['train_customers']} customers "
        f"{d['train_span'][0][:10]}..{d['train_span'][1][:10]}; test {d['test_rows']} rows / "
        f"{d['test_customers']} customers {d['test_span'][0][:10]}..{d['test_span'][1][:10]}"
    )
    matrix = build_interactions(split.train, MatrixConfig())
    print(f"training matrix: {matrix.n_customers} customers x {matrix.n_items} items, "
          f"{matrix.matrix.nnz} nonzeros (prepared in {time.perf_counter() - t0:.1f}s)")

    models, fit_s = {}, {}
    for name, cls in classes.items():
        t = time.perf_counter()
        models[name] = fit_model(cls(), matrix, split.train)
        fit_s[name] = round(time.perf_counter() - t, 3)
    result = evaluate_models(
        models, matrix, split.test, k=args.k, modes=modes,
        keep_recommendations=bool(args.recs_out),
    )
    for name, s in fit_s.items():
        result.timings.setdefault(name, {})["fit_s"] = s
    print(format_table(result))
    print("\ntimings: " + ", ".join(
        f"{n} fit {t.get('fit_s', 0):.2f}s eval {t.get('evaluate_s', 0):.2f}s"
        for n, t in result.timings.items()
    ))

    if args.json:
        payload = {"split": d, "k": args.k, "models": names, **result.to_dict()}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str))
        print(f"metrics written to {args.json}")
    if args.recs_out:
        Path(args.recs_out).parent.mkdir(parents=True, exist_ok=True)
        result.recommendations.to_csv(args.recs_out, index=False)
        print(f"{len(result.recommendations)} recommendations written to {args.recs_out}")
    return 0
