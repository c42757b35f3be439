"""`patron doctor`: check the tracking store and repair what killed processes left behind."""

from __future__ import annotations

HELP = "repair the tracking store after a kill: close runs of dead processes, tag undecided versions"


def add_arguments(parser) -> None:
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI "
                        "(default $MLFLOW_TRACKING_URI or sqlite:///.patron/mlflow.db)")
    parser.add_argument("--name", default=None,
                        help="registered model to check (default: every registered model)")
    parser.epilog = "example: patron doctor --tracking-uri sqlite:///.patron/mlflow.db"


def run(args) -> int:
    """Exit 0; prints what it found and what it repaired."""
    from training.recovery import fail_dead_runs, tag_undecided
    from training.tracking import check_tracking_uri, client, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    check_tracking_uri(uri)
    c = client(uri)
    runs = fail_dead_runs(c)
    print(f"store {uri}")
    print(f"runs left RUNNING by killed processes: {runs['failed']} marked FAILED"
          + (f"; {runs['other_host']} RUNNING on other hosts left alone" if runs["other_host"] else "")
          + (f"; {runs['untagged']} RUNNING without a Patron process tag left alone"
             if runs["untagged"] else ""))
    names = [args.name] if args.name else [m.name for m in c.search_registered_models()]
    for name in names:
        undecided = tag_undecided(c, name)
        print(f"model {name}: " + (f"version(s) {', '.join(undecided)} had no promotion decision: "
                                   f"tagged undecided (decide with patron promote --name {name} "
                                   "--version N)" if undecided else "every version has a decision"))
    return 0
