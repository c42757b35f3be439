"""`patron serve`: start the BentoML recommendation service (serving/service.py)."""

from __future__ import annotations

HELP = "serve recommendations over HTTP (BentoML): recommend, cross-sell, up-sell, widget"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--model", metavar="URI|PATH",
        help="models:/NAME@alias, models:/NAME/N or an artifact directory "
             "(default: $PATRON_MODEL_URI or models:/patron@champion)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="port (default 3000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--experiments", metavar="FILE",
                        help="experiment config (YAML/JSON); sets PATRON_EXPERIMENTS")
    parser.add_argument("--exposure-log", metavar="PATH",
                        help="append-only exposure log (JSONL); sets PATRON_EXPOSURE_LOG")
    parser.add_argument("--tracking-uri", metavar="URI",
                        help="MLflow tracking/registry URI for models:/ URIs")
    parser.add_argument("--gc-mode", choices=["freeze", "default"],
                        help="freeze: gc.freeze() after load + raised thresholds (default)")


def run(args) -> int:
    import os
    import sys
    from pathlib import Path

    from features.errors import PatronError

    env = dict(os.environ)
    if args.model:
        env["PATRON_MODEL_URI"] = args.model
    uri = env.get("PATRON_MODEL_URI", "") or "models:/patron@champion"
    if not uri.startswith("models:/"):
        from serving.loader import resolve_local

        uri = str(Path(uri).expanduser().resolve())  # relative to where it was typed
        env["PATRON_MODEL_URI"] = uri
        if not args.experiments:
            resolve_local(uri)  # fail fast, in one line, on a wrong path
    needs_registry = uri.startswith("models:/") or args.experiments
    if needs_registry:
        from features.project import NoProjectError, tracking_uri

        try:  # the store of the folder the user is in, absolute: the service runs elsewhere
            env["MLFLOW_TRACKING_URI"] = tracking_uri(args.tracking_uri)
        except NoProjectError:
            if not args.experiments:
                raise
    if uri.startswith("models:/") and not args.experiments:
        from serving.loader import resolve_registered

        resolve_registered(uri, env["MLFLOW_TRACKING_URI"])  # a clear error now, not a 503 later
    if args.experiments:
        if not Path(args.experiments).is_file():
            raise PatronError(f"--experiments: {args.experiments}: no such file")
        env["PATRON_EXPERIMENTS"] = str(Path(args.experiments).resolve())
    if args.exposure_log:
        env["PATRON_EXPOSURE_LOG"] = str(Path(args.exposure_log).resolve())
        from features.stores import record_store

        record_store("exposure_logs", env["PATRON_EXPOSURE_LOG"])  # for patron forget / purge
    if args.gc_mode:
        env["PATRON_GC_MODE"] = args.gc_mode
    if args.workers < 1:
        raise PatronError("--workers must be at least 1")
    env["PATRON_WORKERS"] = str(args.workers)
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    root = Path(__file__).resolve().parents[2]
    bentoml = Path(sys.executable).with_name("bentoml")
    cmd = [str(bentoml), "serve", "serving.service:Recommender", "--host", args.host,
           "--port", str(args.port), "--working-dir", str(root)]
    os.execve(cmd[0], cmd, env)
    return 0  # not reached
