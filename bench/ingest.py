#!/usr/bin/env python3
"""Benchmark ingestion: read, validate/clean and matrix build, with peak memory.

    .venv/bin/python bench/ingest.py                      # CJ, Online Retail, 20M generated lines
    .venv/bin/python bench/ingest.py --rows 2000000 --datasets generated

For each data set it runs Patron (``features.adapters.load_raw`` +
``features.clean.clean_purchases`` with validation and report + ``features.matrix.
build_interactions(weighting="count")``, or a direct CSR build while that module is absent)
beside a plain-pandas reference (read, keep quantity > 0 and non-missing ids,
``drop_duplicates``, ``factorize``, CSR). Every measurement runs in its own subprocess, so
peak memory (``VmHWM``) is per run. The generated log is written with numpy to a
temporary Parquet file (deleted afterwards unless ``--keep``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# per data set: the reference's file and column names (customer, item, quantity)
REFERENCE = {
    "completejourney": ("household_id", "product_id", "quantity"),
    "online_retail": ("CustomerID", "StockCode", "Quantity"),
    "generated": ("customer_id", "item_id", "quantity"),
}


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """A purchase log of ``rows`` lines: ~1% guests (null customer), ~1% returns, ~0.5% zero
    quantities, ~1% exact duplicate lines; written as Parquet in row groups."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_cust, n_items = max(rows // 100, 10), max(rows // 400, 10)
    chunk = 5_000_000
    writer = None
    start = np.datetime64("2024-01-01T00:00:00", "s").astype(np.int64)
    try:
        for lo in range(0, rows, chunk):
            m = min(chunk, rows - lo)
            cust = rng.integers(0, n_cust, m, dtype=np.int64)
            item = (rng.zipf(1.3, m) % n_items).astype(np.int64)
            ts = start + rng.integers(0, 365 * 86400, m, dtype=np.int64)
            qty = rng.integers(1, 6, m).astype(np.int64)
            u = rng.random(m)
            qty[u < 0.01] *= -1
            qty[(u >= 0.01) & (u < 0.015)] = 0
            price = np.round(rng.gamma(2.0, 3.0, m) + 0.01, 2)
            order = (lo + np.arange(m, dtype=np.int64)) // 8
            dup = rng.random(m) < 0.01  # copy the previous line
            src = np.flatnonzero(dup)
            src = src[src > 0]
            for a in (cust, item, ts, qty, price, order):
                a[src] = a[src - 1]
            guest = rng.random(m) < 0.01
            table = pa.table({
                "customer_id": pa.array(cust, mask=guest),
                "item_id": item,
                "timestamp": pa.array(ts.astype("datetime64[s]").astype("datetime64[ns]")),
                "quantity": qty,
                "price": price,
                "order_id": order,
            })
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=1_000_000)
    finally:
        if writer is not None:
            writer.close()


def _source_path(dataset: str, generated: Path | None) -> str:
    if dataset == "generated":
        return str(generated)
    if dataset == "completejourney":
        from features.adapters import _cj_dir

        return str(_cj_dir() / "transactions.parquet")
    from features.adapters import ONLINE_RETAIL_PATH

    return os.environ.get("PATRON_ONLINE_RETAIL", str(ONLINE_RETAIL_PATH))


def _csr_count(customers, items):
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    r, cu = pd.factorize(customers, sort=True)
    c, it = pd.factorize(items, sort=True)
    m = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(cu), len(it)))
    m.sum_duplicates()
    return m


