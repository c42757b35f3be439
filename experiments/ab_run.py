"""Online A/B run: drive a running Patron service with replayed shoppers.

:func:`run_ab` plans visits from the held-out period of real purchases
(:mod:`experiments.shoppers`), calls ``POST /recommend`` once per visit (the service
assigns the variant and writes its exposure log), attributes conversions and revenue
from what each shopper really bought next, and writes the outcomes file (JSON Lines, one
object per visit) that ``patron ab analyze`` joins with the exposure log on
``request_id``. Requests are bounded in number and time and go to loopback only.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from experiments.shoppers import attribute, plan_visits
from features import columns as C
from features.errors import PatronError

__all__ = ["RunResult", "run_ab", "check_loopback", "write_outcomes", "read_outcomes"]

log = logging.getLogger(__name__)

OUTCOME_COLUMNS = [
    "request_id", "visit_id", "visit_time", "sent_at", "status", "error",
    "experiment", "variant", "model_version", "strategy", "items", "item_variants",
    "converted_items", "n_converted", "converted", "revenue",
]
RESPONSE_COLUMNS = [
    "request_id", "sent_at", "status", "error", "experiment", "variant", "model_version",
    "strategy", "items", "item_variants",
]


@dataclass
class RunResult:
    """Outcomes per visit plus what happened during the run."""

    outcomes: pd.DataFrame
    summary: dict = field(default_factory=dict)
    path: Path | None = None


def check_loopback(url: str) -> str:
    """Return ``url`` without a trailing slash; refuse anything but a loopback host."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise PatronError(f"--url {url!r}: expected http://127.0.0.1:PORT")
    host = parsed.hostname
    ok = host == "localhost"
    if not ok:
        try:
            ok = ipaddress.ip_address(host).is_loopback
        except ValueError:
            ok = False
    if not ok:
        raise PatronError(
            f"--url {url!r}: the A/B driver only talks to a service on this machine "
            "(127.0.0.1, ::1 or localhost)"
        )
    return url.rstrip("/")


def _json_id(value):
    """Customer ids as JSON: whole numbers as int, everything else as str."""
    if isinstance(value, np.integer | int):
        return int(value)
    return str(value)


