"""The purchase-log schema: column mapping and the missing-column check.

A raw log is mapped onto the canonical columns of :mod:`features.columns`
(required ``customer_id``, ``item_id``, ``timestamp``; optional ``quantity``, ``price``,
``order_id``, ``category``, ``item_name``). A mapping is ``{canonical: source_column}``,
as given on the command line by ``--map customer_id=CustomerID``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

from features import columns as C
from features.errors import SchemaError

# extra (non-canonical) columns read when present: ``department`` (rules may use it, kept
# through cleaning) and ``line_total`` (the price of the whole line, as many POS exports give:
# unit price = line_total / quantity; not kept)
LINE_TOTAL = "line_total"
EXTRA_COLUMNS = ("department", LINE_TOTAL)

__all__ = [
    "EXTRA_COLUMNS",
    "parse_mapping",
    "apply_mapping",
    "check_columns",
]


def parse_mapping(pairs: Iterable[str] | None) -> dict[str, str]:
    """Parse ``["customer_id=CustomerID", ...]`` into ``{"customer_id": "CustomerID"}``."""
    out: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise SchemaError(f"--map {pair!r}: expected CANONICAL=COLUMN, e.g. customer_id=CustomerID")
        out[key] = value
    return out


def _found(df: pd.DataFrame) -> str:
    return ", ".join(map(str, df.columns)) or "(none)"


def apply_mapping(
    df: pd.DataFrame, mapping: Mapping[str, str] | None, source: str = "input"
) -> pd.DataFrame:
    """Rename source columns to canonical names and keep only the schema's columns.

    Unmapped canonical columns are taken by their own name when present. Raises
    :class:`SchemaError` naming the mapping and the columns found when a mapping names a
    canonical column that does not exist or a source column that is not in ``df``.
    """
    mapping = dict(mapping or {})
    known = set(C.ALL) | set(EXTRA_COLUMNS)
    for canonical, col in mapping.items():
        if canonical not in known:
            raise SchemaError(
                f"{source}: --map {canonical}={col}: {canonical!r} is not a purchase-log column "
                f"(columns: {', '.join(C.ALL)})"
            )
        if col not in df.columns:
            raise SchemaError(
                f"{source}: --map {canonical}={col}: no column {col!r} "
                f"(columns found: {_found(df)})"
            )
    sources = set(mapping.values())
    selected: dict[str, pd.Series] = {}
    for canonical in (*C.ALL, *EXTRA_COLUMNS):
        if canonical in mapping:
            selected[canonical] = df[mapping[canonical]]
        elif canonical in df.columns and canonical not in sources:
            selected[canonical] = df[canonical]
    # a dict of existing Series: pandas builds the frame without copying twice
    return pd.DataFrame(selected, copy=False)


def check_columns(df: pd.DataFrame, source: str = "input", found: Iterable[str] | None = None) -> None:
    """Raise :class:`SchemaError` naming the first missing required column and the found ones."""
    missing = [c for c in C.REQUIRED if c not in df.columns]
    if missing:
        cols = ", ".join(map(str, found)) if found is not None else _found(df)
        raise SchemaError(
            f"{source}: missing required column {missing[0]!r}"
            + (f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else "")
            + f"; columns found: {cols or '(none)'}; map one with --map {missing[0]}=COLUMN"
        )
