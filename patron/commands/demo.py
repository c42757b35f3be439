"""`patron demo`: the whole Patron path on The Complete Journey (see patron/demo.py)."""

from __future__ import annotations

HELP = ("run the whole path on The Complete Journey: ingest, evaluate, tune + register, "
        "segments, serve and A/B test")


def add_arguments(parser) -> None:
    parser.add_argument("--workdir", default=".patron/demo", help="where the demo writes (default .patron/demo)")
    parser.add_argument("--trials", type=int, default=4, help="Optuna trials per model (default 4)")
    parser.add_argument("--timeout", type=float, default=240.0, help="tuning seconds per model (default 240)")
    parser.add_argument("--port", type=int, default=3000, help="service port (default 3000, or a free one)")
    parser.add_argument("--ab-requests", type=int, default=600, help="A/B visits to replay (default 600)")
    parser.add_argument("--no-serve", action="store_true", help="stop the service at the end")


def run(args) -> int:
    from patron.demo import run_demo

    return run_demo(args.workdir, trials=args.trials, timeout=args.timeout, serve=not args.no_serve,
                    port=args.port, ab_requests=args.ab_requests)