def run_ab(
    url: str,
    purchases: pd.DataFrame,
    experiment: str,
    *,
    holdout_days: int = 28,
    window_days: float = 7.0,
    k: int = 10,
    max_requests: int = 500,
    max_seconds: float = 60.0,
    concurrency: int = 4,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    timeout_s: float = 10.0,
    exclude_bought: bool | None = None,
) -> RunResult:
    """Replay up to ``max_requests`` shoppers against the service at ``url``.

    Stops at ``max_requests`` visits or after ``max_seconds`` (visits not sent are
    counted in the summary, not in the outcomes). Failed requests are kept in the
    outcomes with their ``status``/``error`` (the analysis excludes and counts them).
    Writes the outcomes to ``out`` (JSON Lines) when given. Shoppers are visited only
    at baskets early enough for a full attribution window. ``exclude_bought`` is sent
    to the service when set (else the service's default applies).
    """
    import httpx

    base = check_loopback(url)
    if max_requests <= 0 or max_seconds <= 0 or concurrency <= 0:
        raise PatronError("max_requests, max_seconds and concurrency must be positive")
    plan = plan_visits(purchases, holdout_days, max_visits=max_requests, seed=seed,
                       window_days=window_days)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one INFO line per request
    visits = plan.visits
    if visits.empty:
        raise PatronError("no shoppers in the held-out period: nothing to replay")

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = httpx.Client(base_url=base, timeout=timeout_s, limits=limits, trust_env=False)
    try:
        try:
            ready = client.get("/readyz")
        except httpx.HTTPError as exc:
            raise PatronError(f"service at {base} is not reachable ({exc})") from exc
        if ready.status_code != 200:
            raise PatronError(f"service at {base} is not ready: /readyz -> {ready.status_code}")

        deadline = time.monotonic() + max_seconds
        stop = threading.Event()
        cids = visits[C.CUSTOMER_ID].to_numpy()

        def call(i: int) -> dict:
            if stop.is_set() or time.monotonic() > deadline:
                stop.set()
                return {"visit_id": i, "status": -1, "error": "not sent (time limit)"}
            body = {"customer_id": _json_id(cids[i]), "n": k, "experiment": experiment}
            if exclude_bought is not None:
                body["exclude_bought"] = bool(exclude_bought)
            sent = time.time()
            try:
                r = client.post("/recommend", json=body)
            except httpx.HTTPError as exc:
                return {"visit_id": i, "sent_at": sent, "status": 0, "error": repr(exc)}
            if r.status_code != 200:
                return {"visit_id": i, "sent_at": sent, "status": r.status_code, "error": r.text[:300]}
            data = r.json()
            items = data.get("items", [])
            return {
                "visit_id": i, "sent_at": sent, "status": 200, "error": None,
                "request_id": data.get("request_id"), "experiment": data.get("experiment"),
                "variant": data.get("variant"), "model_version": data.get("model_version"),
                "strategy": data.get("strategy"),
                "items": [it.get("item_id") for it in items],
                "item_variants": [it.get("variant") for it in items],
            }

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            rows = list(pool.map(call, range(len(visits))))
        elapsed = time.monotonic() - started
    finally:
        client.close()

    res = pd.DataFrame(rows)
    for col in RESPONSE_COLUMNS:
        if col not in res:
            res[col] = None
    unsent = res["status"] == -1
    res = res[~unsent]
    merged = visits.merge(res[["visit_id", *RESPONSE_COLUMNS]], on="visit_id")
    merged["items"] = [x if isinstance(x, list) else [] for x in merged["items"]]
    merged["item_variants"] = [x if isinstance(x, list) else [] for x in merged["item_variants"]]
    outcome = attribute(merged, plan.heldout, window_days)
    merged = pd.concat([merged, outcome], axis=1)
    ok = merged["status"] == 200
    merged.loc[~ok, ["converted", "n_converted", "revenue"]] = np.nan
    outcomes = merged[OUTCOME_COLUMNS]
    statuses = merged["status"].value_counts().to_dict()
    summary = {
        **plan.description,
        "url": base,
        "experiment": experiment,
        "k": k,
        "exclude_bought": exclude_bought,
        "window_days": float(window_days),
        "planned_visits": int(len(visits)),
        "sent": int(len(merged)),
        "not_sent_time_limit": int(unsent.sum()),
        "ok": int(ok.sum()),
        "failed": int((~ok).sum()),
        "status_counts": {str(int(s)): int(n) for s, n in statuses.items()},
        "elapsed_s": round(elapsed, 3),
        "requests_per_s": round(len(merged) / elapsed, 1) if elapsed > 0 else None,
        "conversion_rate": float(merged.loc[ok, "converted"].mean()) if ok.any() else None,
    }
    result = RunResult(outcomes.reset_index(drop=True), summary)
    if out is not None:
        result.path = write_outcomes(result.outcomes, out, summary)
    return result


def write_outcomes(outcomes: pd.DataFrame, path: str | os.PathLike, summary: dict | None = None) -> Path:
    """Write outcomes atomically as JSON Lines (and ``<path>.summary.json`` if given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = outcomes.copy()
    frame["visit_time"] = frame["visit_time"].astype(str)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(frame.to_json(orient="records", lines=True, date_format="iso"))
    os.replace(tmp, path)
    if summary is not None:
        Path(f"{path}.summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return path


def read_outcomes(path: str | os.PathLike) -> pd.DataFrame:
    """Read an outcomes file written by :func:`write_outcomes`; names the bad line."""
    path = Path(path)
    if not path.is_file():
        raise PatronError(f"{path}: outcomes file not found")
    rows = []
    with path.open() as fh:
        for no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise PatronError(f"{path}:{no}: not a JSON object ({exc.msg})") from exc
    frame = pd.DataFrame(rows)
    need = {"request_id", "converted", "revenue"}
    if rows and not need <= set(frame.columns):
        raise PatronError(f"{path}: missing field(s) {sorted(need - set(frame.columns))}")
    if "visit_time" in frame:
        frame["visit_time"] = pd.to_datetime(frame["visit_time"], errors="coerce")
    return frame
