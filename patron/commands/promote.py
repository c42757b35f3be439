"""`patron promote`: move the champion (or challenger) alias to a registered version,
only if it beats the current champion on the same test split."""

from __future__ import annotations

HELP = "promote a registered model version to champion (guarded) or challenger"


def add_arguments(parser) -> None:
    parser.add_argument("--name", default="patron", help="registered model name (default patron)")
    parser.add_argument("--version", required=True, help="version to promote")
    parser.add_argument("--metric", default="ndcg@10", help="metric to compare (default ndcg@10)")
    parser.add_argument("--mode", default="new", choices=["new", "repeat"], help="evaluation mode")
    parser.add_argument("--force", action="store_true", help="promote even if it does not win")
    parser.add_argument("--challenger", action="store_true",
                        help="set the challenger alias (for A/B tests) instead of champion")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI "
                        "(default $MLFLOW_TRACKING_URI or sqlite:///.patron/mlflow.db)")


def run(args) -> int:
    """Exit 0 when the alias moved (or already pointed there), 1 when the guard refused."""
    from training.pipeline import parse_metric
    from training.registry import promote
    from training.tracking import check_tracking_uri, resolve_tracking_uri

    parse_metric(args.metric)
    uri = resolve_tracking_uri(args.tracking_uri)  # never a new, empty store
    check_tracking_uri(uri)
    r = promote(args.name, args.version, args.metric, args.mode, force=args.force,
                challenger=args.challenger, tracking_uri=uri)
    if r.decision == "already":
        print(f"{r.name} version {r.version}: unchanged - {r.reason}")
        return 0
    verb = {"first": "promoted", "promoted": "promoted", "forced": "promoted (forced)",
            "rejected": "NOT promoted"}[r.decision]
    print(f"{r.name} version {r.version}: {verb} to {r.alias} - {r.reason}")
    return 0 if r.decision != "rejected" else 1
