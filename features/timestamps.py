"""Reading a timestamp column without guessing: an explicit format, or one detected from the values.

:func:`parse_timestamps` turns the distinct values of a timestamp column into
``datetime64[ns]`` (naive; time-zone aware input converted to UTC) and says how it read them
(:class:`TimestampReading`, which the ingest report carries). Nothing is guessed silently:

- **Text** values fall into families, each read with one explicit format:
  ``iso`` (year first: ``2010-12-01 08:26``, ``2010/12/01``), ``day-first`` / ``month-first``
  (``01/12/2010 08:26``: which one is decided from the values, a first field > 12 means
  day-first, a second field > 12 means month-first; a file with neither needs
  ``dayfirst`` or ``date_format``, one with both is an error), ``number`` (text that is a
  number: read as below) and ``other`` (month names and the like, read by pandas, whose
  readings of such values are unambiguous).
- **Numbers** (a numeric column, or numeric text) are read in the unit their range shows:
  Excel serial days (< 1e6, origin 1899-12-30), unix seconds (1e8..1e10), milliseconds
  (1e11..1e13), microseconds or nanoseconds, or ``yyyymmdd`` (8-digit whole numbers);
  values spanning several ranges are an error.
- ``date_format`` (strftime, e.g. ``%d/%m/%Y %H:%M``) reads every text value with that format.

Values that cannot be read are NaT (the caller counts them per row); values read outside
``[min_date, now + max_future_days]`` are flagged implausible (1970 from a misread number,
a date in the future from a misread order of day and month).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from features.errors import PatronError

__all__ = ["TimestampError", "TimestampReading", "parse_timestamps", "parse_numeric_timestamps"]

_YEAR_FIRST = re.compile(r"^\s*(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:([ T])(.*))?\s*$")
_NUMERIC_DATE = re.compile(r"^\s*(\d{1,2})[-/.](\d{1,2})[-/.](\d{4}|\d{2})(?:[ T]+(.*))?\s*$")
_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
NAT = np.datetime64("NaT", "ns")
# numeric units by the range of the values' magnitude: (name, low, high, to-ns factor)
_UNITS = (
    ("excel-serial-days", 1.0, 1e6, None),
    ("yyyymmdd", 1.9e7, 2.2e7, None),
    ("unix-seconds", 1e8, 1e10, 10**9),
    ("unix-milliseconds", 1e11, 1e13, 10**6),
    ("unix-microseconds", 1e14, 1e16, 10**3),
    ("unix-nanoseconds", 1e17, 1e19, 1),
)
_EXCEL_ORIGIN = np.datetime64("1899-12-30T00:00:00", "ns")


class TimestampError(PatronError):
    """A timestamp column that cannot be read without a guess (say how with a flag)."""


@dataclass
class TimestampReading:
    """How a timestamp column was read (JSON-able through :meth:`as_dict`)."""

    source: str = "typed"  # typed (datetime column) | detected | given (date_format/dayfirst)
    families: dict[str, int] = field(default_factory=dict)  # distinct values per family
    dayfirst: bool | None = None
    evidence: str | None = None  # why day-first / month-first was chosen
    date_format: str | None = None
    unit: str | None = None  # numeric unit
    implausible: int = 0  # distinct values read outside the plausible range
    unreadable: int = 0  # distinct non-blank values that could not be read

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        parts = [f"{k} {v:,}" for k, v in self.families.items() if v]
        how = {"typed": "typed column", "detected": "detected", "given": "as given"}[self.source]
        text = f"{how}: " + (", ".join(parts) if parts else "datetime values")
        if self.date_format:
            text += f"; format {self.date_format}"
        if self.dayfirst is not None and "dmy" in self.families:
            text += f"; {'day' if self.dayfirst else 'month'}-first ({self.evidence})"
        if self.unit:
            text += f"; numbers as {self.unit}"
        return text


def _plausible(vals: np.ndarray, min_date: str, max_future_days: int) -> np.ndarray:
    lo = np.datetime64(pd.Timestamp(min_date).to_datetime64(), "ns")
    hi = np.datetime64(
        (pd.Timestamp.now(tz="UTC").tz_localize(None) + pd.Timedelta(days=max_future_days))
        .to_datetime64(), "ns")
    return np.isnat(vals) | ((vals >= lo) & (vals <= hi))


def _unit_of(x: np.ndarray, source: str) -> tuple[str, int | None]:
    mag = np.abs(x[np.isfinite(x)])
    if not len(mag):
        return "none", None
    found = []
    for name, lo, hi, factor in _UNITS:
        inside = (mag >= lo) & (mag < hi)
        if inside.any():
            found.append((name, factor, int(inside.sum())))
    outside = len(mag) - sum(n for *_, n in found)
    if len(found) != 1 or outside:
        ranges = ", ".join(f"{n:,} as {name}" for name, _, n in found)
        raise TimestampError(
            f"{source}: numeric timestamps span several units ({ranges or 'none'}"
            f"{f', {outside:,} in no known range' if outside else ''}; e.g. "
            f"{mag.min():g} .. {mag.max():g}); convert them to one unit or to text dates"
        )
    return found[0][0], found[0][1]


def parse_numeric_timestamps(x: np.ndarray, source: str = "timestamp") -> tuple[np.ndarray, str]:
    """``float64`` values -> ``datetime64[ns]`` in the unit their range shows, and that unit."""
    x = np.asarray(x, dtype=np.float64)
    unit, factor = _unit_of(x, source)
    out = np.full(len(x), NAT)
    ok = np.isfinite(x)
    if unit == "excel-serial-days":
        ns = np.round(x[ok] * 86_400e9).astype(np.int64)
        out[ok] = _EXCEL_ORIGIN + ns.astype("timedelta64[ns]")
    elif unit == "yyyymmdd":
        whole = x[ok] == np.round(x[ok])
        txt = pd.Series(x[ok].astype(np.int64).astype(str))
        vals = pd.to_datetime(txt, format="%Y%m%d", errors="coerce").to_numpy("datetime64[ns]")
        vals[~whole] = NAT
        out[ok] = vals
    elif factor is not None:
        out[ok] = np.round(x[ok] * factor).astype(np.int64).view("datetime64[ns]")
    return out, unit


def _iso(values: pd.Series) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    return out.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def parse_timestamps(
    uniques: np.ndarray,
    *,
    date_format: str | None = None,
    dayfirst: bool | None = None,
    min_date: str = "1990-01-01",
    max_future_days: int = 1,
    source: str = "timestamp",
) -> tuple[np.ndarray, np.ndarray, TimestampReading]:
    """Read the distinct values of a text timestamp column.

    Returns ``(values, implausible, reading)``: ``datetime64[ns]`` per value (NaT where
    blank or unreadable), a mask of values read outside the plausible range, and how the
    column was read. Raises :class:`TimestampError` when the order of day and month cannot
    be told (or the values disagree) and nothing says which it is.
    """
    u = pd.Series(np.asarray(uniques, dtype=object), dtype=object)
    text = u.map(lambda v: v if isinstance(v, str) else (None if v is None else str(v)))
    blank = text.isna() | (text.str.strip() == "")
    out = np.full(len(u), NAT)
    reading = TimestampReading(source="given" if (date_format or dayfirst is not None) else "detected",
                               dayfirst=dayfirst, date_format=date_format)
    if date_format:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = pd.to_datetime(text[~blank], errors="coerce", format=date_format, utc=True)
        out[(~blank).to_numpy()] = parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
        reading.families = {"format": int((~blank).sum())}
        return _finish(out, blank, reading, min_date, max_future_days)

    s = text.where(~blank, "")
    yf = s.str.match(_YEAR_FIRST) & ~blank
    m = s.str.extract(_NUMERIC_DATE)
    dmy = m[0].notna() & ~yf & ~blank
    num = s.str.match(_NUMBER) & ~yf & ~dmy & ~blank
    other = ~blank & ~yf & ~dmy & ~num
    reading.families = {"iso": int(yf.sum()), "dmy": int(dmy.sum()), "number": int(num.sum()),
                        "other": int(other.sum())}
    if yf.any():
        g = s[yf].str.extract(_YEAR_FIRST)
        iso = g[0] + "-" + g[1].str.zfill(2) + "-" + g[2].str.zfill(2)
        rest = g[4].fillna("")
        iso = iso.where(rest == "", iso + " " + rest.str.strip())
        out[yf.to_numpy()] = _iso(iso)
    if dmy.any():
        a = pd.to_numeric(m.loc[dmy, 0]).to_numpy()
        b = pd.to_numeric(m.loc[dmy, 1]).to_numpy()
        first_big, second_big = int((a > 12).sum()), int((b > 12).sum())
        if dayfirst is None:
            if first_big and second_big:
                raise TimestampError(
                    f"{source}: dates disagree on the order of day and month ({first_big:,} "
                    f"values have a first field > 12, {second_big:,} a second field > 12, e.g. "
                    f"{s[dmy][a > 12].iloc[0]!r} and {s[dmy][b > 12].iloc[0]!r}); give "
                    "--date-format (e.g. %d/%m/%Y %H:%M)"
                )
            if not first_big and not second_big:
                raise TimestampError(
                    f"{source}: cannot tell day-first from month-first dates (no value has a day "
                    f"above 12, e.g. {s[dmy].iloc[0]!r}); give --dayfirst, --monthfirst or "
                    "--date-format"
                )
            reading.dayfirst = bool(first_big)
            reading.evidence = (f"{first_big:,} values with a first field > 12" if first_big
                                else f"{second_big:,} values with a second field > 12")
        else:
            reading.evidence = "given"
        day, month = (m.loc[dmy, 0], m.loc[dmy, 1]) if reading.dayfirst else (m.loc[dmy, 1], m.loc[dmy, 0])
        year = m.loc[dmy, 2]
        short = year.str.len() == 2
        year = year.where(~short, np.where(pd.to_numeric(year, errors="coerce") < 69, "20", "19") + year)
        iso = year + "-" + month.str.zfill(2) + "-" + day.str.zfill(2)
        rest = m.loc[dmy, 3].fillna("").str.strip()
        iso = iso.where(rest == "", iso + " " + rest)
        out[dmy.to_numpy()] = _iso(iso)
    if num.any():
        vals, unit = parse_numeric_timestamps(pd.to_numeric(s[num]).to_numpy(np.float64), source)
        out[num.to_numpy()] = vals
        reading.unit = unit
    if other.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = pd.to_datetime(s[other], errors="coerce", utc=True, format="mixed")
        out[other.to_numpy()] = parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    return _finish(out, blank, reading, min_date, max_future_days)


def _finish(out, blank, reading, min_date, max_future_days):
    implausible = ~_plausible(out, min_date, max_future_days)
    reading.implausible = int(implausible.sum())
    reading.unreadable = int((np.isnat(out) & ~blank.to_numpy()).sum())
    out = out.copy()
    out[implausible] = NAT
    return out, implausible, reading
