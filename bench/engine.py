#!/usr/bin/env python
"""In-process cost of the serving engine's hot path, without HTTP.

    .venv/bin/python bench/engine.py                 # the Complete Journey ALS of bench/serve.py
    .venv/bin/python bench/engine.py --model PATH

Loads the model with the top-k cache on and off (load time each) and prints microseconds per
call, median of ``--repeats`` timed loops over known customers: ``Engine.recommend`` (cached
and fully scored), ``recommend_batch`` per list, the JSON work of one reply (item dicts +
pydantic-core), one exposure line and one customer key (cold HMAC, and from the key cache).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def per_call_us(fn, n: int, repeats: int) -> float:
    """Median over ``repeats`` loops of ``n`` calls ``fn(i)``, in microseconds per call."""
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(n):
            fn(i)
        runs.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="artifact path (default: bench/serve.py's cached ALS)")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "patron-bench"))
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    model = args.model
    if model is None:
        from bench.serve import train_cj

        path = Path(args.cache) / "cj_als_f64_m5"
        if not (path / "manifest.json").is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            train_cj(path, 5, 64)
        model = str(path)

    from pydantic_core import to_json

    from serving.exposure import ExposureLog, customer_key
    from serving.loader import load_engine
    from serving.service import _items

    t = time.perf_counter()
    cached = load_engine(model).engine
    load_cached = time.perf_counter() - t
    os.environ["PATRON_TOPK_CACHE"] = "off"
    t = time.perf_counter()
    full = load_engine(model).engine
    load_full = time.perf_counter() - t
    os.environ.pop("PATRON_TOPK_CACHE")

    cust = cached.art.customers.ids.tolist()[:400]
    m = len(cust)
    res = [cached.recommend(c, 10) for c in cust]
    items = [_items(cached, r) for r in res]
    with tempfile.TemporaryDirectory() as tmp:
        log = ExposureLog(Path(tmp) / "x.jsonl")
        record = {"ts": time.time(), "request_id": "0123456789abcdef", "endpoint": "recommend",
                  "experiment": "default", "variant": "default", "model_version": cached.version,
                  "strategy": "personalised", "customer_key": "ab" * 16,
                  "items": [x["item_id"] for x in items[0]]}
        secret = log.secret
        for c in cust:
            log.key(c)
        calls, reps = args.calls, args.repeats
        rows = [
            ("load, top-k cache on (s)", load_cached),
            ("load, top-k cache off (s)", load_full),
            ("recommend, cached (us)",
             per_call_us(lambda i: cached.recommend(cust[i % m], 10), calls, reps)),
            ("recommend, cached, exclude_bought=False (us)",
             per_call_us(lambda i: cached.recommend(cust[i % m], 10, exclude_bought=False),
                         calls, reps)),
            ("recommend, full scoring (us)",
             per_call_us(lambda i: full.recommend(cust[i % m], 10), calls // 5, reps)),
            ("recommend_batch of 32, per list (us)",
             per_call_us(lambda i: cached.recommend_batch(cust[(i * 32) % m:][:32], 10),
                         calls // 32, reps) / 32),
            ("reply JSON: item dicts + to_json (us)",
             per_call_us(lambda i: to_json({"items": _items(cached, res[i % m])}), calls, reps)),
            ("exposure line: encode (us)",
             per_call_us(lambda i: ExposureLog.encode(record), calls, reps)),
            ("customer key: HMAC (us)",
             per_call_us(lambda i: customer_key(secret, cust[i % m]), calls, reps)),
            ("customer key: from the key cache (us)",
             per_call_us(lambda i: log.key(cust[i % m]), calls, reps)),
        ]
        log.close()
    info = load_engine(model, check=False).info
    print(f"\nPatron engine bench: {info['version']} ({info['n_customers']} customers x "
          f"{info['n_items']} items), 1 BLAS thread, median of {args.repeats} loops")
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:{width}s} {value:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
