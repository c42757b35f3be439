#!/usr/bin/env python
"""What the largest requests the limits allow cost: time, server CPU, memory, reply size.

    .venv/bin/python bench/limits.py                 # the Complete Journey ALS of bench/serve.py
    .venv/bin/python bench/limits.py --model PATH

Starts the real service (one worker, exposure log on, top-k cache as configured) and sends,
each ``--repeats`` times: a typical ``recommend`` (the reference), then the largest shapes
of :class:`serving.settings.Limits` — ``recommend_batch`` at the customers x n limit (1,000
customers x 20, and 200 x 100), ``recommend`` with n=1000 and 200 cart items, ``cross_sell``
of 200 items with n=1000, a 1 MiB body of deny-listed ids — and one just over a limit (413,
refused before work). Prints wall time, server CPU, the worker's peak RSS (VmHWM) after the
row, reply bytes and exposure-log bytes.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serve import Service, train_cj  # noqa: E402


def _hwm_mb(svc: Service) -> float:
    import psutil

    p = psutil.Process(svc.proc.pid)
    best = 0.0
    for q in [p, *p.children(recursive=True)]:
        try:
            for line in Path(f"/proc/{q.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    best = max(best, int(line.split()[1]) / 1024)
        except OSError:
            pass
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="artifact path (default: the bench/serve.py CJ model)")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "patron-bench"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    model = args.model
    if model is None:
        path = Path(args.cache) / "cj_als_f64_m5"
        if not (path / "manifest.json").is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            train_cj(path, 5, 64)
        model = str(path)
    from serving.loader import load_engine
    from serving.settings import Limits

    lim = Limits.from_env()
    e = load_engine(model, check=False).engine
    rng = random.Random(0)
    cust = e.art.customers.ids.tolist()
    items = [e.item_id(i) for i in range(e.n_items)]
    deny = rng.sample(items, min(len(items), lim.filter_ids))
    per = lim.batch_items // 20
    cases = [
        ("recommend n=10 (reference)", "/recommend", {"customer_id": cust[0], "n": 10}),
        (f"recommend_batch {per} x n=20", "/recommend_batch",
         {"customer_ids": rng.sample(cust, min(per, lim.batch_customers)), "n": 20}),
        ("recommend_batch 200 x n=100", "/recommend_batch", {"customer_ids": rng.sample(cust, 200), "n": 100}),
        (f"recommend n={lim.n} + {lim.context_items} cart items", "/recommend",
         {"customer_id": cust[1], "n": lim.n, "context_items": rng.sample(items, lim.context_items)}),
        (f"cross_sell {lim.item_ids} items n={lim.n}", "/cross_sell",
         {"item_ids": rng.sample(items, lim.item_ids), "n": lim.n}),
        (f"recommend + deny list of {len(deny):,} ids", "/recommend",
         {"customer_id": cust[2], "n": 100, "filters": {"deny_items": deny}}),
        ("over the limit: 1,000 x n=100 (413)", "/recommend_batch",
         {"customer_ids": rng.sample(cust, 1000), "n": 100}),
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="patron-limits-") as tmpd:
        tmp = Path(tmpd)
        log = tmp / "exposures.jsonl"
        svc = Service(model, "freeze", 1, log, tmp)
        try:
            with httpx.Client(base_url=svc.url, timeout=60) as c:
                for name, path, body in cases:
                    raw = json.dumps(body).encode()
                    walls, cpus = [], []
                    status = size = 0
                    log_before = log.stat().st_size if log.exists() else 0
                    for _ in range(args.repeats):
                        cpu0, t0 = svc.cpu_s(), time.perf_counter()
                        r = c.post(path, content=raw, headers={"content-type": "application/json"})
                        walls.append(time.perf_counter() - t0)
                        cpus.append(svc.cpu_s() - cpu0)
                        status, size = r.status_code, len(r.content)
                    logged = (log.stat().st_size - log_before) / args.repeats if log.exists() else 0
                    rows.append((name, status, len(raw), statistics.median(walls) * 1e3,
                                 statistics.median(cpus) * 1e3, _hwm_mb(svc), size, logged))
        finally:
            svc.stop()
    print(f"model {model}: {e.art.n_customers:,} customers x {e.n_items:,} items; "
          f"limits {lim.model_dump()}")
    print(f"{'request':<42} {'status':>6} {'body B':>9} {'wall ms':>9} {'CPU ms':>8} "
          f"{'peak RSS MB':>11} {'reply B':>10} {'log B':>9}")
    for name, status, body, wall, cpu, rss, size, logged in rows:
        print(f"{name:<42} {status:>6} {body:>9,} {wall:>9.1f} {cpu:>8.1f} {rss:>11.0f} "
              f"{size:>10,} {logged:>9,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
