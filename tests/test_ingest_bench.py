"""bench/ingest.py on a tiny generated log, in process (timings are not asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_ingest", ROOT / "bench" / "ingest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_patron_matches_the_plain_pandas_reference(tmp_path):
    bench = _bench()
    path = tmp_path / "gen.parquet"
    bench.generate(path, 20_000, seed=3)
    ref = bench.worker("pandas", "generated", str(path))
    ours = bench.worker("patron", "generated", str(path))
    # same rules on the generated log (guests, returns, zero quantities, duplicates)
    assert ours["rows_kept"] == ref["rows_kept"] < ours["rows_in"] == 20_000
    assert ours["nnz"] == ref["nnz"] and ours["shape"] == ref["shape"]
    table = bench._table([ref, ours])
    assert "generated: patron/pandas time" in table and "peak memory" in table