def worker(impl: str, dataset: str, path: str) -> dict:
    """One measurement (run in a subprocess)."""
    import numpy as np  # noqa: F401  (imports are not timed)
    import pandas as pd

    from features import columns as C
    from features.adapters import load_raw
    from features.clean import clean_purchases

    try:
        from features.matrix import MatrixConfig, build_interactions
    except ImportError:
        build_interactions = None

    out: dict = {"impl": impl, "dataset": dataset}
    t0 = time.perf_counter()
    if impl == "pandas":
        cust, item, qty = REFERENCE[dataset]
        df = pd.read_parquet(path)
        t1 = time.perf_counter()
        df = df[(df[qty] > 0) & df[cust].notna() & df[item].notna()].drop_duplicates()
        t2 = time.perf_counter()
        m = _csr_count(df[cust].to_numpy(), df[item].to_numpy())
        t3 = time.perf_counter()
        out.update(rows_in=None, rows_kept=len(df), build="factorize+csr")
    else:
        raw = load_raw(dataset if dataset != "generated" else path)
        t1 = time.perf_counter()
        res = clean_purchases(raw.frame, raw.defaults, source=raw.source)
        del raw
        t2 = time.perf_counter()
        p = res.purchases
        if build_interactions is not None:
            m = build_interactions(p, MatrixConfig(weighting="count")).matrix
            out["build"] = "features.matrix.build_interactions(count)"
        else:
            m = _csr_count(p[C.CUSTOMER_ID].to_numpy(), p[C.ITEM_ID].to_numpy())
            out["build"] = "factorize+csr (features.matrix absent)"
        t3 = time.perf_counter()
        out.update(rows_in=res.report["rows_in"], rows_kept=res.report["rows_kept"])
    out.update(
        read_s=t1 - t0, clean_s=t2 - t1, build_s=t3 - t2, total_s=t3 - t0,
        shape=list(m.shape), nnz=int(m.nnz),
        peak_gib=_peak_gib(),
    )
    return out


def _peak_gib() -> float:
    """Peak resident memory of this process. ``VmHWM`` belongs to this process image only;
    ``ru_maxrss`` (the fallback) also counts the parent's size at fork time."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _run_worker(impl: str, dataset: str, path: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl, dataset, path]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{impl} on {dataset} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _table(results: list[dict]) -> str:
    head = (f"{'dataset':<16} {'impl':<7} {'rows_in':>11} {'rows_kept':>11} {'read_s':>7} "
            f"{'clean_s':>8} {'build_s':>8} {'total_s':>8} {'peak_GiB':>9}")
    lines = [head, "-" * len(head)]
    by_ds: dict[str, dict[str, dict]] = {}
    for r in results:
        by_ds.setdefault(r["dataset"], {})[r["impl"]] = r
        rows_in = f"{r['rows_in']:,}" if r["rows_in"] is not None else "-"
        lines.append(
            f"{r['dataset']:<16} {r['impl']:<7} {rows_in:>11} {r['rows_kept']:>11,} "
            f"{r['read_s']:>7.2f} {r['clean_s']:>8.2f} {r['build_s']:>8.2f} {r['total_s']:>8.2f} "
            f"{r['peak_gib']:>9.2f}"
        )
    lines.append("")
    for ds, rs in by_ds.items():
        if "pandas" in rs and "patron" in rs:
            a, b = rs["patron"], rs["pandas"]
            lines.append(
                f"{ds}: patron/pandas time {a['total_s'] / b['total_s']:.2f}x "
                f"(clean {a['clean_s'] / b['clean_s']:.2f}x), peak memory "
                f"{a['peak_gib'] / b['peak_gib']:.2f}x"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000_000, help="lines in the generated log")
    ap.add_argument("--datasets", default="completejourney,online_retail,generated",
                    help="comma list of completejourney, online_retail, generated")
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement (best kept)")
    ap.add_argument("--keep", action="store_true", help="keep the generated Parquet file")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--generate", nargs=2, metavar=("PATH", "ROWS"), help=argparse.SUPPRESS)
    ap.add_argument("--worker", nargs=3, metavar=("IMPL", "DATASET", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.generate:
        generate(Path(args.generate[0]), int(args.generate[1]))
        return 0
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return 0
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = set(datasets) - set(REFERENCE)
    if unknown:
        ap.error(f"unknown data sets: {', '.join(sorted(unknown))}")
    tmp = Path(tempfile.mkdtemp(prefix="patron-bench-ingest-"))
    gen = tmp / f"generated_{args.rows}.parquet"
    results = []
    try:
        if "generated" in datasets:
            t = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--generate", str(gen), str(args.rows)],
                           check=True)  # in a subprocess: this process stays small
            print(f"generated {args.rows:,} lines in {time.perf_counter() - t:.1f}s: {gen} "
                  f"({gen.stat().st_size / 2**20:.0f} MiB)", flush=True)
        for ds in datasets:
            path = _source_path(ds, gen)
            for impl in ("pandas", "patron"):
                runs = [_run_worker(impl, ds, path) for _ in range(max(args.repeat, 1))]
                best = min(runs, key=lambda r: r["total_s"])
                results.append(best)
                print(f"  {ds} {impl}: {best['total_s']:.2f}s, peak {best['peak_gib']:.2f} GiB",
                      flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(_table(results))
    if results:
        print(f"build step: {results[-1].get('build')}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
