"""Latency cost of the PostgreSQL exposure log: one service, the same load, three sinks.

    .venv/bin/python bench/serve_pg.py --pg postgresql://postgres@127.0.0.1:5432/postgres

Starts ``bentoml serve`` (one worker) on a synthetic ALS artifact three times: no exposure
log, the JSONL file log (fsync per group commit), and ``PATRON_EXPOSURE_URL`` (COMMIT per
group); sends the same ``/recommend`` load (``--requests`` at ``--concurrency``, after a
warm-up) and prints client-side p50/p99/mean latency and throughput for each. The PostgreSQL
run uses a fresh database ``patron_bench_<random>`` on the server of ``--pg`` and drops it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _measure(base: str, customers: list[str], n: int, concurrency: int) -> dict:
    client = httpx.Client(base_url=base, timeout=30,
                          limits=httpx.Limits(max_connections=concurrency * 2))

    def one(i: int) -> float:
        t = time.perf_counter()
        r = client.post("/recommend", json={"customer_id": customers[i % len(customers)], "n": 10})
        r.raise_for_status()
        return time.perf_counter() - t

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(min(200, n))))  # warm-up
        t0 = time.perf_counter()
        lat = np.array(list(pool.map(one, range(n)))) * 1000
        wall = time.perf_counter() - t0
    client.close()
    return {"p50_ms": np.percentile(lat, 50), "p99_ms": np.percentile(lat, 99),
            "mean_ms": lat.mean(), "req_per_s": n / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pg", default=os.environ.get("PATRON_TEST_POSTGRES_URL",
                                                   "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--customers", type=int, default=2000)
    args = ap.parse_args()
    os.environ["PATRON_TEST_POSTGRES_URL"] = args.pg

    from tests.pg import BIN, Proc, child_env, database, free_port, wait_http
    from tests.serving_helpers import build_artifact

    tmp = Path(tempfile.mkdtemp(prefix="patron-bench-pg-"))
    _, log = build_artifact(tmp / "model", n_customers=args.customers, factors=64)
    customers = [str(c) for c in log.purchases["customer_id"].unique()]
    rows = []
    with database("patron_bench") as url:
        for name, env in [("none", {}),
                          ("file", {"PATRON_EXPOSURE_LOG": str(tmp / f"exp-{uuid.uuid4().hex}.jsonl")}),
                          ("postgresql", {"PATRON_EXPOSURE_URL": url})]:
            port = free_port()
            full = child_env(tmp) | {"PATRON_MODEL_URI": str(tmp / "model"),
                                     "PATRON_ACCESS_LOG": "0",
                                     "PATRON_RUN_DIR": str(tmp / f"run-{name}")} | env
            proc = Proc([str(BIN / "bentoml"), "serve", "serving.service:Recommender", "--host",
                         "127.0.0.1", "--port", str(port), "--working-dir", str(ROOT)],
                        full, tmp / f"serve-{name}.log")
            try:
                wait_http(f"http://127.0.0.1:{port}/readyz", proc, timeout=180)
                r = _measure(f"http://127.0.0.1:{port}", customers, args.requests, args.concurrency)
            finally:
                proc.stop()
            rows.append((name, r))
            print(f"{name:>10}: p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                  f"mean {r['mean_ms']:.2f} ms  {r['req_per_s']:.0f} req/s", flush=True)
    print(f"\n{args.requests} requests at concurrency {args.concurrency}, one worker, "
          f"{len(customers)} customers, cpu count {os.cpu_count()}")
    print("| exposure sink | p50 ms | p99 ms | mean ms | req/s |\n|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['mean_ms']:.2f} | "
              f"{r['req_per_s']:.0f} |")


if __name__ == "__main__":
    main()
