"""Ingestion: raw log -> clean purchases (Parquet) + report (JSON) + rejects.

- :func:`load_dataset` -- clean purchases in memory from a built-in name
  (``completejourney``, ``online_retail``), a raw CSV/Parquet log or a clean
  ``purchases.parquet`` written by :func:`ingest`.
- :func:`ingest` -- the job behind ``patron ingest``: writes ``purchases.parquet``,
  ``report.json`` and, when rows were invalid, ``rejects.parquet`` (``rejects.csv`` for
  CSV input) into ``out_dir``.
- :func:`read_purchases` / :func:`write_purchases` -- the clean Parquet file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import columns as C
from features.adapters import load_raw
from features.clean import INVALID_REASONS, CleanConfig, CleanResult, clean_purchases, merge_config
from features.errors import SchemaError, ValidationError
from features.schema import check_columns

__all__ = [
    "PURCHASES_FILE",
    "REPORT_FILE",
    "format_summary",
    "ingest",
    "is_purchases_file",
    "load_dataset",
    "read_purchases",
    "write_purchases",
]

PURCHASES_FILE = "purchases.parquet"
REPORT_FILE = "report.json"
_META_KEY = b"patron"
_META = {"kind": "purchases", "format_version": 1}


def _umask_mode() -> int:
    """The mode a plain new file gets under this process's umask (0o666 & ~umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file and rename: readers never see half a file. The file
    gets the mode the user's umask gives new files (mkstemp's own 0600 is not kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_purchases(purchases: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write clean purchases to Parquet (atomically), tagged as a Patron purchases file."""
    path = Path(path)
    table = pa.Table.from_pandas(purchases, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[_META_KEY] = json.dumps(_META).encode()
    table = table.replace_schema_metadata(meta)
    _atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    return path


def is_purchases_file(path: str | os.PathLike) -> bool:
    """True for a Parquet file written by :func:`write_purchases`."""
    p = Path(path)
    if not p.is_file() or p.suffix.lower() not in (".parquet", ".pq"):
        return False
    try:
        meta = pq.read_schema(p).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return False
    return _META_KEY in meta


def read_purchases(path: str | os.PathLike) -> pd.DataFrame:
    """Read clean purchases back (a ``purchases.parquet`` or a directory holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / PURCHASES_FILE
    if not p.exists():
        raise SchemaError(f"{p}: no such purchases file")
    df = pd.read_parquet(p)
    check_columns(df, str(p))
    if df[C.TIMESTAMP].dtype != np.dtype("datetime64[ns]"):
        df[C.TIMESTAMP] = df[C.TIMESTAMP].astype("datetime64[ns]")
    for col in (C.QUANTITY, C.PRICE):
        if col in df.columns and df[col].dtype != np.float64:
            df[col] = df[col].astype(np.float64)
    return df


def _resolve(source: str | os.PathLike) -> Path | None:
    """A clean purchases file named by ``source`` (file or directory), else None."""
    p = Path(source)
    if p.is_dir() and (p / PURCHASES_FILE).exists():
        p = p / PURCHASES_FILE
    return p if is_purchases_file(p) else None


def clean_source(
    source: str | os.PathLike,
    config: CleanConfig | None = None,
    mapping: Mapping[str, str] | None = None,
    strict: bool = False,
    allow_empty: bool = False,
    sep: str | None = None,
    encoding: str | None = None,
) -> tuple[CleanResult, str]:
    """Load and clean a source; returns the result and the rejects format (parquet|csv).

    A source from which no row survives is an error (:class:`ValidationError` with the
    counts per reason) unless ``allow_empty``: a pipeline must not train on nothing."""
    raw = load_raw(source, mapping, sep=sep, encoding=encoding)
    cfg = merge_config(raw.defaults, config)
    result = clean_purchases(raw.frame, cfg, strict=strict, source=raw.source)
    if raw.reading is not None:
        result.report["csv"] = raw.reading
    if not allow_empty and result.report["rows_kept"] == 0:
        dropped = {k: v for k, v in result.report["dropped"].items() if v}
        why = ", ".join(f"{v:,} {k}" for k, v in dropped.items()) or "the file has no data rows"
        raise ValidationError(
            f"{raw.source}: no usable row ({result.report['rows_in']:,} rows in: {why}); "
            "nothing written (--allow-empty writes an empty result)"
        )
    return result, "csv" if raw.input_format == "csv" else "parquet"


def load_dataset(
    name_or_path: str | os.PathLike,
    config: CleanConfig | None = None,
    mapping: dict | None = None,
) -> pd.DataFrame:
    """Clean purchases from ``completejourney``, ``online_retail``, a raw CSV/Parquet log,
    or a clean ``purchases.parquet`` (read back as is unless ``config``/``mapping`` is given).

    ``config`` fields that are set explicitly override the source's defaults (e.g.
    ``CleanConfig(exclude_departments=[])`` keeps Complete Journey's FUEL lines).
    """
    clean = _resolve(name_or_path) if str(name_or_path) not in ("completejourney",
                                                                 "online_retail") else None
    if clean is not None and config is None and not mapping:
        return read_purchases(clean)
    result, _ = clean_source(clean or name_or_path, config, mapping)
    return result.purchases


def _write_rejects(rejects: pd.DataFrame, out_dir: Path, fmt: str) -> Path | None:
    for old in ("rejects.parquet", "rejects.csv"):
        (out_dir / old).unlink(missing_ok=True)
    if rejects.empty:
        return None
    path = out_dir / f"rejects.{fmt}"
    if fmt == "csv":
        _atomic_write(path, lambda tmp: rejects.to_csv(tmp, index=False))
    else:
        _atomic_write(path, lambda tmp: rejects.to_parquet(tmp, index=False))
    return path


def ingest(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: CleanConfig | None = None,
    mapping: Mapping[str, str] | None = None,
    strict: bool = False,
    allow_empty: bool = False,
    sep: str | None = None,
    encoding: str | None = None,
) -> CleanResult:
    """Clean ``source`` into ``out_dir``: ``purchases.parquet``, ``report.json`` and the
    rejects file when rows were invalid (``strict`` raises instead and writes nothing; so
    does a source with no usable row unless ``allow_empty``)."""
    out = Path(out_dir)
    result, fmt = clean_source(source, config, mapping, strict, allow_empty, sep, encoding)
    out.mkdir(parents=True, exist_ok=True)
    purchases_path = write_purchases(result.purchases, out / PURCHASES_FILE)
    rejects_path = _write_rejects(result.rejects, out, fmt)
    result.report["outputs"] = {
        "purchases": str(purchases_path),
        "rejects": str(rejects_path) if rejects_path else None,
        "report": str(out / REPORT_FILE),
    }
    if mapping:
        result.report["mapping"] = dict(mapping)
    text = json.dumps(result.report, indent=2, default=str)
    _atomic_write(out / REPORT_FILE, lambda tmp: Path(tmp).write_text(text + "\n"))
    return result


def format_summary(report: dict[str, Any]) -> str:
    """A readable multi-line summary of a cleaning report."""
    n_in = report["rows_in"]

    def pct(k: int) -> str:
        return f"{100 * k / n_in:5.1f}%" if n_in else "  -  "

    lines = [f"source      {report['source']}"]
    csv = report.get("csv")
    if csv:
        shown = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}.get(csv["delimiter"],
                                                                            repr(csv["delimiter"]))
        how = (f" (detected: {', '.join(csv['detected'])}; --sep/--encoding to say otherwise)"
               if csv.get("detected") else "")
        lines.append(f"read as     {shown}-separated, {csv['encoding']}{how}")
    lines += [
        f"rows in     {n_in:>12,}",
        f"rows kept   {report['rows_kept']:>12,}  {pct(report['rows_kept'])}",
    ]
    dropped = {r: k for r, k in report["dropped"].items() if k}
    if dropped:
        lines.append("dropped:")
    for reason, k in dropped.items():
        tag = "invalid" if reason in INVALID_REASONS else "rule"
        ex = report["examples"].get(reason, [])[:3]
        shown = ", ".join(f"row {e['row']}: {e['value']!r}" for e in ex)
        lines.append(f"  {reason:<20} {k:>10,}  {pct(k)}  [{tag}]  e.g. {shown}")
    orders = report.get("orders")
    lines.append(
        f"customers   {report['customers']:>12,}   items {report['items']:,}"
        + (f"   orders {orders:,}" if orders is not None else "")
    )
    if report.get("time_range"):
        lines.append(f"time        {report['time_range'][0]} .. {report['time_range'][1]}")
    if (report.get("timestamps") or {}).get("description"):
        lines.append(f"time read   {report['timestamps']['description']}")
    for note in report.get("warnings") or ():
        lines.append(f"warning     {note}")
    for key, path in (report.get("outputs") or {}).items():
        if path:
            lines.append(f"{key:<11} {path}")
    return "\n".join(lines)
