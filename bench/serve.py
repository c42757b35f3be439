#!/usr/bin/env python
"""Serving benchmark: the real BentoML service with a Complete Journey model.

    .venv/bin/python bench/serve.py                    # train a quick ALS if needed, run all
    .venv/bin/python bench/serve.py --quick            # shorter runs, fewer endpoints
    .venv/bin/python bench/serve.py --model models:/patron@champion

Starts ``bentoml serve serving.service:Recommender`` on 127.0.0.1 and measures, per
endpoint and for the trivial ``/ping`` api of the same service (the HTTP-stack reference):
sequential latency p50/p99 with one client, and throughput with p50/p99 under 32 and 64
concurrent clients (wrk with a Lua script for the POST bodies; an asyncio httpx client when
wrk is absent). Each measure is repeated (median, and range over repeats). Then RSS after
10,000 and 100,000 requests. Both GC settings (``PATRON_GC_MODE=freeze`` / ``default``)
are run. Model: ``--model`` (a path or registry URI), else a cached quick ALS trained here on
Complete Journey items bought by at least ``--min-item-customers`` households.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ---- model --------------------------------------------------------------------------
def train_cj(out: Path, min_item_customers: int, factors: int) -> Path:
    """A quick ALS on Complete Journey, saved with item table and cross-sell arrays."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from features.artifact import ModelArtifact
    from features.cooccurrence import cross_sell_arrays
    from features.ingest import load_dataset
    from features.item_features import item_table
    from features.matrix import MatrixConfig, build_interactions

    t0 = time.perf_counter()
    p = load_dataset("completejourney")
    im = build_interactions(p, MatrixConfig(min_item_customers=min_item_customers))
    with threadpool_limits(1, "blas"):
        als = AlternatingLeastSquares(factors=factors, regularization=0.05, alpha=2.0,
                                      iterations=10, random_state=0)
        als.fit(im.matrix, show_progress=False)
    xsell = cross_sell_arrays(p, im.items)
    n_baskets = xsell.pop("n_baskets")
    art = ModelArtifact(
        kind="factors", model_name="als", customers=im.customers, items=im.items,
        arrays={"user_factors": np.asarray(als.user_factors, np.float32),
                "item_factors": np.asarray(als.item_factors, np.float32),
                "item_scores": np.asarray((im.matrix > 0).sum(axis=0), np.float32).ravel(),
                **xsell},
        history=im.matrix,
        params={"factors": factors, "regularization": 0.05, "alpha": 2.0},
        weighting=im.weighting,
        metadata={"data": {"source": "completejourney", "min_item_customers": min_item_customers},
                  "n_baskets": n_baskets},
        item_table=item_table(p, im.items),
    )
    art.save(out)
    print(f"trained ALS on Complete Journey {im.shape} in {time.perf_counter() - t0:.0f}s",
          file=sys.stderr)
    return out


def bodies_for(model_path: str, n_bodies: int = 400, seed: int = 0) -> dict[str, list[str]]:
    """Request bodies per endpoint from the model's ids (known customers, popular items)."""
    from serving.loader import load_engine

    e = load_engine(model_path, check=False).engine
    rng = random.Random(seed)
    cust = e.art.customers.ids.tolist()
    pop = np.argsort(-e.popularity)[:2000]
    priced = pop[np.isfinite(e.prices[pop]) & (e.category_codes[pop] >= 0)]
    xs = [i for i in pop.tolist() if e.xsell_lift is not None and e.xsell_lift[i].nnz] or pop
    item = e.item_id

    def d(x):
        return json.dumps(x)

    return {
        "ping": [d({"n": 1})],
        "recommend": [d({"customer_id": rng.choice(cust), "n": 10}) for _ in range(n_bodies)],
        "recommend+cart": [
            d({"customer_id": rng.choice(cust), "n": 10,
               "context_items": [item(int(i)) for i in rng.sample(list(pop[:500]), 3)]})
            for _ in range(n_bodies)],
        "recommend_batch32": [
            d({"customer_ids": rng.sample(cust, 32), "n": 10}) for _ in range(50)],
        "similar_items": [d({"item_ids": [item(int(rng.choice(pop)))], "n": 10})
                          for _ in range(n_bodies)],
        "cross_sell": [d({"item_ids": [item(int(rng.choice(xs)))], "n": 10})
                       for _ in range(n_bodies)],
        "up_sell": [d({"item_ids": [item(int(rng.choice(priced)))], "n": 10})
                    for _ in range(n_bodies)],
    }


PATHS = {"recommend+cart": "/recommend", "recommend_batch32": "/recommend_batch"}


