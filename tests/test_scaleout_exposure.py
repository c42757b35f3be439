"""Serving replicas sharing one exposure log in PostgreSQL (``PATRON_EXPOSURE_URL``).

Two ``bentoml serve`` replicas on loopback ports write into one table of a per-test database;
under a bounded concurrent load the table holds exactly the acknowledged exposures (by
request id, once each), the variant of a customer is the same on both replicas, and a
replica killed with SIGKILL under load loses no acknowledged exposure.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from serving.exposure_pg import PgExposureLog, read_exposures_pg
from tests.pg import BIN, ROOT, Proc, child_env, database, free_port, wait_http
from tests.serving_helpers import build_artifact


def _replica(tmp, env: dict, name: str) -> tuple[Proc, str]:
    port = free_port()
    cmd = [str(BIN / "bentoml"), "serve", "serving.service:Recommender", "--host", "127.0.0.1",
           "--port", str(port), "--working-dir", str(ROOT)]
    full = child_env(tmp) | env | {"PATRON_RUN_DIR": str(tmp / f"run-{name}"),
                                   "PATRON_ACCESS_LOG": "0"}
    return Proc(cmd, full, tmp / f"{name}.log"), f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replicas")
    _, log = build_artifact(tmp / "model", n_customers=200)
    config = {"experiments": {"home": {"salt": "s1", "variants": {
        "control": {"model": str(tmp / "model"), "weight": 0.5},
        "treatment": {"model": str(tmp / "model"), "weight": 0.5}}}}}
    (tmp / "experiments.json").write_text(json.dumps(config))
    customers = [str(c) for c in log.purchases["customer_id"].drop_duplicates().iloc[:40]]
    with database("patron_exposure") as url:
        env = {"PATRON_EXPOSURE_URL": url, "PATRON_EXPERIMENTS": str(tmp / "experiments.json")}
        reps = [_replica(tmp, env, f"replica-{i}") for i in range(2)]
        try:
            for proc, base in reps:
                wait_http(f"{base}/readyz", proc, timeout=150)
            yield {"url": url, "replicas": reps, "customers": customers}
        finally:
            for proc, _ in reps:
                proc.stop()


def _load(bases: list[str], customers: list[str], n: int, concurrency: int = 6,
          stop: threading.Event | None = None) -> tuple[list[dict], int]:
    """``n`` recommend calls spread over ``bases``; returns (acknowledged, failed count)."""
    clients = [httpx.Client(base_url=b, timeout=20) for b in bases]
    acked, failed, lock = [], [0], threading.Lock()

    def one(i: int) -> None:
        if stop is not None and stop.is_set():
            return
        k = i % len(clients)
        cust = customers[(i // len(clients)) % len(customers)]
        try:
            r = clients[k].post("/recommend", json={"customer_id": cust, "n": 5,
                                                    "experiment": "home"})
        except httpx.HTTPError:
            with lock:
                failed[0] += 1
            return
        with lock:
            if r.status_code == 200:
                acked.append({"replica": k, "customer": cust, **r.json()})
            else:
                failed[0] += 1

    try:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(n)))
    finally:
        for c in clients:
            c.close()
    return acked, failed[0]


def _count(url: str) -> int:
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute("SELECT count(*) FROM patron_exposures").fetchone()[0]


@pytest.mark.slow
def test_two_replicas_one_log_exactly_the_acknowledged(setup):
    url, customers = setup["url"], setup["customers"]
    bases = [b for _, b in setup["replicas"]]
    acked, failed = _load(bases, customers, 240)
    assert failed == 0 and len(acked) == 240
    table, _ = read_exposures_pg(url)
    ids = table["request_id"].tolist()
    assert len(ids) == len(set(ids))  # no duplicates
    assert set(ids) == {a["request_id"] for a in acked}  # exactly what was acknowledged
    assert table["replica"].nunique() == 2  # both replicas wrote into the one table
    # the same customer gets the same variant (and the same pseudonymous key) on both
    by_rid = table.set_index("request_id")
    seen: dict[str, set] = {}
    for a in acked:
        row = by_rid.loc[a["request_id"]]
        assert row["variant"] == a["variant"] and row["items"] == [i["item_id"] for i in a["items"]]
        seen.setdefault(a["customer"], set()).add((a["replica"], a["variant"], row["customer_key"]))
    for cust, hits in seen.items():
        assert {r for r, _, _ in hits} == {0, 1}, cust  # each customer went to both replicas
        assert len({(v, k) for _, v, k in hits}) == 1, (cust, hits)
    assert {v for h in seen.values() for _, v, _ in h} == {"control", "treatment"}


@pytest.mark.slow
def test_replica_killed_under_load_loses_no_acknowledged_exposure(setup):
    url, customers = setup["url"], setup["customers"]
    (victim, vbase), (_, sbase) = setup["replicas"]
    before = set(read_exposures_pg(url)[0]["request_id"])
    result: dict = {}
    stop = threading.Event()

    def run() -> None:
        result["acked"], result["failed"] = _load([vbase, sbase], customers, 5000,
                                                  concurrency=8, stop=stop)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.time() + 60
    while time.time() < deadline:  # kill once the load is well under way
        if _count(url) - len(before) >= 100:
            break
        time.sleep(0.02)
    victim.kill9()
    time.sleep(1.0)  # the survivor keeps serving
    stop.set()
    t.join(timeout=120)
    acked, failed = result["acked"], result["failed"]
    assert failed > 0  # the victim stopped answering mid-load
    table, _ = read_exposures_pg(url)
    new = table[~table["request_id"].isin(before)]
    ids = new["request_id"].tolist()
    assert len(ids) == len(set(ids))
    acked_ids = {a["request_id"] for a in acked}
    assert acked_ids <= set(ids)  # acknowledged means stored, even on the killed replica
    assert any(a["replica"] == 0 for a in acked)
    # rows nobody saw acknowledged: only requests in flight on the victim when it died
    assert len(set(ids) - acked_ids) <= failed


def test_unreachable_exposure_database_is_one_line():
    from serving.exposure import ExposureLogError
    from tests.pg import server_url, with_database

    server_url()
    with pytest.raises(ExposureLogError) as e:
        PgExposureLog("postgresql://u:pw@127.0.0.1:1/x")
    msg = str(e.value)
    assert msg.startswith("cannot reach exposure database") and "pw" not in msg
    assert "\n" not in msg
    with pytest.raises(ExposureLogError, match="does not exist"):
        PgExposureLog(with_database(server_url(), "patron_no_such_db"))