# ---- service ------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    def __init__(self, model: str, gc_mode: str, workers: int, exposure: Path | None,
                 home: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PATRON_MODEL_URI=model, PATRON_GC_MODE=gc_mode,
                   PATRON_WORKERS=str(workers), BENTOML_HOME=str(home / "bentoml"),
                   BENTOML_DO_NOT_TRACK="true", MLFLOW_DISABLE_TELEMETRY="true",
                   OPENBLAS_NUM_THREADS="1", PATRON_RUN_DIR=str(home / "run"))
        env.pop("PATRON_EXPERIMENTS", None)
        if exposure is not None:
            env["PATRON_EXPOSURE_LOG"] = str(exposure)
        else:
            env.pop("PATRON_EXPOSURE_LOG", None)
        self.log = open(home / f"service-{gc_mode}.log", "wb")  # noqa: SIM115
        bentoml = Path(sys.executable).with_name("bentoml")
        self.proc = subprocess.Popen(
            [str(bentoml), "serve", "serving.service:Recommender", "--host", "127.0.0.1",
             "--port", str(self.port), "--working-dir", str(ROOT)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"service exited; see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit("service did not become ready in 180s")

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server (all its processes) so far."""
        import psutil

        p = psutil.Process(self.proc.pid)
        return sum(sum(q.cpu_times()[:2]) for q in [p, *p.children(recursive=True)])

    def rss_mb(self) -> float:
        import psutil

        p = psutil.Process(self.proc.pid)
        procs = [p, *p.children(recursive=True)]
        return sum(q.memory_info().rss for q in procs) / 2**20

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# ---- load generators ----------------------------------------------------------------
LUA = """
local bodies = {%s}
local i = math.random(#bodies) - 1
local headers = {["Content-Type"] = "application/json"}
request = function()
  i = i %% #bodies + 1
  return wrk.format("POST", "%s", headers, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("JSON {\\"p50\\": %%d, \\"p99\\": %%d, \\"requests\\": %%d, \\"duration\\": %%d, \\"errors\\": %%d}\\n",
    latency:percentile(50), latency:percentile(99), summary.requests, summary.duration,
    e.status + e.connect + e.read + e.write + e.timeout))
end
"""


def wrk_run(url: str, path: str, bodies: list[str], conns: int, seconds: float,
            tmp: Path) -> dict:
    script = tmp / "bench.lua"
    script.write_text(LUA % (", ".join(f"[==[{b}]==]" for b in bodies), path))
    threads = 1 if conns == 1 else 2
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
         "-s", str(script), url],
        capture_output=True, text=True, timeout=seconds + 60,
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {out.stdout[-500:]} {out.stderr[-500:]}")
    r = json.loads(line[5:])
    return {"rps": r["requests"] / (r["duration"] / 1e6), "p50": r["p50"] / 1e3,
            "p99": r["p99"] / 1e3, "errors": r["errors"], "requests": r["requests"]}


def httpx_run(url: str, path: str, bodies: list[str], conns: int, seconds: float,
              tmp: Path) -> dict:
    async def main() -> dict:
        lat: list[float] = []
        errors = 0
        stop = time.perf_counter() + seconds
        limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as c:
            async def worker(k: int) -> None:
                nonlocal errors
                i = k
                while time.perf_counter() < stop:
                    i = (i + 1) % len(bodies)
                    t = time.perf_counter()
                    r = await c.post(path, content=bodies[i],
                                     headers={"content-type": "application/json"})
                    lat.append(time.perf_counter() - t)
                    errors += r.status_code != 200
            t0 = time.perf_counter()
            await asyncio.gather(*(worker(k) for k in range(conns)))
            el = time.perf_counter() - t0
        a = np.asarray(lat) * 1e3
        return {"rps": len(a) / el, "p50": float(np.percentile(a, 50)),
                "p99": float(np.percentile(a, 99)), "errors": errors, "requests": len(a)}

    return asyncio.run(main())


# ---- report -------------------------------------------------------------------------
def summarise(runs: list[dict], key: str) -> str:
    vals = [r[key] for r in runs]
    med = statistics.median(vals)
    fmt = "{:.0f}" if key == "rps" else "{:.2f}"
    if len(vals) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} [{fmt.format(min(vals))}-{fmt.format(max(vals))}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="artifact path or models:/NAME@alias (default: train)")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "patron-bench"),
                    help="where the trained model is kept between runs")
    ap.add_argument("--min-item-customers", type=int, default=5)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--gc-modes", default="freeze,default")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per measure")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--conns", default="1,32,64")
    ap.add_argument("--endpoints", default="ping,recommend,recommend+cart,recommend_batch32,"
                                           "similar_items,cross_sell,up_sell")
    ap.add_argument("--no-exposure", action="store_true", help="serve without exposure log")
    ap.add_argument("--rss-requests", type=int, default=100_000, help="0 = skip RSS check")
    ap.add_argument("--client", choices=["auto", "wrk", "httpx"], default="auto")
    ap.add_argument("--quick", action="store_true",
                    help="1 repeat, 2 s, ping+recommend, RSS after 20,000")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.duration, args.endpoints = 1, 2.0, "ping,recommend"
        args.rss_requests = min(args.rss_requests, 20_000)

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model is None:
        path = cache / f"cj_als_f{args.factors}_m{args.min_item_customers}"
        if not (path / "manifest.json").is_file():
            train_cj(path, args.min_item_customers, args.factors)
        model = str(path)
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "httpx"
    run = wrk_run if client == "wrk" else httpx_run
    bodies = bodies_for(model)
    endpoints = [e for e in args.endpoints.split(",") if e]
    conns = [int(c) for c in args.conns.split(",")]

    from serving.loader import load_engine

    info = load_engine(model).info
    rows: list[tuple] = []
    rss_rows: list[tuple] = []
    with tempfile.TemporaryDirectory(prefix="patron-bench-") as tmpd:
        tmp = Path(tmpd)
        for gc_mode in args.gc_modes.split(","):
            exposure = None if args.no_exposure else tmp / f"exposures-{gc_mode}.jsonl"
            svc = Service(model, gc_mode, args.workers, exposure, tmp)
            try:
                run(svc.url, "/recommend", bodies["recommend"], 32, 2.0, tmp)  # warm-up
                for ep in endpoints:
                    path = PATHS.get(ep, f"/{ep}")
                    res = {}
                    for c in conns:
                        res[c] = []
                        for _ in range(args.repeats):
                            c0 = svc.cpu_s()
                            r = run(svc.url, path, bodies[ep], c, args.duration, tmp)
                            r["cpu_ms"] = 1e3 * (svc.cpu_s() - c0) / max(1, r["requests"])
                            res[c].append(r)
                    rows.append((gc_mode, ep, res))
                    print(f"  {gc_mode:7s} {ep:18s} done", file=sys.stderr)
                if args.rss_requests:
                    done, marks = 0, {}
                    target = [min(10_000, args.rss_requests), args.rss_requests]
                    for t in target:
                        while done < t:
                            done += run(svc.url, "/recommend", bodies["recommend"], 32, 2.0,
                                        tmp)["requests"]
                        marks[t] = (done, svc.rss_mb())
                    rss_rows.append((gc_mode, marks))
            finally:
                svc.stop()

    print(f"\nPatron serving bench: model {info['version']} ({info['n_customers']} customers x "
          f"{info['n_items']} items, kind {info['kind']}), workers={args.workers}, "
          f"exposure log={'off' if args.no_exposure else 'on (fsync)'}, client={client}, "
          f"{args.repeats} x {args.duration:.0f}s per cell, median [min-max], CPUs={os.cpu_count()}")
    head = f"{'gc':7s} {'endpoint':18s} {'CPU ms/req':>10s}"
    for c in conns:
        head += (f" | {'1 client p50 ms':>16s} {'p99 ms':>16s}" if c == 1 else
                 f" | {f'{c} clients req/s':>18s} {'p50 ms':>16s} {'p99 ms':>16s}")
    print(head)
    print("-" * len(head))
    ping: dict[tuple, float] = {}
    for gc_mode, ep, res in rows:
        cpu = statistics.median(r["cpu_ms"] for c in conns if c > 1 for r in res[c]) if any(
            c > 1 for c in conns) else float("nan")
        line = f"{gc_mode:7s} {ep:18s} {cpu:10.2f}"
        for c in conns:
            rr = res[c]
            if ep == "ping":
                ping[(gc_mode, c)] = statistics.median(r["rps"] for r in rr)
            errs = sum(r["errors"] for r in rr)
            if c == 1:
                line += f" | {summarise(rr, 'p50'):>16s} {summarise(rr, 'p99'):>16s}"
            else:
                line += (f" | {summarise(rr, 'rps'):>18s} {summarise(rr, 'p50'):>16s} "
                         f"{summarise(rr, 'p99'):>16s}")
            if errs:
                line += f" ({errs} errors)"
        print(line)
    print("CPU ms/req: server CPU time (all processes) per request under 32/64 clients, median;"
          " it does not depend on how busy the machine is, unlike req/s and latency.")
    print(f"Machine load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print()
    for gc_mode, ep, res in rows:
        if ep == "ping" or 64 not in res or (gc_mode, 64) not in ping:
            continue
        rps = statistics.median(r["rps"] for r in res[64])
        print(f"{gc_mode:7s} {ep:18s} 64 clients: {rps / ping[(gc_mode, 64)]:.2f}x ping throughput")
    for gc_mode, marks in rss_rows:
        (n1, r1), (n2, r2) = marks.values()
        print(f"{gc_mode:7s} RSS (server, all processes): {r1:.0f} MB after {n1:,} requests, "
              f"{r2:.0f} MB after {n2:,} ({(r2 / r1 - 1) * 100:+.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
